"""``ava-digits``: a moving-digits clip set with per-frame person boxes, written in the AVA layout.

Each video shows ``people`` real handwritten digits (scikit-learn's, the fixed digits split: train videos use train
digits, test videos test digits) moving on a noisy ``size`` x ``size`` canvas, extracted at ``fps`` frames per
second. Around every keyframe (seconds 902, 903, ... as AVA's) each digit keeps one motion for one second
(``fps`` frames centred on the keyframe): moving right, left, down or up by 2 pixels a frame, or standing still;
the motion is the digit's action at that keyframe, and a digit whose centre is within ``CLOSE`` pixels of another's
also has the action ``close to another digit`` (so a box can have two actions, as in AVA). Written files:

- ``frames/VIDEO/VIDEO_000001.jpg`` ... (frame ``i`` is second ``900 + i / fps``);
- ``annotations/ava_{split}_v2.2.csv``: ``video_id,timestamp,x1,y1,x2,y2,action_id,person_id`` (boxes at the
  keyframe, normalised);
- ``annotations/ava_{split}_predicted_boxes.csv``: ``video_id,timestamp,x1,y1,x2,y2,,score``: each true box
  jittered by up to 0.25 pixel (IoU > 0.9 with it; score 0.85-1.0) and, at every other keyframe, one box on the
  background (score 0.5-0.95; those above the threshold are negatives in training and false positives at test);
- ``annotations/ava_digits_action_list.pbtxt``: the label map (6 actions).

:func:`write_ava_digits` writes one split into a folder (the tests); :func:`export_ava_digits` writes both once
under ``$VITKIT_HOME/data/`` (``data.dataset: ava-digits``), built beside its final place and renamed into it.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from .ava import AVA_START_SECOND
from .builtin import _digits, _upscale

ACTIONS = ["move right", "move left", "move down", "move up", "stand still", "close to another digit"]
_STEPS = [(1, 0), (-1, 0), (0, 1), (0, -1), (0, 0)]
CLOSE = 20
SPRITE = 16
SPLITS = {"train": (8, 8), "test": (3, 8)}  # videos, keyframes per video


def _sprites(split: str) -> np.ndarray:
    images, _, tr, te = _digits()
    return _upscale(images[tr if split == "train" else te], SPRITE).numpy().astype(np.float32)


def _video(rng: np.random.Generator, sprites: np.ndarray, seconds: int, people: int, size: int, fps: int):
    """Frames (N, size, size) uint8, and per keyframe k the boxes (people, 4) and actions of each digit."""
    first = 2  # the first keyframe is second 902: frame 2 * fps
    n = (first + seconds + 1) * fps
    room = size - SPRITE
    pos = rng.uniform(0, room, size=(people, 2))
    step = 2.0
    track = np.zeros((n, people, 2))
    motion = np.full((seconds, people), 4)
    t = 0
    for k in range(-1, seconds + 1):  # segment k: the fps frames centred on keyframe k (k = -1: lead-in)
        end = min(n, (first + k) * fps + fps // 2) if k < seconds else n
        for p in range(people):
            dx, dy = 0, 0
            if 0 <= k < seconds:
                frames = end - t
                ok = [m for m, (sx, sy) in enumerate(_STEPS)
                      if 0 <= pos[p, 0] + sx * step * frames <= room and 0 <= pos[p, 1] + sy * step * frames <= room]
                m = int(rng.choice(ok))
                motion[k, p] = m
                dx, dy = _STEPS[m]
            for i in range(t, end):
                track[i, p] = pos[p] + np.array([dx, dy]) * step * (i - t)
            pos[p] = pos[p] + np.array([dx, dy]) * step * (end - t)
        t = end
    gains = rng.uniform(0.7, 1.0, size=people)
    picks = rng.integers(len(sprites), size=people)
    frames = rng.normal(20, 12, size=(n, size, size)).clip(0, 255)
    for i in range(n):
        for p in range(people):
            x, y = np.rint(track[i, p]).astype(int)
            patch = frames[i, y:y + SPRITE, x:x + SPRITE]
            np.maximum(patch, sprites[picks[p]] * gains[p], out=patch)
    keyframes = []
    for k in range(seconds):
        xy = np.rint(track[(first + k) * fps]).astype(float)
        boxes = np.concatenate([xy, xy + SPRITE], 1)
        centres = xy + SPRITE / 2
        acts = []
        for p in range(people):
            a = [int(motion[k, p]) + 1]
            d = np.linalg.norm(centres - centres[p], axis=1)
            if any(d[q] < CLOSE for q in range(people) if q != p):
                a.append(len(ACTIONS))
            acts.append(a)
        keyframes.append((boxes, acts))
    return frames.round().astype(np.uint8), keyframes


def write_ava_digits(folder: str | os.PathLike, split: str = "train", videos: int | None = None,
                     seconds: int | None = None, people: int = 2, size: int = 64, fps: int = 8) -> dict[str, str]:
    """Write ``split`` of ava-digits under ``folder`` (frames, annotation, proposal and label-map files, see the
    module docstring); returns their paths (``frames``, ``annotations``, ``proposals``, ``label_map``)."""
    if split not in SPLITS:
        raise ValueError(f"ava-digits split must be one of {sorted(SPLITS)}, got {split!r}")
    videos = videos or SPLITS[split][0]
    seconds = seconds or SPLITS[split][1]
    root = Path(folder)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    sprites = _sprites(split)
    gt_rows, prop_rows = [], []
    first_sec = AVA_START_SECOND + 2
    for v in range(videos):
        name = f"{split}{v:03d}"
        rng = np.random.default_rng([0 if split == "train" else 1, v, size])
        frames, keyframes = _video(rng, sprites, seconds, people, size, fps)
        out = root / "frames" / name
        out.mkdir(parents=True, exist_ok=True)
        for i, f in enumerate(frames):
            Image.fromarray(f).convert("RGB").save(out / f"{name}_{i + 1:06d}.jpg", quality=95)
        for k, (boxes, acts) in enumerate(keyframes):
            sec = first_sec + k
            for p, (box, a) in enumerate(zip(boxes, acts)):
                norm = ",".join(f"{c / size:.3f}" for c in box)
                gt_rows += [f"{name},{sec:04d},{norm},{action},{p}" for action in a]
                jit = np.clip(box + rng.uniform(-0.25, 0.25, 4), 0, size)
                prop_rows.append(f"{name},{sec:04d},{','.join(f'{c / size:.3f}' for c in jit)},,"
                                 f"{rng.uniform(0.85, 1.0):.4f}")
            if k % 2 == 0:
                x, y = rng.uniform(0, size - SPRITE, 2)
                fp = np.array([x, y, x + SPRITE, y + SPRITE])
                prop_rows.append(f"{name},{sec:04d},{','.join(f'{c / size:.3f}' for c in fp)},,"
                                 f"{rng.uniform(0.5, 0.95):.4f}")
    paths = {"frames": str(root / "frames"),
             "annotations": str(root / "annotations" / f"ava_{split}_v2.2.csv"),
             "proposals": str(root / "annotations" / f"ava_{split}_predicted_boxes.csv"),
             "label_map": str(root / "annotations" / "ava_digits_action_list.pbtxt")}
    Path(paths["annotations"]).write_text("\n".join(gt_rows) + "\n")
    Path(paths["proposals"]).write_text("\n".join(prop_rows) + "\n")
    Path(paths["label_map"]).write_text("".join(f'item {{\n  name: "{a}"\n  id: {i + 1}\n}}\n'
                                                for i, a in enumerate(ACTIONS)))
    return paths


def export_ava_digits(split: str, size: int = 64, fps: int = 8) -> dict[str, str]:
    """The files of ``split`` of the built-in ava-digits under ``$VITKIT_HOME/data/`` (written on first use)."""
    from vitkit.weights.download import vitkit_home

    final = vitkit_home() / "data" / f"ava-digits-{size}-{fps}fps" / split
    if not (final / "annotations" / f"ava_{split}_v2.2.csv").is_file():
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{split}-", dir=final.parent))
        try:
            write_ava_digits(tmp, split, size=size, fps=fps)
            try:
                os.rename(tmp, final)
            except OSError:  # another process finished first
                if not (final / "annotations" / f"ava_{split}_v2.2.csv").is_file():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return {"frames": str(final / "frames"), "annotations": str(final / "annotations" / f"ava_{split}_v2.2.csv"),
            "proposals": str(final / "annotations" / f"ava_{split}_predicted_boxes.csv"),
            "label_map": str(final / "annotations" / "ava_digits_action_list.pbtxt")}
