"""AVA-style action detection data: keyframe clips of extracted frames, person boxes and multi-label actions.

The files, as the AVA release and PySlowFast lay them out (``slowfast/datasets/ava_helper.py``, ``DATASET.md``):

- **frames**: each video cut to its 15th-30th minute and extracted at 30 fps as ``frames/VIDEO/VIDEO_000001.jpg``
  ...; frame index ``i`` (from 0) is the file numbered ``i + 1``. Read with
  :class:`vitkit.data.frames.FrameFolderReader` (the template and the frame count come from the folder's file
  names), or from a PySlowFast frame list (``frame_lists/train.csv``: a header, then space-separated
  ``original_vido_id video_id frame_id path labels``, ``path`` relative to the frame folder).
- **annotations** (``ava_train_v2.2.csv``, ``ava_val_v2.2.csv``): no header, one row per (box, action):
  ``video_id,timestamp,x1,y1,x2,y2,action_id,person_id`` with the box normalised to [0, 1] and the timestamp in
  whole seconds of the original video. Rows of one person (``person_id``; the box where it is absent) at one
  timestamp form one box with several actions.
- **proposals** (person detections, ``ava_detection_val_boxes_and_labels.csv`` / ``*_predicted_boxes.csv``):
  ``video_id,timestamp,x1,y1,x2,y2,action_id,score``, ``action_id`` empty when the row is only a detection;
  boxes scoring below ``score_threshold`` (PySlowFast's ``DETECTION_SCORE_THRESH``, 0.8 in its AVA configs) are
  dropped. A proposal row without an action takes the actions of the ground-truth boxes it overlaps at IoU >=
  ``match_iou`` (0.9: how the official ``person_box_67091280_iou90`` training files were labelled), none otherwise
  (a negative).
- **label map** (``ava_action_list_v2.2_for_activitynet_2019.pbtxt``): ``item { name: "..." id: N }`` blocks
  (``label_id`` also read); the evaluated classes. The model has ``num_classes`` outputs (80 for AVA: class id
  ``c`` is output ``c - 1``), the largest id in the map by default.

A sample is one keyframe: the timestamps ``valid_seconds`` (902-1798 in AVA) that have at least one box. Its clip
takes ``num_frames`` frames ``sampling_rate`` apart centred on frame ``(timestamp - start_second) * fps``
(PySlowFast's ``get_sequence``: ``range(c - T*tau/2, c + T*tau/2, tau)``, indices clamped to the video), and its
boxes are scaled to the clip's pixels. Training: the short side scaled to a random size in ``jitter`` (256-320),
a random ``crop_size`` crop and a horizontal flip (boxes moved with them); testing: the short side scaled to
``crop_size``, the whole frame kept.

Bad input is counted, reported once and never a crash mid-run: a malformed CSV row (wrong column count, a
non-number, a box outside [0, 1] or of no area, an action id outside ``1..num_classes``) is skipped and listed in
:meth:`AvaDataset.bad_samples` with its file and line (a file with no valid row is an error naming the expected
columns); a keyframe of a video without a frame folder is left out; a clip with a missing or unreadable frame is
replaced by another keyframe in training, and in testing yields no boxes (its ground truth then counts as missed).
"""
from __future__ import annotations

import csv
import logging
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import torch
import torch.nn.functional as F
from torchvision.ops import box_iou

from .badlog import BadSampleLog
from .frames import FrameFolderReader
from .video import VideoError

log = logging.getLogger("vitkit.data")

__all__ = ["AvaBoxes", "AvaDataset", "read_ava_csv", "read_label_map", "read_frame_list", "read_exclusions",
           "clip_indices_around", "collate_ava", "AVA_FPS", "AVA_START_SECOND", "AVA_VALID_SECONDS"]

AVA_FPS = 30
AVA_START_SECOND = 900            # the frames start at the 15th minute
AVA_VALID_SECONDS = (902, 1798)   # keyframes, inclusive (PySlowFast's AVA_VALID_FRAMES = range(902, 1799))
CSV_COLUMNS = "video_id,timestamp,x1,y1,x2,y2,action_id,person_id (or score)"


