"""SRB's frozen 2D teacher, loaded from a local file: a TorchScript module or ``torch.export`` program
(``.pt2``), or a timm model + weights.

Nothing is downloaded. ``timm`` is optional and imported only when ``teacher.timm_model`` is set.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from training.config import ConfigError
from training.loss_config import TeacherConfig

Network = Callable[[torch.Tensor], tuple]  # images -> (embeddings, attention or None)


class FrozenTeacher(nn.Module):
    """Slices ``(N, Y, X)`` in normalised units → ``(embeddings (N, D), attention (N, Y, X) or None)``.

    Slices are clipped to [0, 1], resized to ``input_size``², repeated to 3 channels and normalised
    with ``mean``/``std``. Attention maps are resized back to ``(Y, X)`` and scaled to mean 1 per slice.
    The network's parameters never receive gradients.
    """

    def __init__(self, network: nn.Module, embed: Network, config: TeacherConfig) -> None:
        super().__init__()
        self.network = network
        self._set_eval()
        for parameter in network.parameters():  # (ScriptModules have no requires_grad_)
            parameter.requires_grad_(False)
        self._embed = embed
        self.input_size = config.input_size
        self.register_buffer("mean", torch.tensor(config.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(config.std).view(1, 3, 1, 1), persistent=False)
        self.dim: int | None = None

    def _set_eval(self) -> None:
        try:
            self.network.eval()
        except (NotImplementedError, RuntimeError):
            pass  # torch.export programs refuse train()/eval(); they keep the mode they were exported in

    def train(self, mode: bool = True) -> FrozenTeacher:
        super().train(mode)
        self._set_eval()  # a frozen teacher never uses batch statistics or dropout
        return self

    @torch.no_grad()
    def forward(self, slices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        size = (self.input_size, self.input_size)
        images = F.interpolate(slices[:, None].clamp(0, 1).float(), size=size, mode="bilinear", align_corners=False)
        images = (images.expand(-1, 3, -1, -1) - self.mean) / self.std
        embeddings, attention = self._embed(images)
        if attention is not None:
            attention = F.interpolate(attention[:, None].float(), size=slices.shape[-2:], mode="bilinear",
                                      align_corners=False)[:, 0].clamp_min(0)
            attention = attention / attention.mean(dim=(1, 2), keepdim=True).clamp_min(1e-6)
        return embeddings.float(), attention

    @torch.no_grad()
    def embedding_dim(self) -> int:
        """``D``, found by embedding one blank slice (cached)."""
        if self.dim is None:
            self.dim = int(self(torch.zeros(1, 8, 8, device=self.mean.device))[0].shape[1])
        return self.dim


def _module_embed(network: nn.Module, path: Path) -> Network:
    def embed(images: torch.Tensor):
        out = network(images)
        embeddings, attention = (out[0], out[1]) if isinstance(out, (tuple, list)) else (out, None)
        if embeddings.ndim != 2 or (attention is not None and attention.ndim != 3):
            raise ConfigError(
                f"stage1_loss.srb.teacher.path {path} must return (N, D) embeddings or a tuple ((N, D) embeddings, (N, h, w) "
                f"attention), not shapes {tuple(embeddings.shape)}"
                + ("" if attention is None else f" and {tuple(attention.shape)}")
                + ": export a module with that output."
            )
        return embeddings, attention

    return embed


def _timm_embed(network: nn.Module) -> Network:
    """Pooled embedding (``forward_head(pre_logits=True)``) and, for transformers with a class token, the
    class token's similarity to every patch token (softmax over patches) as the attention map."""

    def embed(images: torch.Tensor):
        tokens = network.forward_features(images)
        embeddings = network.forward_head(tokens, pre_logits=True)
        attention = None
        prefix = int(getattr(network, "num_prefix_tokens", 0))
        if tokens.ndim == 3 and prefix >= 1:
            patches = tokens[:, prefix:]
            side = math.isqrt(patches.shape[1])
            if side * side == patches.shape[1]:
                similarity = (patches @ tokens[:, 0, :, None])[..., 0] / math.sqrt(tokens.shape[-1])
                attention = similarity.softmax(dim=1).view(-1, side, side)
        return embeddings, attention

    return embed


def load_teacher(config: TeacherConfig) -> FrozenTeacher:
    """The teacher named by ``config``; a missing file or package is a :class:`ConfigError` naming the fix."""
    if not config.path:
        raise ConfigError(
            "stage1_loss.srb is enabled but stage1_loss.srb.teacher.path is empty: set it to a local TorchScript "
            "teacher (or timm weights with teacher.timm_model), or set stage1_loss.srb.enabled: false."
        )
    path = Path(config.path).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"stage1_loss.srb.teacher.path {path} does not exist: place the teacher's weights there (nothing is "
            f"downloaded), or set stage1_loss.srb.enabled: false."
        )
    if config.timm_model:
        try:
            import timm
        except ImportError:
            raise ConfigError(
                f"stage1_loss.srb.teacher.timm_model {config.timm_model!r} needs the optional timm package, which is "
                f"not installed: pip install timm, or give a TorchScript teacher and leave timm_model empty."
            ) from None
        try:
            network = timm.create_model(config.timm_model, pretrained=True, num_classes=0,
                                        pretrained_cfg_overlay={"file": str(path)})
        except Exception as error:  # timm raises many kinds for a bad name or file
            raise ConfigError(
                f"stage1_loss.srb.teacher: timm could not build {config.timm_model!r} from {path} "
                f"({str(error).splitlines()[0] if str(error) else type(error).__name__}): check the model name and file."
            ) from None
        return FrozenTeacher(network, _timm_embed(network), config)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated but still the common format
            if path.suffix == ".pt2":
                network = torch.export.load(str(path)).module()
            else:
                network = torch.jit.load(str(path), map_location="cpu")
    except Exception as error:  # torch raises many kinds for a file it cannot read
        raise ConfigError(
            f"stage1_loss.srb.teacher.path {path} is not a TorchScript file or torch.export program "
            f"({str(error).splitlines()[0] if str(error) else type(error).__name__}): save the teacher with "
            f"torch.jit.save or torch.export.save (.pt2), or set teacher.timm_model for timm weights."
        ) from None
    return FrozenTeacher(network, _module_embed(network, path), config)
