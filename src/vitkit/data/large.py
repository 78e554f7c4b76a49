"""Very large images: decoded at reduced size where the format allows, and reported instead of silently slow.

A 50-megapixel JPEG takes about a second to decode on one core; training on 224-pixel crops of it wastes almost
all of that. :func:`vitkit.data.datasets.load_image` asks JPEG decoders for a reduced-size draft (DCT scaling by
1/2, 1/4 or 1/8) that keeps the shorter side at least the size the transforms need, and :func:`note_large` logs
each image above :data:`LARGE_PIXELS` once per process, naming its size and whether a draft was possible.
``vitkit data check`` reports them as notes.
"""
from __future__ import annotations

import logging

from PIL import Image

log = logging.getLogger("vitkit.data")

__all__ = ["LARGE_PIXELS", "is_large", "note_large", "large_note", "DRAFT_FORMATS"]

#: images above this many pixels are reported (PIL's decompression-bomb warning starts at ~89 MP)
LARGE_PIXELS = 40_000_000
#: formats whose decoder can produce a reduced-size draft
DRAFT_FORMATS = ("JPEG", "MPO")
_reported: set[str] = set()


def is_large(img: Image.Image) -> bool:
    return img.size[0] * img.size[1] > LARGE_PIXELS


def large_note(img: Image.Image, min_side: int | None = None) -> str | None:
    """A one-line note for an image above :data:`LARGE_PIXELS`, else None."""
    if not is_large(img):
        return None
    w, h = img.size
    draft = img.format in DRAFT_FORMATS
    how = (f"decoded at reduced size (JPEG draft) for a shorter side >= {min_side}" if draft and min_side
           else "a reduced-size draft is possible (JPEG)" if draft
           else f"{img.format or 'this format'} has no reduced-size decoding: each read decodes it in full")
    return f"large: {w}x{h} ({w * h / 1e6:.0f} MP > {LARGE_PIXELS / 1e6:.0f} MP); {how}"


def note_large(path: str, img: Image.Image, min_side: int | None = None) -> None:
    """Log :func:`large_note` for ``path`` the first time this process sees it."""
    if path in _reported:
        return
    note = large_note(img, min_side)
    if note is not None:
        _reported.add(path)
        log.warning("%s: %s", path, note)