@dataclass
class AvaBoxes:
    """The rows of one AVA CSV, grouped: ``boxes[(video, second)] -> [[x1, y1, x2, y2], actions, score]``."""

    boxes: dict[tuple[str, int], list[list]] = field(default_factory=dict)
    rejected: dict[str, str] = field(default_factory=dict)  # "file:line" -> reason

    def keys(self) -> list[tuple[str, int]]:
        return sorted(self.boxes)

    def rows(self) -> Iterable[tuple[str, int, list[float], int, float]]:
        """``(video, second, box, action, score)`` for every (box, action) pair (the evaluator's ground truth)."""
        for (video, sec), items in sorted(self.boxes.items()):
            for box, actions, score in items:
                for a in actions:
                    yield video, sec, box, a, score


def read_label_map(path: str) -> dict[int, str]:
    """``{class id: name}`` of an AVA label map (``item { name: "..." id: N }``, ``label_id`` also accepted)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: AVA label map (.pbtxt) not found")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    out: dict[int, str] = {}
    for block in re.findall(r"item\s*\{(.*?)\}", text, flags=re.S):
        name = re.search(r'name:\s*"([^"]*)"', block)
        cid = re.search(r"\b(?:label_)?id:\s*(\d+)", block)
        if not name or not cid:
            raise ValueError(f"{path}: an item without a name or id: {block.strip()!r}; expected "
                             "item {{ name: \"...\" id: N }}")
        out[int(cid.group(1))] = name.group(1)
    if not out:
        raise ValueError(f"{path}: no 'item {{ name: \"...\" id: N }}' entries in the label map")
    return out


def read_exclusions(path: str | None) -> set[tuple[str, int]]:
    """The excluded ``(video, second)`` keyframes of an ``*_excluded_timestamps_*.csv`` (``video_id,timestamp``)."""
    if not path:
        return set()
    out = set()
    with open(path, encoding="utf-8", newline="") as f:
        for lineno, row in enumerate(csv.reader(f), 1):
            if not row:
                continue
            if len(row) != 2 or not row[1].strip().isdigit():
                raise ValueError(f"{path}:{lineno}: expected 'video_id,timestamp', got {','.join(row)!r}")
            out.add((row[0].strip(), int(row[1])))
    return out


def _parse_row(row: list[str], num_classes: int | None, proposals: bool) -> tuple[str, int, list[float], int, float]:
    """One CSV row -> (video, second, box, action or -1, score); raises ValueError with the reason."""
    if len(row) not in (7, 8):
        raise ValueError(f"{len(row)} columns, expected 7 or 8 ({CSV_COLUMNS})")
    video = row[0].strip()
    if not video:
        raise ValueError("empty video_id")
    try:
        sec_f = float(row[1])
        box = [float(v) for v in row[2:6]]
    except ValueError:
        raise ValueError(f"timestamp and box must be numbers, got {row[1:6]}") from None
    if sec_f != int(sec_f):
        raise ValueError(f"timestamp {row[1]!r} is not a whole second")
    x1, y1, x2, y2 = box
    if not (0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1):
        raise ValueError(f"box {box} is not x1 < x2, y1 < y2 inside [0, 1]")
    action = -1
    if row[6].strip():
        try:
            action = int(row[6])
        except ValueError:
            raise ValueError(f"action_id {row[6]!r} is not an integer") from None
        if action < 1 or (num_classes is not None and action > num_classes):
            raise ValueError(f"action_id {action} outside 1..{num_classes}")
    elif not proposals:
        raise ValueError("empty action_id in an annotation file")
    score = 1.0
    if proposals:
        if len(row) < 8:
            raise ValueError(f"no score column: a proposal file has 8 columns ({CSV_COLUMNS})")
        try:
            score = float(row[7])
        except ValueError:
            raise ValueError(f"score {row[7]!r} is not a number") from None
    return video, int(sec_f), box, action, score


def read_ava_csv(path: str, *, proposals: bool = False, num_classes: int | None = None,
                 score_threshold: float = 0.0) -> AvaBoxes:
    """Group an annotation (``proposals=False``) or proposal file's rows into boxes per keyframe.

    Annotation rows of one ``person_id`` (or one box) at one timestamp merge into one box with several actions;
    proposal rows merge by box, and those scoring below ``score_threshold`` are dropped. Malformed rows are
    skipped and listed in ``rejected``; a file without any valid row raises ``ValueError``.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: AVA {'proposal' if proposals else 'annotation'} CSV not found")
    out = AvaBoxes()
    index: dict[tuple, list] = {}
    valid = 0
    with open(path, encoding="utf-8", newline="") as f:
        for lineno, row in enumerate(csv.reader(f), 1):
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            try:
                video, sec, box, action, score = _parse_row(row, num_classes, proposals)
            except ValueError as e:
                out.rejected[f"{path}:{lineno}"] = str(e)
                continue
            valid += 1
            if proposals and score < score_threshold:
                continue
            who = row[7].strip() if (not proposals and len(row) == 8) else ",".join(f"{v:.3f}" for v in box)
            key = (video, sec, who)
            if key not in index:
                index[key] = [box, [], score]
                out.boxes.setdefault((video, sec), []).append(index[key])
            item = index[key]
            if action > 0 and action not in item[1]:
                item[1].append(action)
    if not valid:
        first = next(iter(out.rejected.items()), None)
        raise ValueError(f"{path}: no valid row (expected {CSV_COLUMNS})"
                         + (f"; {first[0]}: {first[1]}" if first else ": the file is empty"))
    return out


