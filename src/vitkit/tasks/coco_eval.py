"""COCO box / mask AP with the official evaluator (pycocotools ``COCOeval``), exact under DDP.

Each rank turns its detections into COCO result records (boxes as x, y, w, h; masks as RLE, thresholded at 0.5
as torchvision's reference scripts and mmdet do), grouped by sample (the image for detection, the person crop for
top-down pose); the groups of all ranks are gathered and the evaluator sees exactly the records one process would
have produced, in the same order, so the AP is the same whatever the process count (a sample a padding sampler
repeats is kept once, none is lost).
"""
from __future__ import annotations

import contextlib
import io
from typing import Iterable, Sequence

import numpy as np
import torch

from vitkit.engine.distributed import all_gather_objects

# COCOeval's ``stats`` order for boxes and masks, under the names mmdet and detectron2 print.
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def detection_records(image_id: int, output: dict[str, torch.Tensor], cat_ids: Sequence[int],
                      masks: bool) -> list[dict]:
    """COCO result records of one image's detections (labels 1..K map back to ``cat_ids``)."""
    from pycocotools import mask as mask_utils

    boxes = output["boxes"].detach().float().cpu()
    scores = output["scores"].detach().float().cpu().tolist()
    labels = output["labels"].detach().cpu().tolist()
    xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1).tolist()
    rles = None
    if masks and "masks" in output:
        binary = (output["masks"].detach().cpu()[:, 0] > 0.5).numpy().astype(np.uint8)
        rles = [mask_utils.encode(np.asfortranarray(m)) for m in binary]
        for r in rles:
            r["counts"] = r["counts"].decode("ascii")
    records = []
    for k, (box, score, label) in enumerate(zip(xywh, scores, labels)):
        rec = {"image_id": int(image_id), "category_id": int(cat_ids[label - 1]), "bbox": [round(v, 3) for v in box],
               "score": float(score)}
        if rles is not None:
            rec["segmentation"] = rles[k]
        records.append(rec)
    return records


def gather_records(groups: dict[int, list[dict]]) -> tuple[list[dict], list[int]]:
    """All ranks' records: ``groups`` maps each of this rank's samples (a key unique over the dataset: image id,
    sample index) to its records; returns the records of every sample once, in key order (the order one process
    produces), and the keys."""
    merged: dict[int, list[dict]] = {}
    for part in all_gather_objects(groups):
        for key, recs in part.items():
            merged.setdefault(key, recs)
    keys = sorted(merged)
    return [r for k in keys for r in merged[k]], keys


def coco_ap(coco_gt, records: list[dict], iou_type: str, image_ids: Iterable[int] | None = None,
            kpt_oks_sigmas: Sequence[float] | None = None) -> dict[str, float]:
    """COCOeval's summary for ``iou_type`` ('bbox', 'segm' or 'keypoints') as percentages; ``kpt_oks_sigmas``
    replaces COCO's 17 per-keypoint sigmas for other skeletons."""
    from pycocotools.cocoeval import COCOeval

    names = STAT_NAMES if iou_type != "keypoints" else ("AP", "AP50", "AP75", "APm", "APl")
    if not records:
        return {name: 0.0 for name in names}
    with contextlib.redirect_stdout(io.StringIO()):
        dt = coco_gt.loadRes(records)
        ev = COCOeval(coco_gt, dt, iou_type)
        if image_ids is not None:
            ev.params.imgIds = sorted(image_ids)
        if kpt_oks_sigmas is not None:
            ev.params.kpt_oks_sigmas = np.asarray(kpt_oks_sigmas, dtype=np.float64)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {name: float(v) * 100 for name, v in zip(names, ev.stats)}


def keypoint_records(heatmaps: torch.Tensor, to_image: torch.Tensor, image_ids: torch.Tensor, box_scores: torch.Tensor,
                     heatmap_stride: int, category_id: int, joint_threshold: float = 0.2) -> list[dict]:
    """COCO keypoint result records from decoded heatmaps (mmpose's top-down rescoring: the box score times the
    mean score of the joints above ``joint_threshold``)."""
    from .pose_model import decode_heatmaps

    joints, scores = decode_heatmaps(heatmaps)
    crop = joints * heatmap_stride
    image_xy = crop @ to_image[:, :, :2].transpose(1, 2).float() + to_image[:, None, :, 2].float()
    out = []
    for xy, sc, iid, bs in zip(image_xy.tolist(), scores.tolist(), image_ids.tolist(), box_scores.tolist()):
        good = [v for v in sc if v > joint_threshold]
        flat = [c for (x, y), v in zip(xy, sc) for c in (x, y, v)]
        out.append({"image_id": int(iid), "category_id": int(category_id), "keypoints": flat,
                    "score": float(bs) * (sum(good) / len(good) if good else 0.0)})
    return out
