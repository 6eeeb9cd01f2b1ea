"""VQ-Seq2Seq translator in latent space: sequence → vector-quantised common latent → any target sequence.

Three parts, one graph each (:mod:`MRSynthLib.methods.translators.graphs`):

- ``encode_common(latents)``: a stage-1 latent of *one* sequence → its common latent ``q`` (nearest entries
  of an EMA codebook, :class:`~MRSynthLib.networks.vq.VectorQuantizer`) and the log-variance of a
  Gaussian around it: how far the common latents of the case's *other* sequences are expected to lie
  (the per-sequence latent statistics). The encoder is told nothing about the source sequence: the
  common latent must not depend on it (VQ-Seq2Seq's encoder has no source code either).
- ``fuse(commons, logvars)``: the Gaussian of the common latent given several sequences
  (:func:`common_gaussian`); the precision weights are the contribution of each input.
- ``decode_common(common, target_onehot)``: the dynamic decoder: the one-hot target code modulates every
  residual block (FiLM, as :mod:`MRSynthLib.networks.targetcode`) and generates the weights of the output
  layer (a base 1x1 kernel plus a code-dependent one), giving the target sequence's stage-1 latent.

Uncertainty is reparameterised sampling of the common latent, ``z = mean + exp(logvar / 2) * eps``
(:func:`reparameterise`), each sample decoded.
"""

from __future__ import annotations


import torch
from monai.networks.blocks import Convolution, ResidualUnit
from torch import nn

from MRSynthLib.networks.autoencoder import ACTIVATION
from MRSynthLib.networks.targetcode import LOGVAR_RANGE, _FiLMBlock
from MRSynthLib.networks.vq import VectorQuantizer, VQConfig
from MRSynthLib.networks.configs.vqseq2seq import VQSeq2SeqConfig  # noqa: F401  (re-exported)

LOGVAR_INIT = -4.0
"""Initial log-variance of the common latent (bias of its head): a small spread before the NLL calibrates it."""


def reparameterise(mean: torch.Tensor, logvar: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """``mean + exp(logvar / 2) * noise`` (``noise`` standard normal, same shape): a sample of N(mean, exp(logvar))
    through which gradients reach ``mean`` and ``logvar``."""
    return mean + torch.exp(0.5 * logvar) * noise


def common_gaussian(commons: torch.Tensor, logvars: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The common latent's Gaussian given ``K`` sequences, each a Gaussian estimate ``N(q_k, v_k)``.

    ``w_k = (1 / v_k) / sum_j (1 / v_j)`` (precision weights), ``mean = sum_k w_k q_k``,
    ``variance = 1 / sum_k (1 / v_k) + sum_k w_k (q_k - mean)^2``: the product of the per-sequence
    Gaussians (it narrows as agreeing inputs are added) plus the spread of the sequences' common latents
    around it (VQ-Seq2Seq's per-sequence statistics: it grows where the inputs disagree).

    Args:
        commons, logvars: ``(B, K, C, *s)``.
    Returns:
        mean ``(B, C, *s)``, log-variance ``(B, C, *s)``, weights ``(B, K, *s)`` (channel mean of ``w``, sums to 1 over K).
    """
    weights = torch.softmax(-logvars, dim=1)
    mean = (weights * commons).sum(dim=1)
    within = torch.exp(-torch.logsumexp(-logvars, dim=1))
    between = (weights * (commons - mean.unsqueeze(1)) ** 2).sum(dim=1)
    return mean, torch.log(within + between), weights.mean(dim=2)


class _DynamicPointwise(nn.Module):
    """1x1 convolution whose kernel is ``base + dynamic(code)``: ``(B, H, *s)``, ``(B, M)`` → ``(B, O, *s)``."""

    def __init__(self, channels: int, out_channels: int, codes: int) -> None:
        super().__init__()
        self.base = nn.Parameter(torch.randn(out_channels, channels) * channels**-0.5)
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.dynamic = nn.Linear(codes, out_channels * channels)
        nn.init.zeros_(self.dynamic.weight)
        nn.init.zeros_(self.dynamic.bias)

    def forward(self, x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        b, h = x.shape[:2]
        weight = self.base + self.dynamic(code.to(x.dtype)).view(b, -1, h)
        return torch.einsum("boh,bh...->bo...", weight, x) + self.bias.view((1, -1) + (1,) * (x.ndim - 2))


class VQSeq2SeqTranslator(nn.Module):
    """Shapes: stage-1 ``latents`` ``(B, L, *s)``; common latent and its log-variance ``(B, C, *s)``;
    ``target_onehot`` ``(B, M)``; output latent ``(B, L, *s)``."""

    def __init__(self, config: VQSeq2SeqConfig = VQSeq2SeqConfig()) -> None:
        super().__init__()
        self.config = config
        d, m, h, c = config.spatial_dims, len(config.contrasts), config.hidden, config.common_channels
        self.encoder = nn.Sequential(
            Convolution(d, config.latent_channels, h, kernel_size=3, act=ACTIVATION, norm=None),
            *[ResidualUnit(d, h, h, subunits=2, act=ACTIVATION, norm=None) for _ in range(config.num_blocks)])
        self.to_common = Convolution(d, h, c, kernel_size=1, conv_only=True)
        self.to_logvar = Convolution(d, h, c, kernel_size=1, conv_only=True)
        nn.init.zeros_(self.to_logvar.conv.weight)
        nn.init.constant_(self.to_logvar.conv.bias, LOGVAR_INIT)
        self.quantizer = VectorQuantizer(VQConfig(codebook_size=config.codebook_size, dim=c, decay=config.codebook_decay))
        self.stem = Convolution(d, c, h, kernel_size=3, act=ACTIVATION, norm=None)
        self.blocks = nn.ModuleList([_FiLMBlock(d, h, m) for _ in range(config.num_blocks)])
        self.head = _DynamicPointwise(h, config.latent_channels, m)

    def encode_train(self, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training form of :meth:`encode_common`: ``(q straight-through, logvar, commitment loss)``; in training
        mode the codebook follows the encoder outputs (EMA)."""
        features = self.encoder(latents)
        quantised, commitment = self.quantizer.train_latent(self.to_common(features))
        return quantised, self.to_logvar(features).clamp(*LOGVAR_RANGE), commitment

    def encode_common(self, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, L, *s)`` → common latent (codebook entries) and its log-variance, each ``(B, C, *s)``."""
        features = self.encoder(latents)
        common = self.quantizer.inference_latent(self.to_common(features))
        return common, self.to_logvar(features).clamp(*LOGVAR_RANGE)

    def fuse(self, commons: torch.Tensor, logvars: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:func:`common_gaussian` (a graph of its own so both backends run the same arithmetic)."""
        return common_gaussian(commons, logvars)

    def decode_common(self, common: torch.Tensor, target_onehot: torch.Tensor) -> torch.Tensor:
        """Common latent ``(B, C, *s)`` + target code ``(B, M)`` → the target's stage-1 latent ``(B, L, *s)``."""
        x = self.stem(common)
        for block in self.blocks:
            x = block(x, target_onehot)
        out = self.head(x, target_onehot)
        return torch.tanh(out) if self.config.bounded else out
