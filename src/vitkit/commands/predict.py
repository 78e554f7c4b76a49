"""``vitkit predict RUN|WEIGHTS FILE...``: the top-k classes, with names, of image and video files.

``--timeline --out DIR`` on videos: sliding clips over the whole file (``--stride`` frames apart), per-window top-k,
smoothed over ``--smooth`` windows, written as ``DIR/timeline.{png,json,csv}`` (one folder per video when several);
memory is bounded by one clip whatever the video's length (see :mod:`vitkit.engine.timeline`).

Runs of the dense tasks (segmentation, detection, pose) take image files or folders of images and write their
outputs to ``--out``: mask PNGs and overlays (segmentation), or ``predictions.json`` in COCO results format and
overlay PNGs (detection and instance segmentation; pose, of the ``--boxes`` people or of the whole image)."""
from __future__ import annotations

import argparse
from pathlib import Path

NAME = "predict"
HELP = ("classify image or video files with a trained model (top-k classes); segment images (mask PNGs), detect "
        "objects or estimate keypoints (COCO results JSON and overlays)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="a run directory, or a weights file (any layout vitkit reads) with --model")
    p.add_argument("files", nargs="+", help="image or video files (dense tasks: also folders of images)")
    p.add_argument("--model", help="registered model name (with a weights file)")
    p.add_argument("--recipe", help="the recipe a weights file was trained with (dense tasks: SOURCE is then the "
                                    "weights file)")
    p.add_argument("--ema", action="store_true", help="use the run's EMA weights")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--classes", help="class names: 'imagenet1k', 'kinetics400' or a text file, one name per line")
    p.add_argument("--num-clips", type=int, default=1, help="video: uniformly spaced clips whose scores are averaged")
    p.add_argument("--sampling-rate", type=int, help="video: frames between sampled frames (default: the recipe's)")
    p.add_argument("--device", choices=["cpu", "cuda"])
    p.add_argument("--timeline", action="store_true",
                   help="video: classify sliding clips over the whole file; write timeline.png/json/csv under --out")
    p.add_argument("--out", help="with --timeline: output folder (default: timeline-<video name> here); "
                                 "segmentation runs: folder for <stem>_mask.png and <stem>_overlay.png; detection "
                                 "and pose runs: folder for predictions.json and <stem>_overlay.png (default: .)")
    p.add_argument("--score", type=float, default=0.5,
                   help="detection: least score drawn on the overlays; pose: least score of a --boxes box")
    p.add_argument("--boxes", help="pose: person boxes as COCO result records (e.g. a detection run's "
                                   "predictions.json); default: each whole image is one box")
    p.add_argument("--stride", type=int, help="with --timeline: frames between window starts (default: a clip's span)")
    p.add_argument("--smooth", type=int, default=5, help="with --timeline: windows in the moving average (default 5)")
    p.add_argument("--batch-size", type=int, default=8, help="with --timeline: windows per forward pass")


def _class_names(spec: str | None, fallback: list[str] | None, n: int) -> list[str]:
    if spec:
        if Path(spec).is_file():
            names = [line.strip() for line in Path(spec).read_text().splitlines() if line.strip()]
        else:
            from vitkit.data import class_names

            names = list(class_names(spec))
        if len(names) != n:
            raise ValueError(f"--classes {spec} has {len(names)} names, the model has {n} outputs")
        return names
    return list(fallback) if fallback and len(fallback) == n else [str(i) for i in range(n)]


def run(args: argparse.Namespace) -> int:
    import torch

    from vitkit.data.datasets import readable_files
    from vitkit.data.sources import VIDEO_EXTENSIONS
    from vitkit.data.transforms import build_transforms
    from vitkit.engine.inference import load_trained

    from vitkit.tasks import task_of_run

    task = task_of_run(args.source, args.recipe)
    if task.name != "classification":  # dense tasks: their files (masks, COCO records, overlays) in --out
        trained = task.load_trained(args.source, args.recipe, ema=args.ema)
        args.files = _image_files(args.files)
        return task.bind(trained.recipe).run_predict(args, trained)
    trained = load_trained(args.source, model_name=args.model, ema=args.ema)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = trained.model.to(device)
    spec = model.input_spec  # the run's input: its recipe resolved against the model
    n_out = model.num_classes
    names = _class_names(args.classes, trained.classes, n_out)
    k = max(1, min(args.top_k, n_out))
    transform = build_transforms(False, spec.input_size, spec.mean, spec.std,
                                 {"crop_pct": spec.crop_pct, "interpolation": spec.interpolation})
    rate = args.sampling_rate or spec.sampling_rate or 1
    if args.timeline:
        return _timelines(args, model, spec, transform, rate, names, k, device)
    def load(f: str) -> torch.Tensor:
        return _load(f, spec, transform, rate, args.num_clips, VIDEO_EXTENSIONS)

    failed: list[str] = []
    for _, f, x in readable_files(args.files, load, failed):
        with torch.no_grad():
            probs = model(x.to(device)).float().softmax(-1).mean(0)
        top = probs.topk(k)
        print(f"{f}:")
        for rank, (p, c) in enumerate(zip(top.values.tolist(), top.indices.tolist()), 1):
            print(f"  {rank}. {names[c]:<30} {100 * p:6.2f}%  (class {c})")
    return 1 if failed else 0


def _image_files(paths: list[str]) -> list[str]:
    """``paths`` with each folder replaced by its image files (sorted by name)."""
    from vitkit.data.sources import IMAGE_EXTENSIONS

    out: list[str] = []
    for p in paths:
        if Path(p).is_dir():
            out += sorted(str(f) for f in Path(p).iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS)
        else:
            out.append(p)
    return out


def _load(path: str, spec, transform, rate: int, num_clips: int, video_ext) -> "torch.Tensor":
    """A batch of views (V, C, [T,] H, W) of one file."""
    import torch

    is_video = Path(path).suffix.lower() in video_ext
    if not Path(path).is_file():
        raise FileNotFoundError("no such file")
    if spec.is_video != is_video:
        want = "video" if spec.is_video else "image"
        raise ValueError(f"the model takes {want} input; this file is {'a video' if is_video else 'an image'}")
    if not is_video:
        from vitkit.data.datasets import load_image

        return transform(load_image(path, spec.channels))[None]
    from vitkit.data.sampling import clips_to_views
    from vitkit.data.video import decode_clips

    return torch.stack(clips_to_views(decode_clips(path, spec.num_frames, rate, num_clips), transform))


def _timelines(args, model, spec, transform, rate: int, names: list[str], k: int, device) -> int:
    """``--timeline``: one timeline folder per video file."""
    import math

    from torchvision.transforms.v2 import functional as F

    from vitkit.engine.timeline import predict_timeline

    if not spec.is_video:
        raise ValueError("--timeline needs a video model; this run's model takes images")
    short = int(math.floor(min(spec.size) / spec.crop_pct))  # the test resize, done as frames arrive
    status = 0
    for f in args.files:
        out = Path(args.out or ".") if len(args.files) == 1 and args.out else \
            Path(args.out or ".") / f"timeline-{Path(f).stem}"
        try:
            tl = predict_timeline(model, f, out, names=names, num_frames=spec.num_frames, sampling_rate=rate,
                                  transform=transform, stride=args.stride, smooth=args.smooth, top_k=k,
                                  batch_size=args.batch_size, device=device,
                                  prepare=lambda x: F.resize(x, [short], antialias=True))
        except Exception as e:  # noqa: BLE001 - one bad file must not stop the others
            print(f"{f}: cannot read ({type(e).__name__}: {e})")
            status = 1
            continue
        counts: dict[str, int] = {}
        for w in tl.windows:
            counts[w["smoothed"][0][0]] = counts.get(w["smoothed"][0][0], 0) + 1
        main = ", ".join(f"{c} ({n})" for c, n in sorted(counts.items(), key=lambda kv: -kv[1])[:3])
        print(f"{f}: {len(tl.windows)} windows over {tl.frames} frames; most often (smoothed top-1): {main}")
        print(f"wrote {out / 'timeline.png'}, {out / 'timeline.json'} and {out / 'timeline.csv'}")
    return status
