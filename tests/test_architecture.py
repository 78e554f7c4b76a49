"""The package's shape, checked from the source: imports point one way, and every family provides the steps
ARCHITECTURE.md lists for adding one."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import vitkit

SRC = Path(vitkit.__file__).resolve().parent

#: import tiers, lowest first: a module may import its own tier or lower ones, never a higher one
#: (ARCHITECTURE.md, "Where things live"). Packages not listed must still form no cycle.
TIERS = {
    "fileio": 0, "layers": 0,
    "models": 1,
    "checkpoints": 2, "data": 2,
    "registry": 3,
    "analysis": 4, "export": 4,
    "engine": 5,
    "commands": 6,
    "cli": 7, "__main__": 8,
    "__init__": 5,  # the public API (``import vitkit``): for the engine's level and above
    "weights": 2,  # the weights zoo: published files into checkpoints.load_weights, below the registry
    "tasks": 5,  # what the engine trains (the engine's own tier: the trainer calls them, they use its parts)
}
def _unit(module: str) -> str:
    """``vitkit.models.vit`` -> ``models``; ``vitkit`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path):
    """(imported vitkit module, line, inside a function?) for every import in ``path``."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text(), str(path))
    funcs = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    inner = {id(n) for f in funcs for n in ast.walk(f) if n is not f}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            top = node.module is None or mod == "vitkit"  # ``from vitkit import models``: the names are modules
            targets = [f"{mod}.{a.name}" for a in node.names] if top else [mod]
        else:
            continue
        for t in targets:
            if t == "vitkit" or t.startswith("vitkit."):
                yield t, node.lineno, id(node) in inner


def _sources():
    return sorted(p for p in SRC.rglob("*.py") if "configs" not in p.parts)


def test_imports_point_one_way():
    """No module imports a higher tier, whether at the top or inside a function (a function-level import may
    defer a heavy import for start-up time; it may not reach upward)."""
    bad = []
    for path in _sources():
        src = _unit(_module_name(path))
        for target, line, _ in _imports(path):
            dst = _unit(target)
            if src in TIERS and dst in TIERS and TIERS[dst] > TIERS[src]:
                bad.append(f"{path.relative_to(SRC)}:{line} imports {target} (tier {src} -> higher tier {dst})")
    assert not bad, "\n".join(bad)


def _find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(edges.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (found := visit(m)):
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(edges):
        if n not in state and (found := visit(n)):
            return found
    return None


def _known(module: str, modules: set[str]) -> str:
    """``vitkit.layers.Attention`` (a name) -> ``vitkit.layers`` (the module that defines it)."""
    while module not in modules and "." in module:
        module = module.rsplit(".", 1)[0]
    return module


def test_no_import_cycle_between_modules():
    """Modules form no cycle through their top-level imports. (Function-level imports are checked by
    :func:`test_imports_point_one_way`: they may defer a heavy import, never reach a higher tier.)"""
    modules = {_module_name(p) for p in _sources()}
    edges: dict[str, set[str]] = {}
    for path in _sources():
        src = _module_name(path)
        for target, _, lazy in _imports(path):
            dst = _known(target, modules)
            if not lazy and dst != src and not src.startswith(dst + "."):  # one's own package's __init__
                edges.setdefault(src, set()).add(dst)
    cycle = _find_cycle(edges)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_cycle_between_packages():
    """Packages of different tiers import one way, counting function-level imports too."""
    edges: dict[str, set[str]] = {}
    for path in _sources():
        src = _unit(_module_name(path))
        for target, _, _ in _imports(path):
            dst = _unit(target)
            same_tier = src in TIERS and dst in TIERS and TIERS[src] == TIERS[dst]
            if dst != src and not same_tier and src not in ("__init__", "__main__"):
                edges.setdefault(src, set()).add(dst)
    cycle = _find_cycle(edges)
    assert cycle is None, "import cycle between packages: " + " -> ".join(cycle)


@pytest.mark.parametrize("family", sorted({vitkit.model_info(n).family for n in vitkit.list_models()}))
def test_every_family_provides_the_steps_of_a_new_family(family):
    """ARCHITECTURE.md, "Adding a family": the steps, each checked for every registered family."""
    from vitkit.checkpoints import base as ckpt
    from vitkit.models.base import VitkitModel

    names = vitkit.list_models(family=family)
    info = vitkit.model_info(names[0])
    cls = info.builder
    # 1. a frozen config dataclass with the input fields, a VitkitModel subclass built from it alone
    assert info.config.__dataclass_params__.frozen
    assert issubclass(cls, VitkitModel) and cls.family == family
    # 2. the input rules: geometry from the config, the family's preprocessing defaults, config for a size
    c, t, hw = cls.input_geometry(info.config)
    assert info.spec.input_size == ((c, t, *hw) if t else (c, *hw))
    assert isinstance(cls.input_defaults(info.config), dict)
    assert cls.config_for_input(info.config, hw, t) == {}
    # 3. the forward split and the per-stage listing the profiler reads (the rest is inherited)
    for hook in ("forward_features", "forward_head", "forward_intermediates", "profile_stages"):
        assert getattr(cls, hook) is not getattr(VitkitModel, hook, None), f"{cls.__name__} lacks {hook}"
    assert cls.classifier_names and all(isinstance(n, str) for n in cls.classifier_names)
    # 4. variants declared through the one helper (the catalogue knows them), each citing its source
    assert all(vitkit.model_info(n).paper for n in names)
    # 5. a checkpoint adapter that resizes its position tables to the model (foreign converters are optional)
    assert family in ckpt._ADAPTERS
