"""``vitkit card NAME``: the card of published weights (``model.tag``, or a model for its default tag)."""
from __future__ import annotations

import argparse

NAME = "card"
HELP = "show the card of published weights: source, license, accuracy and protocol, preprocessing, labels"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="model.tag (e.g. swin_tiny_patch4_window7_224.ms_in1k), or a model for its default")
    p.add_argument("--all", action="store_true", help="the cards of every tag of the model")


def run(args: argparse.Namespace) -> int:
    from vitkit.weights import card, get_weights, tags_of

    if args.all:
        model = args.name.partition(".")[0]
        tags = tags_of(model)
        if not tags:
            get_weights(model)  # raises the clear "no published weights" error
        print("\n\n".join(card(w.name) for w in tags))
        return 0
    print(card(args.name))
    return 0
