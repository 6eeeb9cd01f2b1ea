"""3D Slicer scripted module "MRSynth" (extension skeleton).

This file only runs inside 3D Slicer. All computation lives in the pure-Python
library MRSynthLib, which ships with the extension as a top-level package next
to this file (see MRSynth/CMakeLists.txt).
"""

import importlib
import os
import sys

import qt
import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)

_HOMEPAGE = "https://github.com/mrsynth/MRSynth"


def _cliHint():
    return _(
        "Meanwhile, use the <code>mrsynth</code> command line: install the library from the"
        " project repository (<code>pip install .</code>) and run <code>mrsynth --help</code>."
    )


def _importMRSynthLib():
    """Import MRSynthLib, also when the module is loaded from a source checkout.

    In the installed extension MRSynthLib sits next to this file, on sys.path.
    When a developer adds the source folder MRSynth/ as an additional module
    path, the library is one level up (the repository root), so that folder is
    put on sys.path once.
    """
    try:
        return importlib.import_module("MRSynthLib")
    except ModuleNotFoundError as error:
        if error.name != "MRSynthLib":
            raise
    repositoryRoot = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if not os.path.isfile(os.path.join(repositoryRoot, "MRSynthLib", "__init__.py")):
        raise ImportError(
            "MRSynthLib is missing from the MRSynth extension: reinstall the extension"
            " from the Extensions Manager."
        )
    if repositoryRoot not in sys.path:
        sys.path.append(repositoryRoot)
    return importlib.import_module("MRSynthLib")


#
# MRSynth
#


class MRSynth(ScriptedLoadableModule):
    """Module description shown in Slicer's module panel and Help & Acknowledgement."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("MRSynth")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Image Synthesis")]
        self.parent.dependencies = []
        self.parent.contributors = ["MRSynth developers"]
        self.parent.helpText = _(
            "Synthesize missing MRI contrasts (T1, T1ce, T2, FLAIR, PD) from any available"
            " subset with 3D latent generative models, with a per-voxel uncertainty map and"
            " input-contribution maps.<br><br>"
            "<b>Synthetic images are for research, not for diagnosis.</b><br><br>"
            "The graphical interface of this module arrives in a later release. "
        ) + _cliHint() + _(
            '<br><br>See the <a href="{homepage}">project homepage</a> for documentation.'
        ).format(homepage=_HOMEPAGE)
        self.parent.acknowledgementText = _(
            "MRSynth implements and builds on the following methods; please cite the"
            " original publications when you use them:"
            "<ul>"
            "<li>RSF: &ldquo;Recover Semantics First, Generate Better&rdquo;</li>"
            "<li>MSG-LDM (CVPR 2026)</li>"
            "<li>VQ-Seq2Seq</li>"
            "<li>SSCF</li>"
            "<li>3D-WLDM</li>"
            "</ul>"
            "Full references are listed in the project documentation."
        )


#
# MRSynthWidget
#


class MRSynthWidget(ScriptedLoadableModuleWidget):
    """Placeholder panel until the synthesis GUI is implemented."""

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        self.logic = MRSynthLogic()

        try:
            versionText = _("MRSynthLib version {version}.").format(version=self.logic.libraryVersion())
        except ImportError as error:
            versionText = str(error)

        label = qt.QLabel(
            _("The MRSynth graphical interface arrives in a later release.")
            + "<br><br>"
            + _cliHint()
            + "<br><br>"
            + _("Synthetic images are for research, not for diagnosis.")
            + "<br><br>"
            + versionText
        )
        label.wordWrap = True
        label.textFormat = qt.Qt.RichText
        label.textInteractionFlags = qt.Qt.TextSelectableByMouse
        self.layout.addWidget(label)
        self.layout.addStretch(1)


#
# MRSynthLogic
#


class MRSynthLogic(ScriptedLoadableModuleLogic):
    """Computation that must also work in batch mode, without a GUI."""

    def libraryVersion(self):
        """Return the version of the bundled MRSynthLib library (``MRSynthLib.__version__``)."""
        return _importMRSynthLib().__version__


#
# MRSynthTest
#


class MRSynthTest(ScriptedLoadableModuleTest):
    """Tests run inside Slicer (Reload and Test button, or ctest)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_MRSynthLibImportable()

    def test_MRSynthLibImportable(self):
        """MRSynthLib ships with the extension and imports inside Slicer."""
        self.delayDisplay("Importing MRSynthLib")
        version = MRSynthLogic().libraryVersion()
        import MRSynthLib

        self.assertTrue(os.path.isfile(MRSynthLib.__file__))
        self.assertEqual(version, MRSynthLib.__version__)
        self.assertRegex(version, r"^\d+\.\d+")
        self.delayDisplay("Test passed")
