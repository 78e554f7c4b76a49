"""``vitkit train [RECIPE] [key=value ...]``: train from a YAML recipe; with no recipe, the built-in digits demo."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

NAME = "train"
HELP = "train a model from a YAML recipe (no arguments: the built-in digits demo); DDP under torchrun"


def _recipes_epilog() -> str:
    from vitkit.engine.recipe_files import list_recipes  # no torch: keeps `vitkit --help` fast

    names = list_recipes()
    groups: dict[str, list[str]] = {}
    for n in names:
        folder, _, leaf = n.rpartition("/")
        groups.setdefault(folder or ".", []).append(leaf)
    lines = ["shipped recipes (give the name, e.g. `vitkit train demo/motion_digits_mvit`; any YAML file works too):"]
    for folder, leaves in groups.items():
        lines.append(f"  {folder}/: " + ", ".join(leaves))
    lines.append("options and key=value overrides may come in any order; --print-config shows the resolved recipe, "
                 "--dry-run checks it and exits")
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = _recipes_epilog()
    p.add_argument("args", nargs="*", metavar="RECIPE|KEY=VALUE",
                   help="a recipe file or shipped recipe name (see below), then dotted overrides "
                        "such as optim.lr=1e-3 train.batch_size=64 (default recipe: demo/digits)")
    p.add_argument("--resume", metavar="PATH",
                   help="continue a run exactly: its run directory, checkpoints/ or a step_* checkpoint "
                        "(the run's recipe.yaml is used when no recipe is given); it writes into that run "
                        "directory (a copy writes into the copy) unless run.dir=... is given here")
    p.add_argument("--overwrite", action="store_true",
                   help="start over in a run directory that already holds a run (removes its checkpoints, metrics "
                        "and results; without this, or --resume, such a directory is refused)")
    p.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when available")
    p.add_argument("--quiet", action="store_true", help="no per-step output")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved recipe (inheritance and overrides applied) before training")
    p.add_argument("--dry-run", action="store_true",
                   help="read and check the recipe (keys, types, ranges, the model), print it, and exit")


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
    recipe = resolve(args)  # configuration errors fail here, before anything is printed or built
    main_rank = int(os.environ.get("RANK", "0")) == 0
    if main_rank:
        if args.dry_run:  # a training run logs the notes itself, once
            for note in recipe.notes:
                print(note, file=sys.stderr, flush=True)
        if args.print_config or args.dry_run:
            print("# resolved recipe\n" + recipe.to_yaml(), flush=True)
    if args.dry_run:
        if main_rank:
            print("recipe OK (dry run: nothing trained)", flush=True)
        return 0
    from vitkit.engine import distributed as D
    from vitkit.engine.trainer import Trainer

    from vitkit.engine.rundir import RunDirError
    from vitkit.engine.signals import Interrupted

    finished = False
    try:
        # run.dir given here, not read from a resumed run's recipe.yaml: the one way to resume elsewhere
        told = [o.split("=", 1)[1] for o in split_args(args.args)[1] if o.split("=", 1)[0].strip() == "run.dir"]
        trainer = Trainer(recipe, resume=args.resume, device=args.device, quiet=args.quiet,
                          overwrite=args.overwrite, run_dir=told[-1] if told else None)
        trainer.fit()
        finished = True
    except Interrupted as e:  # checkpoint written and how to resume printed by the trainer
        return e.exit_code
    except KeyboardInterrupt as e:
        print(f"vitkit train: {e or 'interrupted'}; the last complete checkpoint is kept", file=sys.stderr)
        return 130
    except (RunDirError, FloatingPointError) as e:  # one line: the path / step and what to do
        print(f"vitkit train: error: {e}", file=sys.stderr)
        return 1
    finally:
        D.cleanup(synchronize=finished)
    return 0
