"""Latent denoiser for the ``fsq-ldm`` translator: MONAI ``DiffusionModelUNet`` on the target latent.

The network sees the noisy target latent concatenated with a conditioning stack built inside the
graph (so training, torch inference and the ONNX graph share one implementation):

- every input slot's latent (zeros where the input is missing, ``M * L`` channels),
- the availability of each slot (``M`` constant channels) — missing inputs are flagged, not hidden,
- the target contrast as a one-hot code (``M`` constant channels),
- the fusion translator's prediction of the target latent (``L`` channels; structure guidance), if
  ``guidance`` is on.

It predicts the velocity ``v`` of :mod:`MRSynthLib.methods.translators.samplers` (v-prediction for the ``cosine`` schedule,
``eps - x0`` for ``linear``); time ``t`` in ``[0, 1]`` enters the UNet's sinusoidal embedding as
``1000 t``. Everything is scaled by ``latent_scale`` (:class:`MRSynthLib.methods.translators.samplers.SamplingConfig`)
outside this module.
"""

from __future__ import annotations


import torch
from monai.networks.nets import DiffusionModelUNet
from torch import nn

from MRSynthLib.errors import MRSynthError
from MRSynthLib.networks.configs.denoiser import DenoiserConfig  # noqa: F401  (re-exported)

TIME_SCALE = 1000.0


def conditioning(latents: torch.Tensor, available: torch.Tensor, target_onehot: torch.Tensor,
                 guide: torch.Tensor | None) -> torch.Tensor:
    """Stack the conditioning channels.

    Args:
        latents: ``(B, M, L, *s)`` every slot's latent (zeros where missing);
        available: ``(B, M)`` 1.0 where the slot is given;
        target_onehot: ``(B, M)``;
        guide: ``(B, L, *s)`` the fusion prediction, or None.
    Returns:
        ``(B, M*L + 2M [+ L], *s)``.
    """
    b, m = latents.shape[:2]
    spatial = latents.shape[3:]
    ones = (1,) * len(spatial)
    masked = latents * available.to(latents.dtype).view(b, m, 1, *ones)
    parts = [masked.flatten(1, 2),
             available.to(latents.dtype).view(b, m, *ones).expand(b, m, *spatial),
             target_onehot.to(latents.dtype).view(b, m, *ones).expand(b, m, *spatial)]
    if guide is not None:
        parts.append(guide)
    return torch.cat(parts, dim=1)


def _require_einops() -> None:
    """MONAI's DiffusionModelUNet always has a self-attention middle block, which needs einops."""
    try:
        import einops  # noqa: F401
    except ImportError:
        raise MRSynthError("The latent-diffusion denoiser needs the einops package (MONAI's attention blocks use it): "
                           "pip install einops, or run the bundle with --backend onnx.") from None


class LatentDenoiser(nn.Module):
    """``forward(x, t, latents, available, target_onehot, guide)`` → velocity ``(B, L, *s)``.

    ``x`` ``(B, L, *s)`` noisy scaled target latent; ``t`` ``(B,)`` times in ``[0, 1]``; the rest as in
    :func:`conditioning` (``guide`` is ignored when ``config.guidance`` is off). Spatial sizes must be
    divisible by ``config.multiple``.
    """

    def __init__(self, config: DenoiserConfig = DenoiserConfig()) -> None:
        super().__init__()
        _require_einops()
        self.config = config
        self.unet = DiffusionModelUNet(
            spatial_dims=config.spatial_dims,
            in_channels=config.latent_channels + config.condition_channels,
            out_channels=config.latent_channels,
            num_res_blocks=config.num_res_blocks,
            channels=config.channels,
            attention_levels=config.attention_levels,
            norm_num_groups=config.norm_num_groups,
            num_head_channels=config.num_head_channels,
        )

    def forward(self, x: torch.Tensor, t: torch.Tensor, latents: torch.Tensor, available: torch.Tensor,
                target_onehot: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        condition = conditioning(latents, available, target_onehot, guide if self.config.guidance else None)
        return self.unet(torch.cat([x, condition], dim=1), t.to(x.dtype) * TIME_SCALE)
