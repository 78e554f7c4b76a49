"""COCO-format detection / instance-segmentation data, read with pycocotools.

``CocoDetection(annotation_json, image_dir, train=True)`` yields ``(image, target)``: the image as a float
(3, H, W) tensor in [0, 1] and torchvision's detection target (``boxes`` x1y1x2y2 in pixels, ``labels`` 1..K,
``masks`` (N, H, W) uint8 when ``masks=True``, ``image_id``). Category ids map to contiguous labels 1..K in
sorted id order (0 is the background), as torchvision's and detectron2's COCO readers do; ``class_names`` lists
them.

What the papers' readers do with awkward annotations, and what this reader does, counted in ``problems``
(reported once, never a crash):

- crowd regions (``iscrowd=1``) are left out of the training targets (the evaluator ignores them itself);
- boxes of zero or negative area after clipping to the image are dropped;
- polygons reaching outside the image are clipped with the box (pycocotools rasterises inside the image);
- annotations with unknown category ids are dropped;
- images without usable annotations are left out of training (kept for evaluation), as mmdet's
  ``filter_empty_gt`` does; an image that cannot be read is replaced by another one and reported.

Training augmentation: horizontal flip (boxes and masks with it); multi-scale resizing is the detector's (the
short side drawn from ``min_size``, see :mod:`vitkit.tasks.detection_model`); ``large_scale_jitter`` adds
torchvision's ``ScaleJitter`` (0.1-2.0 of a square target) and a crop, as ViTDet's LSJ.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms import v2

log = logging.getLogger("vitkit.data")


def contiguous_categories(categories: list[dict]) -> tuple[list[int], list[str]]:
    """COCO ``categories`` as (ids, names) in sorted id order: label ``k`` (1..K) is ``ids[k - 1]``."""
    cats = sorted(categories, key=lambda c: c["id"])
    return [int(c["id"]) for c in cats], [str(c["name"]) for c in cats]


def read_categories(annotation_json: str) -> list[dict]:
    """The ``categories`` list of a COCO annotation file (raises naming the file when it has none)."""
    import json

    with open(annotation_json) as f:
        cats = json.load(f).get("categories")
    if not cats:
        raise ValueError(f"{annotation_json}: no 'categories' list (expected a COCO annotation file)")
    return cats


def _quiet_coco(path: str):
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(path)


class CocoDetection(torch.utils.data.Dataset):
    """A COCO-format JSON plus its image folder (see the module docstring)."""

    def __init__(self, annotation_json: str, image_dir: str, *, train: bool, masks: bool = True,
                 flip: float = 0.5, large_scale_jitter: int | None = None) -> None:
        if not os.path.isfile(annotation_json):
            raise FileNotFoundError(f"{annotation_json}: COCO annotation file not found")
        if not os.path.isdir(image_dir):
            raise FileNotFoundError(f"{image_dir}: image folder not found")
        self.coco = _quiet_coco(annotation_json)
        self.image_dir, self.train, self.masks = image_dir, train, masks
        self.cat_ids, self.class_names = contiguous_categories(self.coco.dataset.get("categories", []))
        self.label_of = {c: i + 1 for i, c in enumerate(self.cat_ids)}
        self.problems: dict[str, int] = {}
        ids = sorted(self.coco.getImgIds())
        self.targets = {i: self._target(i) for i in ids}
        self.ids = [i for i in ids if len(self.targets[i]["boxes"])] if train else ids
        skipped = len(ids) - len(self.ids)
        if skipped:
            self._count("images without usable annotations (left out of training)", skipped)
        summary = "; ".join(f"{n} {what}" for what, n in sorted(self.problems.items()))
        if not self.ids:
            raise ValueError(f"{annotation_json}: no image with usable annotations (boxes of known categories and "
                             f"non-zero area) to train on" + (f"; {summary}" if summary else ""))
        if self.problems:
            log.warning("%s: %s", annotation_json, summary)
        self.unreadable: dict[str, str] = {}
        steps: list[Any] = []
        if train and flip > 0:
            steps.append(v2.RandomHorizontalFlip(flip))
        if train and large_scale_jitter:
            size = (large_scale_jitter, large_scale_jitter)
            steps += [v2.ScaleJitter(size, (0.1, 2.0)), v2.RandomCrop(size, pad_if_needed=True),
                      v2.SanitizeBoundingBoxes()]
        self.augment = v2.Compose(steps) if steps else None

    @property
    def num_classes(self) -> int:
        return len(self.cat_ids)

    def _count(self, what: str, n: int = 1) -> None:
        self.problems[what] = self.problems.get(what, 0) + n

    def _target(self, image_id: int) -> dict[str, Any]:
        """Boxes, labels and (lazily) the annotations of one image, with the bad ones counted and dropped."""
        info = self.coco.loadImgs(image_id)[0]
        w, h = info["width"], info["height"]
        kept, boxes, labels = [], [], []
        for ann in self.coco.loadAnns(self.coco.getAnnIds(imgIds=image_id)):
            if ann.get("iscrowd", 0):
                continue
            if ann.get("category_id") not in self.label_of:
                self._count("annotations with unknown category ids")
                continue
            x, y, bw, bh = ann["bbox"]
            x1, y1, x2, y2 = max(0.0, x), max(0.0, y), min(float(w), x + bw), min(float(h), y + bh)
            if x2 - x1 < 1 or y2 - y1 < 1:
                self._count("boxes of zero area (after clipping to the image)")
                continue
            if (x, y, x + bw, y + bh) != (x1, y1, x2, y2):
                self._count("annotations reaching outside the image (clipped)")
            kept.append(ann)
            boxes.append([x1, y1, x2, y2])
            labels.append(self.label_of[ann["category_id"]])
        return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                "labels": torch.tensor(labels, dtype=torch.int64), "anns": kept, "size": (h, w)}

    def __len__(self) -> int:
        return len(self.ids)

    def _load(self, image_id: int) -> torch.Tensor:
        info = self.coco.loadImgs(image_id)[0]
        path = os.path.join(self.image_dir, info["file_name"])
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"))
        if arr.shape[:2] != (info["height"], info["width"]):
            raise ValueError(f"is {arr.shape[1]}x{arr.shape[0]}, the annotations say "
                             f"{info['width']}x{info['height']}")
        return torch.from_numpy(arr.copy()).permute(2, 0, 1)

    def __getitem__(self, i: int):
        for attempt in range(len(self.ids)):
            image_id = self.ids[(i + attempt) % len(self.ids)]
            try:
                image = self._load(image_id)
                break
            except (OSError, ValueError) as e:
                name = self.coco.loadImgs(image_id)[0]["file_name"]
                if name not in self.unreadable:
                    self.unreadable[name] = str(e)
                    log.warning("%s: unreadable image (%s); replaced by another", name, e)
        else:
            raise RuntimeError(f"{self.image_dir}: no readable image found")
        t = self.targets[image_id]
        target: dict[str, Any] = {"boxes": t["boxes"].clone(), "labels": t["labels"].clone(),
                                  "image_id": image_id}
        if self.masks:
            target["masks"] = self._masks(t)
        return self._augmented(image, target)

    def _masks(self, t: dict) -> torch.Tensor:
        h, w = t["size"]
        if not t["anns"]:
            return torch.zeros((0, h, w), dtype=torch.uint8)
        return torch.from_numpy(np.stack([self.coco.annToMask(a) for a in t["anns"]])).to(torch.uint8)

    def _augmented(self, image: torch.Tensor, target: dict):
        if self.augment is None:
            return image.float() / 255, target
        h, w = image.shape[-2:]
        sample = {"image": tv_tensors.Image(image),
                  "boxes": tv_tensors.BoundingBoxes(target["boxes"], format="XYXY", canvas_size=(h, w)),
                  "labels": target["labels"]}
        if "masks" in target:
            sample["masks"] = tv_tensors.Mask(target["masks"])
        out = self.augment(sample)
        target = dict(target, boxes=out["boxes"].as_subclass(torch.Tensor), labels=out["labels"])
        if "masks" in out:
            target["masks"] = out["masks"].as_subclass(torch.Tensor)
        return out["image"].as_subclass(torch.Tensor).float() / 255, target


def collate_detection(batch):
    """Images of mixed sizes stay a list (the detector pads them); targets a list of dicts."""
    images, targets = zip(*batch)
    return list(images), list(targets)
