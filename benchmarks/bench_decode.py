"""Decoders side by side: clips/s of the training data pipeline with PyAV, torchcodec and decord, 0/1/2 workers.

Every decoder reads the same files with the same sampling and transform, through ``vitkit.data.build_dataset``
with ``decoder=...`` (the recipe key ``data.decoder``), in a ``DataLoader`` (batch 1, no shuffle, the given
number of workers; one torch thread per process). Each decoder decodes only the frames the sampler asks for
(PyAV: demux once then seek; torchcodec: ``get_frames_at`` in exact seek mode; decord: ``get_batch``).
torchcodec and decord are optional (``pip install torchcodec decord``; torchcodec needs FFmpeg's shared libraries)
and skipped when absent.

Sets (encoded here with PyAV): Kinetics-like 340x256, 10 s at 30 fps, H.264 with the default key-frame interval
(dense 16x4 clips, short-side jitter 256-320 + crop 224 + flip, as the Kinetics recipes); SSv2-like VP9 WebM 427x240,
4 s at 12 fps (16 segments, random-resized crop 224, no flip, as the SSv2 recipes). Prints a table and writes
``benchmarks/results/decode.json``. Usage: ``python benchmarks/bench_decode.py [--files 6] [--repeats 2]``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import av
import numpy as np
import torch

from vitkit.analysis.benchmark import environment
from vitkit.data import build_dataset
from vitkit.data.decoders import available_decoders

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_data import make_kinetics_like  # noqa: E402 - the Kinetics-like clips of the data benchmark


def make_ssv2_like(path: str, seconds: int = 4, fps: int = 12, w: int = 427, h: int = 240) -> None:
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:h, 0:w]
    with av.open(path, "w") as c:
        s = c.add_stream("libvpx-vp9", rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        for i in range(seconds * fps):
            base = 128 + 60 * np.sin((xx + 5 * i) / 19.0) * np.cos((yy - 3 * i) / 27.0)
            img = np.clip(base[..., None] + rng.normal(0, 6, (h, w, 3)), 0, 255).astype(np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def clips_per_s(list_file: str, decoder: str, workers: int, kw: dict, repeats: int) -> list[float]:
    ds = build_dataset(list_file, "train", train=True, input_size=(3, 16, 224, 224), decoder=decoder, **kw)
    loader = torch.utils.data.DataLoader(ds, batch_size=1, num_workers=workers, shuffle=False,
                                         persistent_workers=workers > 0)
    for _ in loader:  # warm-up: worker start, indexes, OS file cache
        pass
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        n = sum(x.shape[0] for x, _ in loader)
        out.append(n / (time.perf_counter() - t0))
    if bad := ds.bad_samples():
        raise RuntimeError(f"{decoder}: unreadable files {bad}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=6, help="files per set")
    ap.add_argument("--repeats", type=int, default=2, help="timed passes over the files (median reported)")
    ap.add_argument("--workers", default="0,1,2")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "decode.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    tmp = tempfile.mkdtemp(prefix="vitkit-bench-decode-")
    sets = {
        "Kinetics-like H.264 340x256 10s, dense 16x4": ("k", ".mp4", make_kinetics_like, {
            "sampling_rate": 4, "augment": {"crop": "jitter", "jitter_scales": (256, 320), "hflip": 0.5}}),
        "SSv2-like VP9 WebM 427x240 4s, 16 segments": ("s", ".webm", make_ssv2_like, {
            "sampling": "segment", "augment": {"crop": "rrc"}}),
    }
    decoders = available_decoders()
    workers = [int(w) for w in args.workers.split(",")]
    print(f"decoders installed: {', '.join(decoders)}; load average {os.getloadavg()[0]:.1f}")
    rows = []
    for name, (stem, ext, make, kw) in sets.items():
        paths = []
        for k in range(args.files):
            p = os.path.join(tmp, f"{stem}{k}{ext}")
            make(p, None) if make is make_kinetics_like else make(p)
            paths.append(p)
        lst = os.path.join(tmp, f"{stem}.txt")
        with open(lst, "w") as f:
            f.writelines(f"{p} 0\n" for p in paths)
        for w in workers:
            for d in decoders:
                runs = clips_per_s(lst, d, w, kw, args.repeats)
                rows.append({"files": name, "decoder": d, "workers": w, "clips_per_s": round(statistics.median(runs), 2),
                             "runs": [round(r, 2) for r in runs], "load_avg": round(os.getloadavg()[0], 1)})
                print(f"{name:46s} {d:11s} workers {w}: {rows[-1]['clips_per_s']:7.2f} clips/s "
                      f"(load {rows[-1]['load_avg']})", flush=True)
    print("\n| files | workers | " + " | ".join(decoders) + " |")
    print("|---|---:|" + "---:|" * len(decoders))
    for name in sets:
        for w in workers:
            cells = [next(r["clips_per_s"] for r in rows if r["files"] == name and r["workers"] == w and
                          r["decoder"] == d) for d in decoders]
            print(f"| {name} | {w} | " + " | ".join(f"{c:.2f}" for c in cells) + " |")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"benchmark": "decoders: clips/s through the training data pipeline", "rows": rows,
                   "environment": environment()}, f, indent=1)
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
