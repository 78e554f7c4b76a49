"""``vitkit inflate``: image (2-D) weights -> the video (3-D) model of the same family, written as safetensors."""
from __future__ import annotations

import argparse

NAME = "inflate"
HELP = "inflate image weights into a video model of the same family (start a video model from ImageNet weights)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="image checkpoint in any supported layout (official .pth, timm, .npz, "
                                      "vitkit .safetensors), or a published tag such as swin_tiny_patch4_window7_224.ms_in1k")
    p.add_argument("output", help="output .safetensors file")
    p.add_argument("--model", required=True, help="registered video model, e.g. swin3d_tiny or uniformer_small_16x4")
    p.add_argument("--num-classes", type=int, help="classes of the video model (default: the variant's)")
    p.add_argument("--method", choices=("average", "center"), default="average",
                   help="2-D kernels repeated over time and averaged (default, I3D / Video Swin / UniFormer), or "
                        "put in the central temporal slice (then a static clip reproduces the image model exactly)")
    p.add_argument("--center", action="store_true", help="same as --method center")


def run(args: argparse.Namespace) -> int:
    import os

    import vitkit
    from vitkit.checkpoints.base import save_weights
    from vitkit.checkpoints.inflate import inflate_into

    overrides = {"num_classes": args.num_classes} if args.num_classes else {}
    model = vitkit.create_model(args.model, **overrides)
    if getattr(model, "spatial_rank", 2) != 3:
        raise ValueError(f"--model must be a video model (e.g. swin3d_tiny, uniformer_small_16x4), got {args.model}")
    method = "center" if args.center else args.method
    source = args.checkpoint
    if not os.path.exists(source) and "." in source and not source.endswith((".pth", ".pyth", ".npz", ".safetensors")):
        from vitkit.weights import get_weights, weights_file

        source = str(weights_file(get_weights(source)))
    report, inflation = inflate_into(model, source, method)
    save_weights(model, args.output, {"inflated_from": str(args.checkpoint), "inflation": method})
    print(inflation.describe())
    print(f"{args.checkpoint} -> {args.model} -> {args.output}"
          + (" (new zero-initialised head)" if inflation.left_out else ""))
    return 0
