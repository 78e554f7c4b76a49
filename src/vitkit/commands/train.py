"""``vitkit train [RECIPE] [key=value ...]``: train from a YAML recipe; with no recipe, the built-in digits demo."""
from __future__ import annotations

import argparse
from pathlib import Path

NAME = "train"
HELP = "train a model from a YAML recipe (no arguments: the built-in digits demo); DDP under torchrun"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("args", nargs="*", metavar="RECIPE|KEY=VALUE",
                   help="a recipe file (or a name under configs/, e.g. demo/motion_digits_mvit), then dotted overrides "
                        "such as optim.lr=1e-3 train.batch_size=64 (default recipe: demo/digits)")
    p.add_argument("--resume", metavar="PATH",
                   help="continue a run exactly: its run directory, checkpoints/ or a step_* checkpoint "
                        "(the run's recipe.yaml is used when no recipe is given)")
    p.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when available")
    p.add_argument("--quiet", action="store_true", help="no per-step output")


def split_args(items: list[str]) -> tuple[str | None, list[str]]:
    """Positional arguments -> (recipe or None, overrides); the recipe is the one item without '='."""
    recipes = [a for a in items if "=" not in a]
    if len(recipes) > 1:
        raise ValueError(f"expected one recipe and key=value overrides, got several recipes: {recipes}")
    return (recipes[0] if recipes else None), [a for a in items if "=" in a]


def resolve(args: argparse.Namespace):
    from vitkit.engine.recipe import DEMO_RECIPE, find_recipe, load_recipe

    recipe, overrides = split_args(args.args)
    if recipe is None and args.resume:
        p = Path(args.resume)
        found = next((c / "recipe.yaml" for c in (p, *p.parents) if (c / "recipe.yaml").is_file()), None)
        if found is not None:
            return load_recipe(found, overrides)
    return load_recipe(find_recipe(recipe or DEMO_RECIPE), overrides)


def run(args: argparse.Namespace) -> int:
    from vitkit.engine import distributed as D
    from vitkit.engine.trainer import Trainer

    recipe = resolve(args)
    if int(__import__("os").environ.get("RANK", "0")) == 0:
        print("# resolved recipe\n" + recipe.to_yaml(), flush=True)
    try:
        trainer = Trainer(recipe, resume=args.resume, device=args.device, quiet=args.quiet)
        trainer.fit()
    finally:
        D.cleanup()
    return 0
