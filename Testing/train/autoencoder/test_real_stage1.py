"""Stage 1 on real MRI (issue 13): pickle-free checkpoints, per-contrast sources, CPU speed switches,
float32 losses under bf16, z-scored backgrounds, the sharpness ratio and the held-out reconstruction report."""

import json

import numpy as np
import pytest
import torch

from support.images import blob_array, make_image
from training.runtime.checkpoint_io import CheckpointError, load_state, save_state


def _trained_state():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv3d(1, 2, 3), torch.nn.Conv3d(2, 1, 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.99))
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=10)
    model(torch.rand(1, 1, 6, 6, 6)).mean().backward()
    optimizer.step()
    schedule.step()
    return model, optimizer, schedule


def test_checkpoint_round_trip_restores_training_state_without_pickles(tmp_path):
    model, optimizer, schedule = _trained_state()
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
             "step": 7, "best": -np.inf, "history": (1.5, "x", None), "array": np.arange(4, dtype=np.int16)}
    json_path = save_state(tmp_path, "last", state)
    assert json_path.name == "last.json" and len(list(tmp_path.glob("last-*.safetensors"))) == 1
    assert not list(tmp_path.glob("*.ckpt")) and b"pickle" not in json_path.read_bytes()
    loaded = load_state(tmp_path, "last")
    assert loaded["step"] == 7 and loaded["best"] == -np.inf and loaded["history"] == (1.5, "x", None)
    np.testing.assert_array_equal(loaded["array"], np.arange(4, dtype=np.int16))
    assert sorted(loaded["optimizer"]["state"]) == [0, 1, 2, 3]  # integer keys survive
    fresh_model, fresh_optimizer, fresh_schedule = _trained_state()
    fresh_model.load_state_dict(loaded["model"])
    fresh_optimizer.load_state_dict(loaded["optimizer"])
    fresh_schedule.load_state_dict(loaded["schedule"])
    for a, b in zip(model.parameters(), fresh_model.parameters()):
        assert torch.equal(a, b)
    assert torch.equal(optimizer.state_dict()["state"][0]["exp_avg"], fresh_optimizer.state_dict()["state"][0]["exp_avg"])
    assert fresh_optimizer.param_groups[0]["betas"] == (0.9, 0.99)


def test_checkpoint_replaces_its_tensor_file_and_detects_tampering(tmp_path):
    save_state(tmp_path, "last", {"w": torch.zeros(3)})
    save_state(tmp_path, "last", {"w": torch.ones(3)})
    files = list(tmp_path.glob("last-*.safetensors"))
    assert len(files) == 1  # the stale tensor file is gone
    assert torch.equal(load_state(tmp_path, "last")["w"], torch.ones(3))
    assert load_state(tmp_path, "best") is None
    data = bytearray(files[0].read_bytes())
    data[-1] ^= 0xFF
    files[0].write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="was changed"):
        load_state(tmp_path, "last")
    with pytest.raises(CheckpointError, match="cannot store"):
        save_state(tmp_path, "bad", {"x": object()})


def test_per_contrast_source_makes_single_contrast_cases_split_by_patient(tmp_path):
    import SimpleITK as sitk

    from training.config import SourceConfig, SplitConfig
    from training.inputs.data_sources import list_source_cases
    from training.inputs.data_split import split_cases

    for case in ("a", "b"):
        for contrast in ("t1", "flair"):
            (tmp_path / case).mkdir(exist_ok=True)
            sitk.WriteImage(make_image(blob_array((8, 8, 8))), str(tmp_path / case / f"{contrast}.nii.gz"))
    source = SourceConfig(kind="plain", root=str(tmp_path), name="real", per_contrast=True)
    cases = list_source_cases(source, 0, (1.0, 1.0, 1.0))
    assert [c.case_id for c in cases] == ["real/a-flair", "real/a-t1", "real/b-flair", "real/b-t1"]
    assert all(len(c.images) == 1 for c in cases) and cases[0].patient_id == cases[1].patient_id == "real/a"
    split = split_cases(cases, SplitConfig(val_fraction=0, test_fraction=0, test_cases=("a",)))
    assert list(split.test) == ["real/a-flair", "real/a-t1"] and list(split.train) == ["real/b-flair", "real/b-t1"]
    with pytest.raises(ValueError, match="per_contrast"):
        SourceConfig(kind="phantom", per_contrast=True)


