"""``vitkit inflate``: image (2-D) UniFormer weights -> a video (3-D) UniFormer, written as vitkit safetensors."""
from __future__ import annotations

import argparse

NAME = "inflate"
HELP = "inflate image UniFormer weights into a video UniFormer (start a video model from an ImageNet checkpoint)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="image checkpoint (official .pth or vitkit .safetensors)")
    p.add_argument("output", help="output .safetensors file")
    p.add_argument("--model", required=True, help="registered video UniFormer, e.g. uniformer_small_16x4")
    p.add_argument("--num-classes", type=int, help="classes of the video model (default: the variant's)")
    p.add_argument("--center", action="store_true",
                   help="put each 2-D kernel in the central temporal slice (default: repeat over time and average)")


def run(args: argparse.Namespace) -> int:
    import warnings

    import vitkit
    from vitkit.checkpoints import load_checkpoint, read_state_dict
    from vitkit.checkpoints.base import save_weights
    from vitkit.checkpoints.uniformer import inflate_image_to_video

    overrides = {"num_classes": args.num_classes} if args.num_classes else {}
    model = vitkit.create_model(args.model, **overrides)
    if getattr(model, "family", "") != "uniformer" or model.spatial_rank != 3:
        raise SystemExit(f"--model must be a video UniFormer (e.g. uniformer_small_16x4), got {args.model}")
    inflated: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sd = inflate_image_to_video(read_state_dict(args.checkpoint), model, center=args.center, inflated=inflated)
    report = load_checkpoint(model, sd, strict=False)
    not_head = [k for k in report.missing + report.unexpected if not k.startswith("head.")]
    if not_head or report.mismatched:
        raise SystemExit("the checkpoint does not fit " + args.model + ":\n" + report.describe())
    if report.missing:  # the classifier was left out (another class count): start it from zeros
        model.reset_classifier(model.num_classes)
    save_weights(model, args.output, {"inflated_from": str(args.checkpoint), "center": str(args.center)})
    for w in caught:
        print(f"note: {w.message}")
    print(f"inflated {len(inflated)} kernels of {args.checkpoint} into {args.model} -> {args.output}"
          + (" (new zero-initialised head)" if report.missing else ""))
    return 0