def read_frame_list(path: str, frame_dir: str) -> dict[str, tuple[str, int]]:
    """``{video: (frame folder, frame count)}`` from a PySlowFast frame list (a header line, then
    ``original_vido_id video_id frame_id path labels``, ``path`` relative to ``frame_dir``)."""
    folders: dict[str, str] = {}
    counts: dict[str, int] = defaultdict(int)
    with open(path, encoding="utf-8") as f:
        f.readline()
        for lineno, line in enumerate(f, 2):
            row = line.split()
            if not row:
                continue
            if len(row) != 5:
                raise ValueError(f"{path}:{lineno}: expected 'original_vido_id video_id frame_id path labels', "
                                 f"got {line.strip()!r}")
            folder = os.path.dirname(os.path.join(frame_dir, row[3]))
            if folders.setdefault(row[0], folder) != folder:
                raise ValueError(f"{path}:{lineno}: the frames of {row[0]} are in more than one folder")
            counts[row[0]] += 1
    return {v: (folders[v], counts[v]) for v in folders}


def clip_indices_around(center: int, num_frames: int, sampling_rate: int, video_frames: int) -> list[int]:
    """PySlowFast's ``get_sequence``: ``num_frames`` indices ``sampling_rate`` apart from ``center - T*tau/2``,
    clamped to ``[0, video_frames)``."""
    half = num_frames * sampling_rate // 2
    seq = range(center - half, center - half + num_frames * sampling_rate, sampling_rate)
    return [min(max(i, 0), video_frames - 1) for i in seq]


def _label_proposals(gt: AvaBoxes, props: AvaBoxes, match_iou: float) -> dict[tuple[str, int], list[list]]:
    """Proposals without actions take those of the ground-truth boxes they overlap at IoU >= ``match_iou``."""
    out: dict[tuple[str, int], list[list]] = {}
    for key, items in props.boxes.items():
        truth = gt.boxes.get(key, [])
        tb = torch.tensor([t[0] for t in truth], dtype=torch.float64) if truth else None
        labelled = []
        for box, actions, score in items:
            acts = list(actions)
            if not acts and tb is not None:
                iou = box_iou(torch.tensor([box], dtype=torch.float64), tb)[0]
                for j in torch.nonzero(iou >= match_iou).flatten().tolist():
                    acts += [a for a in truth[j][1] if a not in acts]
            labelled.append([box, acts, score])
        out[key] = labelled
    return out


