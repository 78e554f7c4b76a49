"""The ``vitkit`` command: a thin dispatcher over the subcommand modules in :mod:`vitkit.commands`.

Each module there defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from typing import Sequence

import vitkit.commands as commands


def build_parser() -> argparse.ArgumentParser:
    from vitkit import __version__

    parser = argparse.ArgumentParser(prog="vitkit", description="Vision transformers for images and video.")
    parser.add_argument("--version", action="version", version=f"vitkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        mod = importlib.import_module(f"vitkit.commands.{info.name}")
        if not hasattr(mod, "NAME"):
            continue
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse, letting a command's ``key=value`` overrides and its options come in any order.

    argparse stops filling a ``nargs="*"`` positional at the first option, so ``vitkit train demo/digits --quiet
    optim.lr=1e-3`` would leave ``optim.lr=1e-3`` unrecognised; such leftovers join the command's ``args``.
    """
    args, extra = parser.parse_known_args(argv)
    if extra:
        target = getattr(args, "args", None)
        if not isinstance(target, list) or any(e.startswith("-") for e in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        target.extend(extra)
    return args


#: optional packages a command may need, and how to get them (pyproject's extras where one carries them)
OPTIONAL_PACKAGES = {
    "onnx": "pip install 'vitkit[export]'", "onnxruntime": "pip install 'vitkit[export]'",
    "onnxscript": "pip install 'vitkit[export]'",
    "torchcodec": "pip install 'vitkit[decoders]' (and FFmpeg's shared libraries)",
    "decord": "pip install 'vitkit[decoders]'",
    "timm": "pip install timm", "transformers": "pip install transformers", "tensorboard": "pip install tensorboard",
}


def missing_package_message(e: ModuleNotFoundError) -> str | None:
    """One line naming the optional package an import lacked and how to install it; None for any other module."""
    top = (e.name or "").split(".")[0]
    if top not in OPTIONAL_PACKAGES:
        return None
    return f"this needs the optional package {top!r}, which is not installed: {OPTIONAL_PACKAGES[top]}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parse_args(parser, argv)
    if getattr(args, "_run", None) is None:
        parser.print_help()
        return 0
    from vitkit.checkpoints import CheckpointError
    from vitkit.weights import DownloadError

    try:
        return int(args._run(args) or 0)
    except (KeyError, ValueError, FileNotFoundError, TypeError, CheckpointError, DownloadError) as e:
        # User errors get one clear line, not a traceback.
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        print(f"vitkit {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as e:
        msg = missing_package_message(e)
        if msg is None:
            raise
        print(f"vitkit {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
