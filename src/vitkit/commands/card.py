"""``vitkit card NAME``: the card of published weights (``model.tag``, or a model for its default tag)."""
from __future__ import annotations

import argparse

NAME = "card"
HELP = "show the card of published weights: source, license, accuracy and protocol, preprocessing, labels"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="model.tag (e.g. swin_tiny_patch4_window7_224.ms_in1k), or a model for its default")
    p.add_argument("--all", action="store_true", help="the cards of every tag of the model")


def show(name: str, all_tags: bool = False) -> int:
    """Print the card of ``name`` (``model.tag``, or a model for its default tag; every tag with ``all_tags``)."""
    from vitkit.weights import card, get_weights, tags_of

    if all_tags:
        model = name.partition(".")[0]
        tags = tags_of(model)
        if not tags:
            get_weights(model)  # raises the clear "no published weights" error
        print("\n\n".join(card(w.name) for w in tags))
        return 0
    print(card(name))
    return 0


def run(args: argparse.Namespace) -> int:
    return show(args.name, args.all)
