"""Every PIL mode is scaled to 8-bit RGB by what it means, on real files of each mode written here."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from vitkit.data.datasets import load_image


def _ramp(lo: float, hi: float, dtype) -> np.ndarray:
    """A 4x8 horizontal ramp from lo to hi (two rows of each end value for checking)."""
    return np.tile(np.linspace(lo, hi, 8), (4, 1)).astype(dtype)


def _grey_of(path, channels=3) -> np.ndarray:
    x = load_image(str(path), channels).numpy()
    assert x.dtype == np.uint8 and x.shape[0] == channels
    if channels == 3:
        assert (x[0] == x[1]).all() and (x[1] == x[2]).all(), "grey must stay grey"
    return x[0]


@pytest.mark.parametrize("mode,fmt,lo,hi,dtype", [
    ("I;16", "png", 0, 65535, np.uint16),      # 16-bit greyscale PNG: was clipped to white
    ("I", "tiff", 0, 65535, np.int32),         # 32-bit integer TIFF holding 16-bit data
    ("I", "tiff", -1000, 300000, np.int32),    # outside 16 bits: the image's own range
    ("F", "tiff", 0.0, 1.0, np.float32),       # float in [0, 1]: was nearly black
    ("F", "tiff", -3.5, 7.25, np.float32),     # float, any range
])
def test_high_bit_depth_modes_span_0_to_255(tmp_path, mode, fmt, lo, hi, dtype):
    path = tmp_path / f"img.{fmt}"
    img = Image.fromarray(_ramp(lo, hi, dtype))
    if mode == "I;16":
        assert img.mode == "I;16"
    img.save(path)
    assert Image.open(path).mode in (mode, "I;16", "I")  # what the reader gives back
    g = _grey_of(path)
    assert g[:, 0].tolist() == [0] * 4 and g[:, -1].tolist() == [255] * 4
    assert (np.diff(g[0].astype(int)) > 0).all(), "a ramp stays a strictly increasing ramp"
    assert abs(int(g[0, 4]) - round(255 * 4 / 7)) <= 1
    assert _grey_of(path, channels=1)[0, -1] == 255


def test_float_nan_becomes_black_not_an_error(tmp_path):
    a = _ramp(0, 1, np.float32)
    a[0, 3] = np.nan
    Image.fromarray(a).save(tmp_path / "f.tiff")
    g = _grey_of(tmp_path / "f.tiff")
    assert g[0, 3] == 0 and g[1, -1] == 255


def test_transparency_is_composited_over_white(tmp_path):
    # LA: black ink, transparent background that stores black too (as PIL and editors often leave it)
    la = np.zeros((4, 8, 2), np.uint8)
    la[:, :4, 1] = 255  # left half opaque black, right half fully transparent
    la[:, 6, 1] = 128   # half transparent black
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    assert Image.open(tmp_path / "la.png").mode == "LA"
    g = _grey_of(tmp_path / "la.png")
    assert (g[:, :4] == 0).all() and (g[:, 7] == 255).all() and abs(int(g[0, 6]) - 127) <= 1

    # P with a transparent palette index: index 0 is red in the palette but transparent
    p = Image.new("P", (8, 4), 0)
    p.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    p.paste(1, (0, 0, 4, 4))  # left half: opaque blue
    p.save(tmp_path / "p.png", transparency=0)
    q = Image.open(tmp_path / "p.png")
    assert q.mode == "P" and "transparency" in q.info
    x = load_image(str(tmp_path / "p.png")).numpy()
    assert x[:, 0, 0].tolist() == [0, 0, 255] and x[:, 0, 7].tolist() == [255, 255, 255]
    q.save(tmp_path / "p.gif", transparency=0)
    x = load_image(str(tmp_path / "p.gif")).numpy()
    assert x[:, 0, 7].tolist() == [255, 255, 255]


@pytest.mark.parametrize("fmt", ["jpeg", "tiff"])
def test_cmyk_becomes_the_right_rgb(tmp_path, fmt):
    # cyan | magenta | yellow | black, 8 px wide each
    cmyk = np.zeros((8, 32, 4), np.uint8)
    for i in range(4):
        cmyk[:, 8 * i:8 * (i + 1), i] = 255
    Image.fromarray(cmyk, "CMYK").save(tmp_path / f"c.{fmt}", quality=100)
    assert Image.open(tmp_path / f"c.{fmt}").mode == "CMYK"
    x = load_image(str(tmp_path / f"c.{fmt}")).numpy().astype(int)
    want = [(0, 255, 255), (255, 0, 255), (255, 255, 0), (0, 0, 0)]
    for i, rgb in enumerate(want):
        got = x[:, 4, 8 * i + 4]
        assert np.abs(got - np.array(rgb)).max() <= 8, (i, got.tolist(), rgb)


def test_plain_modes_unchanged(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (4, 8, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    assert (load_image(str(tmp_path / "rgb.png")).permute(1, 2, 0).numpy() == rgb).all()
    Image.fromarray(rgb[..., 0]).save(tmp_path / "l.png")
    assert (_grey_of(tmp_path / "l.png") == rgb[..., 0]).all()
    Image.fromarray(rgb[..., 0] > 127).save(tmp_path / "one.png")
    assert set(np.unique(_grey_of(tmp_path / "one.png")).tolist()) <= {0, 255}


def test_large_images_are_drafted_and_reported(tmp_path, monkeypatch, caplog):
    from vitkit.data import large
    from vitkit.data.doctor import check_file

    monkeypatch.setattr(large, "LARGE_PIXELS", 100_000)  # 400x300 counts as large here
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    Image.fromarray(photo).save(tmp_path / "big.jpg", quality=90)
    Image.fromarray(photo).save(tmp_path / "big.png")
    Image.fromarray(photo[:200, :200]).save(tmp_path / "small.jpg")
    with caplog.at_level("WARNING", logger="vitkit.data"):
        x = load_image(str(tmp_path / "big.jpg"), min_side=64)
    assert tuple(x.shape) == (3, 75, 100), "the JPEG decoder's 1/4 draft keeps the shorter side >= 64"
    assert "big.jpg" in caplog.text and "400x300" in caplog.text and "reduced size" in caplog.text
    assert tuple(load_image(str(tmp_path / "big.jpg")).shape) == (3, 300, 400)  # no min_side: full size
    assert tuple(load_image(str(tmp_path / "small.jpg"), min_side=64).shape) == (3, 200, 200)
    assert tuple(load_image(str(tmp_path / "big.png"), min_side=64).shape) == (3, 300, 400)
    rep = check_file(str(tmp_path / "big.png"), 0, video=False)
    assert rep.ok and any("large: 400x300" in n and "in full" in n for n in rep.notes)
    assert not check_file(str(tmp_path / "small.jpg"), 0, video=False).notes
