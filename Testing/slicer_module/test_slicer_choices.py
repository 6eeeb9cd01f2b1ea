"""What the module panel decides before a run: contrast guesses, Apply blockers, models, Python packages."""

from __future__ import annotations

import inspect
import types

import numpy as np
import pytest
import SimpleITK as sitk
from support.bundles import random_bundle
from support.slicer_scene import application_scene

# isort: split

from MRSynthSlicerLib.autofill import autofill, guess_contrast
from MRSynthSlicerLib.dependencies import (
    PROTECTED_PACKAGES,
    DependencyError,
    Requirement,
    ensure_dependencies,
    plan_dependencies,
    SlicerInstaller,
    TORCH_VERSION_REQUIREMENT,
    slicer_pip_install,
    satisfied,
)
from MRSynthSlicerLib.models import ModelInfo, installed_models, model_info
from MRSynthSlicerLib.validation import compare_blockers, synthesis_blockers
from MRSynthSlicerLib.volumes import add_volume_node

# --------------------------------------------------------------------------- contrast guesses


@pytest.mark.parametrize("name, contrast", [
    ("BraTS-GLI-00000-000-t1n", "t1"), ("BraTS-GLI-00000-000-t1c", "t1ce"), ("BraTS-GLI-00000-000-t2w", "t2"),
    ("BraTS-GLI-00000-000-t2f", "flair"), ("T2 FLAIR", "flair"), ("T1_post_Gd", "t1ce"), ("sub-01_T1w", "t1"),
    ("3D T1 MPRAGE", "t1"), ("MR-brain-T2", "t2"), ("PD", "pd"), ("flair", "flair"),
    ("T1 and T2", None), ("segmentation", None), ("t1ce (synthetic, mrsynth-phantom-fsq)", None), ("", None),
])
def test_guess_contrast(name, contrast):
    assert guess_contrast(name) == contrast


def test_autofill_fills_only_free_unambiguous_accepted_contrasts():
    names = {"id1": "case-t1n", "id2": "case-t2w", "id3": "case-flair", "id4": "flair copy", "id5": "case-pd",
             "id6": "case-t1c"}
    filled = autofill(names, accepted=("t1", "t2", "flair", "t1ce"), taken={"t1ce"})
    assert filled == {"t1": "id1", "t2": "id2"}  # flair is ambiguous, pd not accepted, t1ce is the target


# --------------------------------------------------------------------------- Apply blockers

MODEL = ModelInfo("m", path=None, version="1.0.0", method="fsq-fusion", inputs=("t1", "t2", "flair"),
                  outputs=("t1ce", "flair"), has_onnx=True)


@pytest.fixture()
def volumes():
    app = application_scene()
    image = sitk.GetImageFromArray(np.random.default_rng(0).random((6, 7, 8)).astype(np.float32))
    nodes = {c: add_volume_node(app.scene, image, f"case-{c}") for c in ("t1", "t2", "flair")}
    return app, nodes


def test_ready_inputs_have_no_blockers(volumes):
    _, nodes = volumes
    assert synthesis_blockers({"t1": nodes["t1"], "t2": None}, "t1ce", MODEL) == []


def test_each_blocker_is_one_sentence_naming_the_fix(volumes):
    app, nodes = volumes
    assert synthesis_blockers({}, "t1ce", None)[0].startswith("Choose a model")
    broken = ModelInfo("b", path=None, error="Model card x lacks weights: re-export the bundle.")
    assert synthesis_blockers({"t1": nodes["t1"]}, "t1ce", broken) == [
        "Model b cannot be used: Model card x lacks weights: re-export the bundle."]
    assert synthesis_blockers({"t1": None}, "t1ce", MODEL) == ["Select at least one input volume."]
    assert "cannot synthesize t2" in synthesis_blockers({"t1": nodes["t1"]}, "t2", MODEL)[0]
    reasons = synthesis_blockers({"flair": nodes["flair"]}, "flair", MODEL)
    assert reasons == ["The target flair is also selected as an input: clear that input or choose another target."]
    reasons = synthesis_blockers({"t1": nodes["t1"], "t2": nodes["t1"]}, "t1ce", MODEL)
    assert reasons == ["Volume 'case-t1' is selected for both t1 and t2: select each scan once."]
    assert "does not accept pd" in synthesis_blockers({"t1": nodes["t1"], "pd": nodes["t2"]}, "t1ce", MODEL)[0]

    labels = add_volume_node(app.scene, sitk.GetImageFromArray(np.zeros((6, 7, 8), np.uint8)), "seg", labelmap=True)
    assert "is a label map" in synthesis_blockers({"t1": labels}, "t1ce", MODEL)[0]
    empty = app.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty")
    assert "has no voxels" in synthesis_blockers({"t1": empty}, "t1ce", MODEL)[0]
    flat = add_volume_node(app.scene, sitk.GetImageFromArray(np.ones((1, 7, 8), np.float32)), "flat")
    assert "is not a 3D volume (8x7x1 voxels)" in synthesis_blockers({"t1": flat}, "t1ce", MODEL)[0]
    transform = app.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    nodes["t2"].SetAndObserveTransformNodeID(transform.GetID())
    assert "harden it" in synthesis_blockers({"t2": nodes["t2"]}, "t1ce", MODEL)[0]
    for reasons in (synthesis_blockers({"t2": nodes["t2"]}, "t1ce", MODEL),):
        assert all(r.endswith(".") and "\n" not in r for r in reasons)


