"""A stage-1 run with every option (KL latent, LHE, wavelet, HFIB, AFL, SRB, PatchGAN) exports a bundle whose
card records the latent kind, the measured scale factor and the switches, and that synthesizes."""

import json

import pytest
import torch
import yaml

from MRSynthLib.models.bundle import load_bundle
from MRSynthLib.phantom import PhantomConfig, generate_phantom, write_phantom_case
from MRSynthLib.synthesis import synthesize
from support.teachers import save_teacher
from training.cli import main as train_main
from training.config import load_config


@pytest.mark.slow
def test_every_stage1_option_trains_and_exports_a_working_bundle(tmp_path):
    teacher = save_teacher(tmp_path)
    data = load_config("phantom-tiny").to_dict()
    data["autoencoder"].update(channels=[8, 8, 8], latent="kl", wavelet=True, hfib=True,
                               lhe={"enabled": True, "dim": 8, "depth": 1, "heads": 2})
    data["stage1_loss"].update(afl_weight=0.5, gan={"enabled": True, "start_step": 2, "channels": 4, "layers": 2},
                               srb={"enabled": True, "projector_hidden": 8,
                                    "teacher": {"path": teacher.path, "input_size": 32}})
    config_path = tmp_path / "every-option.yaml"
    config_path.write_text(yaml.safe_dump(data))
    run_dir, bundle_dir = tmp_path / "run", tmp_path / "bundle"
    assert train_main(["all", "--config", str(config_path), "--run-dir", str(run_dir), "--output", str(bundle_dir),
                       "--quiet"]) == 0
    header = (run_dir / "stage1" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"l1", "kl", "srb", "afl", "gan_g", "gan_d"} <= set(header)
    assert (run_dir / "stage1" / "objective.json").exists()

    card = load_bundle(bundle_dir).card
    autoencoder = card.networks["autoencoder"]
    assert card.method == "kl-fusion" and autoencoder["latent"] == "kl"
    assert autoencoder["lhe"]["enabled"] and autoencoder["wavelet"] and autoencoder["hfib"]
    from safetensors.torch import load_file

    weights = load_file(str(bundle_dir / "autoencoder.safetensors"))
    assert autoencoder["kl"]["scale_factor"] == pytest.approx(float(weights["bottleneck.scale_factor"]))
    assert autoencoder["kl"]["scale_factor"] != 1.0  # measured, not the default
    assert not any(key.startswith(("projector", "discriminator")) for key in weights)
    summary = card.training_data["stage1"]
    assert summary["latent"] == "kl" and summary["srb"]["teacher"] == "teacher_True.pt"
    assert summary["patchgan"] == {"weight": 0.1, "start_step": 2} and summary["afl_weight"] == 0.5
    assert "LHE, SRB, AFL" in card.citation and "wavelet" in card.citation
    json.dumps(card.to_dict())

    case = write_phantom_case(generate_phantom(PhantomConfig(size=(24, 28, 24), spacing=(8.0, 8.0, 8.0), seed=98)),
                              tmp_path / "case")
    result = synthesize({"t1": case / "t1.nii.gz"}, "t2", model=load_bundle(bundle_dir))
    assert result.synthetic.GetSize() == (24, 28, 24)
    assert torch.isfinite(torch.from_numpy(__import__("SimpleITK").GetArrayFromImage(result.synthetic))).all()
