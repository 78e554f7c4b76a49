"""``vitkit evaluate RUN|WEIGHTS``: top-1/top-5, multi-view, per-class accuracy, confusion matrix, shuffled frames."""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

NAME = "evaluate"
HELP = "evaluate a trained model: top-1/top-5, K clips x 3 crops, per-class accuracy, confusion matrix"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="a run directory (its recipe and weights), its checkpoints/ or a step_* "
                                  "checkpoint folder inside it, or a weights file with --model")
    p.add_argument("args", nargs="*", metavar="RECIPE|KEY=VALUE",
                   help="optional recipe, then overrides: data.dataset=PATH data.val_split=val eval.num_clips=10 "
                        "eval.num_crops=3 ...")
    p.add_argument("--model", help="registered model name (with a weights file)")
    p.add_argument("--pretrained", metavar="TAG",
                   help="evaluate published weights (vitkit models --pretrained); SOURCE is then the data "
                        "(e.g. /data/imagenet/val), and top-1 is printed beside the publisher's figure")
    p.add_argument("--ema", action="store_true", help="evaluate the run's EMA weights")
    p.add_argument("--shuffle-frames", action="store_true",
                   help="shuffle the frames of every clip (the MViT paper's temporal test)")
    p.add_argument("--split", help="which split to evaluate (default: the recipe's data.val_split)")
    p.add_argument("--limit", type=int, help="evaluate only the first N samples")
    p.add_argument("--out", help="folder for eval.json and confusion.png (default: RUN/eval[-shuffled])")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--device", choices=["cpu", "cuda"])


def run(args: argparse.Namespace) -> int:
    from torch.utils.data import Subset

    from vitkit.commands.train import split_args
    from vitkit.engine import distributed as D
    from vitkit.data import is_builtin
    from vitkit.engine.data import build_split
    from vitkit.engine.evaluate import evaluate, plot_confusion
    from vitkit.engine.inference import load_trained

    recipe, overrides = split_args(args.args)
    source, published = args.source, None
    if args.pretrained:  # the reproduction harness (vitkit.weights.reproduce)
        from vitkit.weights.reproduce import pretrained_source

        published, source, extra = pretrained_source(args.model, args.pretrained, args.source)
        overrides = extra + overrides
        args.model = published.model
    if args.split:
        overrides.append(f"data.val_split={args.split}")
    from vitkit.tasks import task_of_run

    task = task_of_run(source, recipe, overrides)
    if task.name != "classification":  # segmentation (and later dense tasks): the task's own report
        trained = task.load_trained(source, recipe, overrides, ema=args.ema)
        with D.joined(args.device) as dist:
            task.bind(trained.recipe).run_evaluate(args, trained, dist)
        return 0
    trained = load_trained(source, model_name=args.model, recipe=recipe, overrides=overrides, ema=args.ema)
    r = trained.recipe
    with D.joined(args.device) as dist:
        model = trained.model.to(dist.device)
        spec = model.input_spec  # the run's input: its recipe resolved against the model
        builtin = is_builtin(r.data.dataset)
        ds = build_split(r, spec, train=False, num_clips=r.eval.num_clips, num_crops=r.eval.num_crops,
                         classes=None if builtin else trained.classes)
        names = list(getattr(ds, "classes", trained.classes or []))
        if args.shuffle_frames and not spec.is_video:
            raise ValueError(f"--shuffle-frames needs a video model; {r.model.name} takes images")
        if args.limit:
            ds = Subset(ds, range(min(args.limit, len(ds))))
        res = evaluate(model, ds, batch_size=r.eval.batch_size, workers=args.workers, device=dist.device,
                       amp=r.train.amp if r.train.amp != "fp16" or dist.device.type == "cuda" else "none",
                       shuffle=args.shuffle_frames, seed=r.train.seed, dist=dist, progress=dist.is_main)
        if dist.is_main:
            src = Path(source)
            if published is not None:
                default = Path(f"eval-{published.name}")
            else:
                default = (trained.run_dir or (src if src.is_dir() else src.parent)) / \
                    ("eval-shuffled" if args.shuffle_frames else "eval")
            out = Path(args.out) if args.out else default
            out.mkdir(parents=True, exist_ok=True)
            tag = " (frames shuffled)" if args.shuffle_frames else ""
            views = f"{r.eval.num_clips} clip(s) x {r.eval.num_crops} crop(s)" if spec.is_video else \
                f"{r.eval.num_crops} crop(s)"
            print(f"{r.model.name} on {r.data.dataset}/{r.data.val_split}{tag}: {res.num_samples} samples, "
                  f"{res.num_views} view(s) each ({views})")
            print(f"top-1 {res.top1:.2f}%" + (f"  top-5 {res.top5:.2f}%" if res.has_top5 else "") + f"  loss {res.loss:.4f}"
                  + ("  [shuffled frames]" if args.shuffle_frames else ""))
            if published is not None:
                from vitkit.weights.reproduce import publisher_line

                print(publisher_line(published, res.top1))
            if res.mAP is not None:  # multi-label (Charades): mAP and per-class AP instead of a confusion matrix
                _report_multilabel(res, names, out, {**res.summary(), "model": r.model.name, "dataset": r.data.dataset,
                                                     "weights": str(trained.weights), "split": r.data.val_split,
                                                     "num_clips": r.eval.num_clips, "num_crops": r.eval.num_crops})
                return 0
            print("per-class accuracy:")
            width = max((len(str(n)) for n in names), default=5)
            for c, acc in enumerate(res.per_class):
                name = names[c] if c < len(names) else str(c)
                n = int(res.confusion[c].sum())
                print(f"  {c:4d} {str(name):<{width}}  {'-' if math.isnan(acc) else f'{acc:6.2f}%'}  (n={n})")
            plot_confusion(res.confusion, out / "confusion.png", names,
                           title=f"{r.model.name}{tag}: top-1 {res.top1:.1f}%")
            report = {**res.summary(), "model": r.model.name, "weights": str(trained.weights),
                      "dataset": r.data.dataset, "split": r.data.val_split, "shuffle_frames": args.shuffle_frames,
                      "num_clips": r.eval.num_clips, "num_crops": r.eval.num_crops,
                      "per_class": {str(names[c]) if c < len(names) else str(c): a for c, a in enumerate(res.per_class)},
                      "confusion": res.confusion.tolist()}
            (out / "eval.json").write_text(json.dumps(report, indent=2) + "\n")
            print(f"wrote {out / 'eval.json'} and {out / 'confusion.png'}")
    return 0


def _report_multilabel(res, names: list, out: Path, report: dict) -> None:
    """Print mAP and the per-class average precision; write eval.json."""
    print(f"mAP {res.mAP:.2f}% over the classes with a positive (views max-pooled)")
    print("per-class average precision:")
    width = max((len(str(n)) for n in names), default=5)
    for c, ap in enumerate(res.per_class_ap):
        name = names[c] if c < len(names) else str(c)
        print(f"  {c:4d} {str(name):<{width}}  {'-' if math.isnan(ap) else f'{ap:6.2f}%'}")
    report["per_class_ap"] = {str(names[c]) if c < len(names) else str(c): a for c, a in enumerate(res.per_class_ap)}
    tmp = out / "eval.json.tmp"
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    tmp.replace(out / "eval.json")
    print(f"wrote {out / 'eval.json'}")
