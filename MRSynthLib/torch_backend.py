"""Torch backend: builds the bundle's networks, loads safetensors weights, runs one synthesis.

Arrays here are model-space ``(z, y, x)``; tensors are ``(B, C, z, y, x)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from MRSynthLib.bundle import Bundle
from MRSynthLib.errors import BundleError, MRSynthError
from MRSynthLib.networks.autoencoder import AutoencoderConfig, FSQAutoencoder
from MRSynthLib.networks.fusion import FusionConfig, FusionTranslator

SUPPORTED_METHODS = ("fsq-fusion",)


def pick_device(device: str = "auto") -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cuda`` without a GPU is a clear error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise MRSynthError("--device cuda was requested but no CUDA GPU is available: use --device cpu or auto.")
    if device not in ("cpu", "cuda"):
        raise MRSynthError(f"--device must be auto, cpu or cuda, not {device!r}.")
    return torch.device(device)


def _load_state(bundle: Bundle, file_name: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(bundle.weight_path(file_name)))


@dataclass
class Prediction:
    """Model-space outputs, arrays of shape ``(z, y, x)``."""

    synthetic: np.ndarray
    uncertainty: np.ndarray | None
    contributions: dict[str, np.ndarray]


_LOADED: dict[tuple[str, str, str], TorchSynthesizer] = {}


def load_synthesizer(bundle: Bundle, device: str = "auto") -> TorchSynthesizer:
    """The bundle's networks, built and loaded once per process (batch runs reuse them for every case).

    Keyed on the bundle folder, its card digest (which pins every weight file) and the device.
    """
    key = (str(bundle.path.resolve()), bundle.sha256, device)
    if key not in _LOADED:
        _LOADED.clear()  # keep one model in memory at a time
        _LOADED[key] = TorchSynthesizer(bundle, device)
    return _LOADED[key]


class TorchSynthesizer:
    """The bundle's autoencoder + fusion translator, ready for inference."""

    def __init__(self, bundle: Bundle, device: str = "auto") -> None:
        card = bundle.card
        if card.method not in SUPPORTED_METHODS:
            raise BundleError(
                f"Bundle {bundle.path} uses method {card.method!r}, which this MRSynth version cannot run "
                f"(supported: {', '.join(SUPPORTED_METHODS)}): upgrade MRSynth."
            )
        self.bundle = bundle
        self.device = pick_device(device)
        try:
            ae_config = AutoencoderConfig.from_dict(card.networks["autoencoder"])
            tr_config = FusionConfig.from_dict(card.networks["translator"])
            self.autoencoder = FSQAutoencoder(ae_config)
            self.translator = FusionTranslator(tr_config)
            self.autoencoder.load_state_dict(_load_state(bundle, "autoencoder.safetensors"))
            self.translator.load_state_dict(_load_state(bundle, "translator.safetensors"))
        except (KeyError, TypeError, RuntimeError) as error:
            raise BundleError(f"Bundle {bundle.path} does not match its card ({str(error).splitlines()[0]}): re-export it.") from None
        self.autoencoder.to(self.device).eval()
        self.translator.to(self.device).eval()
        self.slots = tr_config.contrasts
        self.downsampling = ae_config.downsampling

    @torch.inference_mode()
    def predict(
        self,
        arrays: dict[str, np.ndarray],
        target: str,
        samples: int = 1,
        seed: int = 0,
        progress=None,
    ) -> Prediction:
        """Synthesize ``target`` from model-space inputs.

        Args:
            arrays: contrast -> normalised ``(z, y, x)`` array, every axis divisible by the downsampling.
            samples: 1 → deterministic only; N > 1 → also N stochastic passes whose voxel-wise std is
                the uncertainty (the synthetic image stays the deterministic pass).
            progress: optional callable ``progress(stage: str, fraction: float)``.
        """
        report = progress or (lambda stage, fraction: None)
        torch.manual_seed(seed)
        shape = next(iter(arrays.values())).shape
        m = len(self.slots)
        latents = None
        available = torch.zeros(1, m, device=self.device)
        for i, (name, array) in enumerate(arrays.items()):
            report(f"encode {name}", i / len(arrays))
            x = torch.from_numpy(np.ascontiguousarray(array))[None, None].to(self.device)
            codes = self.autoencoder.encode(x)
            if latents is None:
                latents = torch.zeros((1, m) + tuple(codes.shape[1:]), device=self.device)
            slot = self.slots.index(name)
            latents[0, slot] = codes[0]
            available[0, slot] = 1.0
        target_index = torch.tensor([self.slots.index(target)], device=self.device)

        report("translate", 0.0)
        predicted, weights = self.translator(latents, available, target_index)
        report("decode", 0.0)
        synthetic = self.autoencoder.decode(predicted)[0, 0]
        contributions = {}
        full_weights = F.interpolate(weights, size=shape, mode="trilinear", align_corners=False)[0]
        full_weights = full_weights / full_weights.sum(0, keepdim=True).clamp_min(1e-6)
        for name in arrays:
            contributions[name] = full_weights[self.slots.index(name)].float().cpu().numpy()

        uncertainty = None
        if samples > 1:
            uncertainty = self._sample_std(latents, available, target_index, samples, report)
        return Prediction(synthetic.float().cpu().numpy(), uncertainty, contributions)

    def _sample_std(self, latents, available, target_index, samples: int, report) -> np.ndarray:
        """Voxel-wise std over ``samples`` stochastic passes.

        The fused features are computed twice (as is, and with the latents flipped left-right); each
        pass then draws a dropout mask on one of them (alternating) and decodes. Shape ``(z, y, x)``.
        """
        hidden = {flip: self.translator.fuse(torch.flip(latents, dims=(-1,)) if flip else latents,
                                             available, target_index)[0] for flip in (False, True)}
        self.translator.dropout.train()  # only the dropout layer becomes stochastic
        try:
            total = None
            total_sq = None
            for k in range(samples):
                report("uncertainty", k / samples)
                flip = k % 2 == 1
                predicted = self.translator.head_from(hidden[flip])
                if flip:
                    predicted = torch.flip(predicted, dims=(-1,))
                image = self.autoencoder.decode(predicted)[0, 0].double()
                total = image if total is None else total + image
                total_sq = image**2 if total_sq is None else total_sq + image**2
            mean = total / samples
            variance = (total_sq / samples - mean**2).clamp_min(0) * samples / (samples - 1)
            return variance.sqrt().float().cpu().numpy()
        finally:
            self.translator.dropout.eval()
