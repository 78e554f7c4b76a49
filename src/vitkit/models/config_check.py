"""Range checks of model config fields, by field name, shared by every family.

``create_model`` (through ``registry.resolve_config``) and the training recipe (``model.<field>``) call
:func:`check_config`, so a depth of 0, a negative patch size or a drop-path rate of 1.5 fails when the model is
asked for, with the valid range in the message, instead of building a model that trains nothing.
"""
from __future__ import annotations

import dataclasses
from typing import Any

#: fields that are sizes or counts: every value (an int or each entry of a tuple) must be >= 1
_POSITIVE = ("depth", "depths", "num_heads", "embed_dim", "patch_size", "img_size", "in_chans", "head_dim",
             "window_size", "tubelet_size", "num_frames", "local_kernel", "dpe_kernel", "representation_size")
#: probabilities of dropping: [0, 1)
_RATES = ("drop_rate", "attn_drop_rate", "drop_path_rate")
#: strictly positive reals
_POSITIVE_REAL = ("mlp_ratio", "norm_eps")


def _values(v: Any) -> list:
    if isinstance(v, (tuple, list)):
        out = []
        for item in v:
            out.extend(_values(item))
        return out
    return [v]


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_config(cfg: Any, prefix: str = "") -> None:
    """Raise ``ValueError("<prefix><field> must be ..., got ...")`` for the first out-of-range field of ``cfg``."""
    fields = {f.name for f in dataclasses.fields(cfg)}
    for name in fields:
        v = getattr(cfg, name)
        if v is None:
            continue
        if name in _POSITIVE:
            bad = [x for x in _values(v) if not (isinstance(x, int) and not isinstance(x, bool) and x >= 1)]
            if bad or (isinstance(v, (tuple, list)) and not v):
                raise ValueError(f"{prefix}{name} must be a positive integer"
                                 f"{' (or a list of them)' if isinstance(v, (tuple, list)) else ''}, got {v!r}")
        elif name in _RATES:
            if not _is_number(v) or not 0.0 <= v < 1.0:
                raise ValueError(f"{prefix}{name} must be in [0, 1), got {v!r}")
        elif name in _POSITIVE_REAL:
            if not _is_number(v) or not v > 0:
                raise ValueError(f"{prefix}{name} must be > 0, got {v!r}")
        elif name == "num_classes":
            if not (isinstance(v, int) and not isinstance(v, bool) and v >= 0):
                raise ValueError(f"{prefix}num_classes must be an integer >= 0 (0: no classifier), got {v!r}")