def test_compare_blockers(volumes):
    _, nodes = volumes
    other = ModelInfo("n", path=None, version="1", method="x", inputs=("t1",), outputs=("t1ce",))
    assert compare_blockers({"t1": nodes["t1"]}, "t1ce", []) == ["Tick at least one model to compare."]
    assert compare_blockers({"t1": nodes["t1"]}, "t1ce", [MODEL, other], nodes["t2"]) == []
    assert "does not accept t2" in compare_blockers({"t1": nodes["t1"], "t2": nodes["t2"]}, "t1ce", [MODEL, other])[0]
    assert "is also an input" in compare_blockers({"t1": nodes["t1"]}, "t1ce", [MODEL], nodes["t1"])[0]


# --------------------------------------------------------------------------- models


def test_installed_models_read_cards_and_put_the_default_first():
    models = installed_models()
    assert models and models[0].default and models[0].error is None
    assert models[0].inputs and models[0].outputs
    assert models[0].label.startswith(models[0].name)


def test_model_info_of_a_folder_and_of_a_broken_bundle(tmp_path):
    info = model_info(random_bundle(tmp_path / "b", name="tiny"))
    assert (info.name, info.version, info.has_onnx, info.error) == ("tiny", "0.0.0", False, None)
    assert info.outputs == ("t1", "t1ce", "t2", "flair", "pd")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "bundle.json").write_text("{}")
    broken = model_info(tmp_path / "broken")
    assert broken.error and "lacks" in broken.error and broken.label == "broken (broken)"


# --------------------------------------------------------------------------- Python packages


def versions(**installed):
    table = {k.lower(): v for k, v in installed.items()}
    return lambda name: table.get(name.lower())


SLICER_LIKE = dict(numpy="2.2.6", SimpleITK="2.5.0", scipy="1.15.0")


def test_cpu_with_onnx_graphs_needs_only_onnxruntime():
    plan = plan_dependencies("cpu", "auto", True, versions(**SLICER_LIKE))
    assert plan.backend == "onnx" and not plan.needs_torch
    assert [str(r) for r in plan.missing] == ["onnxruntime>=1.18"]
    assert set(plan.constraints) == {"numpy==2.2.6", "SimpleITK==2.5.0"}


def test_gpu_needs_torch_from_the_extension_never_from_pip():
    plan = plan_dependencies("cuda", "auto", True, versions(**SLICER_LIKE))
    assert plan.backend == "torch" and plan.needs_torch
    assert [r.name for r in plan.missing] == ["monai", "safetensors"]
    with_torch = plan_dependencies("cuda", "auto", True, versions(**SLICER_LIKE, torch="2.6.0", monai="1.6.1",
                                                                  safetensors="0.5.0"))
    assert with_torch.complete and "torch==2.6.0" in with_torch.constraints


def test_regression_model_needs_only_safetensors_on_the_cpu():
    """The default model is a regression bundle: numpy trees, no onnxruntime, no torch, never on the GPU."""
    plan = plan_dependencies("auto", "auto", False, versions(**SLICER_LIKE), model_method="regression")
    assert plan.backend == "numpy" and not plan.needs_torch
    assert [str(r) for r in plan.missing] == ["safetensors>=0.4"]
    assert plan_dependencies("cpu", "auto", False, versions(**SLICER_LIKE, safetensors="0.5.0"),
                             model_method="regression").complete
    with pytest.raises(DependencyError, match="CPU only"):
        plan_dependencies("cuda", "auto", False, versions(), model_method="regression")
    with pytest.raises(DependencyError, match="runs in numpy, not onnx"):
        plan_dependencies("cpu", "onnx", False, versions(), model_method="regression")


