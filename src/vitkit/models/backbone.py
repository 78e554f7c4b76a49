"""The backbone view of every model: multi-scale feature maps for dense tasks, in timm's ``features_only`` form.

``vitkit.create_model(name, features_only=True, out_indices=(0, 1, 2, 3))`` builds the variant (and loads
``weights`` into the full classifier first, so any classification checkpoint initialises it), then turns it into
a backbone in place: the classifier and final norm are dropped, stages after the last selected output are pruned
(so DistributedDataParallel sees no unused parameters), per-output norms are added where the official dense code
has them, and ``forward(x)`` returns a list of maps (B, C, [T,] H, W). ``model.feature_info`` lists, per output,
``num_chs``, ``reduction`` (spatial stride), ``module`` (the norm or pyramid module producing it) and, for video,
``temporal_reduction``; ``feature_info.channels()`` / ``.reduction()`` give the lists.

Per family, as the official dense backbones (dense-facts §1, §3, §4, §5):

- **Swin** (Swin-Transformer-Semantic-Segmentation/-Object-Detection): stage outputs before patch merging, each
  through a LayerNorm ``norm{i}`` (i = 0..3), strides 4/8/16/32. Any size runs: the input is zero-padded to the
  patch and each block to its window, as there.
- **UniFormer** (UniFormer semantic_segmentation / object_detection): stage outputs through LayerNorm(eps 1e-6)
  ``norm1..norm4`` on channels-last maps, strides 4..32; ``windows`` / ``hybrid`` / ``window_size`` config
  fields give the windowed and hybrid stage-3 variants. The input is zero-padded to a multiple of 32 (a 4x4 stem
  and three 2x2 downsamplings) and the maps cropped back to ``ceil(size / stride)``.
- **MViT** (detectron2 MViTv2 backbone): stage outputs (class token dropped) through LayerNorm
  ``scale2_norm..scale5_norm``.
- **ViT** (ViTDet's simple feature pyramid): the last block's map, at stride ``p`` (the patch), feeds four levels
  ``simfp_2..simfp_5`` at strides p/4, p/2, p, 2p: two 2x transposed convolutions (with LayerNorm and GELU
  between), one, none, or a 2x2 max-pool, then a 1x1 and a 3x3 convolution with LayerNorm, ``pyramid_channels``
  wide (256, detectron2's). The input is zero-padded to a multiple of twice the patch.

Every family returns maps of ``ceil(size / reduction)`` (padded inputs are cropped back), so a dense head can rely
on the sizes whatever the input.

Video variants are the same code at spatial rank 3 (maps (B, C, T, H, W); ViT's pyramid works per frame).
Drop path (``drop_path_rate``) and layer-wise lr decay (``layer_id``) carry over: the backbone is the model, with
the same blocks; added norms and pyramid modules take the top layer id.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from vitkit.layers import maxpool_nd

from .base import VitkitModel, select_indices


class FeatureInfo(list):
    """A list of dicts (``num_chs``, ``reduction``, ``module`` ...) with timm's helpers."""

    def channels(self, idx: int | None = None) -> list[int] | int:
        return [f["num_chs"] for f in self] if idx is None else self[idx]["num_chs"]

    def reduction(self, idx: int | None = None) -> list[int] | int:
        return [f["reduction"] for f in self] if idx is None else self[idx]["reduction"]

    def module_name(self, idx: int | None = None) -> list[str] | str:
        return [f["module"] for f in self] if idx is None else self[idx]["module"]


class ChannelsLayerNorm(nn.LayerNorm):
    """LayerNorm over dim 1 of (B, C, *grid) maps (detectron2's channels-first ``LayerNorm``; same keys)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.movedim(1, -1)).movedim(-1, 1)


def _norm_last(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A LayerNorm over channels applied to a (B, C, *grid) map, returned contiguous."""
    return norm(x.movedim(1, -1)).movedim(-1, 1).contiguous()


