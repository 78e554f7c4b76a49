"""The same clip indices give the same frames whichever decoder reads them (PyAV, and torchcodec / decord when
installed), on files the tests encode: constant and variable frame rate, non-zero start pts, VP9 WebM, MPEG-4 AVI."""
from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest
import torch

from vitkit.data import build_dataset
from vitkit.data.decoders import DECODERS, available_decoders, build_reader
from vitkit.data.video import VideoError

LEVEL0, STEP, N = 20, 10, 20
TB = Fraction(1, 1000)
VFR = [0, 40, 80, 200, 240, 250, 260, 400, 440, 480, 520, 560, 600, 700, 710, 720, 800, 840, 880, 920]


def _encode(path, codec, pts=None, fps=25, gop=5) -> str:
    """Frame i: grey level 20 + 10 i plus fixed noise (so pixel-level differences between decoders show)."""
    noise = np.random.default_rng(0).integers(-8, 9, size=(48, 64, 1))
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=fps)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        if pts is not None:
            s.codec_context.time_base = s.time_base = TB
        s.codec_context.gop_size = gop
        for i in range(N):
            arr = np.clip(LEVEL0 + STEP * i + noise, 0, 255).astype(np.uint8).repeat(3, 2)
            f = av.VideoFrame.from_ndarray(arr, format="rgb24")
            if pts is not None:
                f.pts, f.time_base = pts[i], TB
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return str(path)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("decoders")
    return {
        "cfr.mp4": _encode(d / "cfr.mp4", "libx264"),
        "vfr.mkv": _encode(d / "vfr.mkv", "libx264", pts=VFR),
        "late.mp4": _encode(d / "late.mp4", "libx264", pts=[5000 + 40 * i for i in range(N)]),
        "vp9.webm": _encode(d / "vp9.webm", "libvpx-vp9"),
        "mpeg4.avi": _encode(d / "mpeg4.avi", "mpeg4", fps=30),
    }


def _ids(frames: torch.Tensor) -> list[int]:
    return [round((float(f.float().mean()) - LEVEL0) / STEP) for f in frames]


@pytest.mark.parametrize("decoder", [d for d in DECODERS if d != "pyav"])
def test_same_indices_same_frames_whichever_decoder(files, decoder):
    if decoder not in available_decoders():
        pytest.skip(f"{decoder} is not installed (optional: pip install {decoder})")
    ref, other = build_reader("pyav"), build_reader(decoder)
    idx = [0, 3, 7, 11, 19, 7, 12, 13]  # any order, repeats, across key frames
    for name, path in files.items():
        assert other.num_frames(path) == ref.num_frames(path) == N, name
        a, b = ref.read(path, idx), other.read(path, idx)
        assert _ids(a) == _ids(b) == idx, name
        assert a.shape == b.shape == (len(idx), 3, 48, 64)
        diff = (a.float() - b.float()).abs()
        assert diff.mean() < 2.0, f"{name}: mean pixel difference {diff.mean():.2f} beyond codec rounding"


def test_decoder_is_a_recipe_choice(files, tmp_path):
    lst = tmp_path / "list.txt"
    lst.write_text("".join(f"{p} {k % 2}\n" for k, p in enumerate(files.values())))
    for decoder in available_decoders():
        ds = build_dataset(str(lst), "val", train=False, input_size=(3, 4, 32, 32), sampling_rate=3,
                           decoder=decoder)
        assert ds[1][0].shape == (3, 4, 32, 32) and not ds.bad_samples()
    with pytest.raises(ValueError, match="data.decoder must be one of"):
        build_dataset(str(lst), "val", train=False, input_size=(3, 4, 32, 32), decoder="opencv")


def test_readers_name_a_missing_file():
    for decoder in available_decoders():
        with pytest.raises(VideoError, match="missing file"):
            build_reader(decoder).num_frames("/nonexistent/clip.mp4")
