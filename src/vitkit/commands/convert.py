"""``vitkit convert``: official / timm / torchvision / Hugging Face weights -> vitkit safetensors."""
from __future__ import annotations

import argparse

NAME = "convert"
HELP = "convert a checkpoint (official with its config, or any layout into a registered model) to vitkit safetensors"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="input checkpoint (.pth/.pyth/.pt/.bin/.safetensors)")
    p.add_argument("output", help="output .safetensors file")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--model", help="registered vitkit model to load the weights into (layout detected)")
    g.add_argument("--official", metavar="FAMILY", help="official checkpoint of this family (swin, mvit, uniformer)")
    p.add_argument("--config", help="with --official: the official config (YAML path, or JSON of constructor args)")
    p.add_argument("--num-classes", type=int, help="with --model: number of classes of the checkpoint's head")


def _load_config(text: str | None):
    import json
    import os

    if text is None:
        return None
    if os.path.exists(text) and not text.endswith(".json"):
        return text  # a YAML path: the family converter parses it
    if os.path.exists(text):
        with open(text) as f:
            return json.load(f)
    return json.loads(text)


def run(args: argparse.Namespace) -> int:
    import vitkit
    from vitkit.checkpoints import from_official, load_checkpoint
    from vitkit.checkpoints.base import save_weights

    if args.official:
        model = from_official(args.official, args.checkpoint, _load_config(args.config))
        report = None
    else:
        overrides = {"num_classes": args.num_classes} if args.num_classes else {}
        model = vitkit.create_model(args.model, **overrides)
        report = load_checkpoint(model, args.checkpoint)
    save_weights(model, args.output)
    src = report.source if report else f"official {args.official}"
    print(f"converted {args.checkpoint} ({src}) -> {args.output}")
    return 0
