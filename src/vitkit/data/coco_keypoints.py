"""Top-down keypoint data: one crop per person box of a COCO-format keypoint file (mmpose's TopDownCocoDataset).

Each item is ``(crop, target)``: ``crop`` a float (3, H, W) tensor in [0, 1] of the box's surroundings (the box
widened to the crop's aspect ratio and by ``padding`` 1.25, as mmpose's ``_xywh2cs``), warped by an affine map;
``target`` holds the Gaussian ``heatmaps`` (K, H/s, W/s), joint ``weights`` (K,), the crop-to-image affine
``to_image`` (2, 3), the ``image_id`` and the box ``score``. Training adds mmpose's augmentation: a flip with
left/right joints swapped, a random scale (1 +- 0.5 sigma, clipped to [0.5, 1.5]) and, with probability 0.6, a
rotation (``rotation`` 40 degrees sigma, clipped to twice that; 0 for none: keypoints defined in image axes, such as a
shape's top-most point, are not carried by a rotation). Boxes come from the ground truth, or from a detection result file
(``person_boxes``: COCO result records, kept above ``box_score`` 0.0) for the papers' test protocol.

Awkward annotations are counted in ``problems`` (reported once, never a crash): people without labelled keypoints
(left out, as mmpose does), with a box of zero area or another keypoint count (left out), annotations of other
categories (left out), labelled keypoints outside the image (not learned); unreadable images are reported and
replaced by another sample.
"""
from __future__ import annotations

import json
import logging
import math
import os
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from .coco import _quiet_coco

log = logging.getLogger("vitkit.data")

# COCO's 17 keypoints: left/right pairs (mmpose flip_pairs); flip_pairs_from_names derives the same from the names.
COCO_FLIP_PAIRS = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))


def flip_pairs_from_names(names: Sequence[str]) -> list[tuple[int, int]]:
    """Pairs of keypoints whose names differ by left/right (``left_eye``/``right_eye``, ``left``/``right``)."""
    index = {n: i for i, n in enumerate(names)}
    pairs = []
    for i, n in enumerate(names):
        if "left" in n:
            j = index.get(n.replace("left", "right"))
            if j is not None:
                pairs.append((i, j))
    return pairs


def box_to_center_scale(box: Sequence[float], aspect: float, padding: float = 1.25) -> tuple[np.ndarray, np.ndarray]:
    """An x, y, w, h box as a centre and a (w, h) extent of the crop's aspect ratio, widened by ``padding``."""
    x, y, w, h = box
    center = np.array([x + w * 0.5, y + h * 0.5], dtype=np.float64)
    if w > aspect * h:
        h = w / aspect
    else:
        w = h * aspect
    return center, np.array([w, h], dtype=np.float64) * padding


def crop_to_image(center: np.ndarray, extent: np.ndarray, rotation: float, out_size: tuple[int, int]) -> np.ndarray:
    """The 2x3 affine map from crop pixels (u, v) to image pixels (x, y): the crop's centre to ``center``, its
    width to ``extent[0]``, rotated by ``rotation`` degrees."""
    out_w, out_h = out_size
    s = extent[0] / out_w
    r = math.radians(rotation)
    c, sn = math.cos(r) * s, math.sin(r) * s
    cu, cv = out_w * 0.5, out_h * 0.5
    return np.array([[c, -sn, center[0] - c * cu + sn * cv],
                     [sn, c, center[1] - sn * cu - c * cv]], dtype=np.float64)


def crop_image(image: Image.Image, to_image: np.ndarray, out_size: tuple[int, int]) -> torch.Tensor:
    """The (3, h, w) float crop in [0, 1] whose pixels map to ``image`` through ``to_image`` (bilinear)."""
    crop = image.transform(tuple(out_size), Image.AFFINE, data=tuple(to_image.reshape(-1)), resample=Image.BILINEAR)
    return torch.from_numpy(np.asarray(crop).copy()).permute(2, 0, 1).float() / 255


