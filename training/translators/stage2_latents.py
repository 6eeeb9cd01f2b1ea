"""Shared parts of the generative stage-2 trainers: the frozen networks they start from, latents
cached once per case, and random (target, inputs, window) draws.

Cases are zero-padded (background) at the end of each axis to at least one training patch and to a
multiple of ``downsampling * network multiple`` before encoding, exactly as the inference driver pads.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
import numpy as np
import torch

from MRSynthLib.networks.autoencoder import AutoencoderConfig, LatentAutoencoder
from MRSynthLib.networks.fusion import FusionConfig, FusionTranslator
from training.config import ConfigError, TrainConfig
from training.runtime.runs import RunFolder


@dataclass(eq=False)
class LatentCase:
    """One case with every slot encoded.

    Attributes:
        images: ``(M, Z, Y, X)`` float32 (zeros where the case lacks the slot), padded.
        latents: ``(M, L, z, y, x)`` float32 tensor (zeros where missing).
        present: slot indices the case has.
        mask: ``(Z, Y, X)`` bool brain mask (padded with False).
        foreground: ``(N, 3)`` voxel indices used as patch centres.
        shape: the unpadded model-space shape.
        labels: ``(Z, Y, X)`` uint8 label map (padded with 0), or None when the case has none.
    """

    case_id: str
    images: np.ndarray
    latents: torch.Tensor
    present: list[int]
    mask: np.ndarray
    foreground: np.ndarray
    shape: tuple[int, int, int]
    labels: np.ndarray | None = None

    def arrays(self, slots: tuple[str, ...], indices: list[int]) -> dict[str, np.ndarray]:
        """Unpadded model-space images of ``indices`` (for validation through the inference driver)."""
        crop = tuple(slice(0, n) for n in self.shape)
        return {slots[i]: self.images[(i,) + crop] for i in indices}


def _bundle_for(name: str, what: str):
    from MRSynthLib.errors import MRSynthError
    from MRSynthLib.models.registry import resolve_model

    try:
        return resolve_model(name)
    except MRSynthError as error:
        raise ConfigError(f"method.{what} {name!r} cannot be loaded ({error})") from None


def frozen_autoencoder(config: TrainConfig, run: RunFolder) -> LatentAutoencoder:
    """The stage-1 autoencoder, frozen: from ``method.stage1_from`` (a bundle) or the run's ``stage1/best.json``;
    its ``config`` is the one a card records (with a KL latent's measured scale).

    Raises:
        ConfigError: the bundle's autoencoder or preprocessing differ from this config's, or no stage 1 exists.
    """
    source = config.method.stage1_from
    if source:
        from safetensors.torch import load_file

        bundle = _bundle_for(source, "stage1_from")
        theirs = AutoencoderConfig.from_dict(bundle.card.networks["autoencoder"])
        if dataclasses.replace(theirs, kl=config.autoencoder.kl) != config.autoencoder:  # kl.scale_factor is measured
            raise ConfigError(f"method.stage1_from {source!r}: its autoencoder {theirs.to_dict()} differs from this config's "
                              f"`autoencoder` section; copy the bundle card's networks.autoencoder into the config")
        if bundle.card.preprocessing != config.preprocessing:
            raise ConfigError(f"method.stage1_from {source!r}: its preprocessing differs from this config's; copy the bundle "
                              f"card's preprocessing into the config")
        state = load_file(str(bundle.weight_path("autoencoder.safetensors")))
    else:
        from training.autoencoder.stage1 import exported_autoencoder_config

        checkpoint = run.load_checkpoint("stage1", "best")
        if checkpoint is None:
            raise ConfigError(f"{run.root} has no stage1/best.json: run `mrsynth-train stage1` first, or set "
                              f"method.stage1_from to a bundle")
        state = checkpoint["model"]
        theirs = exported_autoencoder_config(config.autoencoder, state)
    model = LatentAutoencoder(theirs)
    model.load_state_dict(state)
    return model.eval().requires_grad_(False)


def frozen_fusion(config: TrainConfig, run: RunFolder, train_fusion) -> FusionTranslator:
    """The fusion translator that guides ``ldm``: ``method.fusion_from`` (a bundle), else the run's
    ``stage2/best.json``, else ``train_fusion()`` (which trains it in this run)."""
    source = config.method.fusion_from
    if source:
        from safetensors.torch import load_file

        bundle = _bundle_for(source, "fusion_from")
        translator = FusionTranslator(FusionConfig.from_dict(bundle.card.networks["translator"]))
        translator.load_state_dict(load_file(str(bundle.weight_path("translator.safetensors"))))
    else:
        checkpoint = run.load_checkpoint("stage2", "best")
        if checkpoint is None:
            translator = train_fusion()
        else:
            translator = FusionTranslator(config.translator)
            translator.load_state_dict(checkpoint["model"])
    if translator.config.latent_channels != config.autoencoder.latent_channels:
        raise ConfigError(f"the fusion translator has {translator.config.latent_channels} latent channels, the "
                          f"autoencoder {config.autoencoder.latent_channels}: they must come from the same run")
    return translator.eval().requires_grad_(False)


def _pad_to(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    pad = [(0, 0)] * (array.ndim - 3) + [(0, t - s) for s, t in zip(array.shape[-3:], shape)]
    return np.pad(array, pad)


def state_digest(module: torch.nn.Module) -> str:
    """sha256 of a module's weights (names, shapes and values)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


@torch.no_grad()
def encode_cases(autoencoder: LatentAutoencoder, volumes, slots: tuple[str, ...], multiple: int,
                 patch: tuple[int, int, int], device: torch.device = torch.device("cpu"),
                 cache_dir: Path | None = None) -> list[LatentCase]:
    """Encode every slot of every volume (``training.inputs.data.Volume``) once.

    Args:
        multiple: padded image sizes are multiples of this (``downsampling * network multiple``).
        patch: training patch (image voxels); each axis is padded to at least this.
        cache_dir: keep the latents here as ``.npy``, keyed by the autoencoder's weights, the padded
            images and the slots, so later runs on the same frozen autoencoder skip the encoding.
    """
    cases = []
    ds = autoencoder.config.downsampling
    weights = state_digest(autoencoder) if cache_dir is not None else ""
    for volume in volumes:
        shape = tuple(volume.mask.shape)
        padded = tuple(-(-max(n, p) // multiple) * multiple for n, p in zip(shape, patch))
        images = np.zeros((len(slots),) + padded, np.float32)
        present = [i for i, name in enumerate(slots) if name in volume.images]
        for i in present:
            images[i] = _pad_to(np.asarray(volume.images[slots[i]], np.float32), padded)
        latents = None
        path = None
        if cache_dir is not None:
            key = hashlib.sha256(json.dumps([weights, list(slots), present, list(padded)]).encode())
            key.update(images.tobytes())
            path = Path(cache_dir) / f"{key.hexdigest()[:24]}.npy"
            if path.exists():
                latents = torch.from_numpy(np.load(path))
        if latents is None:
            latents = torch.zeros((len(slots), autoencoder.config.latent_channels) + tuple(n // ds for n in padded))
            for i in present:
                latents[i] = autoencoder.encode(torch.from_numpy(images[i])[None, None].to(device))[0].cpu()
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                partial = path.with_name(f"{path.name}.{os.getpid()}.part")  # ranks of one job may write the same key
                with open(partial, "wb") as stream:
                    np.save(stream, latents.numpy())
                partial.replace(path)
        foreground = np.asarray(volume.foreground) if volume.foreground is not None else np.argwhere(volume.mask)
        labels = None if volume.labels is None else _pad_to(np.asarray(volume.labels, np.uint8), padded)
        cases.append(LatentCase(volume.case_id, images, latents, present, _pad_to(np.asarray(volume.mask, bool), padded),
                                foreground, shape, labels))
    return cases


def random_window(case: LatentCase, patch: tuple[int, int, int], downsampling: int, multiple: int,
                  rng: np.random.Generator) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """Image and latent slices of a random ``patch`` centred on a foreground voxel, start aligned to ``multiple``."""
    size = case.mask.shape
    centre = case.foreground[rng.integers(0, len(case.foreground))] if len(case.foreground) else np.array(size) // 2
    starts = [int(np.clip(c - p // 2, 0, n - p)) // multiple * multiple for c, p, n in zip(centre, patch, size)]
    image = tuple(slice(s, s + p) for s, p in zip(starts, patch))
    latent = tuple(slice(s // downsampling, (s + p) // downsampling) for s, p in zip(starts, patch))
    return image, latent


def random_task(rng: np.random.Generator, present: list[int]) -> tuple[int, list[int]]:
    """A random target among ``present`` and a random non-empty subset of the others as inputs."""
    target = int(rng.choice(present))
    others = [i for i in present if i != target]
    chosen = [i for i in others if rng.random() < 0.5]
    return target, chosen or [int(rng.choice(others))]


def paired_cases(cases: list[LatentCase], what: str) -> list[LatentCase]:
    """Cases with at least two slots (stage 2 needs a target and an input)."""
    usable = [c for c in cases if len(c.present) >= 2]
    if not usable:
        raise ConfigError(f"no {what} case has two or more of the translator's contrasts: stage 2 cannot train")
    return usable


def validation_engine(kind: str, autoencoder: LatentAutoencoder, parts: dict, device, sampling=None, steps: int = 0):
    """A torch engine over a kind's networks in memory, so validation runs through the real inference driver.

    Args:
        parts: part name -> ``(module, its architecture config)`` besides the autoencoder.
        sampling: the diffusion kinds' :class:`~MRSynthLib.methods.translators.samplers.SamplingConfig`; validation
            samples deterministically with it (DDIM, eta 0, ``steps`` steps).
    """
    from types import SimpleNamespace

    from MRSynthLib.methods.translators.engines import TorchGraphEngine

    networks = {"autoencoder": autoencoder.config.to_dict(), **{name: config.to_dict() for name, (_, config) in parts.items()}}
    if sampling is not None:
        networks["diffusion"] = dataclasses.replace(sampling, steps=steps, sampler="ddim", eta=0.0).to_dict()
    card = SimpleNamespace(name="validation", method=f"{autoencoder.config.latent}-{kind}", networks=networks)
    modules = {"autoencoder": autoencoder, **{name: module for name, (module, _) in parts.items()}}
    return TorchGraphEngine.from_parts(card, modules, str(device))
