"""Reading checkpoint files, the converter registry, and strict loading with a report.

Each family module registers converters: ``detect(state_dict) -> bool`` and ``convert(state_dict, model) ->
state_dict`` in vitkit's key layout. After conversion the family's ``adapt`` step resamples position
embeddings / relative-position tables to the model's sizes. Loading is strict by default: anything missing,
unexpected or of the wrong shape raises :class:`CheckpointError` listing the keys.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np
import torch
import torch.nn as nn

from vitkit.fileio import atomic_write  # noqa: F401  (also used by vitkit.weights)

StateDict = dict[str, torch.Tensor]
WRAPPER_KEYS = ("model_state", "model", "state_dict", "module", "model_ema", "state_dict_ema")


class CheckpointError(RuntimeError):
    """A checkpoint does not fit the model; the message lists the missing, unexpected and mismatched keys."""


@dataclass
class LoadReport:
    source: str
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple, tuple]] = field(default_factory=list)
    resampled: list[str] = field(default_factory=list)
    #: what happened to the classifier: "loaded", "reset (...)", "resized to N classes (...)", "not loaded (...)"
    head: str = "loaded"

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def describe(self, limit: int = 20) -> str:
        def head(items: list) -> str:
            shown = ", ".join(str(i) for i in items[:limit])
            return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")

        lines = [f"checkpoint layout: {self.source}"]
        if self.missing:
            lines.append(f"missing keys ({len(self.missing)}): {head(self.missing)}")
        if self.unexpected:
            lines.append(f"unexpected keys ({len(self.unexpected)}): {head(self.unexpected)}")
        if self.mismatched:
            rows = [f"{k}: checkpoint {tuple(a)} vs model {tuple(b)}" for k, a, b in self.mismatched]
            lines.append(f"shape mismatches ({len(rows)}): {head(rows)}")
        if self.resampled:
            lines.append(f"resampled to the model's size: {head(self.resampled)}")
        if self.head != "loaded":
            lines.append(f"head: {self.head}")
        return "\n".join(lines)


@dataclass(frozen=True)
class Converter:
    family: str
    source: str
    detect: Callable[[Mapping[str, torch.Tensor]], bool]
    convert: Callable[[StateDict, nn.Module], StateDict]


_CONVERTERS: dict[str, list[Converter]] = {}
_ADAPTERS: dict[str, Callable[[StateDict, nn.Module, list[str]], StateDict]] = {}
_OFFICIAL: dict[str, Callable] = {}


def register_converter(family: str, source: str, detect: Callable[[Mapping[str, torch.Tensor]], bool]):
    """Decorator: register ``convert(state_dict, model)`` for checkpoints of ``source`` layout that ``detect`` spots."""

    def wrap(fn: Callable[[StateDict, nn.Module], StateDict]):
        _CONVERTERS.setdefault(family, []).append(Converter(family, source, detect, fn))
        return fn

    return wrap


def register_adapter(family: str):
    """Decorator: ``adapt(state_dict, model, resampled)`` resizes tables to the model; appends resampled key names."""

    def wrap(fn):
        _ADAPTERS[family] = fn
        return fn

    return wrap


def register_official(family: str):
    """Decorator: ``build(state_dict, config) -> model`` for :func:`from_official`."""

    def wrap(fn):
        _OFFICIAL[family] = fn
        return fn

    return wrap


#: training-state prefixes of Flax checkpoints
_NPZ_PREFIXES = ("opt/target/", "params/")


def read_npz(path: str | os.PathLike) -> StateDict:
    """All arrays of an ``.npz`` as float tensors under their Flax paths (training-state prefixes removed)."""
    try:
        with np.load(os.fspath(path), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot read {os.fspath(path)} as a numpy .npz archive ({e})") from e
    out: StateDict = {}
    for k, v in arrays.items():
        for p in _NPZ_PREFIXES:
            if k.startswith(p):
                k = k[len(p):]
                break
        if v.dtype.kind not in "fiub":
            continue
        out[k] = torch.from_numpy(np.ascontiguousarray(v))
    return out


def read_state_dict(source: str | os.PathLike | Mapping[str, torch.Tensor]) -> StateDict:
    """A flat state dict from a file (safetensors, or torch pickle loaded with ``weights_only=True``) or a dict.

    Training wrappers (``model``, ``model_state``, ``state_dict`` ...) and a DDP ``module.`` prefix are removed.
    """
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.exists(path):
            raise FileNotFoundError(f"checkpoint not found: {path}")
        if path.endswith(".safetensors") or _is_safetensors(path):
            from .validate import read_safetensors

            sd: object = read_safetensors(path)
        elif path.endswith(".npz"):  # JAX/Flax checkpoints (google-research/vision_transformer)
            sd = read_npz(path)
        else:
            try:
                sd = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as e:  # noqa: BLE001 - re-raised with context
                raise CheckpointError(
                    f"cannot read {path} as a weights-only torch checkpoint ({type(e).__name__}: {e}); "
                    "vitkit never unpickles arbitrary objects - convert it to safetensors or a plain state dict"
                ) from e
    else:
        sd = source
    for _ in range(3):
        if isinstance(sd, Mapping):
            wrapped = next((k for k in WRAPPER_KEYS if k in sd and isinstance(sd[k], Mapping)), None)
            if wrapped is None:
                break
            sd = sd[wrapped]
    if not isinstance(sd, Mapping):
        raise CheckpointError(f"expected a state dict (mapping of names to tensors), got {type(sd).__name__}")
    out = {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}
    if out and all(k.startswith("module.") for k in out):
        out = {k[len("module."):]: v for k, v in out.items()}
    if not out:
        raise CheckpointError("the checkpoint holds no tensors")
    return out


def _is_safetensors(path: str) -> bool:
    """A safetensors file whatever its name: 8-byte little-endian header length, then a JSON object."""
    if not os.path.isfile(path):
        return False
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{" and 2 <= int.from_bytes(head[:8], "little") < 100_000_000


def model_keys(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's persistent state (parameters and persistent buffers)."""
    return dict(model.state_dict())


