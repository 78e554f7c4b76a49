"""What a published weight file is: one :class:`Weights` record per ``model.tag``, and the table of them.

The records are data (the per-family tables in :mod:`vitkit.weights.zoo`), kept beside the model registry; the
download / cache / conversion code lives in :mod:`vitkit.weights.download` and :mod:`vitkit.weights.load`.
"""
from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from typing import Any

HF = "https://huggingface.co"

#: label lists a weight file's classifier predicts (name -> number of classes)
LABELS = {"imagenet-1k": 1000, "imagenet-21k": 21843, "imagenet-22k": 21841, "kinetics-400": 400,
          "kinetics-600": 600, "something-something-v2": 174, "none": 0}


def hf_url(repo: str, filename: str, revision: str = "main") -> str:
    """The download URL of a file on the Hugging Face hub (what ``hf_hub_download`` fetches)."""
    return f"{HF}/{repo}/resolve/{revision}/{filename}"


@dataclass(frozen=True)
class Weights:
    """One published weight file for one registered variant.

    ``url`` is where the publisher serves it (a Hugging Face hub file is its ``resolve`` URL); ``layout`` is the
    key layout it comes in (read by :mod:`vitkit.checkpoints`). ``sha256`` is the full digest where the publisher
    gives one; ``sha256_prefix`` the digest prefix a torch.hub-style file name carries (``name-<hex>.pth``); with
    neither, the digest is recorded on first download and checked on every later one. ``top1``/``top5`` are the
    figures ``reported_by`` states under ``protocol``. ``config`` overrides the variant's config for the
    architecture the file was trained with (e.g. a 21k-class head). Preprocessing left ``None`` is the variant's.
    """

    model: str
    tag: str
    url: str
    layout: str
    license: str
    labels: str
    source: str  # the page the facts were taken from
    pretrain: str = ""  # e.g. "ImageNet-21k, fine-tuned on ImageNet-1k"
    sha256: str | None = None
    top1: float | None = None
    top5: float | None = None
    reported_by: str = ""
    protocol: str = ""
    paper: str = ""
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    interpolation: str | None = None
    crop_pct: float | None = None
    input_size: tuple[int, ...] | None = None
    config: dict[str, Any] = field(default_factory=dict)
    notes: str = ""
    default: bool = False

    @property
    def name(self) -> str:
        return f"{self.model}.{self.tag}"

    @property
    def num_classes(self) -> int:
        return int(self.config.get("num_classes", LABELS[self.labels]))

    @property
    def sha256_prefix(self) -> str | None:
        """The digest prefix of a torch.hub-style file name ``<name>-<hex>.<ext>`` (as torch.hub checks it)."""
        m = re.search(r"-([a-f0-9]{8,})\.[a-z]+$", self.url.rsplit("/", 1)[-1])
        return m.group(1) if m else None

    @property
    def hf_repo(self) -> str | None:
        m = re.match(rf"{re.escape(HF)}/(.+?)/resolve/", self.url)
        return m.group(1) if m else None

    def overrides(self) -> dict[str, Any]:
        """Config fields the model must have to take this file as published (class count and the like)."""
        return {"num_classes": self.num_classes, **self.config}


_ZOO: dict[str, Weights] = {}


def register_weights(*items: Weights) -> None:
    """Add records; ``model.tag`` names are unique. The first tag of a model (or the one marked default) is its
    default."""
    for w in items:
        if w.name in _ZOO:
            raise ValueError(f"weights {w.name!r} are already registered")
        if w.labels not in LABELS:
            raise ValueError(f"{w.name}: unknown label list {w.labels!r}; known: {sorted(LABELS)}")
        _ZOO[w.name] = w


def _ensure_loaded() -> None:
    """Nothing to do: importing :mod:`vitkit.weights` (the parent package of this module) registers the zoo
    tables (its ``__init__`` imports ``.zoo``), so the records exist before any lookup here."""


def list_pretrained(pattern: str = "*") -> list[str]:
    """``model.tag`` names matching a glob ``pattern`` (a bare model pattern matches all its tags), sorted."""
    pat = pattern if "." in pattern else f"{pattern}.*"
    return sorted(n for n in _ZOO if fnmatch.fnmatch(n, pat))


def tags_of(model: str) -> list[Weights]:
    """The published weights of a registered variant, its default first."""
    found = [w for w in _ZOO.values() if w.model == model]
    return sorted(found, key=lambda w: (not w.default, found.index(w)))


def get_weights(name: str, tag: str | bool | None = None) -> Weights:
    """The record for ``name`` (``model`` or ``model.tag``; model names hold no dot) and ``tag`` (``True`` or
    ``None``: the model's default tag). Unknown names raise ``KeyError`` listing the tags that exist."""
    model, _, named = name.partition(".")
    if isinstance(tag, str) and tag:
        named = tag[len(model) + 1:] if tag.startswith(model + ".") else tag
    if not named:
        found = tags_of(model)
        if not found:
            raise KeyError(f"no published weights for {model!r}; models with weights: "
                           f"{', '.join(sorted({w.model for w in _ZOO.values()}))}")
        return found[0]
    key = f"{model}.{named}"
    if key not in _ZOO:
        have = [w.tag for w in tags_of(model)]
        hint = f"tags of {model}: {', '.join(have)}" if have else f"{model} has no published weights"
        raise KeyError(f"unknown weights {key!r}; {hint}")
    return _ZOO[key]
