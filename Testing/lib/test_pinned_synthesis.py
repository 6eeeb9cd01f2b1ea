"""The built-in bundles' outputs are pinned: a small phantom synthesized by each must match the stored arrays.

A refactor must not change what a clinician gets. ``Testing/data/pinned-synthesis.npz`` holds the outputs of the
runs below (synthetic images and uncertainty maps of the regression default and of the fusion bundle on both
backends). They were written at commit 82ad5a3, before the issue-15 restructure, and the restructured code
reproduced them bit for bit on the development machine (2026-12-06). The comparison allows 1e-4 for the networks
(float summation order may differ on another CPU) and 1e-6 for the regression's numpy trees.

Rewrite the reference only for a change meant to alter outputs, and say so in its commit:
``python Testing/lib/test_pinned_synthesis.py --write``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # script mode: Testing/, for support
from support.paths import REPO  # noqa: E402

REFERENCE = REPO / "Testing" / "data" / "pinned-synthesis.npz"
MODELS = REPO / "Resources" / "Models"
RUNS = {  # name: (bundle, backend, inputs, target, samples, seed, tolerance)
    "regression-flair": ("mrsynth-regression", None, ("t1", "t2"), "flair", 2, 0, 1e-6),
    "fusion-onnx-t1ce": ("mrsynth-phantom-fsq", "onnx", ("t1", "t2", "flair"), "t1ce", 1, 0, 1e-4),
    "fusion-torch-t1ce": ("mrsynth-phantom-fsq", "torch", ("t1", "t2", "flair"), "t1ce", 3, 5, 1e-4),
}


def synthesize_all(folder: Path) -> dict[str, np.ndarray]:
    """Every run of :data:`RUNS` on a seeded 24 x 28 x 24 phantom at 6 mm; name (+ ``-sigma``) -> array."""
    import SimpleITK as sitk

    from MRSynthLib.commands.cli import main

    case = folder / "case"
    assert main(["phantom", "--output-dir", str(case), "--size", "24", "28", "24", "--spacing", "6", "6", "6",
                 "--seed", "3"]) == 0
    arrays = {}
    for name, (bundle, backend, inputs, target, samples, seed, _) in RUNS.items():
        output, sigma = folder / f"{name}.nii.gz", folder / f"{name}-sigma.nii.gz"
        args = ["synthesize", "--model", str(MODELS / bundle), "--target", target, "--output", str(output),
                "--samples", str(samples), "--seed", str(seed)]
        args += [a for c in inputs for a in ("--input", f"{c}={case / f'{c}.nii.gz'}")]
        args += ["--backend", backend] if backend else []
        args += ["--uncertainty", str(sigma)] if samples > 1 else []
        assert main(args) == 0, name
        arrays[name] = sitk.GetArrayFromImage(sitk.ReadImage(str(output)))
        if samples > 1:
            arrays[f"{name}-sigma"] = sitk.GetArrayFromImage(sitk.ReadImage(str(sigma)))
    return arrays


@pytest.mark.slow
def test_built_in_bundles_reproduce_the_pinned_outputs(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("torch")
    reference = np.load(REFERENCE)
    arrays = synthesize_all(tmp_path)
    assert sorted(arrays) == sorted(reference.files)
    for name, array in arrays.items():
        tolerance = RUNS[name.removesuffix("-sigma")][-1]
        assert array.shape == reference[name].shape, name
        np.testing.assert_allclose(array, reference[name], rtol=0, atol=tolerance, err_msg=name)
        assert float(np.abs(array).max()) > 0, name  # not an empty output matching an empty reference


if __name__ == "__main__":
    import tempfile

    if sys.argv[1:] != ["--write"]:
        sys.exit(__doc__)
    with tempfile.TemporaryDirectory() as folder:
        np.savez_compressed(REFERENCE, **synthesize_all(Path(folder)))
    print(f"wrote {REFERENCE}")