def convert_state_dict(sd: StateDict, model: nn.Module) -> tuple[StateDict, str]:
    """Detect the layout of ``sd`` among the model family's converters and map it to vitkit keys."""
    family = getattr(model, "family", "")
    for conv in _CONVERTERS.get(family, []):
        if conv.detect(sd):
            return conv.convert(dict(sd), model), conv.source
    return dict(sd), "vitkit"


HEAD_POLICIES = ("strict", "reset", "match", "keep")


def classifier_keys(model: nn.Module, keys) -> list[str]:
    """The keys among ``keys`` that belong to the model's classifier, by the module names the model declares
    (``model.classifier_names``, e.g. ``("head",)``): never guessed from the checkpoint."""
    names = tuple(getattr(model, "classifier_names", ("head",)))
    return sorted(k for k in keys if k.split(".", 1)[0] in names)


def _head_classes(sd: Mapping[str, torch.Tensor], model: nn.Module) -> int | None:
    """Output count of the checkpoint's main classifier (the first declared name), None without one."""
    name = tuple(getattr(model, "classifier_names", ("head",)))[0]
    w = sd.get(f"{name}.weight")
    return int(w.shape[0]) if w is not None and w.ndim == 2 else None


def load_weights(model: nn.Module, source: str | os.PathLike | Mapping[str, torch.Tensor], *,
                 head: str = "strict", strict: bool = True) -> LoadReport:
    """Put weights of any supported layout into ``model``: the one loading policy of vitkit.

    The file is read and converted once (layout detected, keys mapped, position tables resampled). ``head``
    says what happens to the classifier (the modules named by ``model.classifier_names``):

    - ``"strict"``: it must fit like every other key;
    - ``"reset"``: the checkpoint's classifier is ignored and the model's is zero-initialised at its own class
      count (fine-tuning to new classes; the ViT paper's zero head);
    - ``"match"``: loaded where it has the model's shape, else reset as above (the trainer's fine-tuning);
    - ``"keep"``: the model's classifier is resized to the checkpoint's class count and loaded (inference from
      a file that says how many classes it has).

    Everything else loads strictly: missing, unexpected or mis-shaped keys raise :class:`CheckpointError`
    naming them, unless ``strict=False`` (then what fits loads and the report lists the rest).
    ``report.head`` says what happened to the classifier.
    """
    if head not in HEAD_POLICIES:
        raise ValueError(f"head must be one of {', '.join(HEAD_POLICIES)}, got {head!r}")
    sd = read_state_dict(source)
    sd, layout = convert_state_dict(sd, model)
    report = LoadReport(source=layout)
    adapt = _ADAPTERS.get(getattr(model, "family", ""))
    if adapt is not None:
        sd = adapt(sd, model, report.resampled)
    own = model_keys(model)
    fresh: set[str] = set()
    if head != "strict":
        ckpt_head = classifier_keys(model, sd)
        model_head = classifier_keys(model, own)
        fits = sorted(ckpt_head) == sorted(model_head) and all(sd[k].shape == own[k].shape for k in model_head)
        n_ckpt, n_model = _head_classes(sd, model), getattr(model, "num_classes", None)
        if head == "keep" and not fits and n_ckpt is not None and hasattr(model, "reset_classifier"):
            model.reset_classifier(n_ckpt)
            own = model_keys(model)
            report.head = f"resized to the checkpoint's {n_ckpt} classes (model had {n_model})"
        elif head == "reset" or (head == "match" and not fits):
            for k in ckpt_head:
                sd.pop(k)
            if hasattr(model, "reset_classifier") and n_model is not None:
                model.reset_classifier(n_model)
                own = model_keys(model)
            was = f"{n_ckpt} classes" if n_ckpt is not None else ("none" if not ckpt_head else "other shape")
            report.head = f"reset: zero-initialised for {n_model} classes (checkpoint head: {was}, not loaded)"
            fresh = set(classifier_keys(model, own))  # listed as missing (not from the file), by design
    report.missing = sorted(k for k in own if k not in sd)
    report.unexpected = sorted(k for k in sd if k not in own)
    report.mismatched = [
        (k, tuple(sd[k].shape), tuple(own[k].shape)) for k in sorted(own) if k in sd and sd[k].shape != own[k].shape
    ]
    problems = LoadReport(report.source, [k for k in report.missing if k not in fresh], report.unexpected,
                          report.mismatched)
    if strict and not problems.ok:
        raise CheckpointError("checkpoint does not match the model:\n" + report.describe())
    bad = {k for k, _, _ in report.mismatched}
    loadable = {k: v for k, v in sd.items() if k in own and k not in bad}
    from .validate import check_dtypes, check_finite

    name = os.fspath(source) if isinstance(source, (str, os.PathLike)) else "the state dict"
    check_dtypes(loadable, own, name)
    check_finite(loadable, name)
    model.load_state_dict(loadable, strict=False)
    if report.head == "loaded" and set(classifier_keys(model, own)) & (set(report.missing) | bad):
        report.head = "not loaded (missing or mis-shaped in the checkpoint)"
    return report


