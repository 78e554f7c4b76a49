"""Data that must not silently mis-train: sparse labels, the list format, the doctor's kind, train == test."""
from __future__ import annotations

import logging

import numpy as np
from PIL import Image

from vitkit.data.doctor import scan
from vitkit.data.sources import read_list_file, resolve_source, same_source


def _img(path, value=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(path)


def test_sparse_labels_are_inferred_from_those_seen_with_a_warning(tmp_path, caplog):
    for i in range(4):
        _img(tmp_path / f"{i}.png", i)
    (tmp_path / "train.txt").write_text("0.png 0\n1.png 1\n2.png 2\n3.png 999\n")
    (tmp_path / "val.txt").write_text("0.png 999\n1.png 2\n")
    with caplog.at_level(logging.WARNING, logger="vitkit.data"):
        src = read_list_file(str(tmp_path / "train.txt"))
    assert src.classes == ["0", "1", "2", "999"], "a stray 999 must not make a 1000-class model"
    assert [y for _, y in src.samples] == [0, 1, 2, 3]
    assert "sparse" in caplog.text and "999" in caplog.text
    # the test split takes the training classes (as the trainer passes them): 999 maps by name
    val = read_list_file(str(tmp_path / "val.txt"), classes=src.classes)
    assert [y for _, y in val.samples] == [3, 2] and not val.rejected
    # a folder of list files: one label space from the labels of every split
    both = resolve_source(str(tmp_path), "val", video=False)
    assert both.classes == ["0", "1", "2", "999"] and [y for _, y in both.samples] == [3, 2]
    # contiguous labels: no warning, identity
    caplog.clear()
    (tmp_path / "dense.txt").write_text("0.png 1\n1.png 0\n")
    with caplog.at_level(logging.WARNING, logger="vitkit.data"):
        assert read_list_file(str(tmp_path / "dense.txt")).classes == ["0", "1"]
    assert "sparse" not in caplog.text
    # with a class count the labels are indices, and out-of-range ones are rejected as before
    counted = read_list_file(str(tmp_path / "train.txt"), num_classes=10)
    assert len(counted.samples) == 3 and "out of range" in next(iter(counted.rejected.values()))


def test_list_format_paths_with_spaces_commas_and_tabs(tmp_path):
    for name in ("a, b.png", "my photos/c d.png", 'q"uote.png', "plain.png"):
        _img(tmp_path / name)
    (tmp_path / "list.txt").write_text("a, b.png 1\nmy photos/c d.png\t0\nplain.png,2\n# comment\n\n")
    got = read_list_file(str(tmp_path / "list.txt"), num_classes=3)
    assert not got.rejected, got.rejected
    assert [(p.split("/")[-1], y) for p, y in got.samples] == [("a, b.png", 1), ("c d.png", 0), ("plain.png", 2)]
    # a tab-separated line takes the label after the tab, even when the path has spaces
    (tmp_path / "tabs.txt").write_text("my photos/c d.png\t1\n")
    assert read_list_file(str(tmp_path / "tabs.txt"), num_classes=2).samples[0][1] == 1
    # CSV: quoted paths, a header line
    (tmp_path / "list.csv").write_text('path,label\n"a, b.png",1\n"q""uote.png",0\nplain.png,2\n')
    got = read_list_file(str(tmp_path / "list.csv"), num_classes=3)
    assert not got.rejected, got.rejected
    assert [(p.split("/")[-1], y) for p, y in got.samples] == [("a, b.png", 1), ('q"uote.png', 0), ("plain.png", 2)]


def test_data_check_detects_the_kind_from_the_entries(tmp_path):
    import av

    clips = tmp_path / "clips"
    clips.mkdir()
    for name in ("a.mp4", "b.mp4"):
        with av.open(str(clips / name), "w") as c:
            s = c.add_stream("mpeg4", rate=10)
            s.width = s.height = 16
            s.pix_fmt = "yuv420p"
            for i in range(6):
                for p in s.encode(av.VideoFrame.from_ndarray(np.full((16, 16, 3), 20 * i, np.uint8), format="rgb24")):
                    c.mux(p)
            for p in s.encode():
                c.mux(p)
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "train.txt").write_text(f"{clips / 'a.mp4'} 0\n{clips / 'b.mp4'} 1\n")
    (lists / "val.txt").write_text(f"{clips / 'b.mp4'} 1\n")
    (lists / "notes.png").write_bytes(b"")  # a stray image beside the lists must not decide the kind
    rep = scan(str(lists))
    assert rep.kind == "video" and not rep.bad, [(f.path, f.reason) for f in rep.bad]
    # no extensions at all: the files themselves decide
    (clips / "a.mp4").rename(clips / "a")
    (lists / "x.txt").write_text(f"{clips / 'a'} 0\n")
    assert scan(str(lists / "x.txt")).kind == "video"