def person_crop(image: Image.Image, box: Sequence[float], out_size: tuple[int, int]) -> tuple[torch.Tensor, np.ndarray]:
    """The test-time crop of an x, y, w, h person ``box`` and its crop-to-image affine (no augmentation)."""
    center, extent = box_to_center_scale(box, out_size[0] / out_size[1])
    to_image = crop_to_image(center, extent, 0.0, out_size)
    return crop_image(image, to_image, out_size), to_image


def invert_affine(m: np.ndarray) -> np.ndarray:
    full = np.vstack([m, [0, 0, 1]])
    return np.linalg.inv(full)[:2]


def apply_affine(m: np.ndarray | torch.Tensor, pts):
    """Points (..., 2) through a 2x3 affine."""
    return pts @ m[:, :2].T + m[:, 2]


def gaussian_heatmaps(joints: torch.Tensor, visible: torch.Tensor, size: tuple[int, int],
                      sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """mmpose's MSRA target: a Gaussian at the rounded joint (heatmap pixels); weight 0 when invisible or out.

    ``joints`` (K, 2) in heatmap pixels, ``visible`` (K,) bool; returns (K, h, w) targets and (K,) weights."""
    h, w = size
    mu = torch.floor(joints + 0.5)
    inside = (mu[:, 0] >= 0) & (mu[:, 0] < w) & (mu[:, 1] >= 0) & (mu[:, 1] < h)
    weight = (visible & inside).float()
    ys = torch.arange(h, dtype=torch.float32).view(1, h, 1)
    xs = torch.arange(w, dtype=torch.float32).view(1, 1, w)
    g = torch.exp(-((xs - mu[:, 0, None, None]) ** 2 + (ys - mu[:, 1, None, None]) ** 2) / (2 * sigma ** 2))
    return g * weight[:, None, None], weight



class CocoKeypoints(torch.utils.data.Dataset):
    """Person crops with heatmap targets (see the module docstring)."""

    def __init__(self, annotation_json: str, image_dir: str, *, train: bool, image_size: tuple[int, int] = (192, 256),
                 heatmap_stride: int = 4, sigma: float = 2.0, flip_pairs: Sequence[tuple[int, int]] = COCO_FLIP_PAIRS,
                 person_boxes: str | None = None, box_score: float = 0.0, rotation: float = 40.0) -> None:
        if not os.path.isfile(annotation_json):
            raise FileNotFoundError(f"{annotation_json}: COCO keypoint annotation file not found")
        self.coco = _quiet_coco(annotation_json)
        cats = [c for c in self.coco.loadCats(self.coco.getCatIds()) if "keypoints" in c]
        if not cats:
            raise ValueError(f"{annotation_json}: no category with a 'keypoints' list (not a keypoint file)")
        self.category_id, self.keypoint_category = cats[0]["id"], cats[0]["name"]
        self.keypoint_names = list(cats[0]["keypoints"])
        self.num_joints = len(self.keypoint_names)
        self.image_dir, self.train = image_dir, train
        self.image_size, self.heatmap_stride, self.sigma = tuple(image_size), heatmap_stride, sigma
        self.rotation = rotation
        self.flip_pairs = [tuple(p) for p in flip_pairs]
        self.problems: dict[str, int] = {}
        self.samples = self._from_boxes(person_boxes, box_score) if person_boxes else self._from_ground_truth()
        if self.problems:
            log.warning("%s: %s", annotation_json, "; ".join(f"{n} {w}" for w, n in sorted(self.problems.items())))

    def _count(self, what: str, n: int = 1) -> None:
        self.problems[what] = self.problems.get(what, 0) + n

    def _from_ground_truth(self) -> list[dict]:
        out = []
        for ann in self.coco.loadAnns(self.coco.getAnnIds()):
            if ann.get("iscrowd", 0):
                continue
            if ann.get("category_id") != self.category_id:
                self._count(f"annotations of categories other than {self.keypoint_category!r} (left out)")
                continue
            info = self.coco.imgs.get(ann.get("image_id"))
            if info is None:
                self._count("annotations of unknown images (left out)")
                continue
            kp = np.asarray(ann.get("keypoints", []), dtype=np.float64).reshape(-1, 3)
            if len(kp) != self.num_joints:
                self._count("people with a keypoint count other than the category's (left out)")
                continue
            outside = (kp[:, 2] > 0) & ((kp[:, 0] < 0) | (kp[:, 1] < 0) | (kp[:, 0] > info["width"])
                                        | (kp[:, 1] > info["height"]))
            if outside.any():
                self._count("labelled keypoints outside the image (not learned)", int(outside.sum()))
                kp[outside, 2] = 0
            if not (kp[:, 2] > 0).any():  # as mmpose, for training and for ground-truth-box testing
                self._count("people without labelled keypoints (left out)")
                continue
            if ann["bbox"][2] < 1 or ann["bbox"][3] < 1:
                self._count("people with a box of zero area (left out)")
                continue
            out.append({"image_id": ann["image_id"], "box": ann["bbox"], "score": 1.0, "joints": kp})
        return out

    def _from_boxes(self, path: str, min_score: float) -> list[dict]:
        with open(path) as f:
            dets = json.load(f)
        return [{"image_id": d["image_id"], "box": d["bbox"], "score": float(d.get("score", 1.0)),
                 "joints": np.zeros((self.num_joints, 3))}
                for d in dets if d.get("category_id", self.category_id) == self.category_id
                and float(d.get("score", 1.0)) > min_score]

    def __len__(self) -> int:
        return len(self.samples)

    def _image(self, image_id: int) -> Image.Image:
        info = self.coco.loadImgs(image_id)[0]
        with Image.open(os.path.join(self.image_dir, info["file_name"])) as im:
            return im.convert("RGB")

    def __getitem__(self, i: int):
        for attempt in range(len(self.samples)):
            s = self.samples[(i + attempt) % len(self.samples)]
            try:
                image = self._image(s["image_id"])
                break
            except OSError as e:
                self._count("unreadable images (replaced)")
                log.warning("image %s: unreadable (%s); replaced by another sample", s["image_id"], e)
        else:
            raise RuntimeError(f"{self.image_dir}: no readable image found")
        w_out, h_out = self.image_size
        center, extent = box_to_center_scale(s["box"], w_out / h_out)
        joints, vis = s["joints"][:, :2].copy(), s["joints"][:, 2] > 0
        rotation, flip = 0.0, False
        if self.train:
            # numpy's global generator: the engine seeds it per sample (reproducible, resumable)
            extent = extent * float(np.clip(np.random.standard_normal() * 0.5 + 1, 0.5, 1.5))
            if np.random.random() < 0.6 and self.rotation > 0:
                rotation = float(np.clip(np.random.standard_normal() * self.rotation, -2 * self.rotation,
                                         2 * self.rotation))
            flip = bool(np.random.random() < 0.5)
        to_image = crop_to_image(center, extent, rotation, (w_out, h_out))
        if flip:  # mirror the crop: crop x -> (w_out - 1) - x ... expressed in the affine
            to_image = to_image @ np.array([[-1, 0, w_out - 1], [0, 1, 0], [0, 0, 1]], dtype=np.float64)
        crop_t = crop_image(image, to_image, (w_out, h_out))
        in_crop = apply_affine(invert_affine(to_image), joints)
        if flip:
            order = list(range(self.num_joints))
            for a, b in self.flip_pairs:
                order[a], order[b] = b, a
            in_crop, vis = in_crop[order], vis[order]
        hm_size = (h_out // self.heatmap_stride, w_out // self.heatmap_stride)
        heatmaps, weights = gaussian_heatmaps(torch.from_numpy(in_crop / self.heatmap_stride).float(),
                                              torch.from_numpy(vis), hm_size, self.sigma)
        target = {"heatmaps": heatmaps, "weights": weights, "to_image": torch.from_numpy(to_image).float(),
                  "image_id": torch.tensor(s["image_id"]), "score": torch.tensor(s["score"]),
                  "area": torch.tensor(float(s["box"][2] * s["box"][3]))}
        return crop_t, target
