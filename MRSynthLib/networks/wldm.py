"""3D-WLDM's latent denoiser: a small 3D UNet with wavelet residual blocks and DSCA skip attention.

``forward(x, t, latents, available, target_onehot, structure, modality)`` → velocity ``(B, L, *s)``:

- ``x`` ``(B, L, *s)``: the noisy (scaled) target latent; ``t`` ``(B,)`` in ``[0, 1]`` (sinusoidal
  embedding of ``1000 t``, added in every residual block);
- conditioning (as the ``ldm`` denoiser, :func:`MRSynthLib.networks.denoiser.conditioning`, without a
  guide): every slot's source latent ``(B, M, L, *s)`` (zeros where missing), availability ``(B, M)``,
  the target one-hot ``(B, M)``, concatenated with ``x`` at the input;
- ``structure`` / ``modality`` ``(B, M, C, *s)``: every slot's halves from
  :class:`MRSynthLib.networks.latent_split.LatentSplit`; they are averaged over the available slots and
  average-pooled to each level's token grid (``2**level * kv_pool``), then every skip connection
  passes a :class:`MRSynthLib.networks.dsca.DSCA` block before it is concatenated in the decoder.

Each encoder level is a residual block followed by a :class:`MRSynthLib.networks.wavelet.WaveletResidualBlock`
(when ``wavelet``); levels are joined by stride-2 convolutions and nearest upsampling.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from MRSynthLib.networks.denoiser import TIME_SCALE, conditioning
from MRSynthLib.networks.dsca import DSCA
from MRSynthLib.networks.wavelet import WaveletResidualBlock
from MRSynthLib.networks.configs.wldm import WLDMDenoiserConfig  # noqa: F401  (re-exported)


def time_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding ``(B, dim)`` of ``TIME_SCALE * t`` ``(B,)``."""
    half = dim // 2
    frequencies = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=t.dtype, device=t.device) / max(half, 1))
    angles = (t * TIME_SCALE)[:, None] * frequencies[None]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


class _ResBlock(nn.Module):
    """GroupNorm-SiLU-conv, + time embedding, GroupNorm-SiLU-conv, plus a (pointwise) shortcut."""

    def __init__(self, spatial_dims: int, inputs: int, outputs: int, time_dim: int, groups: int) -> None:
        super().__init__()
        conv = nn.Conv3d if spatial_dims == 3 else nn.Conv2d
        self.norm1 = nn.GroupNorm(math.gcd(groups, inputs), inputs)
        self.conv1 = conv(inputs, outputs, 3, padding=1)
        self.time = nn.Linear(time_dim, outputs)
        self.norm2 = nn.GroupNorm(groups, outputs)
        self.conv2 = conv(outputs, outputs, 3, padding=1)
        self.shortcut = conv(inputs, outputs, 1) if inputs != outputs else nn.Identity()
        self.view = (1,) * spatial_dims

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time(temb).view(*temb.shape[:1], -1, *self.view)
        h = self.conv2(F.silu(self.norm2(h)))
        return self.shortcut(x) + h


def masked_mean(values: torch.Tensor, available: torch.Tensor) -> torch.Tensor:
    """Mean over the available slots: ``(B, M, C, *s)``, ``(B, M)`` → ``(B, C, *s)``."""
    weights = available.to(values.dtype).view(*available.shape, *(1,) * (values.ndim - 2))
    return (values * weights).sum(1) / weights.sum(1).clamp(min=1.0)


class WLDMDenoiser(nn.Module):
    """See the module docstring. Spatial sizes must be divisible by ``config.multiple``."""

    def __init__(self, config: WLDMDenoiserConfig = WLDMDenoiserConfig()) -> None:
        super().__init__()
        self.config = config
        n, ch, g = config.spatial_dims, config.channels, config.norm_num_groups
        conv = nn.Conv3d if n == 3 else nn.Conv2d
        m, lat = len(config.contrasts), config.latent_channels
        time_dim = 4 * ch[0]
        self.time_mlp = nn.Sequential(nn.Linear(ch[0], time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim))
        self.stem = conv(lat + m * lat + 2 * m, ch[0], 3, padding=1)
        self.encoder = nn.ModuleList(_ResBlock(n, ch[max(k - 1, 0)], ch[k], time_dim, g) for k in range(len(ch)))
        self.wavelets = nn.ModuleList(WaveletResidualBlock(n, c) if config.wavelet else nn.Identity() for c in ch)
        self.down = nn.ModuleList(conv(ch[k], ch[k], 3, stride=2, padding=1) for k in range(len(ch) - 1))
        self.middle = _ResBlock(n, ch[-1], ch[-1], time_dim, g)
        self.skips = nn.ModuleList(DSCA(n, c, config.split_channels, config.attention_channels) for c in ch)
        self.decoder = nn.ModuleList(_ResBlock(n, 2 * c, c, time_dim, g) for c in ch)
        self.up = nn.ModuleList(conv(ch[k], ch[k - 1], 3, padding=1) for k in range(1, len(ch)))
        self.out = nn.Sequential(nn.GroupNorm(g, ch[0]), nn.SiLU(), conv(ch[0], lat, 3, padding=1))
        self._pool = F.avg_pool3d if n == 3 else F.avg_pool2d

    def contexts(self, structure: torch.Tensor, modality: torch.Tensor, available: torch.Tensor, level: int):
        """The level's structure and modality tokens ``(B, C, *s / (2**level * kv_pool))``."""
        factor = 2**level * self.config.kv_pool
        pooled = []
        for halves in (structure, modality):
            mean = masked_mean(halves, available)
            pooled.append(self._pool(mean, factor) if factor > 1 else mean)
        return pooled

    def forward(self, x: torch.Tensor, t: torch.Tensor, latents: torch.Tensor, available: torch.Tensor,
                target_onehot: torch.Tensor, structure: torch.Tensor, modality: torch.Tensor) -> torch.Tensor:
        temb = self.time_mlp(time_embedding(t.to(x.dtype), self.config.channels[0]))
        h = self.stem(torch.cat([x, conditioning(latents, available, target_onehot, None)], dim=1))
        skips = []
        for k, block in enumerate(self.encoder):
            h = self.wavelets[k](block(h, temb))
            skips.append(h)
            if k < len(self.down):
                h = self.down[k](h)
        h = self.middle(h, temb)
        for k in reversed(range(len(self.encoder))):
            if k < len(self.down):
                h = self.up[k](F.interpolate(h, scale_factor=2.0, mode="nearest"))
            s, mo = self.contexts(structure, modality, available, k)
            h = self.decoder[k](torch.cat([h, self.skips[k](skips[k], s, mo)], dim=1), temb)
        return self.out(h)