def test_cpu_bf16_is_opt_in_and_losses_stay_float32_inside_autocast():
    from training.runtime.acceleration import autocast, bf16_enabled
    from training.autoencoder.losses import ImageLoss

    cpu = torch.device("cpu")
    assert not bf16_enabled(True, cpu) and bf16_enabled(True, cpu, cpu=True) and not bf16_enabled(False, cpu, cpu=True)
    torch.manual_seed(0)
    target = torch.rand(2, 1, 16, 16, 16)
    prediction = (target + 0.05 * torch.randn_like(target)).requires_grad_(True)
    loss_fn = ImageLoss(3, ssim_weight=0.5)
    plain, plain_terms = loss_fn(prediction, target)
    with autocast(True, cpu):
        mixed, mixed_terms = loss_fn(prediction.to(torch.bfloat16), target)
    assert mixed.dtype == torch.float32
    assert abs(mixed_terms["ssim_loss"] - plain_terms["ssim_loss"]) < 0.02  # bf16 SSIM moved in steps of 1/128


def test_constant_negative_background_is_shifted_to_zero():
    import SimpleITK as sitk

    from MRSynthLib.preprocessing.preprocess import PreprocessSpec, shift_constant_background, to_model_space

    brain = blob_array((20, 24, 28))
    inside = brain > 0
    zscored = np.where(inside, (brain - brain[inside].mean()) / brain[inside].std(), -3.5).astype(np.float32)
    shifted = sitk.GetArrayFromImage(shift_constant_background(make_image(zscored)))
    assert shifted.min() == 0 and np.allclose(shifted[inside], zscored[inside] + 3.5)
    plain = make_image(brain)
    assert shift_constant_background(plain) is plain  # magnitude images are unchanged
    spec = PreprocessSpec(spacing=(1.0, 1.2, 1.5))
    assert to_model_space({"t1": make_image(zscored)}, spec).mask.sum() == to_model_space({"t1": plain}, spec).mask.sum()


