"""Training data: dataset readers on tiny synthetic NIfTI layouts, patient-level splits, the preprocessing
cache and its invalidation, partially paired cases, patch sampling and seeded augmentation."""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from support.paths import SHARED_DATA, requires_shared_data

from support.images import blob_array
from MRSynthLib.errors import ContrastError, InputImageError
from MRSynthLib.preprocessing.preprocess import PreprocessSpec
from training.inputs.augment import PatchAugmenter
from training.config import (AugmentationConfig, ConfigError, DataConfig, SourceConfig, SplitConfig, config_from_dict,
                             load_config)
from training.inputs.data import Volume, prepare_data, source_weights
from training.inputs.data_cache import PreprocessCache
from training.inputs.data_patches import PatchSampler, batch_stream
from training.inputs.data_sources import SourceCase, list_source_cases
from training.inputs.data_split import load_or_create_split, split_cases, write_split

SPEC = PreprocessSpec(spacing=(2.0, 2.0, 2.0), size_multiple=4, margin_mm=2.0)
CONTRAST_SCALE = {"t1": 1.0, "t1ce": 1.3, "t2": 0.7, "flair": 0.9, "pd": 1.1}


def _write(path, array, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0)):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = sitk.GetImageFromArray(np.asarray(array))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    sitk.WriteImage(image, str(path))
    return path


def _volume(seed: int, contrast: str, shape=(16, 16, 16)) -> np.ndarray:
    return blob_array(shape, seed) * CONTRAST_SCALE[contrast]


def _labels(shape=(16, 16, 16)) -> np.ndarray:
    labels = np.zeros(shape, np.uint8)
    labels[6:10, 6:10, 6:10] = 2
    return labels


def _data(*sources: dict, **split) -> DataConfig:
    return DataConfig(sources=tuple(SourceConfig(**s) for s in sources), split=SplitConfig(**split))


def _brats2021(root, cases=3):
    for i in range(cases):
        case = f"BraTS2021_{i:05d}"
        for key in ("t1", "t1ce", "t2", "flair"):
            _write(root / case / f"{case}_{key}.nii.gz", _volume(i, key))
        _write(root / case / f"{case}_seg.nii.gz", _labels())


def _brats2023(root, patients=3):
    for p in range(patients):
        for timepoint in range(2):
            case = f"BraTS-GLI-{p:05d}-{timepoint:03d}"
            for key, contrast in (("t1n", "t1"), ("t1c", "t1ce"), ("t2w", "t2"), ("t2f", "flair")):
                _write(root / case / f"{case}-{key}.nii.gz", _volume(10 * p + timepoint, contrast))
            _write(root / case / f"{case}-seg.nii.gz", _labels())


def _nnunet(root, cases=3):
    (root / "imagesTr").mkdir(parents=True)
    (root / "dataset.json").write_text(json.dumps({"channel_names": {"0": "T1", "1": "FLAIR"}, "labels": {}}))
    for i in range(cases):
        _write(root / "imagesTr" / f"case{i:03d}_0000.nii.gz", _volume(i, "t1"))
        _write(root / "imagesTr" / f"case{i:03d}_0001.nii.gz", _volume(i, "flair"))
        _write(root / "labelsTr" / f"case{i:03d}.nii.gz", _labels())


def _plain(root, cases=3):
    for i in range(cases):
        for name in ("t1", "t2w"):
            _write(root / f"subject-{i}" / f"{name}.nii.gz", _volume(i, "t2" if name == "t2w" else name))


@pytest.mark.parametrize("layout, writer, contrasts, labelled, count", [
    ("brats2021", _brats2021, ["t1", "t1ce", "t2", "flair"], True, 3),
    ("brats2023", _brats2023, ["t1", "t1ce", "t2", "flair"], True, 6),
    ("nnunet", _nnunet, ["t1", "flair"], True, 3),
    ("plain", _plain, ["t1", "t2"], False, 3),
])
def test_folder_layouts_are_read_split_and_preprocessed(tmp_path, layout, writer, contrasts, labelled, count):
    writer(tmp_path / "data")
    config = _data({"kind": layout, "root": str(tmp_path / "data")}, val_fraction=0.34, test_fraction=0.0)
    data = prepare_data(config, SPEC, seed=0, cache_dir=tmp_path / "cache")
    volumes = data.train + data.val
    assert len(volumes) == count and data.built == count and data.val
    assert data.contrasts == tuple(contrasts)
    for volume in volumes:
        assert volume.case_id.startswith(f"{layout}/") and list(volume.images) == contrasts
        assert all(s % 4 == 0 for s in volume.mask.shape) and volume.mask.any()
        assert all(a.shape == volume.mask.shape and a.dtype == np.float32 for a in volume.images.values())
        assert (volume.labels is not None) == labelled
        if labelled:
            assert volume.labels.shape == volume.mask.shape and set(np.unique(volume.labels)) == {0, 2}
    if layout == "brats2023":  # time points of one patient never straddle splits
        patients = {v.case_id.rsplit("-", 1)[0] for v in data.val}
        assert all(v.case_id.rsplit("-", 1)[0] not in patients for v in data.train)