class ConvNorm(nn.Module):
    """Convolution without bias followed by a channels LayerNorm (detectron2 ``Conv2d(..., norm=LN)`` keys:
    ``weight``, ``norm.weight``, ``norm.bias``); rank 2 or 3 (3-D kernels are 1 x k x k: per frame)."""

    def __init__(self, rank: int, cin: int, cout: int, kernel: int) -> None:
        super().__init__()
        k = (1,) * (rank - 2) + (kernel, kernel)
        self.rank, self.padding = rank, tuple(s // 2 for s in k)
        self.weight = nn.Parameter(torch.empty(cout, cin, *k))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self.norm = ChannelsLayerNorm(cout, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = F.conv2d if self.rank == 2 else F.conv3d
        return self.norm(conv(x, self.weight, None, 1, self.padding))


def _deconv(rank: int, cin: int, cout: int) -> nn.Module:
    k = (1,) * (rank - 2) + (2, 2)
    return (nn.ConvTranspose2d if rank == 2 else nn.ConvTranspose3d)(cin, cout, k, k)


def simple_pyramid_level(rank: int, dim: int, scale: float, channels: int) -> nn.Sequential:
    """One level of ViTDet's simple feature pyramid (module indices as detectron2's ``simfp_*``)."""
    layers: list[nn.Module]
    if scale == 4.0:
        layers = [_deconv(rank, dim, dim // 2), ChannelsLayerNorm(dim // 2, eps=1e-6), nn.GELU(),
                  _deconv(rank, dim // 2, dim // 4)]
        out = dim // 4
    elif scale == 2.0:
        layers, out = [_deconv(rank, dim, dim // 2)], dim // 2
    elif scale == 1.0:
        layers, out = [], dim
    elif scale == 0.5:
        k = (1,) * (rank - 2) + (2, 2)
        layers, out = [maxpool_nd(rank, k, k)], dim
    else:
        raise ValueError(f"simple feature pyramid scale must be 4, 2, 1 or 0.5, got {scale}")
    layers += [ConvNorm(rank, out, channels, 1), ConvNorm(rank, channels, channels, 3)]
    return nn.Sequential(*layers)


# -- per-family set-up and forward -----------------------------------------------------------------------------
def _pad_to(x: torch.Tensor, multiple: Sequence[int]) -> torch.Tensor:
    """Zero-pad the trailing dims of ``x`` (one per entry of ``multiple``) up to multiples of it."""
    size = x.shape[-len(multiple):]
    pad: list[int] = []
    for s, m in zip(reversed(size), reversed(tuple(multiple))):
        pad += [0, (-s) % m]
    return F.pad(x, pad) if any(pad) else x


def _drop(model: nn.Module, *names: str) -> None:
    for n in names:
        if n in model._modules or n in model._parameters:
            delattr(model, n)


def _video_t(model: VitkitModel, stride_t: int) -> dict:
    return {"temporal_reduction": stride_t} if model.spatial_rank == 3 else {}


def _swin_setup(m, idx: list[int], **_) -> FeatureInfo:
    cfg = m.config
    patch = m.patch_embed.stride
    info = FeatureInfo()
    for i in idx:
        c = cfg.embed_dim * 2**i
        m.add_module(f"norm{i}", nn.LayerNorm(c, eps=cfg.norm_eps))
        info.append(dict(num_chs=c, reduction=patch[-1] * 2**i, module=f"norm{i}", **_video_t(m, patch[0])))
    _drop(m, "norm", "head")
    last = max(idx)
    m.layers = nn.ModuleList(list(m.layers)[: last + 1])
    m.layers[last].downsample = None
    return info


def _swin_forward(m, x: torch.Tensor) -> list[torch.Tensor]:
    maps = m.forward_intermediates(x, m.out_indices)
    return [_norm_last(getattr(m, f"norm{i}"), y) for i, y in zip(m.out_indices, maps)]


def _uniformer_setup(m, idx: list[int], **_) -> FeatureInfo:
    info = FeatureInfo()
    for i in idx:
        c = m.embed_dim[i]
        m.add_module(f"norm{i + 1}", nn.LayerNorm(c, eps=1e-6))
        info.append(dict(num_chs=c, reduction=4 * 2**i, module=f"norm{i + 1}", **_video_t(m, 2)))
    _drop(m, "norm", "head", "aux_head")
    for k in range(max(idx) + 1, 4):
        _drop(m, f"patch_embed{k + 1}", f"blocks{k + 1}")
    return info


def _uniformer_forward(m, x: torch.Tensor) -> list[torch.Tensor]:
    size = x.shape[-2:]
    if not m.config.conv_stem:
        x = _pad_to(x, (32, 32))
    maps = _crop(m.forward_intermediates(x, m.out_indices), size, m.feature_info)
    return [_norm_last(getattr(m, f"norm{i + 1}"), y) for i, y in zip(m.out_indices, maps)]


def _mvit_setup(m, idx: list[int], **_) -> FeatureInfo:
    info = FeatureInfo()
    stride = list(m.patch_embed.stride)
    strides = []
    for spec in m.specs:
        if spec.stride_q:
            stride = [s * q for s, q in zip(stride, spec.stride_q)]
        strides.append(tuple(stride))
    for i in idx:
        end = m.stage_ends[i]
        c = m.specs[end].dim_out
        m.add_module(f"scale{i + 2}_norm", nn.LayerNorm(c, eps=m.config.norm_eps))
        info.append(dict(num_chs=c, reduction=strides[end][-1], module=f"scale{i + 2}_norm",
                         **_video_t(m, strides[end][0])))
    _drop(m, "norm", "head", "head_drop")
    m.blocks = nn.ModuleList(list(m.blocks)[: m.stage_ends[max(idx)] + 1])
    return info


def _crop(maps: list[torch.Tensor], size: Sequence[int], info: FeatureInfo) -> list[torch.Tensor]:
    """Each map cut to ``ceil(size / reduction)`` in H and W (the part that covers the unpadded input)."""
    return [y[..., : -(-size[0] // f["reduction"]), : -(-size[1] // f["reduction"])] for y, f in zip(maps, info)]


def _mvit_forward(m, x: torch.Tensor) -> list[torch.Tensor]:
    size = x.shape[-2:]
    x = _pad_to(x, m.patch_embed.stride[-2:])  # a non-overlapping stem (the demo's 4x4) would floor
    maps = _crop(m.forward_intermediates(x, m.out_indices), size, m.feature_info)
    return [_norm_last(getattr(m, f"scale{i + 2}_norm"), y) for i, y in zip(m.out_indices, maps)]


_PYRAMID_SCALES = (4.0, 2.0, 1.0, 0.5)


def _vit_setup(m, idx: list[int], pyramid_channels: int = 256, **_) -> FeatureInfo:
    stride = tuple(m.patch_embed.stride)
    info = FeatureInfo()
    for i in idx:
        scale = _PYRAMID_SCALES[i]
        m.add_module(f"simfp_{i + 2}", simple_pyramid_level(m.spatial_rank, m.embed_dim, scale, pyramid_channels))
        info.append(dict(num_chs=pyramid_channels, reduction=max(1, int(stride[-1] / scale)),
                         module=f"simfp_{i + 2}", **_video_t(m, stride[0])))
    _drop(m, "norm", "fc_norm", "pre_logits", "head_drop", "head")
    return info


def _vit_forward(m, x: torch.Tensor) -> list[torch.Tensor]:
    size = x.shape[-2:]
    stride = tuple(m.patch_embed.stride)
    # pad to twice the patch, so that the 2x2 pooled level covers the whole input
    x = _pad_to(x, (*stride[:-2], *(2 * s for s in stride[-2:])))
    last = m.forward_intermediates(x, 1)[0]
    return _crop([getattr(m, f"simfp_{i + 2}")(last) for i in m.out_indices], size, m.feature_info)


_FAMILIES: dict[str, tuple[Callable, Callable, int]] = {
    # family: (set-up, forward, number of outputs)
    "swin": (_swin_setup, _swin_forward, 4),
    "uniformer": (_uniformer_setup, _uniformer_forward, 4),
    "mvit": (_mvit_setup, _mvit_forward, 0),  # the model's number of stages
    "vit": (_vit_setup, _vit_forward, 4),
}


class FeatureMixin:
    """Mixed into a model's class by :func:`as_backbone`: ``forward`` returns the selected maps."""

    is_backbone = True
    feature_info: FeatureInfo
    out_indices: tuple[int, ...]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:  # type: ignore[override]
        return _FAMILIES[self.family][1](self, x)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:  # type: ignore[override]
        return self.forward(x)


_CLASSES: dict[type, type] = {}


def _backbone_class(cls: type) -> type:
    if cls not in _CLASSES:
        name = f"{cls.__name__}Backbone"
        new = type(name, (FeatureMixin, cls), {"__module__": __name__, "__qualname__": name})
        globals()[name] = new  # importable by name (pickle, repr)
        _CLASSES[cls] = new
    return _CLASSES[cls]


def num_outputs(model: VitkitModel) -> int:
    """How many feature levels ``model``'s backbone view offers."""
    n = _FAMILIES[model.family][2]
    return n or len(model.stage_ends)


def as_backbone(model: VitkitModel, out_indices: int | Sequence[int] | None = None, *,
                pyramid_channels: int = 256) -> VitkitModel:
    """Turn ``model`` (a vitkit classifier) into its backbone view, in place, and return it.

    ``out_indices``: which levels (default all; an int k = the last k; negatives count from the end).
    ``pyramid_channels``: width of ViT's simple feature pyramid.
    """
    if getattr(model, "is_backbone", False):
        raise ValueError("model is already a backbone")
    family = getattr(model, "family", None)
    if family not in _FAMILIES:
        raise ValueError(f"no backbone view for family {family!r}; known: {sorted(_FAMILIES)}")
    idx = select_indices(num_outputs(model), out_indices)
    device = next(model.parameters()).device
    setup = _FAMILIES[family][0]
    info = setup(model, idx, pyramid_channels=pyramid_channels)
    model.__class__ = _backbone_class(type(model))
    model.feature_info = info
    model.out_indices = tuple(idx)
    model.num_classes = 0
    return model.to(device)


__all__ = ["FeatureInfo", "as_backbone", "num_outputs", "simple_pyramid_level"]
