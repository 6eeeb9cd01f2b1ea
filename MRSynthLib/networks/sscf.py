"""SSCF in latent space: segmentation-assisted any-subset synthesis with memory retrieval.

One network over the latents of a frozen shared autoencoder (``L`` channels, ``M`` contrast slots):

1. **Shared encoders + gated fusion**: every given input latent is encoded by the same encoder and
   the encodings are fused by target-conditioned sigmoid gates normalised over the given inputs (the
   gated fusion of :class:`MRSynthLib.networks.fusion.FusionTranslator`, reused); the gates are the
   contribution maps.
2. **Segmentation branch**: a head on the fused features predicts the tumour probability at latent
   resolution; the prediction is fed back (concatenated, one convolution, residual) so it conditions the
   synthesis, and it splits the decoder's AdaIN into a tumour and a non-tumour region.
3. **Memory bank** (:class:`MRSynthLib.networks.sscf_memory.MemoryBank`, FIFO, in the weights): a
   separate shared *memory encoder* maps each contrast's latent to features whose spatial mean is the
   retrieval descriptor and whose per-region channel statistics are the prototypes.
4. **CITIM**: cosine affinity between the query's descriptors (its given contrasts) and the bank.
5. **CCP**: the selected entry's target-contrast statistics are injected into the decoder features by
   region-wise AdaIN (:func:`MRSynthLib.networks.sscf_adain.region_adain`), then a residual unit, the
   channel-dropout point and the 1x1 head (tanh) give the target latent.

Graphs (both backends run them): :meth:`encode` → ``hidden, weights, tumour, descriptors``;
:meth:`retrieve` → ``affinity``; :meth:`head_from` (hidden, tumour, selection, target code, dropout mask)
→ ``latent``. The choice of entry (top-k) happens between them, in numpy.
"""

from __future__ import annotations


import torch
from monai.networks.blocks import Convolution, ResidualUnit
from torch import nn

from MRSynthLib.networks.autoencoder import ACTIVATION
from MRSynthLib.networks.fusion import FusionTranslator
from MRSynthLib.networks.sscf_adain import region_adain
from MRSynthLib.networks.sscf_memory import MemoryBank
from MRSynthLib.networks.configs.sscf import SSCFConfig  # noqa: F401  (re-exported)


class SSCFTranslator(nn.Module):
    """Given input latents + target code → target latent, tumour probability and contributions.

    Shapes: latents ``(B, K, L, *s)`` of the K given slots, ``slot_codes`` ``(K, M)``, ``target_onehot``
    ``(B, M)``, ``mask`` ``(B, K)``; hidden ``(B, H, *s)``; tumour ``(B, 1, *s)``; descriptors ``(B, K, H)``;
    affinity and selection ``(B, N)``; latent ``(B, L, *s)`` in ``(-1, 1)``.
    """

    def __init__(self, config: SSCFConfig = SSCFConfig()) -> None:
        super().__init__()
        self.config = config
        d, m, h, lat = config.spatial_dims, len(config.contrasts), config.hidden, config.latent_channels
        self.fusion = FusionTranslator(config.fusion())
        self.segmenter = nn.Sequential(Convolution(d, h, h // 2, kernel_size=3, act=ACTIVATION, norm=None),
                                       Convolution(d, h // 2, 1, kernel_size=1, conv_only=True))
        self.condition = Convolution(d, h + 1, h, kernel_size=3, act=ACTIVATION, norm=None)
        self.memory_encoder = nn.Sequential(Convolution(d, lat + m, h, kernel_size=3, act=ACTIVATION, norm=None),
                                            ResidualUnit(d, h, h, subunits=2, act=ACTIVATION, norm=None))
        self.refine = ResidualUnit(d, h, h, subunits=2, act=ACTIVATION, norm=None)
        self.bank = MemoryBank(config.bank_size, m, h)

    def memory_features(self, latents: torch.Tensor, slot_codes: torch.Tensor) -> torch.Tensor:
        """``(B, K, L, *s)`` → ``(B, K, H, *s)`` features of the shared memory encoder (slot code as channels)."""
        b, k = latents.shape[:2]
        spatial = latents.shape[3:]
        codes = slot_codes.to(latents.dtype).view(1, k, -1, *(1,) * len(spatial)).expand(b, k, slot_codes.shape[1], *spatial)
        features = self.memory_encoder(torch.cat([latents, codes], dim=2).flatten(0, 1))
        return features.view(b, k, -1, *spatial)

    def encode_parts(self, latents, slot_codes, target_onehot, mask):
        """As :meth:`encode`, but with the segmentation logits ``(B, 1, *s)`` and the full memory features
        ``(B, K, H, *s)`` (the descriptors are their spatial means) instead of the descriptors (training)."""
        hidden, weights = self.fusion.fuse_active(latents, slot_codes, target_onehot, mask)
        logits = self.segmenter(hidden)
        tumour = torch.sigmoid(logits)
        hidden = hidden + self.condition(torch.cat([hidden, tumour], dim=1))
        return hidden, weights, tumour, logits, self.memory_features(latents, slot_codes)

    def encode(self, latents: torch.Tensor, slot_codes: torch.Tensor, target_onehot: torch.Tensor,
               mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Fused, mask-conditioned features, gates ``(B, K, *s)``, tumour probability, retrieval descriptors."""
        hidden, weights, tumour, _, memory = self.encode_parts(latents, slot_codes, target_onehot, mask)
        return hidden, weights, tumour, memory.mean(dim=tuple(range(3, memory.ndim)))

    def retrieve(self, descriptors: torch.Tensor, slot_codes: torch.Tensor, target_onehot: torch.Tensor,
                 mask: torch.Tensor) -> torch.Tensor:
        """Affinity ``(B, N)`` of the query with every bank entry (see :meth:`MemoryBank.affinity`)."""
        return self.bank.affinity(descriptors, slot_codes, target_onehot, mask)

    def head_with_style(self, hidden: torch.Tensor, tumour: torch.Tensor, style_mean: torch.Tensor,
                        style_std: torch.Tensor, strength: torch.Tensor,
                        channel_scale: torch.Tensor | None = None) -> torch.Tensor:
        """Region-wise AdaIN with statistics ``(B, 2, H)`` at ``strength`` ``(B, 1)``, then refine + head."""
        styled = region_adain(hidden, tumour, style_mean, style_std, strength)
        return self.fusion.head_from(self.refine(styled), channel_scale)

    def head_from(self, hidden: torch.Tensor, tumour: torch.Tensor, selection: torch.Tensor,
                  target_onehot: torch.Tensor, channel_scale: torch.Tensor | None = None) -> torch.Tensor:
        """The decoder with the prototype chosen by ``selection`` ``(B, N)`` (a zero row: no injection);
        ``channel_scale`` ``(B, H)`` explicit dropout mask (None = ``self.fusion.dropout``)."""
        mean, std, strength = self.bank.prototype(selection, target_onehot)
        return self.head_with_style(hidden, tumour, mean, std, strength, channel_scale)
