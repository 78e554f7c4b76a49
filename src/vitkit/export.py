"""Export to ONNX and to ``torch.export`` programs (``.pt2``), checked against the PyTorch model.

What an exported model accepts: the **batch dimension is dynamic** (any N >= 1); channels, frames and
height/width are fixed at the size it was exported with (the variant's ``input_size`` unless given), because
position-embedding resampling, window padding and pooling sizes are computed from Python integers at trace
time. :func:`accepted_input` states this in words and it is written into the ONNX file's metadata
(``vitkit.accepts``) and beside a ``.pt2`` file (``<file>.json``). Export another size to serve another size.

ONNX goes through the ``torch.export``-based exporter (``dynamo=True``) with attention traced as explicit
matmul + softmax (:func:`vitkit.layers.explicit_attention`, numerically the same as the fused kernel). At the
default opset 18 the exporter lowers ``scaled_dot_product_attention`` to the same MatMul / Softmax nodes anyway
(ONNX has an ``Attention`` op only from opset 23), and the explicit form also avoids a decomposition failure
on the strided SDPA output that Swin's window attention reshapes. ``attention='sdpa'`` keeps the fused op in
the trace and ``'auto'`` tries it first. ``exporter='torchscript'`` selects the older tracer (it cannot export
the ``movedim`` / negative permutations used by Swin, MViT and UniFormer; ViT only). ``.pt2`` programs keep
the fused SDPA op by default: it runs as the fused kernel when the program is executed.
"""
from __future__ import annotations

import copy
import json
import os
import warnings
from dataclasses import asdict, dataclass, field
from typing import Sequence

import torch
import torch.nn as nn

from vitkit.layers import explicit_attention

DEFAULT_OPSET = 18


@dataclass
class ExportResult:
    path: str
    format: str
    input_shape: tuple[int, ...]  # the example input, batch first
    accepts: str
    attention: str  # "sdpa" or "explicit"
    max_abs_diff: float | None = None
    checked_batches: list[int] = field(default_factory=list)


def _input_size(model: nn.Module, input_size: Sequence[int] | None) -> tuple[int, ...]:
    if input_size is not None:
        return tuple(int(s) for s in input_size)
    info = getattr(model, "info", None)
    if info is None:
        raise ValueError("input_size (C, H, W) or (C, T, H, W) is required for a model not built from the registry")
    return tuple(info.input_size)


def size_overrides(info, input_size: Sequence[int]) -> dict[str, object]:
    """Config overrides that build a registered variant (``info``) for ``input_size`` (C, [T,] H, W).

    Uses the config's ``img_size`` and ``num_frames`` fields where it has them; a size the config cannot
    express raises, naming the fields it has.
    """
    import dataclasses

    fields = {f.name for f in dataclasses.fields(info.config)}
    size = tuple(int(s) for s in input_size)
    if len(size) != len(info.input_size):
        raise ValueError(f"{info.name} takes {'(C, T, H, W)' if info.is_video else '(C, H, W)'} sizes, got {size}")
    out: dict[str, object] = {}
    if size[-2:] != tuple(info.input_size[-2:]):
        if "img_size" not in fields:
            raise ValueError(f"{info.name}: cannot build for H, W = {size[-2:]}: its config has no img_size "
                             f"(fields: {sorted(fields)})")
        out["img_size"] = size[-2:]
    if info.is_video and size[1] != info.input_size[1]:
        if "num_frames" not in fields:
            raise ValueError(f"{info.name}: cannot build for T = {size[1]}: its config has no num_frames "
                             f"(fields: {sorted(fields)})")
        out["num_frames"] = size[1]
    return out


def accepted_input(input_size: Sequence[int]) -> str:
    """The input an exported model accepts, in words."""
    size = tuple(input_size)
    if len(size) == 4:
        c, t, h, w = size
        return (f"float32 (N, {c}, {t}, {h}, {w}) = (batch, channels, frames, height, width): N dynamic (any N >= 1); "
                f"C={c}, T={t}, H={h}, W={w} fixed - export again for another clip length or size")
    c, h, w = size
    return (f"float32 (N, {c}, {h}, {w}) = (batch, channels, height, width): N dynamic (any N >= 1); "
            f"C={c}, H={h}, W={w} fixed - export again for another size")


