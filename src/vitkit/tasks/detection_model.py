"""Mask R-CNN and Faster R-CNN on any vitkit backbone, built from torchvision's detection models.

``build_detector("swin_tiny_patch4_window7_224", num_classes=80)`` puts the backbone view of a registered model
(:mod:`vitkit.models.backbone`, channels and strides from ``feature_info``) under torchvision's
``FeaturePyramidNetwork`` (256 channels, a fifth level by max-pooling the last, as mmdet's ``num_outs=5`` FPN and
detectron2's ``LastLevelMaxPool``) and hands it to ``torchvision.models.detection.MaskRCNN`` /
``FasterRCNN`` with the settings of the official Swin / UniFormer Mask R-CNN configs (mmdet 2.x,
``mask_rcnn_swin_fpn.py``; dense-facts §2):

- anchors: one scale of 8 strides per level (32, 64, 128, 256, 512 pixels), ratios 0.5 / 1 / 2;
- RPN: IoU 0.7 / 0.3, 256 anchors sampled per image at 0.5 positive; 2000 / 1000 proposals before / after NMS
  0.7 in training, 1000 / 1000 in testing;
- RoI heads: RoIAlign 7 (boxes) and 14 (masks) on P2-P5, two 1024-wide FC layers, 512 RoIs per image at 0.25
  positive, four 3x3 convolutions and a 2x deconvolution for 28x28 masks; at test a score threshold of 0.05,
  NMS 0.5 and 100 detections per image.

Images are normalised with the backbone's mean / std and resized by torchvision's ``GeneralizedRCNNTransform``:
``min_size`` a tuple of short sides (one is drawn per batch in training: the papers' multi-scale training),
``max_size`` the long-side cap, sizes padded to a multiple of 32.

Differences from mmdet that remain (torchvision's implementation): RoIAlign uses ``sampling_ratio=2`` and
``aligned=False`` (mmdet: 0 and True) and base anchors are rounded to whole pixels.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import torch
import torch.nn as nn
from torchvision.models.detection import FasterRCNN, MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from vitkit.registry import create_model

FPN_CHANNELS = 256
MULTI_SCALE_TRAIN = tuple(range(480, 801, 32))  # the papers' short sides (mmdet "mstrain_480-800")


class BackboneFPN(nn.Module):
    """A vitkit backbone view (``body``) followed by an FPN; ``out_channels`` as torchvision's detectors expect."""

    def __init__(self, body: nn.Module, out_channels: int = FPN_CHANNELS, norm: str | None = None) -> None:
        super().__init__()
        if getattr(body, "feature_info", None) is None:
            raise TypeError("BackboneFPN needs a backbone view (create_model(..., features_only=True))")
        reductions = body.feature_info.reduction()
        if any(b != 2 * a for a, b in zip(reductions, reductions[1:])):
            raise ValueError(f"the FPN needs levels at successive 2x strides; the backbone gives {reductions}")
        self.body = body
        norm_layer = _norm_layer(norm)
        self.fpn = FeaturePyramidNetwork(body.feature_info.channels(), out_channels,
                                         extra_blocks=LastLevelMaxPool(), norm_layer=norm_layer)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        maps = self.body(x)
        return self.fpn(OrderedDict((str(i), m) for i, m in enumerate(maps)))


def _norm_layer(norm: str | None):
    if norm in (None, "none"):
        return None
    if norm == "gn":
        return lambda ch: nn.GroupNorm(32, ch)
    raise ValueError(f"fpn norm must be 'none' or 'gn', got {norm!r}")


def anchor_generator(num_levels: int = 5, base_stride: int = 4, scale: int = 8) -> AnchorGenerator:
    """mmdet's ``AnchorGenerator(scales=[8], ratios=[0.5, 1, 2], strides=[4, 8, 16, 32, 64])``."""
    sizes = tuple((scale * base_stride * 2 ** i,) for i in range(num_levels))
    return AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * num_levels)