def test_protected_packages_are_never_requested_and_always_pinned():
    for device in ("auto", "cpu", "cuda"):
        for backend in ("auto", "torch"):
            for has_onnx in (True, False):
                plan = plan_dependencies(device, backend, has_onnx, versions(numpy="1.0", SimpleITK="1.0", torch="1.0"))
                names = {r.name.lower() for r in plan.missing}
                assert not names & {p.lower() for p in PROTECTED_PACKAGES}
                assert set(plan.constraints) == {"numpy==1.0", "SimpleITK==1.0", "torch==1.0"}


def test_impossible_combinations_are_refused_with_the_fix():
    with pytest.raises(DependencyError, match="CPU only"):
        plan_dependencies("cuda", "onnx", True, versions())
    with pytest.raises(DependencyError, match="no ONNX graphs"):
        plan_dependencies("cpu", "onnx", False, versions())
    plan = plan_dependencies("cpu", "auto", False, versions(**SLICER_LIKE))
    assert plan.backend == "torch" and plan.needs_torch  # a bundle without ONNX graphs needs torch even on the CPU


def test_onnx_run_on_the_cpu_asks_for_onnxruntime_only_even_with_torch_installed():
    """Before issue 17 an installed torch added monai and safetensors to every Auto-device ONNX run."""
    installed = versions(**SLICER_LIKE, torch="2.6.0")
    plan = plan_dependencies("auto", "auto", True, installed, gpu_available=lambda: False)
    assert plan.backend == "onnx" and [str(r) for r in plan.missing] == ["onnxruntime>=1.18"]
    assert plan_dependencies("cpu", "onnx", True, installed, gpu_available=lambda: True).backend == "onnx"
    on_gpu = plan_dependencies("auto", "auto", True, installed, gpu_available=lambda: True)
    assert on_gpu.backend == "torch" and [r.name for r in on_gpu.missing] == ["monai", "safetensors"]
    assert not on_gpu.needs_torch  # torch is there; it is never installed by pip
    asked = []
    plan_dependencies("auto", "auto", True, versions(**SLICER_LIKE), gpu_available=lambda: asked.append(1) or True)
    assert not asked  # without torch there is no GPU to ask about


# Documented signatures (Slicer's Base/Python/slicer): 5.12 ``slicer.packaging.pip_ensure`` and 5.10
# ``slicer.util.pip_install``. The fakes accept exactly these parameters, so a call that drifts from them fails.
def _pip_ensure_5_12(requirements, constraints=None, skip_packages=None, prompt_install=True, prompt_restart=True,
                     requester=None, skip_in_testing=True, show_progress=True):
    return None


def _pip_install_5_10(requirements):
    return None


class _Recorder:
    def __init__(self, name, signature_of):
        self.name, self.signature, self.calls = name, inspect.signature(signature_of), []

    def __call__(self, *args, **kwargs):
        self.signature.bind(*args, **kwargs)  # TypeError when the call does not fit the documented signature
        self.calls.append((args, kwargs))


def test_slicer_5_12_installs_with_packaging_pip_ensure_imported_on_demand(tmp_path):
    packaging = types.SimpleNamespace(pip_ensure=_Recorder("pip_ensure", _pip_ensure_5_12))
    util = types.SimpleNamespace(pip_install=_Recorder("pip_install", _pip_install_5_10))
    imported = []

    def import_module(name):
        imported.append(name)
        return packaging

    constraints = tmp_path / "c.txt"
    used = slicer_pip_install(["onnxruntime>=1.18"], constraints, util, import_module)
    assert used == "slicer.packaging.pip_ensure" and imported == ["slicer.packaging"] and not util.pip_install.calls
    (args, kwargs), = packaging.pip_ensure.calls
    assert args == (["onnxruntime>=1.18"],) and kwargs["constraints"] == str(constraints)
    assert kwargs["prompt_install"] is False and kwargs["skip_in_testing"] is False  # MRSynth asked already


def test_slicer_5_10_installs_with_util_pip_install_and_the_constraints(tmp_path):
    util = types.SimpleNamespace(pip_install=_Recorder("pip_install", _pip_install_5_10))

    def no_packaging(name):
        raise ModuleNotFoundError(f"No module named {name!r}")

    used = slicer_pip_install(["monai>=1.6,<1.7", "safetensors>=0.4"], tmp_path / "c.txt", util, no_packaging)
    assert used == "slicer.util.pip_install"
    assert util.pip_install.calls == [((["-c", str(tmp_path / "c.txt"), "monai>=1.6,<1.7", "safetensors>=0.4"],), {})]


