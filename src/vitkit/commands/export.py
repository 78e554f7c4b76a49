"""``vitkit export NAME|RUN [--weights FILE] --format onnx|pt2``: a deployable file, checked against PyTorch.

``RUN`` is a run directory, its ``checkpoints/`` or a ``step_*`` checkpoint folder inside it (as ``vitkit
predict`` takes): its recipe's model and its weights; its class names go into the file's metadata.
"""
from __future__ import annotations

import argparse
import os

NAME = "export"
HELP = "export a model to ONNX (checked with onnxruntime) or a torch.export program (.pt2), dynamic batch"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="registered model name (see 'vitkit models'), or a run directory / checkpoint "
                                "folder inside one (its model, weights and class names)")
    p.add_argument("--weights", help="checkpoint to export (any supported layout); without it, random weights")
    p.add_argument("--format", choices=("onnx", "pt2"), default="onnx")
    p.add_argument("--output", "-o", help="output file (default: NAME.onnx / NAME.pt2)")
    p.add_argument("--input-size", help="C,H,W or C,T,H,W the file will accept (default: the variant's)")
    p.add_argument("--num-classes", type=int, help="number of classes of the checkpoint's head")
    p.add_argument("--classes", help="class names for the metadata: 'imagenet1k', 'kinetics400' or a text file "
                                     "(default: the run's, or the shipped list for 1000 / 400 outputs)")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18)")
    p.add_argument("--exporter", choices=("dynamo", "torchscript"), default="dynamo", help="ONNX exporter")
    p.add_argument("--attention", choices=("auto", "sdpa", "explicit"), default="explicit",
                   help="ONNX attention: explicit matmul+softmax (default; what opset < 23 gets anyway), "
                        "fused SDPA, or auto (SDPA, else explicit)")
    p.add_argument("--no-check", action="store_true", help="skip the comparison with PyTorch")


def load_model(name: str, weights: str | None, num_classes: int | None, size: tuple[int, ...] | None):
    """(model, class names or None) from a registered name (+ weights file) or a run / checkpoint folder."""
    import vitkit
    from vitkit.export import size_overrides

    if os.path.isdir(name):
        from vitkit.engine.inference import load_trained

        if weights:
            raise ValueError(f"{name} is a run folder and brings its own weights; drop --weights")
        trained = load_trained(name)
        if size is None:
            return trained.model, trained.classes
        rec = trained.recipe  # rebuilt at the new size, weights resampled on load
        cfg = {**rec.model.config, "num_classes": trained.model.num_classes,
               **size_overrides(vitkit.model_info(rec.model.name), size)}
        return vitkit.create_model(rec.model.name, weights=str(trained.weights), **cfg).eval(), trained.classes
    info = vitkit.model_info(name)
    overrides = {"num_classes": num_classes} if num_classes else {}
    if size is not None:  # build at the new size: position tables resampled once, not at every call
        overrides.update(size_overrides(info, size))
    if weights is None:
        print("note: no --weights given, exporting random weights")
    model = vitkit.create_model(name, weights=weights, **overrides).eval()
    from vitkit.engine.inference import default_class_names

    return model, default_class_names(getattr(model, "num_classes", 0))


def run(args: argparse.Namespace) -> int:
    from vitkit.commands.predict import _class_names
    from vitkit.export import export_onnx, export_pt2

    size = tuple(int(s) for s in args.input_size.split(",")) if args.input_size else None
    model, classes = load_model(args.name, args.weights, args.num_classes, size)
    n_out = getattr(model, "num_classes", 0)
    if args.classes:
        classes = _class_names(args.classes, None, n_out)
    elif classes is not None and len(classes) != n_out:
        classes = None
    stem = model.model_name if os.path.isdir(args.name) else args.name
    out = args.output or f"{stem}.{args.format}"
    if os.path.isdir(out):
        raise ValueError(f"--output {out} is a folder; give a file name")
    if args.format == "onnx":
        r = export_onnx(model, out, size, opset=args.opset, exporter=args.exporter, attention=args.attention,
                        check=not args.no_check, classes=classes)
    else:
        r = export_pt2(model, out, size, check=not args.no_check, classes=classes)
    print(f"wrote {r.path} ({r.format}, attention {r.attention})"
          + (f" with weights in {r.external_data}" if r.external_data else "")
          + (f"; {len(classes)} class names in its metadata" if classes else ""))
    print(f"accepts: {r.accepts}")
    if r.max_abs_diff is not None:
        print(f"checked against PyTorch at batch {r.checked_batches}: max abs diff {r.max_abs_diff:.3g}")
    return 0
