"""Layer boundaries that keep the light surfaces light (issue 15): the library, its CLI and the training configs
import no torch, Slicer or VTK; the networks' architecture configs live in torch-free modules."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # script mode: Testing/, for support
from support.paths import REPO  # noqa: E402


HEAVY = ("torch", "monai", "slicer", "vtk")


def _imported(code: str) -> list[str]:
    """The heavy packages present in ``sys.modules`` after running ``code`` in a fresh interpreter."""
    probe = code + f"\nimport sys; print('heavy:' + ','.join(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    line = [text for text in done.stdout.splitlines() if text.startswith("heavy:")][-1]
    return [m for m in line.removeprefix("heavy:").split(",") if m]


def test_the_library_and_its_cli_import_no_torch_slicer_or_vtk():
    assert _imported("import MRSynthLib, MRSynthLib.commands.cli, MRSynthLib.synthesis, MRSynthLib.models.registry, "
                     "MRSynthLib.methods.regression, MRSynthLib.runtime.onnx_backend") == []


def test_parsing_every_training_config_imports_no_torch():
    code = ("import glob\nfrom training.config import load_config\n"
            "paths = sorted(glob.glob('training/configs/*.yaml'))\nassert paths\n"
            "for path in paths:\n    load_config(path)\n")
    assert _imported(code) == []


def test_network_configs_are_torch_free_and_re_exported_by_their_networks():
    from MRSynthLib.networks.configs import autoencoder, fusion

    assert _imported("import MRSynthLib.networks.configs.autoencoder, MRSynthLib.networks.configs.sscf, "
                     "MRSynthLib.networks.configs.wldm, MRSynthLib.networks.configs.vqseq2seq") == []
    from MRSynthLib.networks.autoencoder import AutoencoderConfig
    from MRSynthLib.networks.fusion import FusionConfig

    assert AutoencoderConfig is autoencoder.AutoencoderConfig and FusionConfig is fusion.FusionConfig


def test_only_imageio_converts_between_simpleitk_and_numpy_axis_order():
    """SimpleITK indexes (x, y, z), numpy (z, y, x): one module converts (``imageio.voxel_view`` / ``voxel_copy`` /
    ``image_from_voxels`` / ``image_to_array`` / ``array_to_image``), so the order is decided in one place."""
    calls = ("GetArrayFromImage", "GetImageFromArray", "GetArrayViewFromImage")
    offenders = [str(path.relative_to(REPO)) for folder in ("MRSynthLib", "training", "benchmarks")
                 for path in sorted((REPO / folder).rglob("*.py"))
                 if path.name != "imageio.py" and any(call in path.read_text(encoding="utf-8") for call in calls)]
    assert offenders == []


LAYERS = (
    ("errors",),
    ("contrasts", "progress"),
    ("files",),
    ("preprocessing", "networks", "phantom"),
    ("models", "quality"),
    ("runtime",),
    ("methods.translators",),
    ("methods",),
    ("synthesis",),
    ("commands",),
    ("__main__",),
)
"""MRSynthLib's packages from the bottom up (docs/ARCHITECTURE.md): a module imports only from lower layers."""

TRAINING_LAYERS = (
    ("kinds",),
    ("loss_config", "regression_config", "vqseq2seq_config"),
    ("stage2_config",),
    ("config",),
    ("runtime",),
    ("inputs",),
    ("autoencoder", "regression"),
    ("translators",),
    ("bundles",),
    ("cli",),
    ("experiments",),
)
"""training's packages and top-level modules from the bottom up (docs/ARCHITECTURE.md)."""


def _unit(module: str, package: str) -> str | None:
    parts = module.split(".")
    if parts[0] != package or len(parts) == 1:
        return None
    if package == "MRSynthLib" and parts[1] == "methods" and len(parts) > 2 and parts[2] == "translators":
        return "methods.translators"
    return parts[1]


def _upward_imports(package: str, layers: tuple) -> list[str]:
    """Every import in ``package`` that goes to the same or a higher layer of ``layers`` (other packages ignored)."""
    import ast

    rank = {unit: level for level, units in enumerate(layers) for unit in units}
    upward = []
    for path in sorted((REPO / package).rglob("*.py")):
        module = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        source = _unit(module, package)
        if source is None:  # the package's own __init__
            continue
        assert source in rank, f"{module}: {source!r} has no layer; add it to the layers of {package}"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                target = _unit(name, package)
                if target is not None and target != source and rank[target] >= rank[source]:
                    upward.append(f"{module} imports {name}")
    return upward


def _listing(package: str) -> set[str]:
    return {path.stem for path in (REPO / package).iterdir()
            if (path.suffix == ".py" and path.stem != "__init__") or (path / "__init__.py").exists()}


def test_mrsynthlib_packages_import_only_from_lower_layers():
    assert _upward_imports("MRSynthLib", LAYERS) == []


def test_training_packages_import_only_from_lower_layers():
    assert _upward_imports("training", TRAINING_LAYERS) == []


def test_the_folder_listing_is_the_layer_picture():
    """Every package folder and top-level module has its place in the layers (nothing left flat without one)."""
    assert _listing("MRSynthLib") == {unit.split(".")[0] for units in LAYERS for unit in units}
    assert _listing("training") == {unit for units in TRAINING_LAYERS for unit in units}