def test_sharpness_ratio_is_one_for_the_reference_and_falls_with_blur():
    from scipy.ndimage import gaussian_filter

    from MRSynthLib.quality.metrics import sharpness_ratio

    zz, yy, xx = np.indices((24, 24, 24))
    head = blob_array((24, 24, 24))
    reference = head * (1 + 0.5 * ((zz // 4 + yy // 4 + xx // 4) % 2))  # tissue blocks with sharp borders
    mask = head > 0
    assert sharpness_ratio(reference, reference, mask) == pytest.approx(1.0)
    light, heavy = (sharpness_ratio(reference, gaussian_filter(reference, s), mask) for s in (0.7, 2.0))
    assert 1.0 > light > heavy > 0


@pytest.mark.slow
def test_stage1_eval_scores_the_held_out_volumes_of_a_run(tmp_path):
    import dataclasses

    from training.cli import main as train_main
    from training.config import config_from_dict, load_config
    from training.autoencoder.stage1_eval import main as eval_main
    import yaml

    base = load_config("phantom-tiny").to_dict()
    base["data"]["sources"][0].update({"test_cases": 1})
    base["runtime"].update({"cpu_bf16": True, "channels_last": True})
    config_path = tmp_path / "tiny.yaml"
    config_path.write_text(yaml.safe_dump(base))
    config_from_dict(base)  # valid
    run_dir = tmp_path / "run"
    # both stages and the export under CPU bf16 autocast + channels-last (losses in float32)
    assert train_main(["all", "--config", str(config_path), "--run-dir", str(run_dir), "--output",
                       str(tmp_path / "bundle"), "--quiet"]) == 0
    state = json.loads((run_dir / "stage1" / "last.json").read_text())
    assert state["format"] == "mrsynth-training-state/1"
    for stage in ("stage1", "stage2"):
        rows = (run_dir / stage / "metrics.csv").read_text().splitlines()[1:]
        assert rows and all("nan" not in row for row in rows)
    assert (tmp_path / "bundle" / "bundle.json").exists()
    out = tmp_path / "heldout.json"
    # phantom cases are excluded (the report is for real volumes): a phantom-only run has nothing to score
    assert eval_main(["--config", str(config_path), "--run-dir", str(run_dir), "--json", str(out)]) == 2
    assert not out.exists()
    assert dataclasses.is_dataclass(load_config(str(config_path)).runtime)


@pytest.mark.slow
def test_heldout_montage_reports_scores_sharpness_and_uncertainty_correlation(tmp_path, capsys):
    from MRSynthLib.phantom import PhantomConfig, generate_phantom, write_phantom_case
    from benchmarks.heldout_montage import main
    from MRSynthLib.quality.metrics import rank_correlation as spearman

    assert spearman(np.arange(10.0), np.arange(10.0) ** 3) == pytest.approx(1.0)
    cases = tmp_path / "cases"
    write_phantom_case(generate_phantom(PhantomConfig(size=(24, 28, 24), spacing=(8.0, 8.0, 8.0), seed=7)), cases / "p7")
    out = tmp_path / "m.json"
    assert main(["--model", "mrsynth-phantom-fsq", "--cases", str(cases), "--cases-only", "p7", "--tasks", "t2<-t1",
                 "--samples", "2", "--montage", str(tmp_path / "m.png"), "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert len(rows) == 1 and rows[0]["target"] == "t2" and rows[0]["psnr"] > 0 and rows[0]["sharpness"] > 0
    assert -1 <= rows[0]["spearman_sigma_error"] <= 1 and (tmp_path / "m.png").stat().st_size > 0
    assert main(["--model", "mrsynth-phantom-fsq", "--cases", str(cases), "--cases-only", "nope"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_a_site_can_name_its_default_model(monkeypatch, tmp_path):
    from MRSynthLib.errors import BundleError
    from MRSynthLib.models.registry import DEFAULT_MODEL, default_model_name, resolve_model

    monkeypatch.delenv("MRSYNTH_DEFAULT_MODEL", raising=False)
    assert default_model_name() == DEFAULT_MODEL
    monkeypatch.setenv("MRSYNTH_DEFAULT_MODEL", "mrsynth-phantom-fsq")
    assert resolve_model(None).card.name == "mrsynth-phantom-fsq"
    monkeypatch.setenv("MRSYNTH_DEFAULT_MODEL", str(tmp_path / "missing"))
    with pytest.raises(BundleError, match="neither an installed bundle nor a folder"):
        resolve_model(None)


def test_zscored_brain_on_a_zero_background_keeps_its_negative_tissue():
    """Z-scored inside the brain, background exactly 0: before, the foreground step dropped the negative ~half."""
    import SimpleITK as sitk

    from MRSynthLib.preprocessing.preprocess import PreprocessSpec, shift_constant_background, to_model_space

    brain = blob_array((20, 24, 28))
    inside = brain > 0
    zscored = np.where(inside, (brain - brain[inside].mean()) / brain[inside].std(), 0.0).astype(np.float32)
    assert (zscored[inside] < 0).mean() > 0.2
    shifted = sitk.GetArrayFromImage(shift_constant_background(make_image(zscored)))
    assert np.all(shifted[~inside] == 0) and shifted[inside].min() == 0
    assert np.allclose(shifted[inside], zscored[inside] - zscored.min())
    ringing = np.where(inside, brain, 0.0).astype(np.float32)
    ringing[inside & (np.arange(brain.size).reshape(brain.shape) % 100 == 0)] = -5.0  # 1 % negative ringing
    image = make_image(ringing)
    assert shift_constant_background(image) is image  # magnitude images with a little ringing are unchanged
    spec = PreprocessSpec(spacing=(1.0, 1.2, 1.5))
    kept = to_model_space({"t1": make_image(zscored)}, spec).mask.sum()
    assert kept >= 0.99 * to_model_space({"t1": make_image(brain)}, spec).mask.sum()  # the darkest voxels may drop
