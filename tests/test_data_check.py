"""``vitkit data check``: the dataset doctor on real and corrupt files."""
from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from vitkit.data.doctor import scan


def _video(path, n=12, fps=25, vfr=False):
    from fractions import Fraction

    tb = Fraction(1, 1000)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width = s.height = 32
        s.pix_fmt = "yuv420p"
        if vfr:
            s.codec_context.time_base = s.time_base = tb
        rng = np.random.default_rng(0)
        t = 0
        for i in range(n):
            f = av.VideoFrame.from_ndarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8), format="rgb24")
            if vfr:
                f.pts, f.time_base = t, tb
                t += [30, 70, 40][i % 3]
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


@pytest.fixture
def messy_videos(tmp_path):
    for cls in ("jump", "run"):
        (tmp_path / "train" / cls).mkdir(parents=True)
    _video(tmp_path / "train" / "jump" / "a.mp4")
    _video(tmp_path / "train" / "jump" / "vfr.mkv", vfr=True)
    _video(tmp_path / "train" / "run" / "b.mp4", n=30)
    data = (tmp_path / "train" / "run" / "b.mp4").read_bytes()
    (tmp_path / "train" / "run" / "cut.mp4").write_bytes(data[: len(data) // 2])
    (tmp_path / "train" / "run" / "zero.mp4").write_bytes(b"")
    (tmp_path / "train" / "run" / "text.avi").write_text("hello")
    return tmp_path


def test_doctor_reports_bad_videos(messy_videos, tmp_path):
    from vitkit.cli import main

    out = tmp_path / "report.json"
    clean = tmp_path / "clean.txt"
    rc = main(["data", "check", str(messy_videos), "--clip", "16x1", "--json", str(out), "--write-clean", str(clean)])
    assert rc == 1
    lines = clean.read_text().splitlines()
    assert sorted(line.rsplit("/", 1)[1] for line in lines) == ["a.mp4 0", "b.mp4 1", "vfr.mkv 0"]
    assert main(["data", "check", str(clean)]) == 0  # the cleaned list passes
    rep = json.loads(out.read_text())
    assert rep["kind"] == "video" and rep["total"] == 6 and rep["bad"] == 3
    bad = {f["path"].rsplit("/", 1)[1]: f["reason"] for f in rep["files"] if f["reason"]}
    assert set(bad) == {"cut.mp4", "zero.mp4", "text.avi"}
    assert "0 bytes" in bad["zero.mp4"]
    notes = {f["path"].rsplit("/", 1)[1]: f["notes"] for f in rep["files"]}
    assert "variable frame rate" in notes["vfr.mkv"]
    assert any("short: 12 frames" in n for n in notes["a.mp4"]) and not notes["b.mp4"]
    assert rep["categories"] == {"unreadable": 2, "empty": 1}


def test_doctor_full_decode_and_clean_exit(tmp_path, capsys):
    from vitkit.cli import main

    (tmp_path / "x").mkdir()
    _video(tmp_path / "x" / "ok.mp4")
    assert main(["data", "check", str(tmp_path), "--full", "--video"]) == 0
    assert "0 bad" in capsys.readouterr().out
    rep = scan(str(tmp_path), full=True)
    assert rep.files[0].frames == 12 and rep.files[0].width == 32 and rep.files[0].ok
    assert main(["data", "check", str(tmp_path / "nope")]) == 2


def test_doctor_image_list(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)).save(tmp_path / f"{i}.jpg")
    raw = (tmp_path / "0.jpg").read_bytes()
    (tmp_path / "half.jpg").write_bytes(raw[: len(raw) // 2])
    (tmp_path / "list.txt").write_text("0.jpg 0\n1.jpg 1\n2.jpg 5\nhalf.jpg 1\nmissing.jpg 0\n0.jpg 1\n")
    rep = scan(str(tmp_path / "list.txt"), num_classes=2)
    assert rep.kind == "image" and len(rep.files) == 6
    reasons = {f.path.rsplit("/", 1)[1]: f.reason for f in rep.bad}
    assert set(reasons) == {"2.jpg", "half.jpg", "missing.jpg"}
    assert "out of range" in reasons["2.jpg"] and "missing" in reasons["missing.jpg"]
    assert "truncated" in reasons["half.jpg"].lower()
    assert any("listed 2 times" in n for f in rep.files for n in f.notes)


def test_write_clean_list_has_absolute_paths_readable_from_any_directory(tmp_path, monkeypatch):
    from vitkit.cli import main
    from vitkit.data.sources import read_list_file

    skimage_data = pytest.importorskip("skimage.data")
    for cls, name in (("cat", "chelsea"), ("cup", "coffee")):
        (tmp_path / "data" / "photos" / cls).mkdir(parents=True)
        Image.fromarray(getattr(skimage_data, name)()[::4, ::4]).save(tmp_path / "data" / "photos" / cls / "a.jpg")
    (tmp_path / "lists").mkdir()
    monkeypatch.chdir(tmp_path / "data")  # the folder given relative to the working directory, as users do
    assert main(["data", "check", "photos", "--image", "--write-clean", "../lists/clean.txt"]) == 0
    monkeypatch.chdir(tmp_path / "lists")  # read from elsewhere
    lines = (tmp_path / "lists" / "clean.txt").read_text().splitlines()
    assert len(lines) == 2 and all(line.rsplit(" ", 1)[0].startswith(str(tmp_path / "data" / "photos"))
                                   for line in lines)
    samples = read_list_file("clean.txt").samples
    assert len(samples) == 2 and all(Path(p).is_file() for p, _ in samples)
    assert main(["data", "check", "clean.txt", "--image"]) == 0
