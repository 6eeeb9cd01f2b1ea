"""3D Slicer scripted module "MRSynth": synthesize a missing MRI contrast from the loaded ones.

The widget only gathers choices and shows results. The work happens in ``MRSynthSlicerLib`` (MRML
adapter, child-process runner, result display, comparison; tested with ``slicer-core``) and in the
pure-Python library ``MRSynthLib``, which runs in a child process (``PythonSlicer -m MRSynthLib.commands.cli``)
so the GUI stays responsive and Cancel can stop it.
"""

import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Union

import qt
import slicer
import vtk
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

_HOMEPAGE = "https://github.com/mrsynth/MRSynth"
CONTRAST_ROWS = ("t1", "t1ce", "t2", "flair", "pd")
DEVICE_CHOICES = (("auto", "Auto"), ("cpu", "CPU"), ("cuda", "GPU (CUDA)"))
BACKEND_CHOICES = (("auto", "Auto"), ("onnx", "ONNX Runtime (CPU)"), ("torch", "PyTorch"))
POLL_INTERVAL_MS = 200


def _ensureLibraryPath():
    """Put the folder holding MRSynthLib on sys.path when the module runs from a source checkout.

    In the installed extension MRSynthLib sits next to this file (already on sys.path); in a source
    checkout it is one level up, in the repository root.
    """
    here = os.path.dirname(os.path.abspath(__file__))
    for folder in (here, os.path.dirname(here)):
        if os.path.isfile(os.path.join(folder, "MRSynthLib", "__init__.py")):
            if folder not in sys.path:
                sys.path.append(folder)
            return
    raise ImportError("MRSynthLib is missing from the MRSynth extension: reinstall the extension from the Extensions Manager.")


_ensureLibraryPath()