def _ixi(root, per_modality: bool):
    """Two IXI subjects; T2/PD on their own shifted grid (not co-registered); the second lacks PD."""
    moved = {"spacing": (1.1, 1.0, 1.0), "origin": (2.0, -1.5, 1.0)}
    for number, subject in enumerate(("IXI002-Guys-0828", "IXI012-HH-1211")):
        for modality in ("T1", "T2", "PD") if number == 0 else ("T1", "T2"):
            folder = root / f"IXI-{modality}" if per_modality else root
            geometry = {} if modality == "T1" else moved
            _write(folder / f"{subject}-{modality}.nii.gz", _volume(number, modality.lower(), (24, 24, 24)), **geometry)
    _write(root / ("IXI-MRA" if per_modality else "") / "IXI002-Guys-0828-MRA.nii.gz", _volume(0, "t1"))


@pytest.mark.parametrize("per_modality", [True, False])
def test_ixi_layouts_list_subjects_with_missing_contrasts(tmp_path, per_modality):
    _ixi(tmp_path, per_modality)
    cases = list_source_cases(SourceConfig(kind="ixi", root=str(tmp_path)), 0, SPEC.spacing)
    assert [c.case_id for c in cases] == ["ixi/IXI002-Guys-0828", "ixi/IXI012-HH-1211"]
    assert cases[0].contrasts == ("t1", "t2", "pd") and cases[1].contrasts == ("t1", "t2")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputImageError, match="IXI<nnn>"):
        list_source_cases(SourceConfig(kind="ixi", root=str(tmp_path / "empty")), 0, SPEC.spacing)
    with pytest.raises(InputImageError, match="existing folder"):
        list_source_cases(SourceConfig(kind="ixi", root=str(tmp_path / "absent")), 0, SPEC.spacing)


def test_ixi_registers_t2_and_pd_to_t1_once(tmp_path, monkeypatch):
    import MRSynthLib.preprocessing.registration as registration

    _ixi(tmp_path / "ixi", per_modality=True)
    calls = []
    real = registration.register_rigid
    monkeypatch.setattr(registration, "register_rigid", lambda fixed, moving, **kw: calls.append(1) or real(fixed, moving, **kw))
    config = _data({"kind": "ixi", "root": str(tmp_path / "ixi")}, val_fraction=0.5, test_fraction=0.0)
    data = prepare_data(config, SPEC, seed=0, cache_dir=tmp_path / "cache")
    assert len(calls) == 3  # T2 + PD of the first subject, T2 of the second
    first = next(v for v in data.train + data.val if v.case_id.endswith("0828"))
    assert list(first.images) == ["t1", "t2", "pd"]
    key = json.loads((PreprocessCache(tmp_path / "cache", SPEC).case_dir(
        SourceCase("ixi", first.case_id, first.case_id)) / "key.json").read_text())
    assert set(key["record"]["registrations"]) == {"t2", "pd"} and key["record"]["reference"] == "t1"
    # A different spec rebuilds the model-space arrays but reuses the registrations.
    prepare_data(config, dataclasses.replace(SPEC, spacing=(3.0, 3.0, 3.0)), seed=0, cache_dir=tmp_path / "cache")
    assert len(calls) == 3


