"""The image-space pilots' data plumbing (training/experiments/image_unet_pilot.py, refiner_pilot.py) on tiny arrays."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from training.experiments import image_unet_pilot as unet  # noqa: E402
from training.experiments import refiner_pilot as refiner  # noqa: E402


def _case(shape=(20, 22, 18), contrasts=("t1", "t2", "flair")):
    rng = np.random.default_rng(0)
    arrays = {c: rng.random(shape, dtype=np.float32) for c in contrasts}
    mask = np.zeros(shape, bool)
    mask[3:-3, 3:-3, 3:-3] = True
    return {**arrays, "mask": mask}


def test_any_subset_samples_train_only_on_the_contrasts_not_given():
    case = unet.padded(_case(), 16)
    rng = np.random.default_rng(1)
    for _ in range(20):
        x, y, w = unet.sample({"a": case}, ["a"], rng, 16)
        given = [c for i, c in enumerate(unet.CONTRASTS) if x[len(unet.CONTRASTS) + i].max() == 1]
        wanted = [c for i, c in enumerate(unet.CONTRASTS) if w[i].max() > 0]
        assert given and wanted and not set(given) & set(wanted)
        assert set(given) | set(wanted) <= {"t1", "t2", "flair"}
        assert all(x[unet.CONTRASTS.index(c)].max() == 0 for c in unet.CONTRASTS if c not in given)
        assert x.shape == (10, 16, 16, 16) and y.shape == w.shape == (5, 16, 16, 16)


def test_refiner_starts_exactly_at_the_regression_output():
    case = _case()
    prediction = np.random.default_rng(2).random(case["mask"].shape, dtype=np.float32)
    model = refiner.network(4).eval()
    refined = refiner.refine_whole(model, case, prediction, ("t1", "t2"), "flair")
    np.testing.assert_array_equal(refined, prediction * case["mask"])
    x = refiner.refiner_input(case, prediction, ("t1", "t2"), "flair", (slice(0, 8),) * 3)
    assert x.shape == (refiner.CHANNELS, 8, 8, 8) and x[1 + 2 * 5 + unet.CONTRASTS.index("flair")].min() == 1
