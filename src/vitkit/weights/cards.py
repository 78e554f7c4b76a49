"""Model cards for published weights, and the README zoo table (generated from the zoo records)."""
from __future__ import annotations

from vitkit.models.variants import VARIANTS

from .download import cache_path, recorded_sha256
from .spec import Weights, get_weights, list_pretrained, tags_of


def preprocessing(w: Weights) -> dict:
    """Input size, mean/std, interpolation and crop fraction: the record's where it sets them, else the variant's
    input specification."""
    spec = VARIANTS[w.model].spec
    return {
        "input_size": w.input_size or spec.input_size,
        "mean": w.mean or spec.mean,
        "std": w.std or spec.std,
        "interpolation": w.interpolation or spec.interpolation,
        "crop_pct": w.crop_pct if w.crop_pct is not None else spec.crop_pct,
    }


def hash_status(w: Weights) -> str:
    if w.sha256:
        return f"sha256 {w.sha256} (published)"
    recorded = recorded_sha256(w.url)
    if recorded:
        return f"sha256 {recorded} (recorded at the first download here; checked on every later download)"
    if w.sha256_prefix:
        return f"sha256 starts with {w.sha256_prefix} (from the file name, torch.hub convention)"
    return "unknown (not published); recorded at the first download"


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}".rstrip("0").rstrip(".")


def card(name: str, tag: str | None = None) -> str:
    """A plain-text card: what the weights are, where they come from, how they were measured and how to use them."""
    w = get_weights(name, tag)
    info = VARIANTS[w.model]
    pre = preprocessing(w)
    size = "x".join(str(s) for s in pre["input_size"][1:])
    cached = cache_path(w.url)
    lines = [
        f"{w.name}",
        "=" * len(w.name),
        f"model         {w.model} ({info.family}{', video' if info.is_video else ''}; {info.paper})",
        f"pre-training  {w.pretrain or '-'}",
        f"labels        {w.labels} ({w.num_classes} classes)" if w.labels != "none" else "labels        none (no classifier: a backbone)",
        f"top-1 / top-5 {_fmt(w.top1)} / {_fmt(w.top5)}" + (f"  ({w.reported_by}; {w.protocol})" if w.top1 else ""),
        f"paper         {w.paper or info.paper}",
        f"input         {size}, mean {tuple(pre['mean'])}, std {tuple(pre['std'])}, "
        f"{pre['interpolation']} resize, crop {pre['crop_pct']:.3f}",
        f"license       {w.license}",
        f"source        {w.url}" + (f"  (Hugging Face hub: {w.hf_repo})" if w.hf_repo else ""),
        f"layout        {w.layout} (converted to vitkit's safetensors at the first load, cached beside the file)",
        f"hash          {hash_status(w)}",
        f"facts from    {w.source}",
        f"cache         {cached}{' (present)' if cached.is_file() else ' (not downloaded)'}",
    ]
    if w.config:
        lines.append(f"config        {w.config}")
    if w.notes:
        lines.append(f"notes         {w.notes}")
    lines.append(f"use           vitkit.create_model({w.model!r}, pretrained={w.tag!r})  "
                 f"# num_classes=N replaces the head")
    return "\n".join(lines)


ZOO_START = "<!-- zoo-table:start -->"
ZOO_END = "<!-- zoo-table:end -->"


def _is_default(w: Weights) -> bool:
    return tags_of(w.model)[0] is w


def zoo_rows(pattern: str = "*") -> list[Weights]:
    return [get_weights(n) for n in list_pretrained(pattern)]


def zoo_markdown(pattern: str = "*", rows: list[Weights] | None = None) -> str:
    """The zoo as a Markdown table (the README's, between the zoo-table markers)."""
    lines = [
        "| weights (`model.tag`) | pre-training | classes | top-1 | reported by | layout | license |",
        "|---|---|---:|---:|---|---|---|",
    ]
    for w in zoo_rows(pattern) if rows is None else rows:
        star = " (default)" if _is_default(w) else ""
        lines.append(f"| `{w.name}`{star} | {w.pretrain} | {w.num_classes or '-'} "
                    f"| {_fmt(w.top1)} | {w.reported_by or '-'} | {w.layout} | {w.license} |")
    return "\n".join(lines)


def zoo_text(pattern: str = "*", rows: list[Weights] | None = None) -> str:
    rows = zoo_rows(pattern) if rows is None else rows
    width = max([len(w.name) for w in rows] + [10]) + 2
    head = f"{'weights':<{width}}{'top-1':>7}  {'classes':>7}  {'layout':<12}license"
    out = [head, "-" * len(head)]
    for w in rows:
        out.append(f"{w.name + (' *' if _is_default(w) else ''):<{width}}{_fmt(w.top1):>7}  "
                   f"{w.num_classes:>7}  {w.layout:<12}{w.license}")
    out.append("* the model's default tag (pretrained=True). `vitkit card NAME` shows a card.")
    return "\n".join(out)
