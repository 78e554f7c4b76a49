"""``vitkit profile NAME``: parameters and MACs per stage, beside the paper's figures."""
from __future__ import annotations

import argparse

NAME = "profile"
HELP = "count parameters and MACs (multiply-accumulates) of a model per stage"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="registered model name (see 'vitkit models')")
    p.add_argument("--input-size", help="C,H,W or C,T,H,W (default: the variant's)")
    p.add_argument("--img-size", type=int, help="build at this image size (resamples position tables)")


def run(args: argparse.Namespace) -> int:
    from vitkit import profile

    size = tuple(int(s) for s in args.input_size.split(",")) if args.input_size else None
    overrides = {"img_size": args.img_size} if args.img_size else {}
    print(profile(args.name, size, **overrides).table())
    return 0
