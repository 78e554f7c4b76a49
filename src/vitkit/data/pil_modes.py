"""Every PIL image mode to 8-bit RGB (or L), scaled by what the mode means, never clipped.

``Image.convert("RGB")`` clips integer and float modes to 0..255: a 16-bit greyscale PNG (``I;16``) turns white,
a float TIFF in [0, 1] turns black. Here:

- ``I;16`` (and ``I;16B``/``L``/``N``): 16-bit, scaled by 255/65535.
- ``I`` (32-bit int, how PIL opens 16-bit PNGs and integer TIFFs): the 16-bit range when the values lie in
  0..65535, else the image's own min..max.
- ``F`` (32-bit float): [0, 1] scaled by 255; values already in 0..255 kept; otherwise the image's min..max;
  NaN/inf become 0.
- Transparency (``RGBA``, ``LA``, ``PA``, ``La``, ``RGBa``, ``P`` with a transparent index or alpha palette):
  composited over :data:`BACKGROUND` (white, as a viewer shows it), instead of exposing whatever colour the
  transparent pixels happen to store.
- ``CMYK``: through the embedded ICC profile to sRGB when the file has one (``PIL.ImageCms``), else PIL's
  conversion (JPEG's Adobe inversion is handled by the decoder).
- ``1``, ``L``, ``P``, ``RGB``, ``YCbCr``, ``HSV``: PIL's conversion, which is exact for them.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

__all__ = ["to_uint8", "BACKGROUND"]

BACKGROUND = (255, 255, 255)
_SIXTEEN = ("I;16", "I;16B", "I;16L", "I;16N", "I;16S")


def _scaled(arr: np.ndarray, lo: float, hi: float) -> np.ndarray:
    out = (arr.astype(np.float64) - lo) * (255.0 / (hi - lo) if hi > lo else 0.0)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _grey8(img: Image.Image) -> Image.Image:
    """``I;16*``, ``I`` or ``F`` as an 8-bit ``L`` image."""
    arr = np.asarray(img)
    if img.mode in _SIXTEEN:
        return Image.fromarray(_scaled(arr, 0, 65535), "L")
    if img.mode == "F":
        arr = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        lo, hi = float(arr.min(initial=0.0)), float(arr.max(initial=0.0))
        if lo >= 0 and hi <= 1.0:
            return Image.fromarray(_scaled(arr, 0, 1.0), "L")
        if lo >= 0 and hi <= 255:
            return Image.fromarray(_scaled(arr, 0, 255.0), "L")
        return Image.fromarray(_scaled(arr, lo, hi), "L")
    lo, hi = int(arr.min(initial=0)), int(arr.max(initial=0))  # mode "I"
    if lo >= 0 and hi <= 65535:
        return Image.fromarray(_scaled(arr, 0, 65535), "L")
    return Image.fromarray(_scaled(arr, lo, hi), "L")


def _has_alpha(img: Image.Image) -> bool:
    return img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (img.mode == "P" and "transparency" in img.info)


def _cmyk_to_rgb(img: Image.Image) -> Image.Image:
    icc = img.info.get("icc_profile")
    if icc:
        try:
            from PIL import ImageCms

            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            return ImageCms.profileToProfile(img, src, ImageCms.createProfile("sRGB"), outputMode="RGB")
        except Exception:  # noqa: BLE001 - a broken profile: fall back to the plain conversion
            pass
    return img.convert("RGB")


def to_uint8(img: Image.Image, channels: int = 3) -> Image.Image:
    """``img`` as an 8-bit ``RGB`` image (``L`` with ``channels=1``), each mode scaled by its meaning."""
    target = "L" if channels == 1 else "RGB"
    if img.mode in _SIXTEEN or img.mode in ("I", "F"):
        img = _grey8(img)
    elif _has_alpha(img):
        rgba = img.convert("RGBA")
        base = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
        img = Image.alpha_composite(base, rgba)
    elif img.mode == "CMYK":
        img = _cmyk_to_rgb(img)
    return img if img.mode == target else img.convert(target)
