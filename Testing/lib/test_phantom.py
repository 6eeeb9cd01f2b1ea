"""Tests of the multi-contrast brain phantom generator (MRSynthLib.phantom)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sitk = pytest.importorskip("SimpleITK")

from MRSynthLib import phantom as ph  # noqa: E402
from support.paths import REPO  # noqa: E402
from MRSynthLib.phantom import (  # noqa: E402
    CONTRASTS,
    LABELS,
    RELAXATION_TIMES,
    Phantom,
    PhantomConfig,
    generate_phantom,
    write_phantom_case,
)

CLEAN = dict(noise=0.0, bias_field=0.0)


def arrays(p: Phantom) -> dict[str, np.ndarray]:
    out = {c: sitk.GetArrayFromImage(p.images[c]) for c in CONTRASTS}
    out["labels"] = sitk.GetArrayFromImage(p.labels)
    out["brain_mask"] = sitk.GetArrayFromImage(p.brain_mask)
    return out


def geometry(image) -> tuple:
    return image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection()


@pytest.fixture(scope="module")
def small() -> Phantom:
    return generate_phantom(PhantomConfig(size=(24, 24, 24), seed=3, ms_lesions=2))


def test_public_constants() -> None:
    assert CONTRASTS == ("t1", "t1ce", "t2", "flair", "pd")
    assert sorted(LABELS) == list(range(8)) and LABELS[0] == "background"
    for table in RELAXATION_TIMES.values():
        assert set(table) == set(LABELS.values()) - {"background"}
        for t1, t2, pd in table.values():
            assert t1 > t2 > 0 and 0 < pd <= 1
    assert set(RELAXATION_TIMES) == {1.5, 3.0}


def test_import_is_light() -> None:
    code = "import sys, MRSynthLib.phantom; print('torch' in sys.modules, 'SimpleITK' in sys.modules)"
    root = REPO
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_deterministic(small: Phantom) -> None:
    again = generate_phantom(PhantomConfig(size=(24, 24, 24), seed=3, ms_lesions=2))
    a, b = arrays(small), arrays(again)
    for key in a:
        assert a[key].tobytes() == b[key].tobytes(), key


def test_seed_changes_anatomy_and_noise() -> None:
    a = arrays(generate_phantom(PhantomConfig(size=(24, 24, 24), seed=0)))
    b = arrays(generate_phantom(PhantomConfig(size=(24, 24, 24), seed=1)))
    assert np.mean(a["labels"] != b["labels"]) > 0.01
    assert not np.array_equal(a["t1"], b["t1"])


@pytest.mark.parametrize(
    "size, spacing",
    [((16, 16, 16), (2.0, 2.0, 2.0)), ((20, 28, 12), (1.5, 1.0, 3.0)), ((18, 16, 20), (3.0, 3.0, 1.2))],
)
def test_geometry(size: tuple, spacing: tuple) -> None:
    p = generate_phantom(PhantomConfig(size=size, spacing=spacing, seed=1))
    assert set(p.images) == set(CONTRASTS)
    ref = geometry(p.labels)
    assert ref[0] == size
    assert ref[1] == pytest.approx(spacing)
    expected_origin = [-(n - 1) / 2.0 * s for n, s in zip(size, spacing)]
    assert ref[2] == pytest.approx(expected_origin)
    assert ref[3] == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    for image in [*p.images.values(), p.brain_mask]:
        assert geometry(image) == ref
    for image in p.images.values():
        assert image.GetPixelID() == sitk.sitkFloat32 and image.GetDimension() == 3
    assert p.labels.GetPixelID() == sitk.sitkUInt8 and p.brain_mask.GetPixelID() == sitk.sitkUInt8
    a = arrays(p)
    assert a["t1"].shape == size[::-1]
    np.testing.assert_array_equal(a["brain_mask"], (a["labels"] > 0).astype(np.uint8))
    assert set(np.unique(a["labels"])) <= set(LABELS)
    assert a["brain_mask"].any() and not a["brain_mask"].all()
    for c in CONTRASTS:
        assert np.isfinite(a[c]).all()


def test_brain_is_centred_and_fits() -> None:
    lab = arrays(generate_phantom(PhantomConfig(size=(32, 40, 32), seed=2)))["labels"]
    zz, yy, xx = np.nonzero(lab)
    for coords, n in ((zz, 32), (yy, 40), (xx, 32)):
        assert coords.min() > 0 and coords.max() < n - 1  # brain does not touch the border
        assert abs(coords.mean() - (n - 1) / 2.0) < 0.1 * n


def test_anatomy_scales_with_physical_size() -> None:
    # same field of view at two resolutions -> same brain (volume within a few percent)
    coarse = generate_phantom(PhantomConfig(size=(32, 36, 30), spacing=(6.0, 6.0, 6.0), seed=5, **CLEAN))
    fine = generate_phantom(PhantomConfig(size=(64, 72, 60), spacing=(3.0, 3.0, 3.0), seed=5, **CLEAN))
    vol = [arrays(p)["brain_mask"].sum() * np.prod(p.config.spacing) for p in (coarse, fine)]
    assert vol[0] == pytest.approx(vol[1], rel=0.06)
    # a field of view larger than a head gives a real-size brain (~1.2-1.5 litres with CSF)
    assert 1.1e6 < vol[1] < 1.6e6
    # a small field of view shrinks the brain to fit
    small = generate_phantom(PhantomConfig(size=(32, 36, 30), spacing=(2.0, 2.0, 2.0), seed=5, **CLEAN))
    vol_small = arrays(small)["brain_mask"].sum() * 8.0
    assert vol_small == pytest.approx(vol[1] * (2.0 / 3.0) ** 3 * (36 * 2 * 0.8 / 168) ** 3 / (2.0 / 3.0) ** 3, rel=0.1)


def test_tumour_labels_present_or_absent() -> None:
    with_tumour = arrays(generate_phantom(PhantomConfig(size=(48, 48, 48), seed=0, tumour=True)))["labels"]
    assert {1, 2, 3, 4, 5, 6} <= set(np.unique(with_tumour))
    assert 7 not in with_tumour
    healthy = arrays(generate_phantom(PhantomConfig(size=(48, 48, 48), seed=0, tumour=False)))["labels"]
    assert set(np.unique(healthy)) == {0, 1, 2, 3}


def test_ms_lesions() -> None:
    lab = arrays(generate_phantom(PhantomConfig(size=(40, 40, 40), seed=4, tumour=False, ms_lesions=6)))["labels"]
    assert 7 in lab
    assert not np.isin(lab, [4, 5, 6]).any()


def test_tumour_does_not_change_the_healthy_brain_far_away() -> None:
    a = arrays(generate_phantom(PhantomConfig(size=(32, 32, 32), seed=6, tumour=False, **CLEAN)))["labels"]
    b = arrays(generate_phantom(PhantomConfig(size=(32, 32, 32), seed=6, tumour=True, **CLEAN)))["labels"]
    assert np.mean(a == b) > 0.9  # same subject; only the tumour region and mass effect differ


def tissue_means(a: dict[str, np.ndarray], contrast: str) -> dict[int, float]:
    lab = a["labels"]
    return {k: float(a[contrast][lab == k].mean()) for k in LABELS if (lab == k).any()}


@pytest.mark.parametrize("field", [1.5, 3.0])
def test_contrast_physics(field: float) -> None:
    a = arrays(generate_phantom(PhantomConfig(size=(48, 48, 48), seed=1, field_strength=field, **CLEAN)))
    m = {c: tissue_means(a, c) for c in CONTRASTS}
    CSF, GM, WM, NEC, ENH, OED = 1, 2, 3, 4, 5, 6
    assert m["t1"][WM] > m["t1"][GM] > m["t1"][CSF]
    assert m["t2"][CSF] > m["t2"][GM] > m["t2"][WM]
    brain_tissues = [GM, WM, NEC, ENH, OED]
    assert all(m["flair"][CSF] < m["flair"][k] for k in brain_tissues)
    assert m["flair"][OED] > 1.5 * m["flair"][WM]
    assert m["pd"][CSF] > m["pd"][WM] and m["pd"][GM] > m["pd"][WM]
    # gadolinium: the enhancing rim gains signal relative to white matter; necrosis does not
    assert m["t1ce"][ENH] / m["t1ce"][WM] > 1.5 * m["t1"][ENH] / m["t1"][WM]
    assert m["t1ce"][ENH] > m["t1ce"][WM]
    # white matter reads ~1000 in every contrast; far from the brain the background is exactly 0
    for c in CONTRASTS:
        assert np.median(a[c][a["labels"] == WM]) == pytest.approx(1000.0, rel=0.02)
        assert (a[c][:, :, :3] == 0).all()
    # without partial volume each tissue is pure: necrosis does not enhance
    pure = arrays(generate_phantom(PhantomConfig(size=(48, 48, 48), seed=1, field_strength=field,
                                                 partial_volume=False, **CLEAN)))
    p = {c: tissue_means(pure, c) for c in ("t1", "t1ce")}
    assert p["t1ce"][NEC] == pytest.approx(p["t1"][NEC], rel=1e-5)
    assert p["t1ce"][OED] == pytest.approx(p["t1"][OED], rel=1e-5)
    assert p["t1ce"][ENH] > 1.5 * p["t1"][ENH]


def test_no_partial_volume_gives_pure_tissue_values() -> None:
    cfg = PhantomConfig(size=(32, 32, 32), seed=2, partial_volume=False, **CLEAN)
    a = arrays(generate_phantom(cfg))
    for c in CONTRASTS:
        for k in np.unique(a["labels"]):
            values = a[c][a["labels"] == k]
            assert np.ptp(values) < 1e-3 * max(1.0, float(values.max())), (c, k)
        assert np.allclose(a[c][a["labels"] == 3], 1000.0, rtol=1e-5)


def test_partial_volume_mixes_at_boundaries() -> None:
    a = arrays(generate_phantom(PhantomConfig(size=(32, 32, 32), seed=2, **CLEAN)))
    wm = a["t2"][a["labels"] == 3]
    assert np.ptp(wm) > 10.0  # boundary voxels labelled WM contain some GM/CSF


def test_bias_field_is_smooth_and_per_contrast() -> None:
    cfg = dict(size=(32, 32, 32), seed=7, noise=0.0, partial_volume=False)
    flat = arrays(generate_phantom(PhantomConfig(bias_field=0.0, **cfg)))
    biased = arrays(generate_phantom(PhantomConfig(bias_field=0.2, **cfg)))
    wm = flat["labels"] == 3
    ratios = {c: biased[c][wm] / flat[c][wm] for c in CONTRASTS}
    for r in ratios.values():
        assert np.exp(-0.2) - 1e-4 <= r.min() and r.max() <= np.exp(0.2) + 1e-4
        assert r.max() / r.min() > 1.05
    assert not np.allclose(ratios["t1"], ratios["t2"])


def test_rician_noise() -> None:
    noisy = arrays(generate_phantom(PhantomConfig(size=(24, 24, 24), seed=0, noise=0.05)))
    clean = arrays(generate_phantom(PhantomConfig(size=(24, 24, 24), seed=0, noise=0.0)))
    background = noisy["labels"] == 0
    for c in CONTRASTS:
        assert (noisy[c] >= 0).all()
        bg = noisy[c][background]
        assert bg.mean() > 0 and (bg > 0).mean() > 0.99
        # far from the brain the signal is 0, so noise is Rayleigh: mean sigma * sqrt(pi/2)
        far = noisy[c][:, :, :3]
        assert far.mean() == pytest.approx(50.0 * np.sqrt(np.pi / 2.0), rel=0.1)
        assert (clean[c][background] == 0).mean() > 0.9  # boundary voxels hold a little brain
        assert (clean[c][:, :, :3] == 0).all()


def test_provenance_is_json(small: Phantom) -> None:
    prov = json.loads(json.dumps(small.provenance()))
    assert prov["generator"] == "MRSynthLib.phantom" and prov["generator_version"]
    assert prov["config"]["seed"] == 3 and prov["config"]["size"] == [24, 24, 24]
    assert prov["relaxation_times"]["white_matter"]["t1_ms"] == RELAXATION_TIMES[3.0]["white_matter"][0]
    assert set(prov["sequences"]) == set(CONTRASTS)
    assert prov["sequences"]["flair"]["ti_ms"] > 0


def test_config_validation_and_normalisation() -> None:
    cfg = PhantomConfig(size=[16, 20, 24], spacing=[1, 2, 3], field_strength=3)
    assert cfg.size == (16, 20, 24) and cfg.spacing == (1.0, 2.0, 3.0) and cfg.field_strength == 3.0
    assert hash(cfg) == hash(PhantomConfig(size=(16, 20, 24), spacing=(1.0, 2.0, 3.0)))
    for bad in (
        dict(field_strength=7.0),
        dict(size=(0, 16, 16)),
        dict(size=(16, 16)),
        dict(spacing=(1.0, -1.0, 1.0)),
        dict(noise=-0.1),
        dict(ms_lesions=-1),
        dict(seed=-2),
    ):
        with pytest.raises(ValueError):
            PhantomConfig(**bad)


def test_write_phantom_case(tmp_path: Path, small: Phantom) -> None:
    folder = write_phantom_case(small, tmp_path / "case")
    names = sorted(p.name for p in folder.iterdir())
    expected = sorted([f"{c}.nii.gz" for c in CONTRASTS] + ["labels.nii.gz", "brainmask.nii.gz", "phantom.json"])
    assert names == expected
    ref = arrays(small)
    for name, key in [(f"{c}.nii.gz", c) for c in CONTRASTS] + [("labels.nii.gz", "labels"), ("brainmask.nii.gz", "brain_mask")]:
        image = sitk.ReadImage(str(folder / name))
        assert image.GetSize() == small.labels.GetSize()
        assert image.GetSpacing() == pytest.approx(small.labels.GetSpacing())
        assert image.GetOrigin() == pytest.approx(small.labels.GetOrigin(), abs=1e-4)
        assert image.GetDirection() == pytest.approx(small.labels.GetDirection())
        np.testing.assert_array_equal(sitk.GetArrayFromImage(image), ref[key])
    prov = json.loads((folder / "phantom.json").read_text())
    assert prov["config"]["seed"] == 3

    # refuses to overwrite, and leaves the existing files alone
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    with pytest.raises(FileExistsError, match="overwrite"):
        write_phantom_case(small, folder)
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before
    # a single pre-existing target is enough to refuse
    other = tmp_path / "other"
    other.mkdir()
    (other / "t2.nii.gz").write_bytes(b"keep")
    with pytest.raises(FileExistsError, match="t2.nii.gz"):
        write_phantom_case(small, other)
    assert [p.name for p in other.iterdir()] == ["t2.nii.gz"]
    assert (other / "t2.nii.gz").read_bytes() == b"keep"

    write_phantom_case(small, folder, overwrite=True)
    assert sorted(p.name for p in folder.iterdir()) == expected


def test_write_failure_leaves_nothing(tmp_path: Path, small: Phantom, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = sitk.WriteImage
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("disk full")
        return real_write(*args, **kwargs)

    monkeypatch.setattr(sitk, "WriteImage", flaky)
    with pytest.raises(RuntimeError, match="disk full"):
        write_phantom_case(small, tmp_path / "case")
    assert list((tmp_path / "case").iterdir()) == []


def test_phantom_errors_are_user_errors(tmp_path: Path, small: Phantom) -> None:
    from MRSynthLib.errors import MRSynthError

    with pytest.raises(MRSynthError):
        PhantomConfig(field_strength=2.0)
    write_phantom_case(small, tmp_path)
    with pytest.raises(MRSynthError) as info:
        write_phantom_case(small, tmp_path)
    assert "\n" not in str(info.value)


def test_default_config_matches_brief() -> None:
    cfg = PhantomConfig()
    assert cfg.size == (96, 112, 96) and cfg.spacing == (2.0, 2.0, 2.0) and cfg.field_strength == 3.0
    assert ph.generate_phantom.__defaults__[0] == cfg
