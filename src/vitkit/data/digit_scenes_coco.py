"""``digit-scenes`` written as COCO files, so the detection and pose tasks read it as they read COCO.

``export_coco(split, kind)`` writes once, under ``$VITKIT_HOME/data/digit-scenes-<size>-v<VERSION>/``, the split's
scenes as PNG images and one annotation file: ``instances`` (10 digit categories, boxes and instance masks as RLE, for
detection and instance segmentation) or ``keypoints`` (one ``digit`` category whose 5 keypoints are the stroke's
top, bottom, left, right and centre, for top-down pose). The folder is built beside its final place and renamed
into it, so concurrent processes and interrupted runs never see half a dataset. Returns (annotation file, image
folder).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from vitkit.weights.download import vitkit_home

from .digit_scenes import CLASSES, KEYPOINTS, SIZES, make_scene

KINDS = ("instances", "keypoints")
VERSION = 2  # of the scenes' annotations (2: extreme-point keypoints at the median of tied pixels); a new one rewrites


def _rle(mask: np.ndarray) -> dict:
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def _write_split(folder: Path, split: str, size: int) -> None:
    images, inst, kps = [], [], []
    (folder / "images").mkdir(parents=True)
    for i in range(SIZES[split]):
        s = make_scene(split, i, size)
        name = f"{split}_{i:05d}.png"
        Image.fromarray(s.image.permute(1, 2, 0).numpy()).save(folder / "images" / name)
        images.append({"id": i + 1, "file_name": name, "width": size, "height": size})
        for k in range(len(s.labels)):
            x1, y1, x2, y2 = s.boxes[k].tolist()
            m = s.instance_masks[k].numpy()
            base = {"id": len(inst) + 1, "image_id": i + 1, "iscrowd": 0, "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": float(m.sum())}
            inst.append(dict(base, category_id=int(s.labels[k]), segmentation=_rle(m)))
            pts = s.keypoints[k]
            flat = [v for x, y, vis in pts.tolist() for v in (x + 0.5, y + 0.5, 2 if vis else 1)]
            kps.append(dict(base, category_id=1, keypoints=flat, num_keypoints=len(pts)))
    digit_cats = [{"id": c, "name": name} for c, name in enumerate(CLASSES) if c > 0]
    (folder / "instances.json").write_text(json.dumps(
        {"images": images, "annotations": inst, "categories": digit_cats}))
    (folder / "keypoints.json").write_text(json.dumps(
        {"images": images, "annotations": kps,
         "categories": [{"id": 1, "name": "digit", "keypoints": KEYPOINTS, "skeleton": []}]}))


def export_coco(split: str, kind: str = "instances", size: int = 64) -> tuple[str, str]:
    """(annotation file, image folder) of ``split`` of digit-scenes as COCO files (written on first use)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if split not in SIZES:
        raise ValueError(f"digit-scenes split must be one of {sorted(SIZES)}, got {split!r}")
    final = vitkit_home() / "data" / f"digit-scenes-{size}-v{VERSION}" / split
    if not (final / f"{kind}.json").is_file():
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{split}-", dir=final.parent))
        try:
            _write_split(tmp, split, size)
            try:
                os.rename(tmp, final)
            except OSError:  # another process finished first
                if not (final / f"{kind}.json").is_file():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return str(final / f"{kind}.json"), str(final / "images")