def test_csv_source_with_partially_paired_cases(tmp_path):
    for i in range(3):
        for contrast in ("t1", "t2", "flair"):
            _write(tmp_path / "files" / f"c{i}_{contrast}.nii.gz", _volume(i, contrast))
    (tmp_path / "cases.csv").write_text(
        "case_id,patient_id,T1w,t2,FLAIR\n"
        "c0,p0,files/c0_t1.nii.gz,files/c0_t2.nii.gz,files/c0_flair.nii.gz\n"
        "c1,p0,files/c1_t1.nii.gz,,files/c1_flair.nii.gz\n"
        f"c2,,{tmp_path / 'files/c2_t1.nii.gz'},files/c2_t2.nii.gz,\n"
    )
    cases = list_source_cases(SourceConfig(kind="csv", root=str(tmp_path / "cases.csv")), 0, SPEC.spacing)
    assert [(c.case_id, c.patient_id, c.contrasts) for c in cases] == [
        ("csv/c0", "csv/p0", ("t1", "t2", "flair")), ("csv/c1", "csv/p0", ("t1", "flair")), ("csv/c2", "csv/c2", ("t1", "t2")),
    ]
    config = _data({"kind": "csv", "root": str(tmp_path / "cases.csv")}, val_cases=("c2",))
    data = prepare_data(config, SPEC, seed=0, cache_dir=None)
    assert [v.case_id for v in data.train] == ["csv/c0", "csv/c1"] and [v.case_id for v in data.val] == ["csv/c2"]
    c1 = data.train[1]
    assert list(c1.images) == ["t1", "flair"]
    assert c1.available(("t1", "t2", "flair")).tolist() == [True, False, True]

    (tmp_path / "bad.csv").write_text("case_id,t1,notes\nc0,files/c0_t1.nii.gz,x\n")
    with pytest.raises(ContrastError, match="notes"):
        list_source_cases(SourceConfig(kind="csv", root=str(tmp_path / "bad.csv")), 0, SPEC.spacing)
    (tmp_path / "missing.csv").write_text("case_id,t1\nc0,files/nope.nii.gz\n")
    with pytest.raises(InputImageError, match="nope.nii.gz"):
        list_source_cases(SourceConfig(kind="csv", root=str(tmp_path / "missing.csv")), 0, SPEC.spacing)


def test_cache_is_reused_without_reading_images_and_invalidated_by_a_changed_file(tmp_path, monkeypatch):
    import MRSynthLib.files.imageio as imageio

    _brats2021(tmp_path / "data")
    config = _data({"kind": "brats2021", "root": str(tmp_path / "data")}, val_fraction=0.34, test_fraction=0.0)
    first = prepare_data(config, SPEC, seed=0, cache_dir=tmp_path / "cache")
    assert (first.built, first.reused) == (3, 0)

    def no_reading(*args, **kwargs):
        raise AssertionError("an image file was read although the cache is fresh")

    with monkeypatch.context() as patch:
        patch.setattr(imageio, "read_image", no_reading)
        again = prepare_data(config, SPEC, seed=0, cache_dir=tmp_path / "cache")
    assert (again.built, again.reused) == (0, 3)
    assert isinstance(again.train[0].images["t1"], np.memmap)
    volumes = {v.case_id: v for v in first.train + first.val}
    for volume in again.train + again.val:
        assert all(np.array_equal(a, volumes[volume.case_id].images[c]) for c, a in volume.images.items())

    changed = tmp_path / "data/BraTS2021_00001/BraTS2021_00001_t2.nii.gz"
    _write(changed, _volume(7, "t2")[::-1].copy())
    os.utime(changed, ns=(1, 1))  # a different mtime even on coarse file-system clocks
    third = prepare_data(config, SPEC, seed=0, cache_dir=tmp_path / "cache")
    assert (third.built, third.reused) == (1, 2)
    rebuilt = next(v for v in third.train + third.val if v.case_id.endswith("00001"))
    assert not np.array_equal(rebuilt.images["t2"], volumes[rebuilt.case_id].images["t2"])

    other = prepare_data(config, dataclasses.replace(SPEC, margin_mm=4.0), seed=0, cache_dir=tmp_path / "cache")
    assert other.built == 3 and len([p for p in (tmp_path / "cache").iterdir() if p.name != "registration"]) == 2


def _cases(source: str, patients: int, timepoints: int = 1) -> list[SourceCase]:
    return [SourceCase(source, f"{source}/p{p:02d}-{t:03d}", f"{source}/p{p:02d}")
            for p in range(patients) for t in range(timepoints)]


