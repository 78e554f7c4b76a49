"""Inflation: image (2-D) weights into the video (3-D) model of the same family, as each paper does it.

* Kernels (patch embeddings, pooling and local convolutions, UniFormer's DPE): a 2-D kernel (O, I, kh, kw) is
  repeated over the video kernel's depth t and divided by t (``"average"``: I3D, the Video Swin official
  ``inflate_weights``, the UniFormer video code), or put in the central temporal slice with zeros around it
  (``"center"``). Image checkpoints that store 3-D kernels of depth 1 (PySlowFast) are inflated the same way.
* Swin relative-position-bias tables: the 2-D table ((2Wh-1)(2Ww-1), heads), resized bicubically when the spatial
  window differs, is repeated over the 2Wt-1 temporal offsets (Video Swin's ``inflate_weights``).
* Absolute position embeddings (ViT, MViT, timm/PySlowFast names): a joint video embedding is the image one
  tiled over time (prefix tokens kept); separate space/time embeddings take the image's spatial part and class
  position, and start the temporal part at zero. MViTv2's temporal relative table ``rel_pos_t`` starts at zero.
* A classifier of another shape is left out (the report says so) and the caller re-initialises it.

On a clip of identical frames the inflated model equals the image model on that frame when every temporal
kernel only ever sees identical frames (always with ``"center"``; with ``"average"`` when no temporal padding
reaches a kernel: kernel depth = stride, as Video Swin's 2x4x4 patches and ViT tubelets) and no class token
attends beside the repeated frame tokens (the T copies of each patch token outweigh the single class token, so
ViT and MViT with a class token differ slightly; Swin, UniFormer and average-pooled ViT/MViTv2 are exact).
:attr:`InflationReport.exact_on_static_clips` states which case a model is in.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

import torch
import torch.nn as nn

from vitkit.layers import resample_pos_embed, resample_rel_pos_table

from .base import StateDict

METHODS = ("average", "center")
_POS_SEP = ("pos_embed_spatial", "pos_embed_temporal", "pos_embed_class")


def inflate_weight(weight_2d: torch.Tensor, time_dim: int, center: bool = False) -> torch.Tensor:
    """(O, I, *k) -> (O, I, time_dim, *k): repeated and divided by ``time_dim``, or centred with zeros around."""
    if center:
        out = weight_2d.new_zeros(weight_2d.shape[:2] + (time_dim,) + weight_2d.shape[2:])
        out[:, :, time_dim // 2] = weight_2d
        return out
    return weight_2d.unsqueeze(2).repeat(1, 1, time_dim, *([1] * (weight_2d.ndim - 2))) / time_dim


@dataclass
class InflationReport:
    """What inflation did to each tensor, by kind, and whether static clips reproduce the image model."""

    method: str
    kernels: list[str] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)
    positions: list[str] = field(default_factory=list)
    zero_init: list[str] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)
    padded_kernels: list[str] = field(default_factory=list)  # temporal kernels that see zero padding
    class_token: bool = False  # a class token attends with the (repeated) frame tokens

    @property
    def exact_on_static_clips(self) -> bool:
        return not self.class_token and (self.method == "center" or not self.padded_kernels)

    def describe(self) -> str:
        lines = [f"inflation ({self.method}): {len(self.kernels)} kernels over time"]
        if self.tables:
            lines.append(f"relative-position tables repeated over time offsets: {len(self.tables)}")
        if self.positions:
            lines.append(f"position embeddings: {', '.join(self.positions)}")
        if self.zero_init:
            lines.append(f"started at zero: {', '.join(self.zero_init)}")
        if self.left_out:
            lines.append(f"left out (another shape): {', '.join(self.left_out)}")
        why = []
        if self.class_token:
            why.append("a class token attends beside the repeated frame tokens")
        if self.method == "average" and self.padded_kernels:
            why.append(f"temporal zero padding in {len(self.padded_kernels)} kernels (method='center' avoids it)")
        lines.append("a clip of identical frames gives the image model's output: "
                     + ("yes" if self.exact_on_static_clips else f"no ({'; '.join(why)})"))
        return "\n".join(lines)


def _temporal_padding(model: nn.Module) -> dict[str, bool]:
    """For each 3-D convolution weight: whether zero padding in time reaches its kernel."""
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv3d):
            pad = m.padding[0] if isinstance(m.padding, tuple) else (m.kernel_size[0] - 1 if m.padding == "same" else 0)
            out[f"{name}.weight"] = m.kernel_size[0] > 1 and pad > 0
    return out


def _video_grid(model: nn.Module) -> tuple[int, ...]:
    grid = getattr(model, "grid", None)
    if grid is None or len(grid) != 3:
        raise ValueError(f"{type(model).__name__} has no (T, H, W) token grid to inflate position embeddings to")
    return tuple(grid)


def _positions(sd: StateDict, own: Mapping[str, torch.Tensor], model: nn.Module, report: InflationReport) -> None:
    pe = sd.get("pos_embed")
    if pe is None or pe.ndim != 3:
        return
    prefix = int(getattr(model, "num_prefix_tokens", 1 if "cls_token" in own else 0))
    t, h, w = _video_grid(model)
    if "pos_embed" in own and own["pos_embed"].shape != pe.shape:  # joint: tile the spatial part over time
        spatial = resample_pos_embed(pe, (h, w), None, prefix)
        grid = spatial[:, prefix:]
        sd["pos_embed"] = torch.cat([spatial[:, :prefix], grid.repeat(1, t, 1)], dim=1)
        report.positions.append(f"pos_embed tiled over {t} time steps")
    elif "pos_embed_spatial" in own:  # separate space / time / class
        spatial = resample_pos_embed(pe, (h, w), None, prefix)
        del sd["pos_embed"]
        sd["pos_embed_spatial"] = spatial[:, prefix:].contiguous()
        if "pos_embed_class" in own:
            sd["pos_embed_class"] = spatial[:, :prefix].contiguous()
        sd["pos_embed_temporal"] = torch.zeros_like(own["pos_embed_temporal"])
        report.positions.append("pos_embed -> pos_embed_spatial (+ class); pos_embed_temporal = 0")


def _bias_table(image: torch.Tensor, module: nn.Module) -> torch.Tensor:
    """A 2-D Swin bias table -> the 3-D table of ``module`` (its ``table_window`` = (Wt, Wh, Ww))."""
    wt, wh, ww = module.table_window
    side = math.isqrt(image.shape[0])
    if side * side != image.shape[0] or side % 2 == 0:
        raise ValueError(f"a 2-D relative position bias table cannot have {image.shape[0]} rows")
    old = ((side + 1) // 2,) * 2
    spatial = resample_rel_pos_table(image, old, (wh, ww))
    return spatial.repeat(2 * wt - 1, 1)


def inflate_state_dict(sd: Mapping[str, torch.Tensor], model: nn.Module, method: str = "average"
                       ) -> tuple[StateDict, InflationReport]:
    """Image weights in vitkit's keys (already converted) -> the video ``model``'s shapes, and the report.

    Tensors that need no inflation pass through; mismatches that inflation cannot explain are kept for the
    loader's shape check to report, except classifiers of another class count, which are left out.
    """
    if method not in METHODS:
        raise ValueError(f"inflation method must be one of {METHODS}, got {method!r}")
    if getattr(model, "spatial_rank", 2) != 3:
        raise ValueError(f"inflation needs a video model (B, C, T, H, W); {type(model).__name__} is an image model")
    own = model.state_dict()
    report = InflationReport(method, class_token=int(getattr(model, "num_prefix_tokens", 0)) > 0)
    out: StateDict = {k: v for k, v in sd.items() if k.rsplit(".", 1)[-1] not in ("relative_position_index", "attn_mask")}
    _positions(out, own, model, report)
    padding = _temporal_padding(model)
    tables = {f"{n}.relative_position_bias_table": m for n, m in model.named_modules()
              if hasattr(m, "table_window") and len(getattr(m, "table_window")) == 3}
    for k in list(out):
        v, target = out[k], own.get(k)
        if target is None or target.shape == v.shape:
            continue
        if k in tables and v.ndim == 2 and v.shape[1] == target.shape[1]:
            out[k] = _bias_table(v, tables[k])
            report.tables.append(k)
        elif target.ndim >= 3 and target.ndim == v.ndim + 1 and target.shape[:2] == v.shape[:2] \
                and target.shape[3:] == v.shape[2:]:
            out[k] = inflate_weight(v, target.shape[2], method == "center")
            report.kernels.append(k)
        elif target.ndim == v.ndim and v.ndim == 5 and v.shape[2] == 1 and target.shape[:2] == v.shape[:2] \
                and target.shape[3:] == v.shape[3:]:  # PySlowFast image checkpoints: 3-D kernels of depth 1
            out[k] = inflate_weight(v[:, :, 0], target.shape[2], method == "center")
            report.kernels.append(k)
        elif k.startswith(("head.", "aux_head.")):
            del out[k]
            report.left_out.append(f"{k} {tuple(v.shape)} -> {tuple(target.shape)}")
        else:
            continue
        if k in padding and padding[k] and k in report.kernels:
            report.padded_kernels.append(k)
    for k, target in own.items():
        if k not in out and k.endswith("rel_pos_t"):
            out[k] = torch.zeros_like(target)
            report.zero_init.append(k)
    return out, report


def inflate_into(model: nn.Module, source, method: str = "average"):
    """Load image weights (a file in any supported layout, or a state dict) into the video ``model``.

    Returns ``(load_report, inflation_report)``; everything but a classifier of another shape must fit (else
    :class:`CheckpointError`), and a left-out classifier is re-initialised (zeros, as ``reset_classifier``).
    """
    from .base import convert_state_dict, read_state_dict
    from .heads import load_except_classifier

    sd, layout = convert_state_dict(read_state_dict(source), model)
    sd, inflation = inflate_state_dict(sd, model, method)
    report = load_except_classifier(model, sd, f"{layout} (inflated 2-D -> 3-D, {method})",
                                    "the image weights do not fit the video model")
    report.resampled += [f"{k} (inflated)" for k in inflation.kernels + inflation.tables]
    return report, inflation
