"""Video datasets beyond class folders, on files the tests make: segment sampling, frame folders (mmaction
rawframes lists), Something-Something V2 (JSON + WebM VP8/VP9), Charades (multi-label CSV), the label lists,
and the left/right flip rule on the direction-sensitive motion-digits-lr."""
from __future__ import annotations

import json
import logging
import os

import av
import numpy as np
import pytest
import torch
from PIL import Image

from vitkit.data import build_dataset, class_names
from vitkit.data.flip import left_right_label_map
from vitkit.data.frames import FrameFolderReader
from vitkit.data.sampling import segment_indices
from vitkit.engine.recipe import load_recipe
from vitkit.engine.trainer import Trainer

LEVEL0, STEP = 20, 12  # frame i is a flat grey of level 20 + 12 i (i < 19): the decoded mean names the frame
H, W = 48, 64


RAMP = np.round(np.linspace(-16, 16, W)).astype(np.int16)  # a left-right ramp of mean 0: crops differ


def frame_array(i: int) -> np.ndarray:
    return np.broadcast_to((LEVEL0 + STEP * i + RAMP)[None, :, None], (H, W, 3)).astype(np.uint8)


def frame_ids(frames: torch.Tensor) -> list[int]:
    return [round((float(f.float().mean()) - LEVEL0) / STEP) for f in frames]