def build_detector(backbone: str, num_classes: int, *, masks: bool = True,
                   min_size: int | Sequence[int] = 800, max_size: int = 1333, fpn_norm: str | None = None,
                   box_head_dim: int = 1024, fpn_channels: int = FPN_CHANNELS, rois_per_image: int = 512,
                   mask_head_dim: int = 256, weights: str | None = None, strict: bool = True,
                   **overrides) -> nn.Module:
    """Mask R-CNN (``masks=True``) or Faster R-CNN on the backbone view of the registered model ``backbone``.

    ``num_classes`` counts object classes, without the background (torchvision adds it at index 0).
    ``box_head_dim`` (1024), ``fpn_channels`` (256), ``rois_per_image`` (512 sampled RoIs per image in training)
    and ``mask_head_dim`` (256) default to the official configs; smaller values make CPU demos fast.
    ``weights`` initialises the backbone from a classification checkpoint in any layout vitkit reads;
    ``overrides`` go to the backbone's config (``drop_path_rate=0.2``, ``windows=True`` ...).
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1 (object classes, without background), got {num_classes}")
    body = create_model(backbone, weights=weights, strict=strict, features_only=True, **overrides)
    if body.feature_info[0].get("temporal_reduction") is not None:
        raise ValueError(f"{backbone} is a video model; detection takes an image backbone")
    fpn = BackboneFPN(body, fpn_channels, norm=fpn_norm)
    levels = len(body.feature_info)
    mean, std = _normalisation(body)
    names = [str(i) for i in range(levels)]
    kwargs = dict(
        min_size=tuple(min_size) if isinstance(min_size, Sequence) else min_size, max_size=max_size,
        image_mean=list(mean), image_std=list(std),
        rpn_anchor_generator=anchor_generator(levels + 1, body.feature_info.reduction(0)),
        rpn_pre_nms_top_n_train=2000, rpn_pre_nms_top_n_test=1000,
        rpn_post_nms_top_n_train=1000, rpn_post_nms_top_n_test=1000, rpn_nms_thresh=0.7,
        rpn_fg_iou_thresh=0.7, rpn_bg_iou_thresh=0.3, rpn_batch_size_per_image=256, rpn_positive_fraction=0.5,
        box_roi_pool=MultiScaleRoIAlign(names, 7, 2),
        box_head=TwoMLPHead(fpn.out_channels * 7 * 7, box_head_dim),
        box_predictor=FastRCNNPredictor(box_head_dim, num_classes + 1),
        box_batch_size_per_image=rois_per_image, box_positive_fraction=0.25,
        box_score_thresh=0.05, box_nms_thresh=0.5, box_detections_per_img=100,
    )
    if masks:
        detector = MaskRCNN(fpn, None, mask_roi_pool=MultiScaleRoIAlign(names, 14, 2),
                            mask_head=MaskRCNNHeads(fpn_channels, [mask_head_dim] * 4, 1),
                            mask_predictor=MaskRCNNPredictor(mask_head_dim, mask_head_dim, num_classes + 1),
                            **kwargs)
    else:
        detector = FasterRCNN(fpn, None, **kwargs)
    detector.backbone_name = backbone
    detector.num_object_classes = num_classes
    return detector


def _normalisation(model: nn.Module) -> tuple[Sequence[float], Sequence[float]]:
    spec = getattr(model, "input_spec", None) or getattr(model, "info", None)
    return tuple(spec.mean), tuple(spec.std)


def load_detector_weights(detector: nn.Module, source, strict: bool = True):
    """An mmdet Mask R-CNN checkpoint (Swin / UniFormer detection releases) into a :func:`build_detector` model:
    ``backbone.*`` through the backbone family's converters, neck / RPN / RoI heads renamed
    (:mod:`vitkit.checkpoints.mmdet_heads`); the report lists what did not map (Cascade stages, other head
    layouts) as unexpected. Returns the report; raises when ``strict`` and anything does not match."""
    from vitkit.checkpoints.dense import load_dense_weights
    from vitkit.checkpoints.mmdet_heads import convert_mmdet_heads

    return load_dense_weights(detector, source, backbone=detector.backbone.body, prefix="backbone.body.",
                              convert_rest=convert_mmdet_heads, strict=strict, what="detector")
