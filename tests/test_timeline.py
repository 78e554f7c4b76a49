"""``vitkit predict RUN VIDEO --timeline``: sliding windows in one pass with bounded memory, smoothing, outputs."""
from __future__ import annotations

import csv
import json

import av
import numpy as np
import pytest
import torch

from vitkit.checkpoints import save_weights
from vitkit.cli import main as cli
from vitkit.data.stream import WindowStream
from vitkit.data.video import decode_frames, index_video
from vitkit.engine.recipe import load_recipe
from vitkit.engine.timeline import predict_timeline
from vitkit.registry import create_model


def _video(path, n, fps=25, size=(48, 64)) -> str:
    """Frame i: grey level (i * 7) % 200 + 20 with a moving bar, so frames differ and their order shows."""
    h, w = size
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.codec_context.gop_size = 12
        for i in range(n):
            img = np.full((h, w, 3), (i * 7) % 200 + 20, np.uint8)
            img[:, (2 * i) % w] = 255
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return str(path)


@pytest.mark.parametrize("n", [30, 300])
def test_windows_cover_the_video_with_bounded_memory(tmp_path, n):
    path = _video(tmp_path / "v.mp4", n)
    stream = WindowStream(path, num_frames=4, sampling_rate=3, stride=7)  # span 10
    wins = list(stream)
    assert stream.max_held == 10  # one span, whether the video has 30 frames or 300
    starts = [w.frames[0] for w in wins]
    assert starts == [*range(0, n - 9, 7), n - 10]  # every 7 frames, and a last window aligned to the end
    assert wins[-1].frames[-1] == n - 1 and [w.index for w in wins] == list(range(len(wins)))
    index = index_video(path)
    for w in wins[:: max(1, len(wins) // 4)]:  # the sequential pass gives the frames a seek would
        assert w.frames == [w.frames[0] + 3 * i for i in range(4)]
        assert torch.equal(w.clip, decode_frames(index, w.frames)[0])
    assert wins[1].start_s == pytest.approx(7 / 25, abs=1e-3)


def test_short_video_gives_one_window_with_the_last_frame_repeated(tmp_path):
    wins = list(WindowStream(_video(tmp_path / "short.mp4", 6), num_frames=4, sampling_rate=3))
    assert len(wins) == 1 and wins[0].frames == [0, 3, 5, 5]


def _run_dir(tmp_path, classes):
    """A finished run directory for a tiny video model: recipe.yaml + model.safetensors with its class names."""
    run = tmp_path / "run"
    run.mkdir()
    r = load_recipe(None, ["model.name=uniformer_demo_video_8x32", "data.dataset=motion-digits",
                           "model.num_frames=4", "data.sampling_rate=2"])  # the data follows the model
    (run / "recipe.yaml").write_text(r.to_yaml())
    torch.manual_seed(0)
    model = create_model("uniformer_demo_video_8x32", num_classes=len(classes), num_frames=4)
    save_weights(model, run / "model.safetensors", {"classes": json.dumps(classes)})
    return run, model


def test_predict_timeline_cli_writes_png_json_csv(tmp_path, capsys):
    classes = ["a", "b", "c"]
    run, _ = _run_dir(tmp_path, classes)
    video = _video(tmp_path / "long.mp4", 120)
    out = tmp_path / "tl"
    assert cli(["predict", str(run), video, "--timeline", "--out", str(out), "--stride", "8", "--smooth", "3",
                "--top-k", "2"]) == 0
    assert "windows over 120 frames" in capsys.readouterr().out
    data = json.loads((out / "timeline.json").read_text())
    ws = data["windows"]
    assert [w["index"] for w in ws] == list(range(len(ws))) and len(ws) == 16  # span 7: starts 0, 8 .. 112, and 113 (the tail)
    assert data["clip"] == {"num_frames": 4, "sampling_rate": 2, "span": 7, "stride": 8, "max_frames_held": 7}
    assert all(len(w["top"]) == 2 and w["top"][0][0] in classes for w in ws)
    rows = list(csv.DictReader(open(out / "timeline.csv")))
    assert len(rows) == len(ws) and rows[3]["smoothed_top1"] == ws[3]["smoothed"][0][0]
    assert (out / "timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_smoothing_is_the_centred_mean_of_window_probabilities(tmp_path):
    classes = [str(i) for i in range(4)]
    _, model = _run_dir(tmp_path, classes)
    video = _video(tmp_path / "v.mp4", 60)
    from vitkit.data.transforms import build_transforms

    tf = build_transforms(False, (3, 4, 32, 32), augment={"crop_pct": 1.0})
    kw = dict(names=classes, num_frames=4, sampling_rate=2, transform=tf, stride=6, top_k=4, batch_size=3,
              progress=False)
    raw = predict_timeline(model, video, tmp_path / "raw", smooth=1, **kw)
    sm = predict_timeline(model, video, tmp_path / "sm", smooth=3, **kw)
    probs = [torch.tensor([dict(map(tuple, w["top"]))[c] for c in classes]) for w in raw.windows]
    assert [w["top"] for w in raw.windows] == [w["smoothed"] for w in raw.windows]
    for j, w in enumerate(sm.windows):
        near = probs[max(0, j - 1): j + 2]
        expect = torch.stack(near).mean(0)
        got = torch.tensor([dict(map(tuple, w["smoothed"]))[c] for c in classes])
        torch.testing.assert_close(got, expect, atol=2e-5, rtol=0)