from MRSynthSlicerLib.autofill import autofill  # noqa: E402
from MRSynthSlicerLib.commands import SynthesisOptions  # noqa: E402
from MRSynthSlicerLib.compare import CompareRun  # noqa: E402
from MRSynthSlicerLib.dependencies import (  # noqa: E402
    TORCH_VERSION_REQUIREMENT,
    DependencyError,
    ensure_dependencies,
    plan_dependencies,
    SlicerInstaller,
)
from MRSynthSlicerLib.models import installed_models  # noqa: E402
from MRSynthSlicerLib.process import LogEvent, Outcome, ProgressEvent  # noqa: E402
from MRSynthSlicerLib.results import show_synthesis  # noqa: E402
from MRSynthSlicerLib.synthesis_run import SynthesisRun  # noqa: E402
from MRSynthSlicerLib.validation import compare_blockers, synthesis_blockers  # noqa: E402

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
            "Synthesize a missing MRI contrast (T1, T1 post-contrast, T2, FLAIR, PD) from the contrasts a case"
            " has, with a per-voxel uncertainty map and one map per input showing how much it contributed."
            "<br><br>Select the model, the target contrast and the available volumes (names such as t1n, t1c,"
            " t2w, flair are recognised), then press Apply. The result appears as"
            " <i>&lt;target&gt; (synthetic, &lt;model&gt;)</i> in the inputs' study, with the uncertainty map"
            " over it. <b>Compare models</b> runs several models side by side with error maps and metrics"
            " against the real contrast when you have it."
            "<br><br><b>Synthetic images are for research, not for diagnosis.</b>"
            '<br><br>See the <a href="{homepage}">project documentation</a>.'
        ).format(homepage=_HOMEPAGE)
        self.parent.acknowledgementText = _(
            "MRSynth implements and builds on the following methods; please cite the original publications"
            " when you use them:"
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
# Parameter node
#


@parameterNodeWrapper
class MRSynthParameterNode:
    """The module's choices, saved with the scene.

    Volumes: the acquired contrasts (any subset the model accepts); ``target``: the contrast to make;
    ``model``: bundle name; ``device``: auto/cpu/cuda; ``backend``: auto/onnx/torch;
    ``uncertaintySamples``: 0 = none, else N >= 2 stochastic passes; ``compareModels``: comma-separated.
    """

    t1Volume: slicer.vtkMRMLScalarVolumeNode
    t1ceVolume: slicer.vtkMRMLScalarVolumeNode
    t2Volume: slicer.vtkMRMLScalarVolumeNode
    flairVolume: slicer.vtkMRMLScalarVolumeNode
    pdVolume: slicer.vtkMRMLScalarVolumeNode
    model: str = ""
    target: str = "t1ce"
    device: str = "auto"
    backend: str = "auto"
    uncertaintySamples: Annotated[int, WithinRange(0, 64)] = 8
    seed: Annotated[int, WithinRange(0, 2147483647)] = 0
    contributionMaps: bool = True
    referenceVolume: slicer.vtkMRMLScalarVolumeNode
    regionNode: Union[slicer.vtkMRMLSegmentationNode, slicer.vtkMRMLLabelMapVolumeNode, None]  # None is required by the wrapper
    compareModels: str = ""


#
# MRSynthWidget
#


class MRSynthWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The module panel: choices in, progress and results out."""

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._models = []
        self._run = None
        self._runKind = None
        self._results = None
        self._timer = None

    # ------------------------------------------------------------------ setup

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/MRSynth.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = MRSynthLogic()

        self._timer = qt.QTimer()
        self._timer.setInterval(POLL_INTERVAL_MS)
        self._timer.connect("timeout()", self.onTimer)

        for value, text in DEVICE_CHOICES:
            self.ui.deviceComboBox.addItem(text, value)
        for value, text in BACKEND_CHOICES:
            self.ui.backendComboBox.addItem(text, value)
        self.ui.modelsFolderLabel.text = _("Your own model bundles go in: {folder}").format(folder=self.logic.userModelsFolder())

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.modelComboBox.connect("currentIndexChanged(int)", self.onModelChanged)
        self.ui.targetComboBox.connect("currentIndexChanged(int)", self.onTargetChanged)
        self.ui.deviceComboBox.connect("currentIndexChanged(int)", self.onDeviceOrBackendChanged)
        self.ui.backendComboBox.connect("currentIndexChanged(int)", self.onDeviceOrBackendChanged)
        self.ui.compareModelsListWidget.connect("itemChanged(QListWidgetItem*)", self.onCompareModelsChanged)
        self.ui.overlayComboBox.connect("currentIndexChanged(int)", self.onOverlayChanged)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.compareButton.connect("clicked(bool)", self.onCompareButton)
        self.ui.installDependenciesButton.connect("clicked(bool)", self.onInstallDependencies)
        self.ui.refreshModelsButton.connect("clicked(bool)", self.refreshModels)

        self.refreshModels()
        self.initializeParameterNode()

    def cleanup(self):
        if self._run is not None and self._run.outcome is None:
            self._run.cancel()
        if self._timer is not None:
            self._timer.stop()
        self.removeObservers()

    def enter(self):
        self.initializeParameterNode()

    def exit(self):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)

    def onSceneStartClose(self, caller, event):
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self):
        self.setParameterNode(self.logic.getParameterNode())
        self._autofillInputs()

    def setParameterNode(self, inputParameterNode):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
            self._updateCombosFromParameterNode()
        self._checkCanApply()

    # ------------------------------------------------------------------ choices

    def refreshModels(self):
        """Fill the model list and the Compare list from the installed bundles."""
        self._models = self.logic.models()
        wasBlocked = self.ui.modelComboBox.blockSignals(True)
        self.ui.modelComboBox.clear()
        for info in self._models:
            self.ui.modelComboBox.addItem(info.label, info.name)
        self.ui.modelComboBox.blockSignals(wasBlocked)
        wasBlocked = self.ui.compareModelsListWidget.blockSignals(True)
        self.ui.compareModelsListWidget.clear()
        chosen = self._parameterNode.compareModels.split(",") if self._parameterNode else []
        for info in self._models:
            if info.error:
                continue
            item = qt.QListWidgetItem(info.label)
            item.setData(qt.Qt.UserRole, info.name)
            item.setFlags(item.flags() | qt.Qt.ItemIsUserCheckable)
            item.setCheckState(qt.Qt.Checked if info.name in chosen else qt.Qt.Unchecked)
            self.ui.compareModelsListWidget.addItem(item)
        self.ui.compareModelsListWidget.blockSignals(wasBlocked)
        self._updateCombosFromParameterNode()

    def _currentModel(self):
        name = self.ui.modelComboBox.currentData
        return next((info for info in self._models if info.name == name), None)

    def _updateCombosFromParameterNode(self):
        if not self._parameterNode:
            return
        for combo, value in ((self.ui.modelComboBox, self._parameterNode.model),
                             (self.ui.deviceComboBox, self._parameterNode.device),
                             (self.ui.backendComboBox, self._parameterNode.backend)):
            index = combo.findData(value)
            if index >= 0:
                combo.setCurrentIndex(index)
        self.onModelChanged()

    def onModelChanged(self, index=None):
        """Show one input row per contrast the model accepts; offer the contrasts it produces."""
        model = self._currentModel()
        if self._parameterNode and model is not None:
            self._parameterNode.model = model.name
        accepted = model.inputs if model is not None and not model.error else ()
        for contrast in CONTRAST_ROWS:
            visible = contrast in accepted
            getattr(self.ui, f"{contrast}Label").visible = visible
            getattr(self.ui, f"{contrast}VolumeSelector").visible = visible
        wasBlocked = self.ui.targetComboBox.blockSignals(True)
        self.ui.targetComboBox.clear()
        for contrast in model.outputs if model is not None and not model.error else ():
            self.ui.targetComboBox.addItem(contrast, contrast)
        wanted = self._parameterNode.target if self._parameterNode else "t1ce"
        self.ui.targetComboBox.setCurrentIndex(max(self.ui.targetComboBox.findData(wanted), 0))
        self.ui.targetComboBox.blockSignals(wasBlocked)
        self.onTargetChanged()
        self._autofillInputs()

    def onTargetChanged(self, index=None):
        if self._parameterNode and self.ui.targetComboBox.currentData:
            self._parameterNode.target = self.ui.targetComboBox.currentData
        self._checkCanApply()

    def onDeviceOrBackendChanged(self, index=None):
        if self._parameterNode:
            self._parameterNode.device = self.ui.deviceComboBox.currentData
            self._parameterNode.backend = self.ui.backendComboBox.currentData
        self._checkCanApply()

    def onCompareModelsChanged(self, item=None):
        if self._parameterNode:
            self._parameterNode.compareModels = ",".join(self._checkedCompareModels())
        self._checkCanApply()

    def _checkedCompareModels(self):
        widget = self.ui.compareModelsListWidget
        return [widget.item(i).data(qt.Qt.UserRole) for i in range(widget.count)
                if widget.item(i).checkState() == qt.Qt.Checked]

    def _autofillInputs(self):
        """Fill empty input selectors from volume names (t1n, t1c, t2w, flair, ...)."""
        model = self._currentModel()
        if not self._parameterNode or model is None or model.error:
            return
        taken = {c for c in CONTRAST_ROWS if getattr(self._parameterNode, f"{c}Volume") is not None}
        taken.add(self._parameterNode.target)
        names = {node.GetID(): node.GetName() for node in slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode")
                 if not node.IsA("vtkMRMLLabelMapVolumeNode") and node.GetAttribute("MRSynth.kind") is None}
        for contrast, nodeID in autofill(names, model.inputs, taken).items():
            setattr(self._parameterNode, f"{contrast}Volume", slicer.mrmlScene.GetNodeByID(nodeID))

    def _inputs(self):
        model = self._currentModel()
        accepted = model.inputs if model is not None else ()
        return {c: getattr(self._parameterNode, f"{c}Volume") for c in CONTRAST_ROWS if c in accepted}

    def _options(self, model=None):
        samples = self._parameterNode.uncertaintySamples
        return SynthesisOptions(
            target=self._parameterNode.target,
            model=model if model is not None else self._parameterNode.model,
            device=self._parameterNode.device,
            backend=self._parameterNode.backend,
            samples=samples if samples >= 2 else 1,
            seed=self._parameterNode.seed,
            contributions=self._parameterNode.contributionMaps,
        )

    def _checkCanApply(self, caller=None, event=None):
        if not self._parameterNode:
            self.ui.applyButton.enabled = False
            self.ui.compareButton.enabled = False
            return
        if self._run is not None:
            return  # the button is Cancel while running
        inputs = {c: node for c, node in self._inputs().items()}
        reasons = synthesis_blockers(inputs, self._parameterNode.target, self._currentModel())
        if self._parameterNode.uncertaintySamples == 1:
            reasons.append(_("Uncertainty samples must be 0 (no map) or at least 2."))
        self.ui.applyButton.enabled = not reasons
        self.ui.applyButton.toolTip = "\n".join(reasons) if reasons else _("Synthesize the target contrast.")
        models = [info for info in self._models if info.name in self._checkedCompareModels()]
        compareReasons = compare_blockers(inputs, self._parameterNode.target, models, self._parameterNode.referenceVolume)
        self.ui.compareButton.enabled = not compareReasons
        self.ui.compareButton.toolTip = ("\n".join(compareReasons) if compareReasons
                                         else _("Run every ticked model and compare them."))

    # ------------------------------------------------------------------ running

    def onInstallDependencies(self):
        with slicer.util.tryWithErrorDisplay(_("Installing the Python packages failed."), waitCursor=True):
            installed = self.logic.ensureDependencies(self._options(), self._currentModel(), SlicerInstaller())
            self.ui.statusLabel.text = _("Python packages installed.") if installed else _("All needed packages are installed.")

    def onApplyButton(self):
        if self._run is not None:
            self._run.cancel()
            return
        with slicer.util.tryWithErrorDisplay(_("The synthesis could not start."), waitCursor=True):
            options = self._options()
            self.logic.ensureDependencies(options, self._currentModel(), SlicerInstaller())
            self._startRun(self.logic.startSynthesis(self._inputs(), options), "synthesis")

    def onCompareButton(self):
        if self._run is not None:
            return
        with slicer.util.tryWithErrorDisplay(_("The comparison could not start."), waitCursor=True):
            models = self._checkedCompareModels()
            for info in self._models:
                if info.name in models:
                    self.logic.ensureDependencies(self._options(info.name), info, SlicerInstaller())
            self._startRun(self.logic.startComparison(self._inputs(), models, self._options()), "comparison")

    def _startRun(self, run, kind):
        self._run, self._runKind = run, kind
        self.ui.logTextEdit.clear()
        self.ui.progressBar.value = 0
        self.ui.progressBar.visible = True
        self.ui.statusLabel.text = _("Running...")
        self.ui.applyButton.text = _("Cancel")
        self.ui.applyButton.toolTip = _("Stop the running synthesis.")
        self.ui.applyButton.enabled = True
        self.ui.compareButton.enabled = False
        self.ui.inputsCollapsibleButton.enabled = False
        self._timer.start()

    def onTimer(self):
        try:
            for event in self._run.poll():
                if isinstance(event, ProgressEvent):
                    self.ui.progressBar.value = int(round(1000 * event.overall))
                    self.ui.statusLabel.text = event.stage
                elif isinstance(event, LogEvent):
                    self.ui.logTextEdit.appendPlainText(event.text)
            outcome = self._run.outcome
        except Exception as error:  # e.g. a result that cannot be imported: stop, never leave a process behind
            logging.exception("MRSynth run failed")
            self._run.cancel()
            outcome = Outcome("failed", None, f"{type(error).__name__}: {error}")
        if outcome is not None:
            self._timer.stop()
            self._finishRun(outcome)

    def _finishRun(self, outcome):
        run, kind = self._run, self._runKind
        self._run, self._runKind = None, None
        self.ui.applyButton.text = _("Apply")
        self.ui.progressBar.visible = False
        self.ui.inputsCollapsibleButton.enabled = True
        try:
            if outcome.status == "cancelled":
                self.ui.statusLabel.text = _("Cancelled.")
            elif not outcome.succeeded:
                self.ui.statusLabel.text = _("Failed: {error}").format(error=outcome.error)
                slicer.util.errorDisplay(outcome.error, windowTitle=_("MRSynth"))
            elif kind == "synthesis":
                with slicer.util.tryWithErrorDisplay(_("The results could not be loaded."), waitCursor=True):
                    self._showSynthesis(run.import_results())
                    self.ui.statusLabel.text = _("Done in {seconds:.1f} s: {name}").format(
                        seconds=outcome.seconds, name=self._results.synthetic.GetName())
            else:
                with slicer.util.tryWithErrorDisplay(_("The comparison could not be built."), waitCursor=True):
                    comparison = self.logic.showComparison(run, self._parameterNode.referenceVolume,
                                                           self._parameterNode.regionNode)
                    self.ui.statusLabel.text = _("Compared {count} models in {seconds:.1f} s.").format(
                        count=len(comparison.synthetic), seconds=outcome.seconds)
        finally:
            if kind == "synthesis":
                run.cleanup()
            self._checkCanApply()

    def _showSynthesis(self, nodes):
        self._results = nodes
        wasBlocked = self.ui.overlayComboBox.blockSignals(True)
        self.ui.overlayComboBox.clear()
        self.ui.overlayComboBox.addItem(_("none"), "")
        for key in nodes.maps():
            self.ui.overlayComboBox.addItem(key, key)
        self.ui.overlayComboBox.setCurrentIndex(1 if nodes.maps() else 0)
        self.ui.overlayComboBox.blockSignals(wasBlocked)
        self.ui.overlayComboBox.enabled = bool(nodes.maps())
        self.onOverlayChanged()

    def onOverlayChanged(self, index=None):
        if self._results is None:
            return
        key = self.ui.overlayComboBox.currentData or None
        show_synthesis(slicer.mrmlScene, self._results, overlay=key)
        slicer.util.resetSliceViews()


#
# MRSynthLogic
#


class MRSynthLogic(ScriptedLoadableModuleLogic):
    """Everything the module does, usable from scripts and batch runs (no dialogs unless an installer asks)."""

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        self._dependenciesChecked = set()

    def getParameterNode(self):
        return MRSynthParameterNode(super().getParameterNode())

    @staticmethod
    def libraryVersion():
        """The version of the bundled MRSynthLib library."""
        import MRSynthLib

        return MRSynthLib.__version__

    @staticmethod
    def models():
        """Installed bundles (``MRSynthSlicerLib.models.ModelInfo``), the default first."""
        return installed_models()

    @staticmethod
    def userModelsFolder():
        from MRSynthLib.models.registry import user_models_dir

        return str(user_models_dir())

    def ensureDependencies(self, options, model, installer=None):
        """Install what a run with ``options`` on ``model`` needs; returns True when something was installed.

        Without an ``installer`` (scripts, batch) nothing is installed: a missing package raises
        :class:`DependencyError` naming it.
        """
        key = (options.device, options.backend, model.name if model else None)
        if key in self._dependenciesChecked:
            return False
        plan = plan_dependencies(options.device, options.backend, bool(model and model.has_onnx),
                                 model_method=model.method if model else "")
        if not plan.complete and installer is None:
            missing = [str(r) for r in plan.missing] + ([f"torch{TORCH_VERSION_REQUIREMENT}"] if plan.needs_torch else [])
            raise DependencyError(f"Missing Python packages: {', '.join(missing)}; open the MRSynth module and press"
                                  " Apply once to install them.")
        installed = ensure_dependencies(plan, installer, Path(slicer.app.temporaryPath) / "MRSynth")
        self._dependenciesChecked.add(key)
        return installed

    @staticmethod
    def startSynthesis(inputs, options, workDir=None):
        """Start a child-process synthesis of ``inputs`` (contrast → volume node); poll or wait on it."""
        chosen = {c: node for c, node in inputs.items() if node is not None}
        return SynthesisRun(slicer.mrmlScene, chosen, options, workDir).start()

    def synthesize(self, inputs, options, showResults=True, timeout=None):
        """Blocking synthesis for scripts: returns ``SynthesisNodes``; raises RuntimeError with the one-line error."""
        run = self.startSynthesis(inputs, options)
        try:
            outcome = run.wait(timeout)
            if not outcome.succeeded:
                raise RuntimeError(outcome.error or f"The synthesis was {outcome.status}.")
            nodes = run.import_results()
        except BaseException:
            if run.outcome is None:  # timeout or interruption: never leave the child running
                run.cancel()
            raise
        finally:
            run.cleanup()
        if showResults:
            show_synthesis(slicer.mrmlScene, nodes)
        return nodes

    @staticmethod
    def startComparison(inputs, models, options, workDir=None):
        chosen = {c: node for c, node in inputs.items() if node is not None}
        return CompareRun(slicer.mrmlScene, chosen, models, options, workDir).start()

    def compare(self, inputs, models, options, reference=None, region=None, timeout=None):
        """Blocking comparison for scripts: returns ``MRSynthSlicerLib.compare.Comparison``."""
        run = self.startComparison(inputs, models, options)
        try:
            outcome = run.wait(timeout)
        except BaseException:
            run.cancel()
            raise
        if not outcome.succeeded:
            raise RuntimeError(outcome.error or f"The comparison was {outcome.status}.")
        return self.showComparison(run, reference, region)

    @staticmethod
    def showComparison(run, reference=None, region=None):
        """Build error maps, metrics table, charts and the linked layout (shown when there is a GUI)."""
        layoutManager = slicer.app.layoutManager()
        layoutNode = layoutManager.layoutLogic().GetLayoutNode() if layoutManager is not None else None
        return run.build(reference, region, layoutNode)


#
# MRSynthTest
#


class MRSynthTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer (Reload and Test, or ctest) on a phantom case generated on the fly."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_MRSynthLibImportable()
        self.setUp()
        self.test_SynthesisOfPhantom()
        self.setUp()
        self.test_CompareOnPhantom()

    def _packagesReady(self, options, model):
        """Install missing packages (asks first); under ctest (testing mode) skip instead of installing."""
        plan = plan_dependencies(options.device, options.backend, model.has_onnx, model_method=model.method)
        if not plan.complete and slicer.app.testingEnabled():
            self.delayDisplay("Skipped: Python packages missing (%s)" % ", ".join(str(r) for r in plan.missing))
            return False
        MRSynthLogic().ensureDependencies(options, model, SlicerInstaller())
        return True

    def _phantomVolumes(self):
        from MRSynthSlicerLib.volumes import add_volume_node

        from MRSynthLib.phantom import PhantomConfig, generate_phantom

        phantom = generate_phantom(PhantomConfig(size=(48, 56, 48), spacing=(4.0, 4.0, 4.0), seed=7))
        volumes = {c: add_volume_node(slicer.mrmlScene, image, f"phantom-{c}") for c, image in phantom.images.items()}
        labels = add_volume_node(slicer.mrmlScene, phantom.labels, "phantom-labels", labelmap=True)
        return volumes, labels

    def test_MRSynthLibImportable(self):
        """MRSynthLib ships with the extension and imports inside Slicer."""
        import MRSynthLib

        self.assertTrue(os.path.isfile(MRSynthLib.__file__))
        self.assertEqual(MRSynthLogic.libraryVersion(), MRSynthLib.__version__)
        self.assertTrue(MRSynthLogic.models(), "no model bundle is installed")

    def test_SynthesisOfPhantom(self):
        from MRSynthSlicerLib.volumes import ijk_to_ras_of_node, same_geometry

        self.delayDisplay("Synthesizing t1ce of a phantom")
        volumes, _labels = self._phantomVolumes()
        logic = MRSynthLogic()
        model = logic.models()[0]
        options = SynthesisOptions("t1ce", model=model.name, device="cpu", samples=2)
        if not self._packagesReady(options, model):
            return
        inputs = {c: volumes[c] for c in ("t1", "t2", "flair")}
        nodes = logic.synthesize(inputs, options, timeout=600)
        self.assertEqual(nodes.synthetic.GetName(), f"t1ce (synthetic, {model.name})")
        self.assertEqual(nodes.synthetic.GetAttribute("MRSynth.notice"), "SYNTHETIC - not for diagnosis")
        self.assertIsNotNone(nodes.uncertainty)
        self.assertEqual(sorted(nodes.contributions), ["flair", "t1", "t2"])
        for node in nodes.all_nodes():
            self.assertTrue(same_geometry(ijk_to_ras_of_node(node), ijk_to_ras_of_node(volumes["t1"])))
        self.delayDisplay("Synthesis test passed")

    def test_CompareOnPhantom(self):
        self.delayDisplay("Comparing against the real t1ce of a phantom")
        volumes, labels = self._phantomVolumes()
        logic = MRSynthLogic()
        model = logic.models()[0]
        options = SynthesisOptions("t1ce", device="cpu")
        if not self._packagesReady(options, model):
            return
        comparison = logic.compare({c: volumes[c] for c in ("t1", "t2", "flair")}, [model.name], options,
                                   reference=volumes["t1ce"], region=labels, timeout=600)
        self.assertEqual(comparison.table.GetNumberOfRows(), 1)
        self.assertIn(model.name, comparison.errors)
        logging.info("MRSynth comparison: %s", comparison.scores)
        self.delayDisplay("Compare test passed")