def _example(model: nn.Module, input_size: tuple[int, ...], batch: int) -> torch.Tensor:
    p = next(model.parameters())
    g = torch.Generator().manual_seed(batch)  # a different input per batch size
    return torch.randn(batch, *input_size, generator=g).to(p.device, p.dtype)


def _meta(model: nn.Module, size: tuple[int, ...], attention: str) -> dict[str, str]:
    info = getattr(model, "info", None)
    meta = {"vitkit.model": getattr(model, "model_name", type(model).__name__),
            "vitkit.input_size": json.dumps(list(size)), "vitkit.accepts": accepted_input(size),
            "vitkit.attention": attention}
    if info is not None:
        meta.update({"vitkit.mean": json.dumps(list(info.mean)), "vitkit.std": json.dumps(list(info.std)),
                     "vitkit.interpolation": info.interpolation, "vitkit.crop_pct": str(info.crop_pct)})
    return meta


def _tracing_copy(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """An eval-mode deep copy to trace, after one eager forward at the export size.

    Tracing runs the Python code on fake tensors; a size-keyed cache (window orders, masks, bias indices) that
    is first filled during tracing would keep fake tensors and break later eager calls. The eager forward
    fills such caches with real tensors first, which the trace then records as constants.
    """
    copied = copy.deepcopy(model).eval()
    with torch.no_grad():
        copied(x)
    return copied


def export_program(model: nn.Module, input_size: Sequence[int] | None = None,
                   attention: str = "sdpa") -> torch.export.ExportedProgram:
    """``torch.export`` of ``model`` in eval mode with a dynamic batch dimension (any N >= 1).

    ``attention``: 'sdpa' (fused op in the program) or 'explicit' (matmul + softmax).
    """
    if attention not in ("sdpa", "explicit"):
        raise ValueError(f"attention must be 'sdpa' or 'explicit', got {attention!r}")
    size = _input_size(model, input_size)
    x = _example(model, size, 2)
    model = _tracing_copy(model, x)
    with warnings.catch_warnings(), explicit_attention(attention == "explicit"):
        warnings.simplefilter("ignore")
        return torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))


