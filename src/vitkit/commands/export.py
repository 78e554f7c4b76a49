"""``vitkit export NAME --weights FILE --format onnx|pt2``: a deployable file, checked against PyTorch."""
from __future__ import annotations

import argparse
import os

NAME = "export"
HELP = "export a model to ONNX (checked with onnxruntime) or a torch.export program (.pt2), dynamic batch"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="registered model name (see 'vitkit models')")
    p.add_argument("--weights", help="checkpoint to export (any supported layout); without it, random weights")
    p.add_argument("--format", choices=("onnx", "pt2"), default="onnx")
    p.add_argument("--output", "-o", help="output file (default: NAME.onnx / NAME.pt2)")
    p.add_argument("--input-size", help="C,H,W or C,T,H,W the file will accept (default: the variant's)")
    p.add_argument("--num-classes", type=int, help="number of classes of the checkpoint's head")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18)")
    p.add_argument("--exporter", choices=("dynamo", "torchscript"), default="dynamo", help="ONNX exporter")
    p.add_argument("--attention", choices=("auto", "sdpa", "explicit"), default="explicit",
                   help="ONNX attention: explicit matmul+softmax (default; what opset < 23 gets anyway), "
                        "fused SDPA, or auto (SDPA, else explicit)")
    p.add_argument("--no-check", action="store_true", help="skip the comparison with PyTorch")


def run(args: argparse.Namespace) -> int:
    import vitkit
    from vitkit.export import export_onnx, export_pt2, size_overrides

    size = tuple(int(s) for s in args.input_size.split(",")) if args.input_size else None
    info = vitkit.model_info(args.name)
    overrides = {"num_classes": args.num_classes} if args.num_classes else {}
    if size is not None:  # build at the new size: position tables resampled once, not at every call
        overrides.update(size_overrides(info, size))
    if args.weights is None:
        print("note: no --weights given, exporting random weights")
    model = vitkit.create_model(args.name, weights=args.weights, **overrides).eval()
    out = args.output or f"{args.name}.{args.format}"
    if os.path.isdir(out):
        raise ValueError(f"--output {out} is a folder; give a file name")
    if args.format == "onnx":
        r = export_onnx(model, out, size, opset=args.opset, exporter=args.exporter, attention=args.attention,
                        check=not args.no_check)
    else:
        r = export_pt2(model, out, size, check=not args.no_check)
    print(f"wrote {r.path} ({r.format}, attention {r.attention})")
    print(f"accepts: {r.accepts}")
    if r.max_abs_diff is not None:
        print(f"checked against PyTorch at batch {r.checked_batches}: max abs diff {r.max_abs_diff:.3g}")
    return 0
