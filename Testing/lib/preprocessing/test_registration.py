"""Rigid registration recovers a known rotation + translation between different grids."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import SimpleITK as sitk

from MRSynthLib.errors import InputImageError
from MRSynthLib.preprocessing.registration import (
    grid_differences,
    register_rigid,
    resample_onto,
    same_grid,
    transform_to_dict,
)

# Asymmetric sum of anisotropic Gaussians: (centre xyz mm, sigma xyz mm, amplitude).
_BLOBS = [
    ((14.0, 15.0, 16.0), (6.0, 4.0, 5.0), 1.0),
    ((20.0, 10.0, 13.0), (2.5, 3.0, 2.0), 0.8),
    ((9.0, 19.0, 19.0), (3.0, 2.0, 3.5), 0.6),
    ((17.0, 21.0, 9.0), (2.0, 2.0, 2.0), -0.4),
]


def _blob_values(points: np.ndarray) -> np.ndarray:
    """Blob intensity at physical points of shape (..., 3) in x, y, z order."""
    values = np.zeros(points.shape[:-1])
    for centre, sigma, amplitude in _BLOBS:
        d = (points - np.asarray(centre)) / np.asarray(sigma)
        values += amplitude * np.exp(-0.5 * np.sum(d * d, axis=-1))
    return values


def _grid_points(size, spacing, origin) -> np.ndarray:
    """Physical points (z, y, x, 3) of an axis-aligned grid; the last axis is x, y, z."""
    z, y, x = np.meshgrid(*(np.arange(n) for n in size[::-1]), indexing="ij")
    index = np.stack([x, y, z], axis=-1).astype(float)
    return np.asarray(origin) + index * np.asarray(spacing)


def _image(values: np.ndarray, spacing, origin) -> sitk.Image:
    image = sitk.GetImageFromArray(values.astype(np.float32))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    return image


def _true_transform() -> sitk.Euler3DTransform:
    """Fixed -> moving: 8 degrees about z (around the volume centre), then shift (3, -2, 1) mm."""
    t = sitk.Euler3DTransform()
    t.SetCenter((15.5, 15.5, 15.5))
    t.SetRotation(0.0, 0.0, math.radians(8.0))
    t.SetTranslation((3.0, -2.0, 1.0))
    return t


@pytest.fixture(scope="module")
def pair() -> tuple[sitk.Image, sitk.Image]:
    fixed_size, fixed_spacing, fixed_origin = (32, 32, 32), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0)
    fixed = _image(_blob_values(_grid_points(fixed_size, fixed_spacing, fixed_origin)),
                   fixed_spacing, fixed_origin)
    # moving(y) = fixed(T^-1(y)) on a coarser, shifted grid covering the moved content.
    inverse = _true_transform().GetInverse()
    m_size, m_spacing, m_origin = (34, 30, 28), (1.2, 1.3, 1.25), (-3.1, -6.4, -1.7)
    points = _grid_points(m_size, m_spacing, m_origin)
    flat = points.reshape(-1, 3)
    pulled = np.array([inverse.TransformPoint(tuple(p)) for p in flat]).reshape(points.shape)
    moving = _image(_blob_values(pulled), m_spacing, m_origin)
    return fixed, moving


@pytest.fixture(scope="module")
def recovered(pair) -> sitk.Euler3DTransform:
    fixed, moving = pair
    return register_rigid(fixed, moving)


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / math.sqrt((a * a).sum() * (b * b).sum()))


def test_register_rigid_recovers_known_transform(pair, recovered):
    fixed, moving = pair
    aligned = resample_onto(moving, fixed, recovered)
    fixed_array = sitk.GetArrayFromImage(fixed)
    assert _ncc(sitk.GetArrayFromImage(aligned), fixed_array) > 0.98
    # Unregistered (identity) overlay is much worse: the test is not trivial.
    assert _ncc(sitk.GetArrayFromImage(resample_onto(moving, fixed)), fixed_array) < 0.9

    truth = _true_transform()
    points = _grid_points((4, 4, 4), (8.0, 8.0, 8.0), (4.0, 4.0, 4.0)).reshape(-1, 3)
    errors = [
        np.linalg.norm(np.subtract(recovered.TransformPoint(tuple(p)), truth.TransformPoint(tuple(p))))
        for p in points
    ]
    assert max(errors) < 1.0
    r_rec = np.asarray(recovered.GetMatrix()).reshape(3, 3)
    r_true = np.asarray(truth.GetMatrix()).reshape(3, 3)
    cos = (np.trace(r_rec.T @ r_true) - 1.0) / 2.0
    assert math.degrees(math.acos(min(1.0, cos))) < 1.5


def test_register_rigid_is_reproducible(pair, recovered):
    fixed, moving = pair
    again = register_rigid(fixed, moving)
    assert again.GetParameters() == recovered.GetParameters()


def test_resample_onto_gives_reference_grid_and_types(pair, recovered):
    fixed, moving = pair
    for interpolator in ("linear", "bspline"):
        out = resample_onto(moving, fixed, recovered, interpolator=interpolator)
        assert same_grid(out, fixed, tol=0.0)
        assert out.GetPixelID() == sitk.sitkFloat32
    labels = sitk.Cast(moving > 0.3, sitk.sitkUInt8)
    out = resample_onto(labels, fixed, recovered, interpolator="nearest")
    assert same_grid(out, fixed, tol=0.0)
    assert out.GetPixelID() == sitk.sitkUInt8
    assert set(np.unique(sitk.GetArrayFromImage(out))) <= {0, 1}
    with pytest.raises(InputImageError, match="interpolator"):
        resample_onto(moving, fixed, interpolator="cubic")


def test_same_grid_and_differences(pair):
    fixed, moving = pair
    assert same_grid(fixed, fixed)
    assert not same_grid(fixed, moving)
    shifted = sitk.Image(fixed)
    shifted.SetOrigin((0.0, 0.0, 5e-5))
    assert same_grid(fixed, shifted)
    shifted.SetOrigin((0.0, 0.0, 1e-3))
    assert grid_differences(fixed, shifted) == [
        "origin (0, 0, 0) vs (0, 0, 0.001)"
    ]


def test_transform_to_dict_is_json(recovered):
    record = json.loads(json.dumps(transform_to_dict(recovered)))
    assert record["type"] == "Euler3DTransform"
    assert len(record["parameters"]) == 6
    assert record["fixed_parameters"][:3] == list(recovered.GetCenter())
    composite = sitk.CompositeTransform([recovered, sitk.TranslationTransform(3, (1.0, 2.0, 3.0))])
    parts = transform_to_dict(composite)["transforms"]
    assert [p["type"] for p in parts] == ["Euler3DTransform", "TranslationTransform"]


def test_register_rigid_rejects_2d():
    image = sitk.Image(8, 8, sitk.sitkFloat32)
    with pytest.raises(InputImageError, match="3D"):
        register_rigid(image, image)
