"""MSG-LDM translator (``<latent>-msgldm``): structure-guided latent diffusion for any subset of inputs.

On the latents of a frozen shared autoencoder (scaled by ``latent_scale``):

1. every modality slot has its own multi-scale structure encoder with HFIB
   (:mod:`MRSynthLib.networks.msgldm_encoders`); a shared style encoder and a shared segmentation
   decoder serve the training losses;
2. MMSF gated fusion of the available slots at every scale, then MSSE cross-attention from the lower
   scales into the top (latent-resolution) scale (:mod:`MRSynthLib.networks.msgldm_fusion`) → the
   structure representation ``(B, C0, *s)``;
3. a MONAI ``DiffusionModelUNet`` predicts the velocity of the target latent, conditioned on the
   structure representation, the target's one-hot code and the target's learned style prototype.

The inference graphs are :meth:`MSGLDM.structure` (once per window) and :meth:`MSGLDM.denoise` (every
sampler step); :meth:`MSGLDM.encode_slots` also returns what the training losses need.
"""

from __future__ import annotations


import torch
from monai.networks.nets import DiffusionModelUNet
from torch import nn

from MRSynthLib.networks.denoiser import TIME_SCALE, _require_einops
from MRSynthLib.networks.msgldm_encoders import SegmentationDecoder, StructureEncoder, StyleEncoder
from MRSynthLib.networks.msgldm_fusion import GatedScaleFusion, ScaleCrossAttention
from MRSynthLib.networks.configs.msgldm import MSGLDMConfig  # noqa: F401  (re-exported)


class MSGLDM(nn.Module):
    """Structure encoders + MMSF + MSSE + structure-conditioned latent denoiser (see the module docstring)."""

    def __init__(self, config: MSGLDMConfig = MSGLDMConfig()) -> None:
        super().__init__()
        _require_einops()
        self.config = config
        d, lat, m = config.spatial_dims, config.latent_channels, len(config.contrasts)
        self.structure_encoders = nn.ModuleList([StructureEncoder(d, lat, config.channels) for _ in range(m)])
        self.style_encoder = StyleEncoder(d, lat, config.style_width, config.style_dim)
        self.style_prototypes = nn.Parameter(torch.randn(m, config.style_dim) * 0.1)
        self.segmentation = SegmentationDecoder(d, config.channels[0], config.seg_classes)
        self.fusions = nn.ModuleList([GatedScaleFusion(d, c, m) for c in config.channels])
        self.cross_attention = ScaleCrossAttention(d, config.channels, config.attention_width, config.attention_heads,
                                                   config.attention_radius)
        self.unet = DiffusionModelUNet(
            spatial_dims=d, in_channels=lat + config.channels[0] + m + config.style_dim, out_channels=lat,
            num_res_blocks=config.num_res_blocks, channels=config.denoiser_channels,
            attention_levels=config.denoiser_attention_levels, norm_num_groups=config.norm_num_groups,
            num_head_channels=config.num_head_channels,
        )

    def encode_slots(self, latents: torch.Tensor) -> list[torch.Tensor]:
        """Every slot through its own structure encoder: ``(B, M, L, *s)`` → per scale ``(B, M, C_i, *s_i)``."""
        per_slot = [encoder(latents[:, j]) for j, encoder in enumerate(self.structure_encoders)]
        return [torch.stack([slot[i] for slot in per_slot], dim=1) for i in range(len(self.config.channels))]

    def fuse(self, scales: list[torch.Tensor], available: torch.Tensor,
             target_onehot: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """MMSF per scale, then MSSE: structure ``(B, C0, *s)`` and the gate weights per scale ``(B, M, *s_i)``."""
        fused, weights = [], []
        for features, fusion in zip(scales, self.fusions):
            f, w = fusion(features, available, target_onehot)
            fused.append(f)
            weights.append(w)
        return self.cross_attention(fused[0], fused[1:]), weights

    def structure(self, latents: torch.Tensor, available: torch.Tensor,
                  target_onehot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Inference graph ``msgldm_structure``.

        Args:
            latents: ``(B, M, L, *s)`` scaled latents of every slot (anything where missing);
            available: ``(B, M)``; target_onehot: ``(B, M)``.
        Returns:
            structure ``(B, C0, *s)`` and contributions ``(B, M, *s)``: the MMSF weights of every scale
            upsampled (nearest) to the top scale and averaged (sum 1 over available slots, 0 elsewhere).
        """
        structure, weights = self.fuse(self.encode_slots(latents), available, target_onehot)
        return structure, contribution_weights(weights)

    def denoise(self, x: torch.Tensor, t: torch.Tensor, structure: torch.Tensor,
                target_onehot: torch.Tensor) -> torch.Tensor:
        """Inference graph ``msgldm_denoiser``: noisy scaled target latent ``x`` ``(B, L, *s)``, ``t`` ``(B,)``
        in ``[0, 1]``, structure ``(B, C0, *s)``, target ``(B, M)`` → velocity ``(B, L, *s)``."""
        spatial = x.shape[2:]
        ones = (1,) * len(spatial)
        target_onehot = target_onehot.to(x.dtype)
        style = target_onehot @ self.style_prototypes
        condition = [structure,
                     target_onehot.view(*target_onehot.shape, *ones).expand(-1, -1, *spatial),
                     style.view(*style.shape, *ones).expand(-1, -1, *spatial)]
        return self.unet(torch.cat([x] + condition, dim=1), t.to(x.dtype) * TIME_SCALE)


def contribution_weights(weights: list[torch.Tensor]) -> torch.Tensor:
    """Per-scale weights ``(B, M, *s / 2**i)`` → their mean at the top scale ``(B, M, *s)`` (nearest upsampling)."""
    top = weights[0]
    total = top
    for i, w in enumerate(weights[1:], start=1):
        total = total + nn.functional.interpolate(w, scale_factor=float(2**i), mode="nearest")
    return total / len(weights)