def test_patient_level_seeded_splits():
    cases = _cases("a", 20, timepoints=2) + _cases("b", 5)
    split = split_cases(cases, SplitConfig(seed=3, val_fraction=0.1, test_fraction=0.2))
    assert split == split_cases(cases, SplitConfig(seed=3, val_fraction=0.1, test_fraction=0.2))
    assert split != split_cases(cases, SplitConfig(seed=4, val_fraction=0.1, test_fraction=0.2))
    assert sorted(split.train + split.val + split.test) == sorted(c.case_id for c in cases)
    patient_of = {c.case_id: c.patient_id for c in cases}
    groups = [{patient_of[c] for c in getattr(split, name)} for name in ("train", "val", "test")]
    assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
    a_test = [c for c in split.test if c.startswith("a/")]
    assert len(a_test) == 2 * 4 and len([c for c in split.val if c.startswith("a/")]) == 2 * 2
    assert len([c for c in split.test if c.startswith("b/")]) == 1  # at least one per source


def test_explicit_split_lists_and_recorded_splits(tmp_path):
    cases = _cases("a", 4, timepoints=2) + _cases("b", 3)
    split = split_cases(cases, SplitConfig(val_cases=("p01-000",), test_cases=("b/p02-000",)))
    assert split.val == ("a/p01-000", "a/p01-001", "b/p01-000")  # a bare id in every source; whole patients
    assert split.test == ("b/p02-000",) and len(split.train) == 11 - 4
    with pytest.raises(ConfigError, match="p09"):
        split_cases(cases, SplitConfig(val_cases=("p09-000",)))
    with pytest.raises(ConfigError, match="both"):
        split_cases(cases, SplitConfig(val_cases=("a/p01-000",), test_cases=("a/p01-001",)))

    path = tmp_path / "split.json"
    write_split(path, split, cases, SplitConfig())
    recorded = json.loads(path.read_text())
    assert recorded["sources"]["b"] == {"train": 1, "val": 1, "test": 1} and recorded["val"] == list(split.val)
    again, created = load_or_create_split(path, cases, SplitConfig(seed=99))
    assert again == split and not created
    with pytest.raises(ConfigError, match="no longer"):
        load_or_create_split(path, cases[2:], SplitConfig())


def test_phantom_and_real_mixture_with_source_weights(tmp_path):
    _plain(tmp_path / "data", cases=4)
    config = _data({"kind": "phantom", "train_cases": 2, "val_cases": 1, "size": [24, 28, 24], "weight": 1.0},
                   {"kind": "plain", "root": str(tmp_path / "data"), "name": "mine", "weight": 3.0},
                   val_fraction=0.25, test_fraction=0.25)
    data = prepare_data(config, dataclasses.replace(SPEC, spacing=(8.0, 8.0, 8.0)), seed=0,
                        cache_dir=tmp_path / "cache", split_path=tmp_path / "split.json")
    sources = [v.source for v in data.train]
    assert sources.count("phantom") == 2 and sources.count("mine") == 2
    assert {v.source for v in data.val} == {"phantom", "mine"} and len(data.split.test) == 1
    weights = dict(zip([v.case_id for v in data.train], data.weights))
    assert np.isclose(sum(weights.values()), 1.0)
    assert all(np.isclose(w, 0.125) for c, w in weights.items() if c.startswith("phantom/"))
    assert all(np.isclose(w, 0.375) for c, w in weights.items() if c.startswith("mine/"))
    assert json.loads((tmp_path / "split.json").read_text())["sources"]["mine"]["test"] == 1
    assert np.allclose(source_weights(data.train, {s.label: s for s in config.sources}), data.weights)


def _toy_volume(case_id: str, contrasts, seed: int, shape=(20, 24, 20)) -> Volume:
    rng = np.random.default_rng(seed)
    mask = np.zeros(shape, bool)
    mask[3:-3, 4:-4, 3:-3] = True
    images = {c: (rng.random(shape).astype(np.float32) * mask) for c in contrasts}
    return Volume(case_id, images, mask)


