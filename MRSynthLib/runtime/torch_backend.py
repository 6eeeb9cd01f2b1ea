"""Torch backend: builds the bundle's networks from the card, loads safetensors weights (CPU or CUDA).

The synthesis itself (windows, samples, contributions) is backend-agnostic: :mod:`MRSynthLib.runtime.inference`.
"""

from __future__ import annotations

import numpy as np
import torch

from MRSynthLib.models.bundle import Bundle
from MRSynthLib.errors import BundleError, MRSynthError
from MRSynthLib.networks.autoencoder import AutoencoderConfig, FSQAutoencoder
from MRSynthLib.networks.fusion import FusionConfig, FusionTranslator

SUPPORTED_METHODS = ("fsq-fusion", "vq-fusion", "kl-fusion")  # <latent>-fusion: autoencoder latent kind + fusion translator


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
    from safetensors.torch import load

    return load(bundle.read_weight(file_name))  # the verified bytes, not a second read of the file


_LOADED: dict[tuple[str, str, str], TorchEngine] = {}


def load_engine(bundle: Bundle, device: str = "auto") -> TorchEngine:
    """The bundle's networks, built and loaded once per process (batch runs reuse them for every case).

    Keyed on the bundle folder, its card digest (which pins every weight file) and the device.
    """
    key = (str(bundle.path.resolve()), bundle.sha256, device)
    if key not in _LOADED:
        _LOADED.clear()  # keep one model in memory at a time
        _LOADED[key] = TorchEngine(bundle, device)
    return _LOADED[key]


class TorchEngine:
    """The bundle's autoencoder + fusion translator in PyTorch (CPU or CUDA); implements
    :class:`MRSynthLib.runtime.inference.Engine` on numpy arrays."""

    backend = "torch"
    sample_batch = 4

    def __init__(self, bundle: Bundle, device: str = "auto") -> None:
        card = bundle.card
        if card.method not in SUPPORTED_METHODS:
            raise BundleError(
                f"Bundle {bundle.path} uses method {card.method!r}, which this MRSynth version cannot run "
                f"(supported: {', '.join(SUPPORTED_METHODS)}): upgrade MRSynth."
            )
        self.bundle = bundle
        self.torch_device = pick_device(device)
        self.device = str(self.torch_device)
        try:
            ae_config = card.network("autoencoder", AutoencoderConfig)
            tr_config = card.network("translator", FusionConfig)
            self.autoencoder = FSQAutoencoder(ae_config)
            self.translator = FusionTranslator(tr_config)
            self.autoencoder.load_state_dict(_load_state(bundle, "autoencoder.safetensors"))
            self.translator.load_state_dict(_load_state(bundle, "translator.safetensors"))
        except (KeyError, TypeError, RuntimeError) as error:
            raise BundleError(f"Bundle {bundle.path} does not match its card ({str(error).splitlines()[0]}): re-export it.") from None
        self.autoencoder.to(self.torch_device).eval()
        self.translator.to(self.torch_device).eval()
        self.slots = tr_config.contrasts
        self.downsampling = ae_config.downsampling
        self.hidden_channels = tr_config.hidden
        self.dropout = tr_config.dropout
        self.spatial_mask = True  # fuse_active takes per-voxel masks (input screening)
        self.latent_multiple = tr_config.latent_multiple  # latent grids divisible by this (U-Net body)

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).to(self.torch_device)

    @staticmethod
    def _array(tensor: torch.Tensor) -> np.ndarray:
        return tensor.float().cpu().numpy()

    @torch.inference_mode()
    def encode(self, images: np.ndarray) -> np.ndarray:
        return self._array(self.autoencoder.encode(self._tensor(images)))

    @torch.inference_mode()
    def fuse(self, latents, slot_codes, target_onehot, mask):
        hidden, weights = self.translator.fuse_active(
            self._tensor(latents), self._tensor(slot_codes), self._tensor(target_onehot), self._tensor(mask))
        return self._array(hidden), self._array(weights)

    @torch.inference_mode()
    def head(self, hidden: np.ndarray, channel_scale: np.ndarray) -> np.ndarray:
        return self._array(self.translator.head_from(self._tensor(hidden), self._tensor(channel_scale)))

    @torch.inference_mode()
    def decode(self, latents: np.ndarray) -> np.ndarray:
        return self._array(self.autoencoder.decode(self._tensor(latents)))
