"""``vitkit data check PATH``: the dataset doctor (unreadable, empty, truncated files, with reasons)."""
from __future__ import annotations

import argparse
import json
import os

NAME = "data"
HELP = "inspect datasets: 'vitkit data check PATH' reports unreadable, empty and truncated files"


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    c = sub.add_parser("check", help="scan an image/video folder or list file and report bad files",
                       description="Decode every file of a class-per-folder tree or 'path label' list the way "
                                   "training would and report each one that cannot be used, with the reason.")
    c.add_argument("path", help="class-per-folder directory, folder of train/val list files, or a list file")
    c.add_argument("--split", choices=["train", "val", "test"], help="check only this split (default: all found)")
    c.add_argument("--root", help="folder that relative paths in a list file are relative to")
    kind = c.add_mutually_exclusive_group()
    kind.add_argument("--video", dest="video", action="store_const", const=True, help="files are videos")
    kind.add_argument("--image", dest="video", action="store_const", const=False, help="files are images")
    c.add_argument("--full", action="store_true", help="decode every video frame (slow; finds corrupt middles)")
    c.add_argument("--clip", metavar="TxTAU", default="16x4",
                   help="note videos shorter than this clip (default 16x4, the Kinetics recipes' clip; training "
                        "pads, loops or skips them by data.short_video); one-frame videos are always noted")
    c.add_argument("--num-classes", type=int, help="labels must lie in [0, N)")
    c.add_argument("--workers", type=int, default=0, help="parallel processes")
    c.add_argument("--json", metavar="FILE", help="also write the full report as JSON")
    c.add_argument("--show", type=int, default=50, help="list at most this many bad files (default 50)")
    c.add_argument("--write-clean", metavar="FILE",
                   help="write a 'path label' list of the usable entries (absolute paths) to FILE")


def _write_atomic(path: str, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file in the same folder and a rename."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def run(args: argparse.Namespace) -> int:
    from vitkit.data import BUILTIN
    from vitkit.data.doctor import scan

    if args.path in BUILTIN:
        print(f"{args.path}: built-in, generated in memory - nothing to check")
        return 0

    clip = None
    if args.clip:
        try:
            t, tau = (int(v) for v in args.clip.lower().split("x"))
        except ValueError as e:
            raise ValueError(f"--clip expects TxTAU such as 16x4, got {args.clip!r}") from e
        clip = (t, tau)
    try:
        report = scan(args.path, split=args.split, video=args.video, root=args.root, full=args.full, clip=clip,
                      workers=args.workers, num_classes=args.num_classes)
    except RuntimeError as e:
        print(f"vitkit data check: error: {e}")
        return 2
    bad = report.bad
    noted = [f for f in report.files if f.ok and f.notes]
    print(f"{report.spec}: {len(report.files)} {report.kind} entries, {len(report.classes)} classes, "
          f"{len(bad)} bad")
    for f in bad[: args.show]:
        print(f"  BAD   {f.path}: {f.reason}")
    if len(bad) > args.show:
        print(f"  ... and {len(bad) - args.show} more (see --json)")
    for f in noted[: args.show]:
        print(f"  NOTE  {f.path}: {'; '.join(f.notes)}")
    if bad:
        cats = ", ".join(f"{n} {k}" for k, n in report.categories().most_common())
        print(f"bad by kind: {cats}")
    if args.write_clean:
        good = [f for f in report.files if f.ok and f.label is not None]
        _write_atomic(args.write_clean, "".join(f"{os.path.abspath(f.path)} {f.label}\n" for f in good))
        print(f"{len(good)} usable entries written to {args.write_clean} (absolute paths)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(report.to_dict(), fh, indent=1)
        print(f"report written to {args.json}")
    return 1 if bad else 0
