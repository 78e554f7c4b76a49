"""``vitkit attention NAME INPUT...``: attention maps per layer and head, rollout and mean attention distance.

Writes PNG overlays to ``--out``: ``layer_XX.png`` (one row per selected layer, one tile per head: where the
query looks, in image coordinates), ``rollout.png`` for class-token models, ``mean_distance.png`` and
``mean_distance.json`` (pixels, per layer and head, over all inputs as one batch).
"""
from __future__ import annotations

import argparse
import json
import os

NAME = "attention"
HELP = "attention maps (per layer/head, rollout) as PNG overlays, and mean attention distance"

SAMPLES = ("astronaut", "chelsea", "coffee")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="registered model name (see 'vitkit models'), or a run directory / checkpoint "
                                "folder inside one (its model and weights, as 'vitkit predict' takes)")
    p.add_argument("inputs", nargs="+",
                   help="image or video files, or sample:astronaut / sample:chelsea / sample:coffee (scikit-image)")
    p.add_argument("--weights", help="checkpoint to load (any supported layout)")
    p.add_argument("--out", default="attention", help="output folder (default: ./attention)")
    p.add_argument("--layers", default="all", help="comma-separated layer indices (negatives allowed) or 'all'")
    p.add_argument("--query", default=None,
                   help="'cls', 'centre', or 'y,x' pixel of the query (default: cls if the model has one, else centre)")
    p.add_argument("--num-classes", type=int, help="number of classes of the checkpoint's head")
    p.add_argument("--sampling-rate", type=int,
                   help="video: frames between the clip's sampled frames (default: the run's recipe, else 1); "
                        "only the centre clip of T frames is decoded")


