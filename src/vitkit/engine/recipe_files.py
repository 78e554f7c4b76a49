"""Recipe files: finding a recipe by name, listing the shipped ones, and inheritance.

Inheritance works as mmaction2 / mmdetection users know it: a recipe names one or more parents with ``_base_``
(or ``base``), a path relative to the recipe's own folder (or a shipped recipe name), and is deep-merged over
them: mappings merge key by key, anything else (numbers, strings, lists) replaces the parent's value. A mapping
with ``_delete_: true`` replaces the parent's mapping instead of merging into it::

    # configs/imagenet/swin_small_patch4_window7_224.yaml
    _base_: ../_base_/imagenet_swin.yaml
    model:
      name: swin_small_patch4_window7_224
      drop_path_rate: 0.3

With several parents (a list), later ones override earlier ones, and the recipe overrides them all. Files in
folders whose name starts with ``_`` (``configs/_base_/``) are parts, not recipes: they are not listed and need
not be complete.
"""
from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any, Mapping

import yaml

BASE_KEYS = ("_base_", "base")
DELETE_KEY = "_delete_"


class RecipeError(ValueError):
    """A recipe key or value is invalid; the message names the valid keys or the expected type."""


def configs_dir() -> Path | None:
    """The shipped recipes: ``vitkit/configs`` inside the package (``configs/`` at the repo root links to it)."""
    here = Path(__file__).resolve()
    for cand in (here.parents[1] / "configs", here.parents[3] / "configs"):
        if cand.is_dir():
            return cand
    return None


def list_recipes() -> list[str]:
    """Names of the shipped recipes (``demo/digits``, ``imagenet/swin_tiny_patch4_window7_224`` ...), sorted."""
    base = configs_dir()
    if base is None:
        return []
    names = []
    for p in base.rglob("*.yaml"):
        rel = p.relative_to(base)
        if any(part.startswith("_") for part in rel.parts):
            continue
        names.append(rel.with_suffix("").as_posix())
    return sorted(names)


def _strip_configs_prefix(name: str) -> str:
    parts = Path(name).parts
    while parts and parts[0] in (".", "configs"):
        parts = parts[1:]
    return Path(*parts).as_posix() if parts else name


def find_recipe(name: str | os.PathLike) -> Path:
    """A recipe file, or a shipped recipe's name, from any working directory.

    Accepts a path that exists, a name under the shipped recipes (``demo/digits``, ``demo/digits.yaml``), or the
    README's spelling ``configs/demo/digits.yaml`` wherever the command runs. Unknown names raise with the
    closest shipped names.
    """
    name = str(name)
    p = Path(name).expanduser()
    if p.is_file():
        return p
    base = configs_dir()
    if base is not None:
        rel = _strip_configs_prefix(name)
        for cand in (base / rel, base / f"{rel}.yaml", base / f"{rel}.yml"):
            if cand.is_file():
                return cand
    known = list_recipes()
    key = _strip_configs_prefix(name).removesuffix(".yaml").removesuffix(".yml")
    close = difflib.get_close_matches(key, known, n=3, cutoff=0.5)
    close += [k for k in known if Path(k).name == Path(key).name and k not in close]
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise RecipeError(f"recipe not found: {name} (a YAML file, or a shipped recipe name){hint} "
                      "`vitkit train --help` lists the shipped recipes")


def _read_yaml(path: Path) -> dict:
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise RecipeError(f"{path} is not valid YAML: {e}") from None
    except OSError as e:
        raise RecipeError(f"cannot read recipe {path}: {e.strerror or e}") from None
    if loaded is not None and not isinstance(loaded, Mapping):
        raise RecipeError(f"{path}: a recipe is a mapping of sections, got {type(loaded).__name__}")
    return dict(loaded or {})


def deep_merge(base: Mapping[str, Any], child: Mapping[str, Any]) -> dict:
    """``child`` over ``base``: mappings merge recursively (unless the child's has ``_delete_: true``)."""
    out = dict(base)
    for key, value in child.items():
        if isinstance(value, Mapping):
            value = dict(value)
            replace = bool(value.pop(DELETE_KEY, False))
            if not replace and isinstance(out.get(key), Mapping):
                out[key] = deep_merge(out[key], value)
            else:
                out[key] = deep_merge({}, value)
        else:
            out[key] = value
    return out


def _resolve_base(ref: Any, parent: Path) -> Path:
    if not isinstance(ref, (str, os.PathLike)):
        raise RecipeError(f"{parent}: _base_ must be a path or a list of paths, got {ref!r}")
    cand = (parent.parent / str(ref)).expanduser()
    if cand.is_file():
        return cand
    try:
        return find_recipe(str(ref))
    except RecipeError:
        raise RecipeError(f"{parent}: base recipe {ref!r} not found (relative to {parent.parent}, "
                          "or a shipped recipe name)") from None


def read_recipe_tree(path: str | os.PathLike, _chain: tuple[Path, ...] = ()) -> dict:
    """The recipe at ``path`` as a nested dict, with its ``_base_`` parents merged in (not yet validated)."""
    p = Path(path)
    if not p.is_file():
        raise RecipeError(f"recipe file not found: {p}")
    key = p.resolve()
    if key in _chain:
        cycle = " -> ".join(str(c) for c in (*_chain, key))
        raise RecipeError(f"recipe inheritance cycle: {cycle}")
    tree = _read_yaml(p)
    refs: list = []
    for k in BASE_KEYS:
        if k in tree:
            v = tree.pop(k)
            refs.extend(v if isinstance(v, list) else [v])
    merged: dict = {}
    for ref in refs:
        merged = deep_merge(merged, read_recipe_tree(_resolve_base(ref, p), (*_chain, key)))
    return deep_merge(merged, tree)