def test_same_list_for_train_and_test_is_named():
    assert same_source("/data/list.txt", "/data/../data/list.txt") and "memorisation" in same_source("a", "a")
    assert same_source("/data/train.txt", "/data/val.txt") is None and same_source("", "") is None


def _clip(path, n=6, size=16):
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=10)
        s.width = s.height = size
        s.pix_fmt = "yuv420p"
        for i in range(n):
            for p in s.encode(av.VideoFrame.from_ndarray(np.full((size, size, 3), min(40 * i, 255), np.uint8), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def test_short_videos_and_images_as_videos_are_noted_and_follow_data_short_video(tmp_path, caplog):
    from vitkit.data import build_dataset
    from vitkit.data.short import clip_indices_for

    assert clip_indices_for(0, 4, 4, 6, "pad") == [0, 4, 5, 5]
    assert clip_indices_for(0, 4, 4, 6, "loop") == [0, 4, 2, 0]
    _clip(tmp_path / "short.mp4", n=6)
    _clip(tmp_path / "long.mp4", n=16)
    _img(tmp_path / "still.png", 9)
    (tmp_path / "train.txt").write_text("short.mp4 0\nlong.mp4 1\nstill.png 0\n")
    kw = dict(train=True, input_size=(3, 4, 16, 16), sampling_rate=4, augment={})
    for policy in ("pad", "loop"):
        with caplog.at_level(logging.WARNING, logger="vitkit.data"):
            ds = build_dataset(str(tmp_path / "train.txt"), "train", short_video=policy, **kw)
            for i in range(len(ds)):
                x, _ = ds[i]
                assert tuple(x.shape) == (3, 4, 16, 16)
        notes = ds.sample_notes()
        assert set(notes) == {str(tmp_path / "short.mp4"), str(tmp_path / "still.png")}, notes
        assert "short: 6 frames < clip span 13" in notes[str(tmp_path / "short.mp4")]
        assert f"data.short_video={policy}" in notes[str(tmp_path / "short.mp4")]
        assert "image given as a video" in notes[str(tmp_path / "still.png")]
        assert "short.mp4" in caplog.text and not ds.bad_samples()
    # loop and pad really differ: the third frame is frame 2 (looped) or the last one (padded)
    loop = build_dataset(str(tmp_path / "train.txt"), "train", short_video="loop", **kw)._decode(0)
    pad = build_dataset(str(tmp_path / "train.txt"), "train", short_video="pad", **kw)._decode(0)
    assert loop[2].float().mean() < pad[2].float().mean()
    skip = build_dataset(str(tmp_path / "train.txt"), "train", short_video="skip", **kw)
    for i in range(len(skip)):
        skip[i]
    assert set(skip.bad_samples()) == {str(tmp_path / "short.mp4"), str(tmp_path / "still.png")}
    # the doctor, by default: the one-frame file always, the short one against the default 16x4 clip
    from vitkit.cli import main

    assert main(["data", "check", str(tmp_path / "train.txt"), "--video", "--json", str(tmp_path / "r.json")]) == 0
    import json

    rep = {f["path"].rsplit("/", 1)[1]: f["notes"] for f in json.loads((tmp_path / "r.json").read_text())["files"]}
    assert any("image given as a video" in n for n in rep["still.png"])
    assert any("short: 6 frames < clip span 61" in n for n in rep["short.mp4"])
    assert any("short: 16 frames" in n for n in rep["long.mp4"])