def test_patch_sampler_is_seeded_per_step_and_rank_and_carries_availability():
    volumes = [_toy_volume("a/full", ("t1", "t2", "flair"), 0), _toy_volume("a/partial", ("t1", "flair"), 1),
               _toy_volume("a/small", ("t2",), 2, shape=(8, 12, 8))]
    slots = ("t1", "t2", "flair")
    sampler = PatchSampler(volumes, None, patch_size=(12, 12, 12), batch_size=6, slots=slots, seed=5, multiple=4)
    batch = sampler(3)
    assert batch["image"].shape == (6, 1, 12, 12, 12) and batch["mask"].shape == (6, 1, 12, 12, 12)
    assert all(torch.equal(batch[k], sampler(3)[k]) for k in batch)
    assert not torch.equal(batch["image"], sampler(4)["image"])
    other_rank = PatchSampler(volumes, None, patch_size=(12, 12, 12), batch_size=6, slots=slots, seed=5, rank=1, multiple=4)
    assert not torch.equal(batch["image"], other_rank(3)["image"])
    for step in range(20):  # a sample's contrast is always one its case has
        b = sampler(step)
        assert all(b["available"][i, c] for i, c in enumerate(b["contrast"].tolist()))

    everything = PatchSampler(volumes, np.array([0.0, 1.0, 0.0]), patch_size=(12, 12, 12), batch_size=4, slots=slots,
                              seed=5, all_contrasts=True)(0)
    assert everything["image"].shape == (4, 3, 12, 12, 12)
    assert everything["available"].tolist() == [[True, False, True]] * 4
    assert float(everything["image"][:, 1].abs().max()) == 0.0 and float(everything["image"][:, 0].abs().max()) > 0
    assert (everything["contrast"] == -1).all()

    stream = [b["image"] for b in batch_stream(sampler, 2, 6, workers=0)]
    assert all(torch.equal(a, sampler(s)["image"]) for a, s in zip(stream, range(2, 6)))


@pytest.mark.slow
def test_loader_workers_give_the_same_batches_in_step_order():
    volumes = [_toy_volume("a/x", ("t1", "t2"), 0), _toy_volume("a/y", ("t1",), 1)]
    augmenter = PatchAugmenter(AugmentationConfig(affine_probability=1.0, noise_probability=0.5))
    sampler = PatchSampler(volumes, None, patch_size=(8, 8, 8), batch_size=2, slots=("t1", "t2"), seed=1,
                           augmenter=augmenter)
    inline = [b["image"] for b in batch_stream(sampler, 0, 5)]
    parallel = [b["image"] for b in batch_stream(sampler, 0, 5, workers=2)]
    assert len(parallel) == 5 and all(torch.equal(a, b) for a, b in zip(inline, parallel))


def test_augmentation_is_deterministic_under_a_seed_and_respects_the_mask():
    rng = np.random.default_rng(0)
    mask = np.zeros((16, 16, 16), bool)
    mask[2:14, 3:13, 2:14] = True
    image = (rng.random((2, 16, 16, 16)).astype(np.float32) + 0.2) * mask
    everything = AugmentationConfig(flip_probability=0.5, flip_axes=(0, 1, 2), affine_probability=1.0, gamma_probability=1.0,
                                    noise_probability=1.0, bias_probability=1.0, scale_probability=1.0,
                                    shift_probability=1.0)
    augment = PatchAugmenter(everything, clip=(0.0, 1.5))
    first, first_mask = augment(image, mask, seed=11)
    second, second_mask = augment(image, mask, seed=11)
    assert np.array_equal(first, second) and np.array_equal(first_mask, second_mask)
    third, _ = augment(image, mask, seed=12)
    assert not np.array_equal(first, third)
    assert first.shape == image.shape and first.dtype == np.float32
    assert np.all(first[:, ~first_mask] == 0) and first.min() >= 0 and first.max() <= 1.5
    assert not np.allclose(first[0], first[1] * image[0].sum() / image[1].sum())  # contrasts draw their own intensities

    flip = PatchAugmenter(AugmentationConfig(flip_probability=1.0, flip_axes=(2,)))
    flipped, flipped_mask = flip(image, mask, seed=0)
    assert np.array_equal(flipped, image[..., ::-1]) and np.array_equal(flipped_mask, mask[..., ::-1])
    off = PatchAugmenter(AugmentationConfig(flip_probability=0.0))
    assert not off.active and off(image, mask, seed=0)[0] is image


def test_data_config_sources_are_typed_and_checked():
    base = load_config("phantom-tiny").to_dict()
    with pytest.raises(ConfigError, match=r"sources\[0\] has unknown keys \['rooot'\]"):
        config_from_dict({**base, "data": {"sources": [{"kind": "plain", "rooot": "x"}]}})
    with pytest.raises(ConfigError, match="must set `root`"):
        config_from_dict({**base, "data": {"sources": [{"kind": "brats2021"}]}})
    with pytest.raises(ConfigError, match="kind must be one of"):
        config_from_dict({**base, "data": {"sources": [{"kind": "brats2019", "root": "x"}]}})
    with pytest.raises(ConfigError, match="unique"):
        config_from_dict({**base, "data": {"sources": [{"kind": "phantom"}, {"kind": "phantom"}]}})
    with pytest.raises(ConfigError, match="gamma_probability"):
        config_from_dict({**base, "augmentation": {"gamma_probability": 2}})


