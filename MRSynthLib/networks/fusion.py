"""Any-subset gated fusion translator in latent space (MSG-LDM's MMSF gates, one model for every subset).

Each available input latent gets its own features; a sigmoid gate per input and voxel, conditioned on
the target contrast, weighs them; the weights are normalised over the *available* inputs (missing
inputs are masked out, never zero-filled into the fusion) and become the contribution maps.
"""

from __future__ import annotations


import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution, ResidualUnit
from torch import nn

from MRSynthLib.networks.autoencoder import ACTIVATION
from MRSynthLib.networks.configs.fusion import FusionConfig  # noqa: F401  (re-exported)


def pad_to_multiple(tensor: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[slice, ...]]:
    """Zero-pad the spatial axes of ``(B, C, *s)`` at their ends to multiples of ``multiple``.

    Returns the padded tensor and the index that crops a ``(B, C', *padded)`` result back to ``s``."""
    spatial = tensor.shape[2:]
    extra = [(-n) % multiple for n in spatial]
    crop = (slice(None), slice(None)) + tuple(slice(0, n) for n in spatial)
    if not any(extra):
        return tensor, crop
    pads: list[int] = []
    for amount in reversed(extra):
        pads += [0, amount]
    return F.pad(tensor, pads), crop


class MultiScaleBody(nn.Module):
    """Residual U-Net on fused features: ``(B, H, *s)`` → ``(B, H, *s)``, every axis of ``s`` divisible by 2**levels.

    Level 0 has ``H`` channels, every coarser level ``2 H`` (wider coarse levels multiply the parameters, and the
    bundle must stay small); down by strided residual units, up by nearest-neighbour upsampling and a 3-voxel
    convolution (no transposed-convolution checkerboard), skips added. The output is multiplied by a learned
    scalar that starts at 0 (ReZero): at initialisation the body adds nothing, so training starts from the
    single-scale path (without it the unnormalised U-Net diverged into saturated outputs at lr 1e-3 on real latents).
    """

    def __init__(self, spatial_dims: int, hidden: int, levels: int, num_blocks: int) -> None:
        super().__init__()
        d = spatial_dims
        channels = [hidden] + [2 * hidden] * levels
        self.down = nn.ModuleList(
            ResidualUnit(d, channels[i], channels[i + 1], strides=2, subunits=2, act=ACTIVATION, norm=None)
            for i in range(levels))
        self.bottom = nn.Sequential(*[ResidualUnit(d, channels[-1], channels[-1], subunits=2, act=ACTIVATION, norm=None)
                                      for _ in range(num_blocks)])
        self.up = nn.ModuleList(
            nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                          Convolution(d, channels[i + 1], channels[i], kernel_size=3, act=ACTIVATION, norm=None))
            for i in reversed(range(levels)))
        self.merge = nn.ModuleList(ResidualUnit(d, channels[i], channels[i], subunits=1, act=ACTIVATION, norm=None)
                                   for i in reversed(range(levels)))
        self.scale = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for down in self.down:
            skips.append(x)
            x = down(x)
        x = self.bottom(x)
        for up, merge, skip in zip(self.up, self.merge, reversed(skips)):
            x = merge(up(x) + skip)
        return x * self.scale


