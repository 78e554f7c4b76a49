"""Published weights into a model: fetch (cache / mirror), convert once to vitkit's safetensors beside the
download, then load (strict, with the classifier replaced when the model's class count differs)."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from vitkit.checkpoints.base import LoadReport, atomic_write, convert_state_dict, read_state_dict
from vitkit.checkpoints.heads import load_except_classifier
from vitkit.checkpoints.inflate import inflate_state_dict
from vitkit.models.variants import VARIANTS

from .download import fetch
from .label_maps import head_rows
from .spec import LABELS, Weights, get_weights

#: bump when a converter changes what it writes, so stale converted caches are not reused
CONVERTED_VERSION = "1"


def weights_file(w: Weights, progress: bool | None = None) -> Path:
    """The published file of ``w`` in the local cache (downloaded and verified when missing)."""
    return fetch(w.url, sha256=w.sha256, sha256_prefix=w.sha256_prefix, progress=progress)


def converted_path(raw: Path, model_name: str) -> Path:
    """Where the vitkit-layout safetensors converted from ``raw`` for ``model_name`` is cached (beside it)."""
    return raw.with_name(f"{raw.name}.{model_name}.v{CONVERTED_VERSION}.safetensors")


def converted_state_dict(w: Weights, model: nn.Module, progress: bool | None = None) -> tuple[dict, str]:
    """``w`` in vitkit's key layout for ``model`` (from the converted cache, or converted now and cached, keyed by
    the model's variant name), and the layout it came in."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    raw = weights_file(w, progress)
    conv = converted_path(raw, getattr(model, "model_name", w.model))
    if conv.is_file():
        with safe_open(str(conv), framework="pt") as f:
            layout = (f.metadata() or {}).get("layout", w.layout)
        return load_file(str(conv)), layout
    sd, layout = convert_state_dict(read_state_dict(raw), model)
    flat = {k: v.detach().contiguous().clone() for k, v in sd.items()}
    meta = {"format": "pt", "vitkit_weights": w.name, "layout": layout, "url": w.url}
    atomic_write(conv, lambda tmp: save_file(flat, tmp, metadata=meta))
    return flat, layout


def load_pretrained(model: nn.Module, weights: Weights | str, tag: str | bool | None = None,
                    progress: bool | None = None) -> LoadReport:
    """Load published weights (a :class:`Weights`, ``"model.tag"``, or a model name with ``tag``) into ``model``.

    Through :func:`vitkit.checkpoints.load_weights` with ``head="match"``: everything but the classifier loads
    strictly; when the model's class count differs from the file's (fine-tuning on new classes) the file's
    classifier is left out and the model's is zero-initialised, as timm / torchvision users expect from
    ``num_classes=N`` with pretrained weights; the report lists it as missing and ``report.head`` says so. A
    1000-class model from an ImageNet-22k file (the Swin releases) takes the 22k head's rows of the 1k classes
    instead, as the official Swin fine-tuning does (:mod:`vitkit.weights.label_maps`).
    Weights of another variant of the family load too: position tables are resampled to the model's size, and
    image weights in a video model are inflated (:mod:`vitkit.checkpoints.inflate`, average method; the report's
    ``inflation`` says what was done).
    """
    w = weights if isinstance(weights, Weights) else get_weights(weights, tag)
    family = getattr(model, "family", "")
    want = getattr(model, "model_name", w.model)
    source = VARIANTS[w.model]
    if source.family != family:
        raise ValueError(f"weights {w.name} are for the {source.family} family, not {family} ({want})")
    sd, layout = converted_state_dict(w, model, progress)
    inflation = None
    if not source.is_video and getattr(model, "spatial_rank", 2) == 3:
        sd, inflation = inflate_state_dict(sd, model)
    sd, mapped = _head_from_label_map(sd, w, model)
    label = f"{w.name} ({layout} layout{', inflated 2-D -> 3-D' if inflation else ''}{mapped})"
    report = load_except_classifier(model, sd, label, f"{w.name} does not match {want}")
    report.inflation = inflation
    if mapped:
        report.head = f"loaded{mapped}"
    return report


def _head_from_label_map(sd: dict, w: Weights, model: nn.Module) -> tuple[dict, str]:
    """A 1000-class model from a file whose classifier covers ImageNet-22k: the head starts from the 22k rows of
    the 1k classes (:mod:`vitkit.weights.label_maps`), as the official Swin 22k -> 1k fine-tuning does; returns
    the state dict and a note for the report ("" when nothing was mapped)."""
    rows = head_rows(w.labels, "imagenet-1k") if getattr(model, "num_classes", None) == 1000 else None
    head = sd.get("head.weight")
    if rows is None or head is None or head.shape[0] != LABELS[w.labels] or "head.bias" not in sd:
        return sd, ""
    idx = torch.tensor(rows)
    note = f", head from the {w.labels} classifier's rows of the imagenet-1k classes"
    return {**sd, "head.weight": head[idx].contiguous(), "head.bias": sd["head.bias"][idx].contiguous()}, note
