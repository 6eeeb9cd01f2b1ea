"""Dynamic target-code translator (VQ-Seq2Seq's idea, in latent space): one shared network maps any
source latent to any target latent, told which by one-hot codes.

``features(latent, source_onehot, target_onehot)``: the source code enters as constant input channels,
the target code modulates every block (FiLM) and generates the output layer's weights (a *dynamic*
1x1 convolution: a base kernel plus a code-dependent one). ``head_from`` predicts, per voxel and
channel, the target latent's mean and log-variance (heteroscedastic Gaussian).

Several inputs are combined by precision weighting: each input's prediction is weighted by its inverse
variance (:func:`precision_fusion`), which is the maximum-likelihood combination of independent
Gaussian estimates. Those weights, averaged over channels, are the contribution maps.
"""

from __future__ import annotations


import torch
from monai.networks.blocks import Convolution, ResidualUnit
from torch import nn

from MRSynthLib.networks.autoencoder import ACTIVATION
from MRSynthLib.networks.configs.targetcode import TargetCodeConfig  # noqa: F401  (re-exported)

LOGVAR_RANGE = (-10.0, 4.0)


def _broadcast(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``(B, C)`` → ``(B, C, *like.spatial)``."""
    view = values.shape + (1,) * (like.ndim - 2)
    return values.to(like.dtype).view(view).expand(values.shape + like.shape[2:])


class _FiLMBlock(nn.Module):
    """Residual unit whose output is scaled and shifted by a code: ``x + f(x) * (1 + a(code)) + b(code)``."""

    def __init__(self, spatial_dims: int, channels: int, codes: int) -> None:
        super().__init__()
        self.unit = ResidualUnit(spatial_dims, channels, channels, subunits=2, act=ACTIVATION, norm=None)
        self.film = nn.Linear(codes, 2 * channels)

    def forward(self, x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        scale, shift = self.film(code.to(x.dtype)).chunk(2, dim=1)
        view = scale.shape + (1,) * (x.ndim - 2)
        return self.unit(x) * (1 + scale.view(view)) + shift.view(view)


class TargetCodeTranslator(nn.Module):
    """One source latent + codes → target latent mean and log-variance.

    Shapes: ``latent`` ``(B, L, *s)``; ``source_onehot``, ``target_onehot`` ``(B, M)``; hidden
    ``(B, H, *s)``; mean and log-variance ``(B, L, *s)`` (mean in ``(-1, 1)``).
    """

    def __init__(self, config: TargetCodeConfig = TargetCodeConfig()) -> None:
        super().__init__()
        self.config = config
        d, m, h, lat = config.spatial_dims, len(config.contrasts), config.hidden, config.latent_channels
        self.stem = Convolution(d, lat + m, h, kernel_size=3, act=ACTIVATION, norm=None)
        self.blocks = nn.ModuleList([_FiLMBlock(d, h, m) for _ in range(config.num_blocks)])
        self.dropout = nn.Dropout3d(config.dropout) if d == 3 else nn.Dropout2d(config.dropout)
        self.base = nn.Parameter(torch.randn(2 * lat, h) * h**-0.5)
        self.bias = nn.Parameter(torch.zeros(2 * lat))
        self.dynamic = nn.Linear(m, 2 * lat * h)
        nn.init.zeros_(self.dynamic.weight)
        nn.init.zeros_(self.dynamic.bias)

    def features(self, latent: torch.Tensor, source_onehot: torch.Tensor, target_onehot: torch.Tensor) -> torch.Tensor:
        x = self.stem(torch.cat([latent, _broadcast(source_onehot, latent)], dim=1))
        for block in self.blocks:
            x = block(x, target_onehot)
        return x

    def head_from(self, hidden: torch.Tensor, target_onehot: torch.Tensor,
                  channel_scale: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Dynamic 1x1 output layer; ``channel_scale`` ``(B, H)`` explicit dropout mask (None = ``self.dropout``)."""
        if channel_scale is None:
            hidden = self.dropout(hidden)
        else:
            hidden = hidden * channel_scale.to(hidden.dtype).view(channel_scale.shape + (1,) * (hidden.ndim - 2))
        b, h = hidden.shape[:2]
        weight = self.base + self.dynamic(target_onehot.to(hidden.dtype)).view(b, -1, h)  # (B, 2L, H)
        out = torch.einsum("boh,bh...->bo...", weight, hidden) + self.bias.view((1, -1) + (1,) * (hidden.ndim - 2))
        mean, logvar = out.chunk(2, dim=1)
        return torch.tanh(mean), logvar.clamp(*LOGVAR_RANGE)

    def forward(self, latent: torch.Tensor, source_onehot: torch.Tensor,
                target_onehot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head_from(self.features(latent, source_onehot, target_onehot), target_onehot)


def precision_fusion(means: torch.Tensor, logvars: torch.Tensor, available: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse-variance weighted combination of per-input predictions.

    Args:
        means, logvars: ``(B, K, L, *s)``; available: ``(B, K)`` 1.0 for inputs to combine.
    Returns:
        fused mean ``(B, L, *s)`` and weights ``(B, K, L, *s)`` (summing to 1 over available inputs).
    """
    view = available.shape + (1,) * (means.ndim - 2)
    logits = -logvars + torch.log(available.to(means.dtype).clamp_min(1e-30)).view(view)
    weights = torch.softmax(logits, dim=1)
    return (weights * means).sum(dim=1), weights
