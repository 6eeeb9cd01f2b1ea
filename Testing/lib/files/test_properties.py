"""Property-based tests (hypothesis) over image headers and voxel contents.

* Reading never fails with anything but an :class:`MRSynthError`, whatever the header says (hand-written
  MetaImage headers, mutated NIfTI headers, truncated or gzipped files).
* Every image that passes validation round-trips through ``imageio.write_image`` / ``read_image``: voxels
  bit for bit; geometry bit for bit in MetaImage, to 1e-12 in NRRD (it stores spacing x direction) and to
  float32 precision in NIfTI.
* ``to_model_space`` followed by ``ModelSpace.to_reference`` lands exactly on the reference grid.
"""

from __future__ import annotations

import gzip
import struct
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from MRSynthLib.errors import MRSynthError
from MRSynthLib.files.imageio import MIN_EXTENT_MM, grid_of, image_to_array, load_input, read_image, write_image
from MRSynthLib.preprocessing.preprocess import PreprocessSpec, to_model_space

SETTINGS = settings(max_examples=30, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

ODD_FLOATS = st.one_of(
    st.sampled_from([0.0, -0.0, -1.0, 1e-9, 1e-4, 1e6, 1e38, float("nan"), float("inf"), -float("inf")]),
    st.floats(min_value=-1e3, max_value=1e3, allow_nan=False),
)
PIXEL_TYPES = {"int8": "MET_CHAR", "uint8": "MET_UCHAR", "int16": "MET_SHORT", "uint16": "MET_USHORT",
               "int32": "MET_INT", "float32": "MET_FLOAT", "float64": "MET_DOUBLE"}


_SCRATCH: list[Path] = []


def _tmp() -> Path:
    """A fresh folder per hypothesis example (function-scoped fixtures are not reset between examples);
    removed when the module's tests end."""
    path = Path(tempfile.mkdtemp(prefix="mrsynth-prop-"))
    _SCRATCH.append(path)
    return path


@pytest.fixture(autouse=True, scope="module")
def _remove_scratch_folders():
    yield
    for path in _SCRATCH:
        shutil.rmtree(path, ignore_errors=True)
    _SCRATCH.clear()


def _load_or_user_error(path: Path):
    """``load_input``; any exception other than an MRSynthError fails the test."""
    try:
        image = load_input(path, "input t1")
    except MRSynthError as error:
        assert "\n" not in str(error) and str(path.name) in str(error)
        return None
    assert image.GetDimension() == 3 and image.GetPixelID() == sitk.sitkFloat32
    assert np.all(np.isfinite(image_to_array(image)))
    return image


@st.composite
def metaimage_files(draw) -> bytes:
    ndims = draw(st.integers(1, 5))
    sizes = draw(st.lists(st.integers(0, 7), min_size=ndims, max_size=ndims))
    dtype = draw(st.sampled_from(sorted(PIXEL_TYPES)))
    channels = draw(st.sampled_from([1, 1, 1, 3]))
    spacing = draw(st.lists(ODD_FLOATS, min_size=ndims, max_size=ndims))
    origin = draw(st.lists(ODD_FLOATS, min_size=ndims, max_size=ndims))
    matrix = draw(st.lists(ODD_FLOATS, min_size=ndims * ndims, max_size=ndims * ndims))
    count = int(np.prod(sizes)) * channels
    values = draw(st.lists(st.one_of(ODD_FLOATS, st.integers(-300, 70000)), min_size=1, max_size=8))
    array = np.resize(np.asarray(values, dtype=np.float64), count)
    with np.errstate(invalid="ignore", over="ignore"):
        data = array.astype(dtype).astype("<" + np.dtype(dtype).str[1:]).tobytes()
    keep = draw(st.sampled_from([len(data), len(data), len(data) // 2, 0]))
    fields = {"ObjectType": "Image", "NDims": ndims, "BinaryData": "True", "BinaryDataByteOrderMSB": "False",
              "CompressedData": "False", "TransformMatrix": matrix, "Offset": origin, "ElementSpacing": spacing,
              "DimSize": sizes, "ElementNumberOfChannels": channels, "ElementType": PIXEL_TYPES[dtype],
              "ElementDataFile": "LOCAL"}
    if draw(st.booleans()):  # drop one optional field
        fields.pop(draw(st.sampled_from(["TransformMatrix", "Offset", "ElementSpacing", "ElementNumberOfChannels"])))
    text = "".join(f"{key} = {' '.join(map(str, v)) if isinstance(v, list) else v}\n" for key, v in fields.items())
    return text.encode() + data[:keep]


@SETTINGS
@given(metaimage_files())
def test_any_metaimage_header_is_read_or_refused_in_one_sentence(content):
    path = _tmp() / "fuzz.mha"
    path.write_bytes(content)
    _load_or_user_error(path)


def _valid_nifti() -> bytes:
    image = sitk.GetImageFromArray(np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6))
    image.SetSpacing((1.0, 2.0, 3.0))
    path = _tmp() / "base.nii"
    sitk.WriteImage(image, str(path))
    return path.read_bytes()


BASE_NIFTI = _valid_nifti()
NIFTI_FIELDS = {  # name: (offset, struct format, values)
    "dim": (40, "h", st.integers(-2, 32767)),
    "datatype": (70, "h", st.sampled_from([0, 2, 4, 8, 16, 32, 64, 128, 256, 512, 768, 1024, 1536, 2304, 999])),
    "bitpix": (72, "h", st.sampled_from([0, -8, 8, 16, 24, 32, 64, 128])),
    "pixdim": (76, "f", ODD_FLOATS),
    "vox_offset": (108, "f", st.sampled_from([0.0, 100.0, 352.0, 353.0, 1e9, -352.0, float("nan")])),
    "scl_slope": (112, "f", ODD_FLOATS),
    "scl_inter": (116, "f", ODD_FLOATS),
    "qform_code": (252, "h", st.integers(-1, 5)),
    "sform_code": (254, "h", st.integers(-1, 5)),
    "quatern": (256, "f", ODD_FLOATS),
    "srow": (280, "f", ODD_FLOATS),
}
NIFTI_SLOTS = {"dim": 8, "pixdim": 8, "quatern": 6, "srow": 12}


@st.composite
def mutated_niftis(draw) -> tuple[bytes, bool]:
    data = bytearray(BASE_NIFTI)
    for _ in range(draw(st.integers(1, 6))):
        name = draw(st.sampled_from(sorted(NIFTI_FIELDS)))
        offset, fmt, values = NIFTI_FIELDS[name]
        slot = draw(st.integers(0, NIFTI_SLOTS.get(name, 1) - 1))
        struct.pack_into("<" + fmt, data, offset + slot * struct.calcsize(fmt), draw(values))
    keep = draw(st.sampled_from([len(data), len(data), len(data) - 7, 360, 100]))
    return bytes(data[:keep]), draw(st.booleans())


@SETTINGS
@given(mutated_niftis())
def test_any_nifti_header_is_read_or_refused_in_one_sentence(case):
    content, compress = case
    path = _tmp() / ("fuzz.nii.gz" if compress else "fuzz.nii")
    path.write_bytes(gzip.compress(content) if compress else content)
    _load_or_user_error(path)


def _orthonormal(draw) -> tuple[float, ...]:
    """A rotation (from a random quaternion) times random axis flips: any valid direction matrix."""
    q = np.asarray(draw(st.lists(st.floats(-1, 1, allow_subnormal=False), min_size=4, max_size=4)), dtype=float)
    if np.linalg.norm(q) < 1e-3:
        q = np.array([1.0, 0.0, 0.0, 0.0])
    w, x, y, z = q / np.linalg.norm(q)
    rotation = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                         [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                         [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
    flips = np.diag(draw(st.lists(st.sampled_from([-1.0, 1.0]), min_size=3, max_size=3)))
    return tuple((rotation @ flips).ravel())


@st.composite
def valid_images(draw) -> sitk.Image:
    size_zyx = draw(st.lists(st.integers(2, 7), min_size=3, max_size=3))
    dtype = np.dtype(draw(st.sampled_from(sorted(PIXEL_TYPES))))
    info = np.iinfo(dtype) if dtype.kind in "iu" else np.finfo(np.float32)
    low, high = float(max(info.min, -1e6)), float(min(info.max, 1e6))
    values = draw(st.lists(st.floats(low, high, allow_nan=False, allow_subnormal=False), min_size=2, max_size=12))
    array = np.resize(np.asarray(values), int(np.prod(size_zyx))).reshape(size_zyx)
    array.flat[0], array.flat[-1] = low, high  # never constant
    image = sitk.GetImageFromArray(array.astype(dtype))
    # spacing from 0.05 mm, but every axis must cover MIN_EXTENT_MM (narrower fields of view are refused; 1 %
    # margin for the float32 spacing of NIfTI headers)
    image.SetSpacing([draw(st.floats(max(0.05, 1.01 * MIN_EXTENT_MM / n), 20.0, allow_subnormal=False))
                      for n in reversed(size_zyx)])
    image.SetOrigin(draw(st.lists(st.floats(-1000.0, 1000.0, allow_subnormal=False), min_size=3, max_size=3)))
    image.SetDirection(_orthonormal(draw))
    return image


@SETTINGS
@given(valid_images(), st.sampled_from([".nii.gz", ".nii", ".nrrd", ".mha"]),
       st.sampled_from([".nii.gz", ".nrrd", ".mha"]))
def test_valid_images_load_and_round_trip(image, source_suffix, output_suffix):
    folder = _tmp()
    source = folder / f"in{source_suffix}"
    sitk.WriteImage(image, str(source))
    loaded = load_input(source, "input t1")  # valid by construction: must load
    np.testing.assert_array_equal(image_to_array(loaded), sitk.GetArrayFromImage(image).astype(np.float32))
    rtol, atol = {".mha": (0.0, 0.0), ".nrrd": (1e-12, 1e-12)}.get(source_suffix, (1e-6, 1e-4))
    np.testing.assert_allclose(loaded.GetSpacing(), image.GetSpacing(), rtol=rtol)
    np.testing.assert_allclose(loaded.GetOrigin(), image.GetOrigin(), rtol=rtol, atol=atol)
    np.testing.assert_allclose(loaded.GetDirection(), image.GetDirection(), atol=10 * rtol)

    written = write_image(loaded, folder / f"out{output_suffix}", description="SYNTHETIC property test")
    back = read_image(written)
    np.testing.assert_array_equal(image_to_array(back), image_to_array(loaded))
    if output_suffix == ".mha":
        assert grid_of(back) == grid_of(loaded)  # bit for bit
    else:  # NRRD stores spacing x direction (last-bit rounding); NIfTI stores float32
        rtol, atol = (1e-12, 1e-12) if output_suffix == ".nrrd" else (1e-6, 1e-4)
        assert back.GetSize() == loaded.GetSize()
        np.testing.assert_allclose(back.GetSpacing(), loaded.GetSpacing(), rtol=rtol)
        np.testing.assert_allclose(back.GetOrigin(), loaded.GetOrigin(), rtol=rtol, atol=atol)
        np.testing.assert_allclose(back.GetDirection(), loaded.GetDirection(), atol=10 * rtol)
    assert [p.name for p in sorted(folder.iterdir())] == sorted([source.name, written.name])  # no temp files


@st.composite
def model_space_cases(draw):
    size_zyx = tuple(draw(st.lists(st.integers(2, 12), min_size=3, max_size=3)))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    zero_fraction = draw(st.sampled_from([0.0, 0.3, 0.9]))
    images = {}
    for name in draw(st.sampled_from([("t1",), ("t1", "t2")])):
        array = rng.gamma(2.0, 50.0, size_zyx).astype(np.float32) * (rng.random(size_zyx) >= zero_fraction)
        array.flat[0] = 500.0
        image = sitk.GetImageFromArray(array)
        images[name] = image
    spacing = draw(st.lists(st.floats(0.5, 10.0), min_size=3, max_size=3))
    origin = draw(st.lists(st.floats(-500.0, 500.0), min_size=3, max_size=3))
    direction = _orthonormal(draw)
    for image in images.values():
        image.SetSpacing(spacing)
        image.SetOrigin(origin)
        image.SetDirection(direction)
    model_spacing = draw(st.sampled_from([None, 2.0, 3.0, 5.0]))  # None: the image's own spacing
    spec = PreprocessSpec(spacing=tuple(spacing) if model_spacing is None else (model_spacing,) * 3,
                          size_multiple=draw(st.sampled_from([1, 4, 8])), margin_mm=draw(st.sampled_from([0.0, 6.0])))
    return images, spec


@settings(max_examples=25, deadline=None, database=None)
@given(model_space_cases())
def test_model_space_round_trip_lands_on_the_reference_grid(case):
    images, spec = case
    space = to_model_space(images, spec)
    reference = images["t1"]
    assert all(s % spec.size_multiple == 0 for s in space.shape)
    for name, array in space.arrays.items():
        assert array.shape == space.shape and array.dtype == np.float32
        assert np.all(np.isfinite(array)) and array.min() >= 0.0 and array.max() <= 1.5
        back = space.to_reference(array)
        assert grid_of(back) == grid_of(reference)
        assert back.GetPixelID() == sitk.sitkFloat32 and np.all(np.isfinite(image_to_array(back)))
    if not space.resampled:
        # no interpolation: the foreground mask goes back to exactly the voxels it came from (reoriented)
        mask_back = image_to_array(space.to_reference(space.mask.astype(np.float32), interpolation="nearest"))
        assert set(np.unique(mask_back)) <= {0.0, 1.0} and mask_back.sum() == space.mask.sum()
