import numpy as np
import pytest
from support.images import blob_array, make_image

from MRSynthLib.files.imageio import grid_of, image_to_array
from MRSynthLib.preprocessing.normalization import NormalizationSpec, normalize
from MRSynthLib.preprocessing.preprocess import PreprocessSpec, to_model_space

OBLIQUE_RAS = (-1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, -1.0, 0.0)  # a permuted/flipped, non-LPS orientation


def _pair(spacing, direction=None):
    a = make_image(blob_array((20, 24, 28), seed=1), spacing=spacing, direction=direction)
    b = make_image(blob_array((20, 24, 28), seed=2) * 3 + 7, spacing=spacing, direction=direction)
    return {"t1": a, "t2": b}


@pytest.mark.parametrize("direction", [None, OBLIQUE_RAS])
def test_same_spacing_round_trip_is_exact_inside_foreground(direction):
    images = _pair((2.0, 2.0, 2.0), direction)
    space = to_model_space(images, PreprocessSpec(spacing=(2.0, 2.0, 2.0), size_multiple=4))
    assert not space.resampled
    assert all(s % 4 == 0 for s in space.shape)
    low, high = space.intensity_ranges["t1"]
    restored = space.to_reference(space.arrays["t1"] * (high - low) + low)
    assert grid_of(restored) == grid_of(images["t1"])
    original = image_to_array(images["t1"])
    back = image_to_array(restored)
    inside = (back != 0) & (original > low) & (original < high)  # unclipped foreground voxels
    assert inside.sum() > 1000
    np.testing.assert_allclose(back[inside], original[inside], rtol=1e-4, atol=1e-3)


def test_resampled_round_trip_lands_on_reference_grid():
    images = _pair((1.0, 1.2, 1.5), OBLIQUE_RAS)
    space = to_model_space(images, PreprocessSpec(spacing=(2.0, 2.0, 2.0), size_multiple=8))
    assert space.resampled and all(s % 8 == 0 for s in space.shape)
    np.testing.assert_allclose(space.model_grid.GetSpacing(), (2.0, 2.0, 2.0))
    restored = space.to_reference(space.arrays["t2"])
    assert grid_of(restored) == grid_of(images["t2"])
    # a smooth image survives down- and up-sampling approximately
    original, _ = normalize(image_to_array(images["t2"]), image_to_array(images["t2"]) > 0, NormalizationSpec())
    back = image_to_array(restored)
    core = (original > 0.2) & (back > 0.2)
    assert core.sum() > 500
    error = np.abs(back[core] - original[core])
    assert np.median(error) < 0.05  # interpolation; the tail is partial volume at the head boundary


def test_normalisation_maps_percentiles_to_unit_range():
    array = np.random.default_rng(0).gamma(2.0, 100.0, size=(10, 10, 10)).astype(np.float32)
    scaled, (low, high) = normalize(array, None, NormalizationSpec(low=1, high=99, clip=(0, 10)))
    assert abs(np.percentile(scaled, 1)) < 1e-5 and abs(np.percentile(scaled, 99) - 1) < 1e-5
    with pytest.raises(ValueError, match="percentiles"):
        NormalizationSpec(low=50, high=10)


def test_spec_dict_round_trip():
    spec = PreprocessSpec(spacing=(1.5, 1.5, 2.0), size_multiple=8, normalization=NormalizationSpec(low=1, high=99))
    assert PreprocessSpec.from_dict(spec.to_dict()) == spec


def test_background_is_zero_and_mask_matches():
    images = _pair((2.0, 2.0, 2.0))
    space = to_model_space(images, PreprocessSpec(spacing=(2.0, 2.0, 2.0)))
    for array in space.arrays.values():
        assert np.all(array[~space.mask] == 0)
        assert array.dtype == np.float32


def test_n4_bias_correction_removes_a_smooth_multiplicative_field():
    """A flat 'tissue' under a 40% linear bias field comes back nearly flat; background is untouched."""
    from MRSynthLib.preprocessing.bias import n4_correct

    z, y, x = np.mgrid[0:32, 0:32, 0:32].astype(np.float32)
    mask = ((z - 16) ** 2 + (y - 16) ** 2 + (x - 16) ** 2) < 13**2
    tissue = np.where(mask, 100.0, 0.0).astype(np.float32)
    tissue += np.where(mask, 10.0 * (((x // 4) % 2) - 0.5), 0.0)  # texture, so the histogram is not a spike
    field = 0.8 + 0.4 * x / 31.0
    biased = tissue * field
    corrected = n4_correct(biased, mask, (2.0, 2.0, 2.0))

    def left_right_ratio(a):
        return a[mask & (x > 20)].mean() / a[mask & (x < 12)].mean()

    assert left_right_ratio(biased) > 1.2
    assert abs(left_right_ratio(corrected) - 1.0) < 0.5 * abs(left_right_ratio(biased) - 1.0)
    np.testing.assert_array_equal(corrected[~mask], biased[~mask])


def test_bias_correction_option_is_validated_and_round_trips():
    from MRSynthLib.preprocessing.preprocess import PreprocessSpec

    spec = PreprocessSpec(bias_correction="n4")
    assert PreprocessSpec.from_dict(spec.to_dict()) == spec
    assert PreprocessSpec.from_dict({"spacing": [2, 2, 2]}).bias_correction == "none"  # older cards
    with pytest.raises(ValueError, match="bias_correction"):
        PreprocessSpec(bias_correction="yes")
