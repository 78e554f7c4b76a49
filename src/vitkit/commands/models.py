"""``vitkit models [PATTERN]``: the registry as a table of parameters and MACs beside the papers' figures."""
from __future__ import annotations

import argparse

NAME = "models"
HELP = "list registered models with parameters and MACs (counted here) beside the paper's figures"

README_START = "<!-- models-table:start -->"
README_END = "<!-- models-table:end -->"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("pattern", nargs="?", default="*", help="glob pattern, e.g. 'swin*'")
    p.add_argument("--family", help="only this family (vit, swin, mvit, uniformer)")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table")
    p.add_argument("--update-readme", metavar="README", help="rewrite the models table in this README in place")
    p.add_argument("--recount", action="store_true",
                   help="count parameters and MACs now instead of reading the cached counts")
    p.add_argument("--update-counts", action="store_true",
                   help="recount every variant and rewrite the cached counts shipped with vitkit (after model changes)")
    p.add_argument("--card", action="store_true",
                   help="the card of NAME's published weights (model.tag, or a model for its default tag): "
                        "the same as `vitkit card NAME`")
    p.add_argument("--pretrained", action="store_true",
                   help="list the published weights (model.tag) instead; with --update-readme, the README zoo table")


def model_rows(pattern: str = "*", family: str | None = None, *, fresh: bool = False) -> list[dict]:
    """One dict per registered model: name, family, input, params/MACs counted by vitkit and the paper's.

    The counts come from :mod:`vitkit.analysis.counts` (cached; a changed or new variant is counted now, only for
    the rows asked for); ``fresh=True`` counts every row now.
    """
    from vitkit import list_models, model_info
    from vitkit.analysis.counts import counts

    rows = []
    for name in list_models(pattern, family=family):
        info = model_info(name)
        c = counts(name, fresh=fresh)
        rows.append(
            {
                "name": name,
                "family": info.family,
                "input": "x".join(str(s) for s in info.input_size[1:]),
                "params_m": c["params"] / 1e6,
                "macs_g": c["macs"] / 1e9,
                "paper_params_m": info.paper_params,
                "paper_macs_g": info.paper_macs,
                "top1": info.top1,
                "demo": info.demo,
                "follows": info.follows,
            }
        )
    return rows


def _fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def markdown(rows: list[dict]) -> str:
    lines = [
        "| model | family | input | params (M) | paper params (M) | MACs (G) | paper MACs (G) | paper top-1 |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        name = r["name"] + (" (demo)" if r["demo"] else "")
        lines.append(
            f"| {name} | {r['family']} | {r['input']} | {r['params_m']:.2f} | {_fmt(r['paper_params_m'], '.2f')} "
            f"| {r['macs_g']:.2f} | {_fmt(r['paper_macs_g'], '.2f')} | {_fmt(r['top1'], '.1f')} |"
        )
    return "\n".join(lines)


def text(rows: list[dict]) -> str:
    head = f"{'model':<36}{'family':<10}{'input':<14}{'params M':>10}{'paper':>9}{'MACs G':>10}{'paper':>9}"
    lines = [head, "-" * len(head)]
    for r in rows:
        name = r["name"] + (" *" if r["demo"] else "")
        lines.append(
            f"{name:<36}{r['family']:<10}{r['input']:<14}{r['params_m']:>10.2f}{_fmt(r['paper_params_m'], '.2f'):>9}"
            f"{r['macs_g']:>10.2f}{_fmt(r['paper_macs_g'], '.2f'):>9}"
        )
    lines.append("* demonstration variant (not from a paper). MACs = multiply-accumulates per view (FLOPs in the papers).")
    return "\n".join(lines)


def update_readme(path: str, table: str, start: str = README_START, end: str = README_END) -> bool:
    """Replace the block between the ``start``/``end`` markers; return whether the file changed."""
    with open(path) as f:
        content = f.read()
    if start not in content or end not in content:
        raise ValueError(f"{path} has no {start} ... {end} block")
    head, rest = content.split(start, 1)
    _, tail = rest.split(end, 1)
    new = f"{head}{start}\n{table}\n{end}{tail}"
    if new != content:
        with open(path, "w") as f:
            f.write(new)
    return new != content


def run_pretrained(args: argparse.Namespace) -> int:
    """The weights zoo: ``model.tag`` rows (``vitkit card NAME`` shows one in full)."""
    from vitkit import list_models
    from vitkit.weights.cards import ZOO_END, ZOO_START, zoo_markdown, zoo_rows, zoo_text

    if args.update_readme:
        changed = update_readme(args.update_readme, zoo_markdown(), ZOO_START, ZOO_END)
        print(f"{args.update_readme}: zoo table {'updated' if changed else 'already up to date'}")
        return 0
    allowed = set(list_models(family=args.family))
    rows = [w for w in zoo_rows(args.pattern) if w.model in allowed]
    if not rows:
        print(f"no published weights match {args.pattern!r}")
        return 1
    print(zoo_markdown(rows=rows) if args.markdown else zoo_text(rows=rows))
    return 0


def run(args: argparse.Namespace) -> int:
    if args.card:
        from .card import show

        if args.pattern == "*":
            raise ValueError("--card needs a NAME: vitkit models swin_tiny_patch4_window7_224.ms_in1k --card")
        return show(args.pattern)
    if args.pretrained:
        return run_pretrained(args)
    if args.update_counts:
        from vitkit import list_models
        from vitkit.analysis.counts import COUNTS_FILE, write_counts

        table = write_counts(list_models())
        print(f"{COUNTS_FILE}: {len(table)} variants counted")
        return 0
    rows = model_rows(args.pattern, args.family, fresh=args.recount)
    if not rows:
        print(f"no model matches {args.pattern!r}")
        return 1
    if args.update_readme:
        changed = update_readme(args.update_readme, markdown(rows))
        print(f"{args.update_readme}: {'updated' if changed else 'already up to date'} ({len(rows)} models)")
        return 0
    print(markdown(rows) if args.markdown else text(rows))
    return 0