def scale_short_side(frames: torch.Tensor, boxes: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Resize (T, C, H, W) frames so the short side is ``size`` (bilinear), boxes with them."""
    h, w = frames.shape[-2:]
    if min(h, w) == size:
        return frames, boxes
    s = size / min(h, w)
    nh, nw = (size, max(1, round(w * s))) if h <= w else (max(1, round(h * s)), size)
    out = F.interpolate(frames, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)
    return out, boxes * torch.tensor([nw / w, nh / h, nw / w, nh / h])


def random_crop(frames: torch.Tensor, boxes: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A random ``size`` x ``size`` crop (the same for every frame), boxes shifted with it."""
    h, w = frames.shape[-2:]
    y = int(torch.randint(0, max(h - size, 0) + 1, (1,)))
    x = int(torch.randint(0, max(w - size, 0) + 1, (1,)))
    return frames[..., y:y + size, x:x + size], boxes - torch.tensor([x, y, x, y], dtype=boxes.dtype)


def hflip(frames: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mirror frames and boxes left-right."""
    w = frames.shape[-1]
    return frames.flip(-1), torch.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], 1)


def collate_ava(batch):
    """Items -> ``({"clips": (B, 3, T, H, W), "boxes": [(N_i, 4)]}, target)``; clips of different sizes are
    zero-padded right and bottom (boxes unchanged); the target concatenates ``labels`` and ``norm_boxes`` over
    the batch and lists ``keys``, ``index`` and ``counts`` (boxes per clip)."""
    clips, targets = zip(*batch)
    h = max(c.shape[-2] for c in clips)
    w = max(c.shape[-1] for c in clips)
    stacked = torch.stack([F.pad(c, (0, w - c.shape[-1], 0, h - c.shape[-2])) for c in clips])
    target = {"labels": torch.cat([t["labels"] for t in targets]),
              "norm_boxes": torch.cat([t["norm_boxes"] for t in targets]),
              "keys": [t["key"] for t in targets], "index": [t["index"] for t in targets],
              "counts": [len(t["boxes"]) for t in targets]}
    return {"clips": stacked, "boxes": [t["boxes"] for t in targets]}, target


class AvaDataset(torch.utils.data.Dataset):
    """Keyframe clips with their person boxes and multi-hot actions (see the module docstring).

    An item is ``(clip, target)``: ``clip`` float (3, T, H, W) in [0, 1] and ``target`` a dict of ``boxes``
    (N, 4) in clip pixels, ``labels`` (N, num_classes) multi-hot, ``norm_boxes`` (N, 4) as in the files,
    ``key`` (video, second) and ``index``. :func:`collate_ava` batches them.
    """

    collate_fn = staticmethod(collate_ava)

    def __init__(self, frame_dir: str, annotations: str | None, label_map: str, *, train: bool,
                 proposals: str | Sequence[str] | None = None, frame_list: str | None = None,
                 num_frames: int = 16, sampling_rate: int = 4, crop_size: int = 224,
                 jitter: Sequence[int] = (256, 320), flip: float = 0.5, score_threshold: float = 0.8,
                 match_iou: float = 0.9, num_classes: int | None = None, fps: int = AVA_FPS,
                 start_second: int = AVA_START_SECOND, valid_seconds: Sequence[int] = AVA_VALID_SECONDS,
                 use_gt_boxes: bool | None = None) -> None:
        if not os.path.isdir(frame_dir):
            raise FileNotFoundError(f"{frame_dir}: AVA frame folder not found (expected frames/VIDEO/VIDEO_000001.jpg)")
        self.label_map = read_label_map(label_map)
        self.num_classes = int(num_classes or max(self.label_map))
        if max(self.label_map) > self.num_classes:
            raise ValueError(f"{label_map}: class id {max(self.label_map)} > num_classes={self.num_classes}")
        self.classes = [self.label_map.get(c, f"action {c}") for c in range(1, self.num_classes + 1)]
        self.multi_label = True
        self.train, self.num_frames, self.sampling_rate = train, num_frames, sampling_rate
        self.crop_size, self.jitter, self.flip = crop_size, tuple(jitter), flip
        self.fps, self.start_second = fps, start_second
        lo, hi = valid_seconds
        props = [proposals] if isinstance(proposals, str) else list(proposals or [])
        self.rejected: dict[str, str] = {}
        gt = read_ava_csv(annotations, num_classes=self.num_classes) if annotations else AvaBoxes()
        self.rejected.update(gt.rejected)
        self.ground_truth = gt
        boxes: dict[tuple[str, int], list[list]] = defaultdict(list)
        if use_gt_boxes if use_gt_boxes is not None else (train or not props):
            for key, items in gt.boxes.items():
                boxes[key] += items
        for p in props:
            pb = read_ava_csv(p, proposals=True, num_classes=self.num_classes, score_threshold=score_threshold)
            self.rejected.update(pb.rejected)
            for key, items in _label_proposals(gt, pb, match_iou).items():
                boxes[key] += items
        if not boxes:
            raise ValueError("AVA data without boxes: give an annotation file (training) or a proposal file")
        if frame_list:
            layout = read_frame_list(frame_list, frame_dir)
        else:
            layout = {v: (os.path.join(frame_dir, v), None) for v in sorted({v for v, _ in boxes})}
        counts = {folder: n for folder, n in layout.values() if n is not None}
        self.reader = FrameFolderReader(counts)
        self.folders = {v: folder for v, (folder, _) in layout.items()}
        self.problems: dict[str, int] = {}
        self.samples: list[tuple[str, int, list[list]]] = []
        for (video, sec), items in sorted(boxes.items()):
            if not lo <= sec <= hi:
                self._count(f"keyframes outside seconds {lo}-{hi} (left out)")
            elif video not in self.folders or not os.path.isdir(self.folders[video]):
                self.rejected[f"{frame_dir}/{video}"] = "no frame folder (its keyframes are left out)"
                self._count("keyframes of videos without frames (left out)")
            else:
                self.samples.append((video, sec, items))
        if self.rejected:
            self._count("malformed rows or missing videos (skipped)", len(self.rejected))
        if self.problems:
            log.warning("AVA %s data: %s", "training" if train else "test",
                        "; ".join(f"{n} {what}" for what, n in sorted(self.problems.items())))
        if not self.samples:
            raise ValueError(f"no usable AVA keyframes in {frame_dir} (seconds {lo}-{hi}, {len(boxes)} keyframes "
                             "with boxes in the files)")
        self._bad = BadSampleLog("ava")

    def _count(self, what: str, n: int = 1) -> None:
        self.problems[what] = self.problems.get(what, 0) + n

    def __len__(self) -> int:
        return len(self.samples)

    def bad_samples(self) -> dict[str, str]:
        """Rows skipped and clips that could not be read: ``{file:line or clip: reason}``."""
        return {**self.rejected, **self._bad.items()}

    def keys(self) -> list[tuple[str, int]]:
        return [(v, s) for v, s, _ in self.samples]

    # -- one sample ------------------------------------------------------------------------------------------
    def _clip(self, video: str, sec: int) -> torch.Tensor:
        folder = self.folders[video]
        n = self.reader.num_frames(folder)
        center = (sec - self.start_second) * self.fps
        return self.reader.read(folder, clip_indices_around(center, self.num_frames, self.sampling_rate, n))

    def __getitem__(self, i: int):
        for attempt in range(10):
            video, sec, items = self.samples[i]
            try:
                frames = self._clip(video, sec)
                break
            except (VideoError, OSError, ValueError) as e:
                where = f"{self.folders[video]}@{sec}s"
                if not self.train:
                    self._bad.report(where, str(e), action="no boxes: its ground truth counts as missed")
                    return self._item(None, video, sec, [], i)
                self._bad.report(where, str(e))
                i = (i * 7919 + attempt + 1) % len(self.samples)
        else:
            raise RuntimeError("ava: 10 unreadable clips in a row; see the warnings above")
        return self._item(frames, video, sec, items, i)

    def _item(self, frames: torch.Tensor | None, video: str, sec: int, items: list, index: int):
        norm = torch.tensor([b for b, _, _ in items], dtype=torch.float32).reshape(-1, 4)
        labels = torch.zeros(len(items), self.num_classes)
        for k, (_, actions, _) in enumerate(items):
            for a in actions:
                labels[k, a - 1] = 1.0
        if frames is None:
            clip = torch.zeros(3, self.num_frames, self.crop_size, self.crop_size)
            boxes = norm.clone()
        else:
            clip, boxes = self._transform(frames.float() / 255.0, norm)
        return clip, {"boxes": boxes, "labels": labels, "norm_boxes": norm, "key": (video, sec), "index": index}

    def _transform(self, frames: torch.Tensor, norm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(T, 3, H, W) frames and normalised boxes -> (3, T, h, w) clip and its pixel boxes."""
        h, w = frames.shape[-2:]
        boxes = norm * torch.tensor([w, h, w, h], dtype=torch.float32)
        if self.train:
            short = int(torch.randint(self.jitter[0], self.jitter[1] + 1, (1,)))
        else:
            short = self.crop_size
        frames, boxes = scale_short_side(frames, boxes, short)
        if self.train:
            frames, boxes = random_crop(frames, boxes, self.crop_size)
            if self.flip > 0 and float(torch.rand(())) < self.flip:
                frames, boxes = hflip(frames, boxes)
        h, w = frames.shape[-2:]
        boxes = torch.stack([boxes[:, 0].clamp(0, w), boxes[:, 1].clamp(0, h), boxes[:, 2].clamp(0, w),
                             boxes[:, 3].clamp(0, h)], 1)
        return frames.transpose(0, 1).contiguous(), boxes