class FusionTranslator(nn.Module):
    """Predict the target latent from the available input latents.

    forward(latents, available, target):
        latents: ``(B, M, L, *s)`` codes of every input slot (anything in missing slots);
        available: ``(B, M)`` 1.0 where the input is present, 0.0 where missing;
        target: ``(B,)`` int64 index of the target contrast in ``config.contrasts``;
    returns:
        prediction ``(B, L, *s)`` continuous target latent in ``(-1, 1)``,
        weights ``(B, M, *s)`` per-input contributions, summing to 1 over available inputs.
    """

    def __init__(self, config: FusionConfig = FusionConfig()) -> None:
        super().__init__()
        self.config = config
        d, m, h = config.spatial_dims, len(config.contrasts), config.hidden
        self.input_encoder = nn.Sequential(
            Convolution(d, config.latent_channels + m, h, kernel_size=3, act=ACTIVATION, norm=None),
            ResidualUnit(d, h, h, subunits=2, act=ACTIVATION, norm=None),
        )
        self.target_embedding = nn.Linear(m, 2 * h)
        self.gate = nn.Sequential(
            Convolution(d, h, h // 2, kernel_size=3, act=ACTIVATION, norm=None),
            Convolution(d, h // 2, 1, kernel_size=1, conv_only=True),
        )
        if config.body_levels > 0:
            self.body: nn.Module = MultiScaleBody(d, h, config.body_levels, config.num_blocks)
        else:
            self.body = nn.Sequential(*[ResidualUnit(d, h, h, subunits=2, act=ACTIVATION, norm=None)
                                        for _ in range(config.num_blocks)])
        self.dropout = nn.Dropout3d(config.dropout) if d == 3 else nn.Dropout2d(config.dropout)
        self.head = Convolution(d, h, config.latent_channels, kernel_size=1, conv_only=True)

    def _film(self, features: torch.Tensor, target_onehot: torch.Tensor) -> torch.Tensor:
        """Target-conditioned affine: features ``(N, H, *s)``, one-hot ``(N, M)``."""
        scale, shift = self.target_embedding(target_onehot.to(features.dtype)).chunk(2, dim=1)
        view = scale.shape + (1,) * (features.ndim - 2)
        return features * (1 + scale.view(view)) + shift.view(view)

    def fuse_active(
        self, latents: torch.Tensor, slot_codes: torch.Tensor, target_onehot: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Fusion over the K slots that are given (the graph exported to ONNX; K may vary per call).

        Args:
            latents: ``(B, K, L, *s)`` codes of the given slots;
            slot_codes: ``(K, M)`` one-hot slot identity of each;
            target_onehot: ``(B, M)`` one-hot target contrast;
            mask: ``(B, K)`` 1.0 where that slot is available in that batch element, or ``(B, K, *s)``
                per voxel (availability times the input screening's keep mask, :mod:`MRSynthLib.preprocessing.screening`).
        Returns:
            hidden ``(B, H, *s)`` and weights ``(B, K, *s)`` summing to 1 over available slots.
        """
        b, k = latents.shape[0], latents.shape[1]
        spatial = latents.shape[3:]
        ones = (1,) * len(spatial)
        codes = slot_codes.to(latents.dtype).view(1, k, -1, *ones).expand(b, k, slot_codes.shape[1], *spatial)
        x = torch.cat([latents, codes], dim=2).flatten(0, 1)  # (B*K, L+M, *s)
        features = self.input_encoder(x)  # (B*K, H, *s)
        conditioned = self._film(features, target_onehot.repeat_interleave(k, dim=0))
        gates = torch.sigmoid(self.gate(conditioned)).view(b, k, *spatial)
        weights = gates * (mask.to(gates.dtype).view(b, k, *ones) if mask.dim() == 2 else mask.to(gates.dtype))
        weights = weights / weights.sum(dim=1, keepdim=True).clamp_min(1e-6)
        fused = (features.view(b, k, -1, *spatial) * weights.unsqueeze(2)).sum(dim=1)
        fused = self._film(fused, target_onehot)
        return self.body(fused) + fused, weights

    def fuse(
        self, latents: torch.Tensor, available: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Deterministic part: ``(hidden (B, H, *s), weights (B, M, *s))``.

        Only slots available in at least one batch element are encoded (missing slots get weight 0
        and cost nothing).
        """
        b, m = latents.shape[:2]
        active = torch.nonzero(available.sum(dim=0) > 0).flatten()
        slot_codes = torch.eye(m, dtype=latents.dtype, device=latents.device)[active]
        target_onehot = F.one_hot(target, m).to(latents.dtype)
        hidden, active_weights = self.fuse_active(latents[:, active], slot_codes, target_onehot, available[:, active])
        weights = latents.new_zeros((b, m) + tuple(latents.shape[3:]))
        weights[:, active] = active_weights.to(weights.dtype)  # bf16 under autocast
        return hidden, weights

    def head_from(self, hidden: torch.Tensor, channel_scale: torch.Tensor | None = None) -> torch.Tensor:
        """hidden ``(B, H, *s)`` → latent ``(B, L, *s)`` in ``(-1, 1)``.

        ``channel_scale`` ``(B, H)``: an explicit channel-dropout mask (0 or 1/(1-p)) for reproducible
        stochastic passes on any backend; None applies ``self.dropout`` (stochastic only in train mode).
        """
        if channel_scale is None:
            hidden = self.dropout(hidden)
        else:
            hidden = hidden * channel_scale.to(hidden.dtype).view(channel_scale.shape + (1,) * (hidden.ndim - 2))
        return torch.tanh(self.head(hidden))

    def forward(
        self, latents: torch.Tensor, available: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        hidden, weights = self.fuse(latents, available, target)
        return self.head_from(hidden), weights
