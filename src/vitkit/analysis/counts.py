"""Cached parameter and MAC counts of the registered variants, so ``vitkit models`` need not recount them.

Counting every variant (:func:`vitkit.profile` on the meta device) takes about half a minute; the counts only
change when a variant's config or the model code changes. ``model_counts.json`` beside this module holds them,
each with a fingerprint of the variant's config and input size: a variant whose fingerprint differs (a new or
edited variant) is counted afresh, only when its row is asked for. A test recounts every variant and checks the
file is current (after a change to model code: ``vitkit models --update-counts``).
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

COUNTS_FILE = Path(__file__).with_name("model_counts.json")

_cache: dict | None = None


def fingerprint(name: str) -> str:
    """A digest of what determines the counts: the variant's config and input size."""
    from vitkit.registry import model_info

    info = model_info(name)
    return hashlib.sha1(f"{info.config!r}|{tuple(info.input_size)}".encode()).hexdigest()[:16]


def _load() -> dict:
    global _cache
    if _cache is None:
        try:
            _cache = json.loads(COUNTS_FILE.read_text())
        except (OSError, ValueError):
            _cache = {}
    return _cache


def recount(name: str) -> dict:
    """Count ``name`` now: ``{"params": int, "macs": int, "fingerprint": str}``."""
    from vitkit.analysis.profile import profile

    r = profile(name)
    return {"params": int(r.params), "macs": int(r.macs), "fingerprint": fingerprint(name)}


def counts(name: str, *, fresh: bool = False) -> dict:
    """Params and MACs of a registered variant: cached when its fingerprint matches, else counted now."""
    entry = None if fresh else _load().get(name)
    if entry is None or entry.get("fingerprint") != fingerprint(name):
        entry = recount(name)
        _load()[name] = entry
    return entry


def write_counts(names: list[str], path: str | os.PathLike = COUNTS_FILE) -> dict:
    """Recount ``names`` and write them to ``path`` atomically; returns the table."""
    table = {n: recount(n) for n in sorted(names)}
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        json.dump(table, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)
    global _cache
    _cache = None
    return table
