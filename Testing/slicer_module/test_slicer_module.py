"""MRSynth.py without Slicer: imports under a minimal stand-in for qt/slicer (smoke test), and agrees with its .ui.

The real checks of the module's behaviour are the slicer-core tests (test_slicer_mrml.py,
test_slicer_synthesis.py); the Qt widget itself only runs inside Slicer (MRSynthTest).
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

from support.slicer_scene import MODULE_DIR

from support.paths import REPO

MODULE_FILE = MODULE_DIR / "MRSynth.py"
UI_FILE = MODULE_DIR / "Resources" / "UI" / "MRSynth.ui"
SLICER_LIB = MODULE_DIR / "MRSynthSlicerLib"
PAPERS = ("RSF", "MSG-LDM", "VQ-Seq2Seq", "SSCF", "3D-WLDM")

# The stand-in: just the names MRSynth.py touches while it is imported and its module class is built.
STAND_IN = r'''
import json, sys, types

def module(name, **attributes):
    mod = types.ModuleType(name)
    mod.__dict__.update(attributes)
    sys.modules[name] = mod
    return mod

class Base:
    def __init__(self, parent=None):
        self.parent = parent

class Logic(Base):
    def getParameterNode(self):
        return None

class Node:
    pass

module("qt")
slicer = module("slicer", vtkMRMLScalarVolumeNode=type("vtkMRMLScalarVolumeNode", (Node,), {}),
                vtkMRMLSegmentationNode=type("vtkMRMLSegmentationNode", (Node,), {}),
                vtkMRMLLabelMapVolumeNode=type("vtkMRMLLabelMapVolumeNode", (Node,), {}), app=None)
slicer.__path__ = []
module("slicer.i18n", tr=lambda text: text, translate=lambda context, text: text)
module("slicer.parameterNodeWrapper", parameterNodeWrapper=lambda cls: cls, WithinRange=lambda lo, hi: (lo, hi))
module("slicer.ScriptedLoadableModule", ScriptedLoadableModule=Base, ScriptedLoadableModuleWidget=Base,
       ScriptedLoadableModuleLogic=Logic, ScriptedLoadableModuleTest=Base)
slicer.util = module("slicer.util", VTKObservationMixin=type("VTKObservationMixin", (), {"__init__": lambda self: None}))

sys.path.insert(0, sys.argv[1])
import MRSynth

parent = types.SimpleNamespace()
MRSynth.MRSynth(parent)
logic = MRSynth.MRSynthLogic()
print(json.dumps({
    "title": parent.title, "categories": parent.categories, "help": parent.helpText,
    "acknowledgement": parent.acknowledgementText, "version": logic.libraryVersion(),
    "models": [m.name for m in logic.models()], "classes": sorted(n for n in dir(MRSynth) if n.startswith("MRSynth")),
    "heavy": sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "monai", "onnxruntime")),
}))
'''


def test_module_imports_under_a_minimal_qt_slicer_stand_in():
    result = subprocess.run([sys.executable, "-c", STAND_IN, str(MODULE_DIR)], capture_output=True, text=True,
                            timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["title"] == "MRSynth"
    assert report["categories"] == ["Image Synthesis"]
    assert "not for diagnosis" in report["help"]
    assert all(paper in report["acknowledgement"] for paper in PAPERS)
    assert {"MRSynth", "MRSynthWidget", "MRSynthLogic", "MRSynthTest", "MRSynthParameterNode"} <= set(report["classes"])
    assert report["models"] and report["version"]
    assert report["heavy"] == [], "loading the module must not import torch, MONAI or onnxruntime"


def _ui_widgets():
    root = ET.parse(UI_FILE).getroot()
    return {w.get("name"): w for w in root.iter("widget")}, root


def test_every_ui_widget_the_module_uses_exists():
    widgets, _ = _ui_widgets()
    used = set(re.findall(r"self\.ui\.(\w+)", MODULE_FILE.read_text()))
    contrast_rows = ast.literal_eval(re.search(r"CONTRAST_ROWS = (\(.*?\))", MODULE_FILE.read_text()).group(1))
    used |= {f"{c}Label" for c in contrast_rows} | {f"{c}VolumeSelector" for c in contrast_rows}
    missing = sorted(used - set(widgets))
    assert not missing, f"MRSynth.ui lacks widgets the module uses: {missing}"


def _parameter_fields():
    tree = ast.parse(MODULE_FILE.read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "MRSynthParameterNode")
    return {n.target.id for n in cls.body if isinstance(n, ast.AnnAssign)}


def test_ui_parameter_names_are_parameter_node_fields_and_selectors_get_the_scene():
    widgets, root = _ui_widgets()
    fields = _parameter_fields()
    bound = {}
    for name, widget in widgets.items():
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                bound[name] = prop.find("string").text
    assert bound and set(bound.values()) <= fields, set(bound.values()) - fields
    selectors = {name for name, w in widgets.items() if w.get("class") == "qMRMLNodeComboBox"}
    assert selectors <= set(bound), "every node selector is bound to the parameter node"
    connected = {c.findtext("receiver") for c in root.iter("connection")
                 if c.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)"}
    assert selectors <= connected, f"selectors without the scene: {sorted(selectors - connected)}"


def test_slicer_lib_uses_no_qt_and_no_gui_helpers():
    """MRSynthSlicerLib must run under slicer-core: no qt/ctk imports, no slicer.util (GUI helpers)."""
    offenders = []
    for path in sorted(SLICER_LIB.glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            names += [f"slicer.{node.attr}" for _ in [0] if isinstance(node, ast.Attribute)
                      and isinstance(node.value, ast.Name) and node.value.id == "slicer" and node.attr == "util"]
            offenders += [f"{path.name}:{node.lineno} uses {name}" for name in names
                          if name.split(".")[0] in ("qt", "ctk", "sitkUtils") or name.startswith("slicer.util")]
    assert not offenders, offenders
