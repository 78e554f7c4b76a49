"""The reproduction harness behind ``vitkit evaluate --model NAME --pretrained TAG DATA``: published weights,
evaluated with their own preprocessing on the user's validation data, printed beside the publisher's figure."""
from __future__ import annotations

from .cards import preprocessing
from .load import weights_file
from .spec import Weights, get_weights


def pretrained_source(model: str | None, tag: str, data: str) -> tuple[Weights, str, list[str]]:
    """(the record, its local file (downloaded when missing), recipe overrides: the data and the tag's
    preprocessing)."""
    if not model and "." not in tag:
        raise ValueError("--pretrained TAG needs --model NAME (or give model.tag)")
    w = get_weights(model or tag.partition(".")[0], tag)
    pre = preprocessing(w)
    size = pre["input_size"]
    overrides = [f"data.dataset={data}", f"data.input_size={size[-1]}",
                 f"data.mean=[{', '.join(map(str, pre['mean']))}]", f"data.std=[{', '.join(map(str, pre['std']))}]"]
    if len(size) == 4:
        overrides.append(f"data.num_frames={size[1]}")
    overrides += [f"model.{k}={v}" for k, v in w.config.items() if k != "num_classes"]
    return w, str(weights_file(w)), overrides


def publisher_line(w: Weights, top1: float) -> str:
    if w.top1 is None:
        return f"{w.name}: no published top-1 to compare with"
    return (f"{w.name}: top-1 here {top1:.2f}% vs {w.top1:.2f}% reported by {w.reported_by} ({w.protocol}); "
            f"difference {top1 - w.top1:+.2f}")