def load_checkpoint(
    model: nn.Module, source: str | os.PathLike | Mapping[str, torch.Tensor], strict: bool = True
) -> LoadReport:
    """Load weights of any supported layout into ``model`` (:func:`load_weights` with the head loaded strictly).

    Strict by default: missing, unexpected or mis-shaped keys raise :class:`CheckpointError` naming them.
    With ``strict=False`` the matching tensors are loaded and the report lists the rest.
    """
    return load_weights(model, source, head="strict", strict=strict)


def from_official(family: str, state_dict, config) -> nn.Module:
    """Build the vitkit model that an official ``config`` describes and load the official ``state_dict`` into it."""
    if family not in _OFFICIAL:
        raise KeyError(f"no official converter for family {family!r}; available: {sorted(_OFFICIAL)}")
    return _OFFICIAL[family](read_state_dict(state_dict), config)


def save_weights(model: nn.Module, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> None:
    """Write the model's state dict as safetensors, atomically (contiguous copies; shared tensors cloned)."""
    from safetensors.torch import save_file

    sd = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    meta = {"format": "pt", "vitkit_model": str(getattr(model, "model_name", type(model).__name__))}
    meta.update(metadata or {})
    atomic_write(path, lambda tmp: save_file(sd, tmp, metadata=meta))


#: Hugging Face attention projection names (transformers 4.x and 5.x) -> q / k / v
HF_QKV_NAMES = {"query": "q", "q_proj": "q", "key": "k", "k_proj": "k", "value": "v", "v_proj": "v"}


def rename_prefix(name: str, table: list[tuple[str, str]]) -> str:
    """Replace the first matching prefix of ``name`` from ``table`` ((source, destination) pairs, in order)."""
    for src, dst in table:
        if name.startswith(src):
            return dst + name[len(src):]
    return name


def fuse_qkv(parts: dict[str, dict[str, dict[str, torch.Tensor]]], out: StateDict) -> StateDict:
    """Concatenate separate q/k/v tensors into fused ``<prefix>.attn.qkv.<weight|bias>`` entries of ``out``.

    ``parts`` maps a block prefix to {'weight'|'bias': {'q'|'k'|'v': tensor}}; an incomplete triple raises.
    """
    for prefix, kinds in parts.items():
        for kind, t in kinds.items():
            if set(t) != {"q", "k", "v"}:
                raise KeyError(f"{prefix}: incomplete query/key/value {kind} in the checkpoint")
            out[f"{prefix}.attn.qkv.{kind}"] = torch.cat([t["q"], t["k"], t["v"]], dim=0)
    return out