def _onnx_once(model, x, path, opset, exporter, program=None) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            if program is not None:
                torch.onnx.export(program, (x,), path, dynamo=True, opset_version=opset, input_names=["input"],
                                  output_names=["output"], verbose=False)
            else:
                torch.onnx.export(model, (x,), path, dynamo=True, opset_version=opset, input_names=["input"],
                                  output_names=["output"], dynamic_shapes=({0: torch.export.Dim("batch")},),
                                  verbose=False)
        elif exporter == "torchscript":
            torch.onnx.export(model, (x,), path, dynamo=False, opset_version=opset, input_names=["input"],
                              output_names=["output"], dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
        else:
            raise ValueError(f"exporter must be 'dynamo' or 'torchscript', got {exporter!r}")


def export_onnx(model: nn.Module, path: str | os.PathLike, input_size: Sequence[int] | None = None,
                opset: int = DEFAULT_OPSET, exporter: str = "dynamo", attention: str = "explicit",
                check: bool = True, atol: float = 1e-4,
                program: torch.export.ExportedProgram | None = None) -> ExportResult:
    """Write ``model`` as ONNX with a dynamic batch; with ``check``, compare onnxruntime to PyTorch.

    ``attention``: 'explicit' (matmul + softmax, default), 'sdpa' (fused op) or 'auto' (sdpa, else explicit).
    The check runs batches 1 and 3 and raises if the max abs difference exceeds ``atol``. ``program``: an
    :func:`export_program` of the same model, traced with the same ``attention``, to translate (saves a trace).
    """
    import onnx

    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    size = _input_size(model, input_size)
    model = model.eval()
    x = _example(model, size, 2)
    if attention not in ("auto", "sdpa", "explicit"):
        raise ValueError(f"attention must be 'auto', 'sdpa' or 'explicit', got {attention!r}")
    modes = {"auto": ["sdpa", "explicit"], "sdpa": ["sdpa"], "explicit": ["explicit"]}[attention]
    errors = []
    used = None
    for mode in modes:
        try:
            with explicit_attention(mode == "explicit"):
                _onnx_once(_tracing_copy(model, x), x, path, opset, exporter, program if mode == modes[0] else None)
            used = mode
            break
        except Exception as e:  # the exporter raises many types; keep the message for the final error
            errors.append(f"{mode}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    if used is None:
        raise RuntimeError("ONNX export failed: " + " | ".join(errors))
    proto = onnx.load(path)
    for k, v in _meta(model, size, used).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.save(proto, path)
    result = ExportResult(path, "onnx", tuple(x.shape), accepted_input(size), used)
    if check:
        result.max_abs_diff, result.checked_batches = check_onnx(path, model, size, atol=atol)
    return result


def check_onnx(path: str, model: nn.Module, input_size: Sequence[int], batches: Sequence[int] = (1, 3),
               atol: float = 1e-4) -> tuple[float, list[int]]:
    """Max abs difference between onnxruntime and PyTorch outputs over ``batches``; raises above ``atol``."""
    import onnxruntime as ort

    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    worst = 0.0
    for b in batches:
        x = _example(model, tuple(input_size), b).float().cpu()
        with torch.no_grad():
            want = model(x.to(next(model.parameters()).device)).float().cpu()
        got = torch.from_numpy(sess.run(None, {name: x.numpy()})[0])
        if got.shape != want.shape:
            raise AssertionError(f"ONNX output shape {tuple(got.shape)} != PyTorch {tuple(want.shape)} at batch {b}")
        worst = max(worst, (got - want).abs().max().item())
    if worst > atol:
        raise AssertionError(f"ONNX output differs from PyTorch by {worst:.3g} (> {atol:g}) for {path}")
    return worst, list(batches)


def export_pt2(model: nn.Module, path: str | os.PathLike, input_size: Sequence[int] | None = None,
               check: bool = True, atol: float = 1e-5, attention: str = "sdpa",
               program: torch.export.ExportedProgram | None = None) -> ExportResult:
    """``torch.export`` the model with a dynamic batch (any N >= 1), save it as ``.pt2`` plus a JSON sidecar.

    ``program``: an :func:`export_program` of the same model traced with ``attention``, to save a trace.

    Load with ``torch.export.load(path).module()``.
    """
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    size = _input_size(model, input_size)
    model = model.eval()
    x = _example(model, size, 2)
    prog = program if program is not None else export_program(model, size, attention)
    torch.export.save(prog, path)
    meta = _meta(model, size, attention)
    with open(path + ".json", "w") as f:
        json.dump(meta, f, indent=2)
    result = ExportResult(path, "pt2", tuple(x.shape), accepted_input(size), attention)
    if check:
        loaded = torch.export.load(path).module()
        worst = 0.0
        for b in (1, 3):
            xb = _example(model, size, b)
            with torch.no_grad():
                worst = max(worst, (loaded(xb) - model(xb)).abs().max().item())
        if worst > atol:
            raise AssertionError(f"exported program differs from the model by {worst:.3g} (> {atol:g})")
        result.max_abs_diff, result.checked_batches = worst, [1, 3]
    return result


def export(model: nn.Module, path: str | os.PathLike, fmt: str, input_size: Sequence[int] | None = None,
           **kwargs) -> ExportResult:
    """Dispatch to :func:`export_onnx` (``fmt='onnx'``) or :func:`export_pt2` (``'pt2'``)."""
    if fmt == "onnx":
        return export_onnx(model, path, input_size, **kwargs)
    if fmt == "pt2":
        return export_pt2(model, path, input_size, **kwargs)
    raise ValueError(f"format must be 'onnx' or 'pt2', got {fmt!r}")


def result_json(result: ExportResult) -> str:
    return json.dumps(asdict(result), indent=2)