def write_video(path, n=12, codec="libvpx-vp9", fps=12) -> str:
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=fps)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        for i in range(n):
            for p in s.encode(av.VideoFrame.from_ndarray(frame_array(i), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return str(path)


def write_frames(folder, n=12, ext="jpg", tmpl="img_{:05d}", start=1) -> str:
    os.makedirs(folder, exist_ok=True)
    for i in range(n):
        Image.fromarray(frame_array(i)).save(os.path.join(folder, tmpl.format(start + i) + "." + ext), quality=95)
    return str(folder)


# --- segment sampling ---------------------------------------------------------------------------------------
def test_segment_indices_one_frame_per_segment():
    g = torch.Generator().manual_seed(0)
    for n, t in [(100, 8), (17, 8), (5, 8), (1, 4)]:
        size = (n - 1) / t
        bounds = [(round(size * i), round(size * (i + 1))) for i in range(t)]
        test = segment_indices(n, t, train=False)
        assert test == [(a + b) // 2 for a, b in bounds]  # the centre of each segment
        for _ in range(20):
            tr = segment_indices(n, t, train=True, generator=g)
            assert len(tr) == t and all(a <= i <= b for i, (a, b) in zip(tr, bounds))
            assert tr == sorted(tr) and 0 <= tr[0] and tr[-1] < n
    # training reaches both ends of a segment; several test clips take distinct offsets
    seen = {segment_indices(100, 4, train=True, generator=g)[0] for _ in range(300)}
    assert min(seen) == 0 and max(seen) == round(99 / 4)
    clips = [segment_indices(100, 4, train=False, clip=c, num_clips=3) for c in range(3)]
    assert len({tuple(c) for c in clips}) == 3
    with pytest.raises(ValueError, match="num_segments"):
        segment_indices(10, 0, train=False)


# --- frame folders -------------------------------------------------------------------------------------------
@pytest.fixture
def rawframes(tmp_path):
    lines = []
    for k in range(6):
        write_frames(tmp_path / "frames" / f"v{k}", n=12)
        lines.append(f"frames/v{k} 12 {k % 2}")
    write_frames(tmp_path / "frames" / "cut", n=7)      # extraction stopped early: 12 listed, 7 on disk
    write_frames(tmp_path / "frames" / "nolabel", n=12)
    write_frames(tmp_path / "frames" / "png", n=12, ext="png", tmpl="frame_{:04d}", start=0)  # other naming
    lines += ["frames/cut 12 1", "frames/nolabel 12", "frames/png 12 0"]
    (tmp_path / "train.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "val.txt").write_text("\n".join(lines[:4]) + "\n")
    return tmp_path


def test_frame_folder_reader_reads_the_listed_frames(rawframes):
    r = FrameFolderReader({str(rawframes / "frames" / "v0"): 12})
    assert frame_ids(r.read(str(rawframes / "frames" / "v0"), [0, 5, 11, 5])) == [0, 5, 11, 5]
    assert r.num_frames(str(rawframes / "frames" / "png")) == 12  # template and count read from the names
    assert frame_ids(r.read(str(rawframes / "frames" / "png"), [3])) == [3]


def test_rawframes_dataset_same_pipeline_as_video_and_counted_skips(rawframes, caplog):
    with caplog.at_level(logging.WARNING, logger="vitkit.data"):
        ds = build_dataset(str(rawframes), "train", train=False, input_size=(3, 4, 32, 32), sampling_rate=3)
    assert len(ds) == 8 and ds.classes == ["0", "1"]  # the entry without a label is skipped at once
    xs = [ds[i][0] for i in range(len(ds))]  # 'cut' is replaced by another sample
    assert all(x.shape == (3, 4, 32, 32) for x in xs)
    bad = {os.path.basename(p): r for p, r in ds.bad_samples().items()}
    assert set(bad) == {"cut", "nolabel"}
    assert "missing frames" in bad["cut"] and "empty label set" in bad["nolabel"]
    # the same sampling and transform as an encoded video of the same frames
    video = write_video(rawframes / "v0.mp4", codec="libx264")
    (rawframes / "vid.txt").write_text("v0.mp4 0\n")
    vds = build_dataset(str(rawframes / "vid.txt"), "val", train=False, input_size=(3, 4, 32, 32), sampling_rate=3)
    assert os.path.exists(video)
    torch.testing.assert_close(vds[0][0], xs[0], atol=0.1, rtol=0)  # jpeg vs h264 rounding only


def test_rawframes_train_step_and_multi_clip_eval(rawframes, tmp_path):
    r = _video_recipe(str(rawframes), tmp_path / "run", "data.val_split=val", "eval.num_clips=2",
                      "data.sampling_rate=2", "data.augment={crop: rrc, scale: [0.5, 1.0], hflip: 0.5}")
    t = Trainer(r, quiet=True)
    step = t.train_step([next(iter(t.loader))], None)
    assert np.isfinite(step["loss"]) and step["seen"] == 4
    ev = t.evaluate()  # 2 clips x 1 crop per folder, softmax averaged: top-1 over the 4 listed folders
    assert t.test_set.num_views == 2 and ev["num_samples"] == 4 and 0 <= ev["top1"] <= 100
    assert {os.path.basename(p) for p in t.train_set.bad_samples()} <= {"cut", "nolabel"}


# --- Something-Something V2 -----------------------------------------------------------------------------------
SSV2_CLASSES = ["Pushing something from left to right", "Pushing something from right to left",
                "Holding something", "Moving something up"]


@pytest.fixture
def ssv2(tmp_path):
    videos = tmp_path / "20bn-something-something-v2"
    videos.mkdir()
    labels = {c: str(i) for i, c in enumerate(SSV2_CLASSES)}
    (tmp_path / "something-something-v2-labels.json").write_text(json.dumps(labels))
    entries = []
    for k in range(8):
        write_video(videos / f"{100 + k}.webm", n=10 + k, codec="libvpx-vp9" if k % 2 else "libvpx")
        tmpl = SSV2_CLASSES[k % 4].replace("something", "[something]")
        entries.append({"id": str(100 + k), "label": "x", "template": tmpl, "placeholders": ["x"]})
    data = open(videos / "100.webm", "rb").read()
    (videos / "200.webm").write_bytes(data[: int(len(data) * 0.6)])  # a WebM cut short
    entries += [{"id": "200", "template": SSV2_CLASSES[0].replace("something", "[something]")},
                {"id": "201", "template": "Juggling [something]"},   # not a class
                {"id": "202", "label": "no template"}]               # empty label set
    (tmp_path / "something-something-v2-train.json").write_text(json.dumps(entries))
    (tmp_path / "something-something-v2-validation.json").write_text(json.dumps(entries[:8]))
    return tmp_path


def test_ssv2_reader_labels_and_skips(ssv2):
    ds = build_dataset(str(ssv2), "train", train=True, input_size=(3, 4, 32, 32), sampling="segment")
    assert ds.classes == SSV2_CLASSES and len(ds) == 9
    assert [y for _, y in ds.samples[:4]] == [0, 1, 2, 3]
    x, y = ds[8]  # the cut WebM: replaced, counted
    assert x.shape == (3, 4, 32, 32)
    bad = {os.path.basename(p): r for p, r in ds.bad_samples().items()}
    assert set(bad) == {"200.webm", "201.webm", "202.webm"}
    assert "truncated" in bad["200.webm"] and "not one of" in bad["201.webm"] and "empty label" in bad["202.webm"]
    # segment sampling at test time: the segment centres, exactly, from VP8 and VP9
    te = build_dataset(str(ssv2), "val", train=False, input_size=(3, 4, 32, 32), sampling="segment",
                       augment={"crop_pct": 1.0})
    for j in (0, 1):
        n = 10 + j
        frames = te._reader.read(te.samples[j][0], segment_indices(n, 4, train=False))
        assert frame_ids(frames) == segment_indices(n, 4, train=False)


def _video_recipe(ds: str, run, *extra):
    return load_recipe(None, [
        "model.name=uniformer_demo_video_8x32", "model.num_frames=4", f"data.dataset={ds}", "data.num_frames=4",
        "data.input_size=32",
        "train.batch_size=4", "train.workers=0", "train.max_steps=2", "schedule.epochs=1", "eval.batch_size=8",
        f"run.dir={run}", *extra])


def test_ssv2_trains_and_tests_one_clip_three_crops(ssv2, tmp_path):
    r = _video_recipe(str(ssv2), tmp_path / "run", "data.sampling=segment", "eval.num_crops=3",
                      "data.val_split=val", "data.augment={crop: rrc, scale: [0.5, 1.0]}")
    t = Trainer(r, quiet=True)
    assert t.test_set.num_views == 3
    x, y, _ = t.test_set[0]
    assert x.shape == (3, 3, 4, 32, 32) and not torch.equal(x[0], x[2])  # three crops along the long side
    step = t.train_step([next(iter(t.loader))], None)  # one step: the full loop is run on Charades below
    assert np.isfinite(step["loss"]) and step["seen"] == 4
    ev = t.evaluate()
    assert 0 <= ev["top1"] <= 100 and ev["num_samples"] == 8 and "mAP" not in ev


# --- Charades (multi-label) ----------------------------------------------------------------------------------
@pytest.fixture
def charades(tmp_path):
    videos = tmp_path / "Charades_v1_480"
    videos.mkdir()
    (tmp_path / "Charades_v1_classes.txt").write_text("c000 Holding some clothes\nc001 Putting clothes somewhere\n"
                                                      "c002 Taking a cup\nc003 Drinking from a cup\n")
    rows = ["id,subject,scene,quality,relevance,verified,script,objects,descriptions,actions,length"]
    acts = ["c000 0.0 1.0;c002 0.2 0.9", "c001 0.0 0.5", "c003 0.1 0.8;c002 0.0 1.0;c000 0.3 0.4", "c002 0.0 1.0"]
    for k in range(8):
        write_video(videos / f"V{k}.mp4", n=12, codec="libx264")
        rows.append(f'V{k},s,Kitchen,6,7,Yes,"a script",cup,"desc","{acts[k % 4]}",1.0')
    rows += ["VEMPTY,s,Kitchen,6,7,Yes,x,cup,d,,1.0", 'VBAD,s,Kitchen,6,7,Yes,x,cup,d,"c999 0 1",1.0']
    (tmp_path / "Charades_v1_train.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "Charades_v1_test.csv").write_text("\n".join(rows[:7]) + "\n")
    return tmp_path


def test_charades_multi_hot_labels_and_skips(charades):
    ds = build_dataset(str(charades), "train", train=True, input_size=(3, 4, 32, 32))
    assert ds.multi_label and ds.num_classes == 4 and ds.classes[0] == "Holding some clothes"
    x, y = ds[2]
    assert y.dtype == torch.float32 and y.tolist() == [1, 0, 1, 1]
    bad = {os.path.basename(p): r for p, r in ds.bad_samples().items()}
    assert "empty label set" in bad["VEMPTY.mp4"] and "unknown class 'c999'" in bad["VBAD.mp4"]


def test_charades_trains_with_bce_and_reports_map(charades, tmp_path):
    r = _video_recipe(str(charades), tmp_path / "run", "data.val_split=test", "eval.num_clips=3",
                      "data.sampling_rate=2")
    t = Trainer(r, quiet=True)
    assert t.multi_label
    res = t.fit()
    assert 0 <= res.final["mAP"] <= 100 and res.final["num_samples"] == 6
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any("mAP" in row for row in rows if row["kind"] == "eval")
    from vitkit.cli import main as cli

    assert cli(["evaluate", str(tmp_path / "run"), "--out", str(tmp_path / "ev"), "--workers", "0"]) == 0
    report = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert report["mAP"] == pytest.approx(res.final["mAP"]) and len(report["per_class_ap"]) == 4


# --- label lists ----------------------------------------------------------------------------------------------
def test_shipped_label_lists():
    k400, k600 = class_names("kinetics400"), class_names("kinetics600")
    ssv2 = class_names("something_something_v2")
    assert len(k600) == len(set(k600)) == 600 and len(ssv2) == len(set(ssv2)) == 174
    assert list(k600) == sorted(k600, key=str.lower) and k600[0] == "abseiling" and k600[-1] == "zumba"
    assert len(set(k400) & set(k600)) > 350  # K600 keeps most K400 classes (some renamed)
    # mmaction2's sthv2_flip_label_map comes out of the left/right rule on the official class order
    assert left_right_label_map(ssv2) == {86: 87, 87: 86, 93: 94, 94: 93, 166: 167, 167: 166}


# --- the direction rule ---------------------------------------------------------------------------------------
def _horizontal_motion(x: torch.Tensor) -> float:
    """Sign of the sprite's left-right travel in a (C, T, H, W) clip: its intensity centroid, last - first frame."""
    f = x[0] - x[0].amin()
    cols = torch.arange(f.shape[-1], dtype=f.dtype)
    cx = (f.sum(-2) * cols).sum(-1) / f.sum((-2, -1))
    return float(cx[-1] - cx[0])


def _mislabelled(augment: dict, n: int = 64) -> float:
    ds = build_dataset("motion-digits-lr", "test", train=True, input_size=(1, 8, 32, 32), augment=augment,
                       mean=(0.0,), std=(1.0,))
    wrong = total = 0
    for i in range(n):
        torch.manual_seed(i)
        x, y = ds[i]
        name = ds.classes[y]
        if "left" in name or "right" in name:
            total += 1
            wrong += (_horizontal_motion(x) > 0) != ("right" in name)
    return wrong / total


def test_no_flip_rule_matters_on_direction_sensitive_motion_digits():
    none = {"crop": "none", "crop_pct": 1.0}
    assert _mislabelled(none) == 0.0                                            # SSv2 rule: no flip
    plain = _mislabelled({**none, "hflip": 0.5})                                 # plain flip: noise
    assert 0.3 < plain < 0.7
    assert _mislabelled({**none, "hflip": 0.5, "flip_label_map": "left-right"}) == 0.0  # flip + label swap
    # the original motion-digits never flips (its arcs would need a clockwise swap too)
    ds = build_dataset("motion-digits", "test", train=True, input_size=(1, 8, 32, 32),
                       augment={**none, "hflip": 1.0, "flip_label_map": "left-right"}, mean=(0.0,), std=(1.0,))
    assert ds.num_classes == 10 and not hasattr(ds, "label_map")


def test_builtin_clips_follow_the_sampling_mode():
    kw = dict(train=False, input_size=(1, 4, 32, 32), mean=(0.0,), std=(1.0,))
    seg = build_dataset("motion-digits-lr", "test", sampling="segment", **kw)
    dense = build_dataset("motion-digits-lr", "test", sampling_rate=2, **kw)
    raw = seg.data[3, :, 0].float() / 255  # (8, 32, 32)
    torch.testing.assert_close(seg[3][0][0], raw[segment_indices(8, 4, train=False)])  # centres of 4 segments
    torch.testing.assert_close(dense[3][0][0], raw[[0, 2, 4, 6]])                     # 4 x 2 from the middle start
