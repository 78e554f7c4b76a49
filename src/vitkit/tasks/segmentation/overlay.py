"""Label maps as PNG files: class-index masks, and coloured overlays (prediction blended on the image, beside the
ground truth when given). The palette is fixed (class 0 black in index masks' palette, then distinct colours)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch


def palette(n: int = 256) -> np.ndarray:
    """(n, 3) uint8 colours: the PASCAL VOC bit-interleaving palette (0 = black), as mmseg / torchvision use."""
    out = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        out[i] = (r, g, b)
    return out


def _save(path: str | os.PathLike, image) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    image.save(tmp, format="PNG")
    os.replace(tmp, path)
    return path


def save_mask(path: str | os.PathLike, pred: torch.Tensor) -> Path:
    """A (H, W) class-index map as a palette PNG (the pixel values are the class indices)."""
    from PIL import Image

    arr = pred.to(torch.uint8).numpy() if pred.max() < 256 else pred.numpy().astype(np.int32)
    im = Image.fromarray(arr)
    if arr.dtype == np.uint8:
        im = im.convert("P") if im.mode != "P" else im
        im.putpalette(palette().flatten().tolist())
    return _save(path, im)


def colourise(labels: torch.Tensor, ignore_index: int = 255) -> np.ndarray:
    pal = palette()
    arr = labels.long().clamp(0, 255).numpy()
    out = pal[arr]
    out[labels.numpy() == ignore_index] = 255
    return out


def save_overlay(path: str | os.PathLike, image: torch.Tensor, pred: torch.Tensor, label: torch.Tensor | None = None,
                 ignore_index: int = 255, alpha: float = 0.5) -> Path:
    """``image`` (3, H, W) uint8 with ``pred`` blended in (and, given ``label``, the ground truth beside it)."""
    from PIL import Image

    img = image.permute(1, 2, 0).numpy().astype(np.float32)
    if img.shape[:2] != tuple(pred.shape):
        img = np.asarray(Image.fromarray(img.astype(np.uint8)).resize(pred.shape[::-1][:2])).astype(np.float32)
    panels = [(img * (1 - alpha) + colourise(pred) * alpha).astype(np.uint8)]
    if label is not None:
        panels.append((img * (1 - alpha) + colourise(label, ignore_index) * alpha).astype(np.uint8))
    return _save(path, Image.fromarray(np.concatenate(panels, axis=1)))