def test_version_comparison():
    assert satisfied(Requirement("a", "1.18"), "1.18.0") and satisfied(Requirement("a", "1.18"), "1.20.1rc1")
    assert not satisfied(Requirement("a", "1.18"), "1.9.0") and not satisfied(Requirement("a"), None)
    assert satisfied(Requirement("a", "1.6", "1.7"), "1.6.1") and not satisfied(Requirement("a", "1.6", "1.7"), "1.7.0")
    assert str(Requirement("monai", "1.6", "1.7")) == "monai>=1.6,<1.7"


class RecordingInstaller:
    def __init__(self, answer=True):
        self.answer, self.calls = answer, []

    def confirm(self, text):
        self.calls.append(("confirm", text))
        return self.answer

    def install_torch(self):
        self.calls.append(("torch",))

    def pip_install(self, requirements, constraints_file):
        self.calls.append(("pip", requirements, constraints_file.read_text()))


def test_one_confirmation_then_torch_then_pip_with_constraints(tmp_path):
    plan = plan_dependencies("cuda", "auto", True, versions(**SLICER_LIKE))
    installer = RecordingInstaller()
    assert ensure_dependencies(plan, installer, tmp_path)
    kinds = [call[0] for call in installer.calls]
    assert kinds == ["confirm", "torch", "pip"]
    text = installer.calls[0][1]
    assert "PyTorch extension" in text and "monai>=1.6,<1.7" in text and "never replaced" in text
    assert installer.calls[2][1] == ["monai>=1.6,<1.7", "safetensors>=0.4"]
    assert installer.calls[2][2] == "SimpleITK==2.5.0\nnumpy==2.2.6\n"


def test_declining_installs_nothing_and_a_complete_plan_asks_nothing(tmp_path):
    plan = plan_dependencies("cpu", "auto", True, versions(**SLICER_LIKE))
    declined = RecordingInstaller(answer=False)
    with pytest.raises(DependencyError, match="press Apply again"):
        ensure_dependencies(plan, declined, tmp_path)
    assert [c[0] for c in declined.calls] == ["confirm"]
    complete = plan_dependencies("cpu", "auto", True, versions(**SLICER_LIKE, onnxruntime="1.20.0"))
    quiet = RecordingInstaller()
    assert ensure_dependencies(complete, quiet, tmp_path) is False and quiet.calls == []


def test_this_environment_has_what_a_cpu_run_needs():
    """The development venv itself: onnxruntime, scipy, numpy, SimpleITK are installed (metadata, no import)."""
    assert plan_dependencies("cpu", "auto", True).complete


def test_slicer_installer_uses_slicer_dialogs_pytorch_extension_and_pip(tmp_path):
    """The installer the widget hands to ensureDependencies, against stand-ins of the Slicer modules it imports."""
    calls = []
    util = types.SimpleNamespace(confirmOkCancelDisplay=lambda text, windowTitle: calls.append(("confirm", windowTitle)) or True,
                                 pip_install=lambda args: calls.append(("pip", args)))
    torch_logic = types.SimpleNamespace(installTorch=lambda **kw: calls.append(("torch", kw)) or object())
    modules = {"slicer.util": util, "slicer.i18n": types.SimpleNamespace(tr=lambda text: text),
               "PyTorchUtils": types.SimpleNamespace(PyTorchUtilsLogic=lambda: torch_logic)}

    def import_module(name):
        if name not in modules:
            raise ImportError(name)
        return modules[name]

    installer = SlicerInstaller(import_module)
    assert installer.confirm("install?") is True
    installer.install_torch()
    installer.pip_install(["onnxruntime>=1.18"], tmp_path / "c.txt")  # no slicer.packaging: Slicer 5.10's pip_install
    assert calls == [("confirm", "MRSynth - install Python packages"),
                     ("torch", {"askConfirmation": False, "torchVersionRequirement": TORCH_VERSION_REQUIREMENT}),
                     ("pip", ["-c", str(tmp_path / "c.txt"), "onnxruntime>=1.18"])]
    del modules["PyTorchUtils"]
    with pytest.raises(DependencyError, match="install the PyTorch extension"):
        installer.install_torch()
