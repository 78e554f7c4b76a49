"""The segmentor: backbone (:mod:`vitkit.models.backbone`) + optional neck + decode head (+ auxiliary head),
mmseg's ``EncoderDecoder`` with its module names (``backbone``, ``neck``, ``decode_head``, ``auxiliary_head``).

In training mode ``forward`` returns ``{"out": logits, "aux": logits}`` at the heads' resolution (stride 4 /
the auxiliary map's), and the loss upsamples them to the label (as mmseg). In eval mode ``forward`` returns logits
at the input's resolution. :meth:`Segmentor.inference` runs the test protocols: whole image or sliding window
(``crop`` and ``stride``; overlapping logits averaged, windows clipped to the image as mmseg's ``slide_inference``),
at several scales and with horizontal flips, the softmax scores averaged at the input's size.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .heads import FCNHead, FPN, FPNHead, UPerHead, resize

HEADS = ("upernet", "fpn")
#: official decode-head widths: UperNet 512 (Swin / UniFormer ADE20K), Semantic FPN 128 over a 256-wide FPN
DEFAULT_CHANNELS = {"upernet": 512, "fpn": 128}


@dataclass(frozen=True)
class EvalProtocol:
    """How test images are segmented: ``mode`` "whole" or "slide" (``crop`` x ``crop`` windows every ``stride``),
    at ``scales`` (1.0 = the image as given), with horizontal ``flip``."""

    mode: str = "whole"
    crop: int | None = None
    stride: int | None = None
    scales: tuple[float, ...] = (1.0,)
    flip: bool = False


class Segmentor(nn.Module):
    def __init__(self, backbone: nn.Module, decode_head: nn.Module, auxiliary_head: nn.Module | None = None,
                 neck: nn.Module | None = None, aux_index: int = 2) -> None:
        super().__init__()
        self.backbone = backbone
        if neck is not None:
            self.neck = neck
        else:
            self.neck = None
        self.decode_head = decode_head
        self.auxiliary_head = auxiliary_head
        self.aux_index = aux_index
        self.num_classes = decode_head.num_classes
        self.family = "segmentor"
        self.input_spec = getattr(backbone, "input_spec", None)
        self.model_name = getattr(backbone, "model_name", "")

    # -- forward -----------------------------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        feats = self.backbone(x)
        aux_in = feats
        if self.neck is not None:
            feats = self.neck(feats)
        return self.decode_head(feats), aux_in

    def forward(self, x: torch.Tensor):
        logits, feats = self.encode(x)
        if self.training:
            out = {"out": logits}
            if self.auxiliary_head is not None:
                out["aux"] = self.auxiliary_head(feats[self.aux_index])
            return out
        return resize(logits, x.shape[-2:])

    # -- test protocols ----------------------------------------------------------------------------------------
    def slide_logits(self, x: torch.Tensor, crop: int, stride: int) -> torch.Tensor:
        """Logits (B, K, H, W) from ``crop`` windows every ``stride`` pixels, averaged where they overlap.

        As mmseg's ``slide_inference``: the window grid is ``ceil((H - crop) / stride) + 1`` per axis, windows
        are shifted back inside the image at the border, and an image smaller than the crop is one window.
        """
        B, _, H, W = x.shape
        rows = max(H - crop + stride - 1, 0) // stride + 1
        cols = max(W - crop + stride - 1, 0) // stride + 1
        out = x.new_zeros(B, self.num_classes, H, W)
        count = x.new_zeros(1, 1, H, W)
        for r in range(rows):
            for c in range(cols):
                y1, x1 = r * stride, c * stride
                y2, x2 = min(y1 + crop, H), min(x1 + crop, W)
                y1, x1 = max(y2 - crop, 0), max(x2 - crop, 0)
                out[:, :, y1:y2, x1:x2] += self(x[:, :, y1:y2, x1:x2])
                count[:, :, y1:y2, x1:x2] += 1
        return out / count

    @torch.no_grad()
    def inference(self, x: torch.Tensor, protocol: EvalProtocol = EvalProtocol(),
                  out_size: Sequence[int] | None = None) -> torch.Tensor:
        """Softmax scores (B, K, *out_size) under ``protocol`` (``out_size``: default the input's size)."""
        if protocol.mode not in ("whole", "slide"):
            raise ValueError(f"test mode must be 'whole' or 'slide', got {protocol.mode!r}")
        if protocol.mode == "slide" and not (protocol.crop and protocol.stride):
            raise ValueError("slide inference needs a crop and a stride (task.test_crop, task.test_stride)")
        was = self.training
        self.eval()
        size = tuple(out_size) if out_size is not None else tuple(x.shape[-2:])
        total = None
        for s in protocol.scales:
            xs = x if s == 1.0 else F.interpolate(
                x, scale_factor=s, mode="bilinear", align_corners=False, recompute_scale_factor=False)
            for flip in ((False, True) if protocol.flip else (False,)):
                xi = xs.flip(-1) if flip else xs
                if protocol.mode == "slide":
                    logits = self.slide_logits(xi, protocol.crop, protocol.stride)
                else:
                    logits = self(xi)
                if flip:
                    logits = logits.flip(-1)
                p = resize(logits.float(), size).softmax(1)
                total = p if total is None else total + p
        self.train(was)
        return total / (len(protocol.scales) * (2 if protocol.flip else 1))

    # -- optimiser hooks (the backbone's, heads on top) ----------------------------------------------------------
    def no_weight_decay(self) -> set[str]:
        return {f"backbone.{n}" for n in self.backbone.no_weight_decay()}

    def layer_id(self, name: str) -> int:
        if name.startswith("backbone."):
            return self.backbone.layer_id(name[len("backbone."):])
        return self.num_layer_ids() - 1

    def num_layer_ids(self) -> int:
        return self.backbone.num_layer_ids()

    def set_grad_checkpointing(self, enable: bool = True, stages=None) -> "Segmentor":
        self.backbone.set_grad_checkpointing(enable, stages)
        return self


def build_segmentor(backbone: nn.Module, num_classes: int, head: str = "upernet", channels: int | None = None,
                    aux: bool = True, aux_channels: int = 256, aux_index: int = 2, neck_channels: int = 256,
                    dropout: float = 0.1, pool_scales: Sequence[int] = (1, 2, 3, 6)) -> Segmentor:
    """A :class:`Segmentor` over a backbone view (``feature_info`` with 4 levels at strides r, 2r, 4r, 8r)."""
    if head not in HEADS:
        raise ValueError(f"segmentation head must be one of {', '.join(HEADS)}, got {head!r}")
    info = backbone.feature_info
    chans, strides = info.channels(), info.reduction()
    width = channels or DEFAULT_CHANNELS[head]
    neck = None
    if head == "upernet":
        decode = UPerHead(chans, width, num_classes, pool_scales, dropout)
    else:
        neck = FPN(chans, neck_channels)
        decode = FPNHead([neck_channels] * len(chans), strides, width, num_classes, dropout)
    auxiliary = None
    if aux:
        if not -len(chans) <= aux_index < len(chans):
            raise ValueError(f"aux_index {aux_index} out of range for {len(chans)} backbone levels")
        auxiliary = FCNHead(chans[aux_index], aux_channels, num_classes, 1, dropout)
    return Segmentor(backbone, decode, auxiliary, neck, aux_index)


def segmentation_loss(output: dict, target: torch.Tensor, ignore_index: int = 255,
                      aux_weight: float = 0.4) -> torch.Tensor:
    """Cross-entropy of the decode logits (upsampled to the label) + ``aux_weight`` x that of the auxiliary head,
    pixels labelled ``ignore_index`` excluded (mean over the valid pixels, as mmseg)."""
    size = target.shape[-2:]
    loss = F.cross_entropy(resize(output["out"].float(), size), target, ignore_index=ignore_index)
    if "aux" in output and aux_weight:
        loss = loss + aux_weight * F.cross_entropy(resize(output["aux"].float(), size), target,
                                                   ignore_index=ignore_index)
    return loss