def load_input(path: str, input_size: tuple[int, ...], mean, std, crop_pct: float = 1.0, sampling_rate: int = 1):
    """A file (or ``sample:NAME``) as a normalised (C, [T,] H, W) tensor and the un-normalised display frame.

    A video gives its centre clip of T frames ``sampling_rate`` apart, and only those frames are decoded (as
    ``vitkit predict`` does); an image given to a video model is repeated T times.
    """
    import numpy as np
    import torch
    import torch.nn.functional as F

    from vitkit.data.sources import VIDEO_EXTENSIONS

    if path.startswith("sample:"):
        import skimage.data

        which = path.split(":", 1)[1]
        if which not in SAMPLES:
            raise ValueError(f"unknown sample {which!r}; choose from {', '.join(SAMPLES)}")
        frames = getattr(skimage.data, which)()[None]
    elif not os.path.exists(path):
        raise FileNotFoundError(f"no such file: {path}")
    elif os.path.splitext(path)[1].lower() in VIDEO_EXTENSIONS:
        from vitkit.data.video import decode_clips

        t = input_size[1] if len(input_size) == 4 else 1
        frames = decode_clips(path, t, sampling_rate)[0].permute(0, 2, 3, 1).numpy()  # (T, h, w, 3)
    else:
        from PIL import Image

        with Image.open(path) as im:
            frames = np.asarray(im.convert("RGB"))[None]
    video = len(input_size) == 4
    t = input_size[1] if video else 1
    idx = np.linspace(0, len(frames) - 1, t).round().astype(int)  # the clip's frames, or one image repeated
    x = torch.from_numpy(frames[idx]).permute(0, 3, 1, 2).float() / 255.0  # (T, 3, h, w)
    h, w = input_size[-2:]
    scale = max(h, w) / crop_pct / min(x.shape[-2:])
    size = (max(h, round(x.shape[-2] * scale)), max(w, round(x.shape[-1] * scale)))
    x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
    top, left = (size[0] - h) // 2, (size[1] - w) // 2
    x = x[..., top:top + h, left:left + w].clamp(0, 1)
    display = x[len(x) // 2].permute(1, 2, 0).numpy()
    x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    x = x.permute(1, 0, 2, 3) if video else x[0]
    return x, display


def _select(n: int, spec: str) -> list[int]:
    if spec == "all":
        return list(range(n))
    out = []
    for s in spec.split(","):
        i = int(s)
        if not -n <= i < n:
            raise ValueError(f"layer {i} out of range for {n} attention layers")
        out.append(i % n)
    return out


def _query(layer, spec: str | None):
    """Translate --query to an index for attention_map (a pixel becomes the token whose cell contains it)."""
    if spec in (None, "cls"):
        return None if spec is None else "cls"
    if spec == "centre":
        from vitkit.analysis.attention import centre_query

        return centre_query(layer)
    yx = [float(v) for v in spec.split(",")]
    cell = [int(c // s) for c, s in zip(yx, layer.q.stride[-2:])]
    grid = layer.q.grid
    lead = [g // 2 for g in grid[:-2]]
    flat = 0
    for c, g in zip(lead + cell, grid):
        flat = flat * g + min(max(c, 0), g - 1)
    return flat


def run(args: argparse.Namespace) -> int:
    import torch

    import vitkit
    from vitkit.analysis import attention as A
    from vitkit.analysis import plots

    if os.path.isdir(args.name):
        from vitkit.engine.inference import load_trained

        if args.weights:
            raise ValueError(f"{args.name} is a run folder and brings its own weights; drop --weights")
        trained = load_trained(args.name)
        model, spec = trained.model, trained.model.input_spec  # the run's input: size, clip length, mean, std
        size, mean, std, rate = spec.input_size, spec.mean, spec.std, spec.sampling_rate or 1
        title = model.model_name
    else:
        overrides = {"num_classes": args.num_classes} if args.num_classes else {}
        model = vitkit.create_model(args.name, weights=args.weights, **overrides).eval()
        spec = model.input_spec
        size, mean, std, rate, title = spec.input_size, spec.mean, spec.std, 1, args.name
    rate = args.sampling_rate or rate
    loaded = [load_input(p, size, mean, std, spec.crop_pct, rate) for p in args.inputs]
    x = torch.stack([a for a, _ in loaded])
    display = loaded[0][1]
    size = tuple(x.shape[2:])
    layers = A.collect_attention(model, x)
    os.makedirs(args.out, exist_ok=True)
    written = []
    for i in _select(len(layers), args.layers):
        layer = layers[i]
        maps = A.to_input(A.attention_map(layer, _query(layer, args.query)), layer.k, size)
        if maps.ndim == 4:  # video: average over time for the overlay on the middle frame
            maps = maps.mean(1)
        written.append(plots.save_overlay_grid(
            os.path.join(args.out, f"layer_{i:02d}.png"), display, maps[None], row_labels=[layer.name],
            title=f"{title} {layer.name}: attention of the {args.query or 'default'} query"))
    if all(l.num_prefix for l in layers) and all(l.probs.shape[1] == 1 for l in layers):
        roll, lay = A.attention_rollout(layers)
        grid_vals = roll[lay.index[0] >= 0]
        m = A.to_input(grid_vals.reshape(lay.grid), lay, size)
        if m.ndim == 3:
            m = m.mean(0)
        written.append(plots.save_overlay(os.path.join(args.out, "rollout.png"), display, m,
                                          title=f"{title}: attention rollout of the class token"))
    dist = A.mean_attention_distance(layers)
    written.append(plots.plot_mean_distance(os.path.join(args.out, "mean_distance.png"), dist,
                                            title=f"{title}, {len(args.inputs)} input(s)"))
    with open(os.path.join(args.out, "mean_distance.json"), "w") as f:
        json.dump({"model": title, "inputs": args.inputs, "unit": "input pixels",
                   "layers": {l.name: d.tolist() for l, d in zip(layers, dist)}}, f, indent=2)
    for l, d in zip(layers, dist):
        print(f"{l.name:<24} heads {l.num_heads:>3}  mean attention distance (px): "
              f"min {d.min():7.1f}  mean {d.mean():7.1f}  max {d.max():7.1f}")
    print(f"wrote {len(written) + 1} files to {args.out}")
    return 0