@pytest.mark.parametrize("name, kind, contrasts", [("brats-fsq", "brats2021", ("t1", "t1ce", "t2", "flair")),
                                                   ("ixi-fsq", "ixi", ("t1", "t2", "pd"))])
def test_gpu_configs_load_and_fit_the_network(name, kind, contrasts):
    config = load_config(name)
    assert config.data.sources[0].kind == kind and config.translator.contrasts == contrasts
    assert all(p % config.autoencoder.downsampling == 0 for p in config.stage1.patch_size + config.stage2.patch_size)
    assert config.preprocessing.size_multiple % config.autoencoder.downsampling == 0
    assert config.runtime.bf16 and config.runtime.device == "auto"


@pytest.mark.slow
def test_cli_trains_on_a_dataset_folder_mixed_with_phantoms(tmp_path, capsys):
    import csv

    import yaml

    from training.cli import main as train_main

    _brats2021(tmp_path / "brats", cases=4)
    config = load_config("phantom-tiny").to_dict()
    config["data"] = {"sources": [{"kind": "brats2021", "root": str(tmp_path / "brats"), "weight": 2.0},
                                  {"kind": "phantom", "train_cases": 1, "val_cases": 0, "size": [24, 28, 24]}],
                      "split": {"val_fraction": 0.25, "test_fraction": 0.25},
                      "cache_dir": str(tmp_path / "cache")}
    config["augmentation"] = {"affine_probability": 0.5, "noise_probability": 0.5}
    config["stage1"] = {**config["stage1"], "steps": 2, "log_every": 1, "checkpoint_every": 2}
    config["threads"] = 1
    path = tmp_path / "mixture.yaml"
    path.write_text(yaml.safe_dump(config))
    threads = torch.get_num_threads()
    try:
        assert train_main(["stage1", "--config", str(path), "--run-dir", str(tmp_path / "run")]) == 0
    finally:
        torch.set_num_threads(threads)  # the config's `threads: 1` is process-wide
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    assert split["sources"] == {"brats2021": {"train": 2, "val": 1, "test": 1}, "phantom": {"train": 1, "val": 0, "test": 0}}
    assert "3 training and 1 validation cases" in capsys.readouterr().err
    assert [r["step"] for r in csv.DictReader(open(tmp_path / "run" / "stage1" / "metrics.csv"))] == ["1", "2"]
    assert len(list((tmp_path / "cache").glob("*/brats2021/*/key.json"))) == 3  # the test case is never preprocessed


@pytest.mark.data
@requires_shared_data()
def test_real_cases_folder_reads_with_partial_pairing_and_registration(tmp_path):
    source = SourceConfig(kind="plain", root=str(SHARED_DATA / "cases"), name="real")
    cases = {c.case_id: c for c in list_source_cases(source, 0, SPEC.spacing)}
    folders = {d.name for d in (SHARED_DATA / "cases").iterdir() if d.is_dir()}  # the folder grows: follow it
    assert set(cases) == {f"real/{name}" for name in folders}
    assert cases["real/isbi2015-ms-test02"].contrasts == ("t2", "flair", "pd")  # no T1: partially paired
    assert cases["real/mni-icbm152-2009c"].contrasts == ("t1", "t2")
    assert cases["real/ms-ljubljana-p07"].labels.name == "lesion.nii.gz"
    isbi = cases["real/isbi2015-ms-test02"]
    cache = PreprocessCache(tmp_path, dataclasses.replace(SPEC, spacing=(4.0, 4.0, 4.0)))
    arrays = cache.build(isbi, register=True)
    assert sorted(arrays) == ["flair", "foreground", "mask", "pd", "t2"]
    key = json.loads((cache.case_dir(isbi) / "key.json").read_text())
    assert key["record"]["reference"] == "t2" and list(key["record"]["registrations"]) == ["flair"]  # own grid
    assert cache.is_fresh(isbi, register=True) and not cache.is_fresh(isbi, register=False)
