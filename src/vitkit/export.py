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

An ONNX export is one self-contained ``.onnx`` file when the model fits in a protobuf (under 2 GB), and a
``.onnx`` file with its weights in ``<file>.onnx.data`` beside it when it does not (ViT-H): chosen by size
(:func:`onnx_layout`), never both, with the metadata (``vitkit.*`` and, when known, ``vitkit.classes``) in
the ``.onnx`` file either way. onnxruntime and ``onnx.load`` find the data file by its relative name: keep the
two files together.
"""
from __future__ import annotations

import copy
import json
import os
import shutil
import tempfile
import warnings
from dataclasses import asdict, dataclass, field
from typing import Sequence

import torch
import torch.nn as nn

from vitkit.layers import explicit_attention

DEFAULT_OPSET = 18
ONNX_SINGLE_FILE_LIMIT = 2**31 - 1  # protobuf's hard limit on one serialised message (2 GB)


@dataclass
class ExportResult:
    path: str
    format: str
    input_shape: tuple[int, ...]  # the example input, batch first
    accepts: str
    attention: str  # "sdpa" or "explicit"
    external_data: str | None = None  # ONNX: the weights file beside the model when it is over 2 GB
    max_abs_diff: float | None = None
    checked_batches: list[int] = field(default_factory=list)


def _input_size(model: nn.Module, input_size: Sequence[int] | None) -> tuple[int, ...]:
    if input_size is not None:
        return tuple(int(s) for s in input_size)
    spec = getattr(model, "input_spec", None)
    if spec is None:
        raise ValueError("input_size (C, H, W) or (C, T, H, W) is required for a model that has no input_spec")
    return tuple(spec.input_size)


def size_overrides(info, input_size: Sequence[int]) -> dict[str, object]:
    """Config overrides that build a registered variant (``info``) for ``input_size`` (C, [T,] H, W).

    The family's rule (``config_for_input``: ``img_size`` and ``num_frames`` where the config has them); a
    size the config cannot express raises, naming the fields it has.
    """
    size = tuple(int(s) for s in input_size)
    if len(size) != len(info.input_size):
        raise ValueError(f"{info.name} takes {'(C, T, H, W)' if info.is_video else '(C, H, W)'} sizes, got {size}")
    return info.builder.config_for_input(info.config, size[-2:], size[1] if info.is_video else None)


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


def _meta(model: nn.Module, size: tuple[int, ...], attention: str,
          classes: Sequence[str] | None = None) -> dict[str, str]:
    spec = getattr(model, "input_spec", None)
    meta = {"vitkit.model": getattr(model, "model_name", type(model).__name__),
            "vitkit.input_size": json.dumps(list(size)), "vitkit.accepts": accepted_input(size),
            "vitkit.attention": attention}
    if spec is not None:
        meta.update({"vitkit.mean": json.dumps(list(spec.mean)), "vitkit.std": json.dumps(list(spec.std)),
                     "vitkit.interpolation": spec.interpolation, "vitkit.crop_pct": str(spec.crop_pct)})
    if classes is not None:
        n = getattr(model, "num_classes", None)
        if n is not None and len(classes) != n:
            raise ValueError(f"{len(classes)} class names for a model with {n} outputs")
        meta["vitkit.classes"] = json.dumps(list(classes))
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


def onnx_layout(proto, limit: int = ONNX_SINGLE_FILE_LIMIT) -> str:
    """``'single'`` when ``proto`` (weights loaded) serialises under ``limit`` bytes, else ``'external'``.

    The size is summed per initializer and node (each well under 2 GB), so it is found without serialising a
    message protobuf would refuse; 1 MiB covers the graph's other fields.
    """
    graph = proto.graph
    size = sum(t.ByteSize() for t in graph.initializer) + sum(n.ByteSize() for n in graph.node) + 2**20
    return "single" if size < limit else "external"


def _save_onnx(proto, path: str, layout: str) -> str | None:
    """Write ``proto`` to ``path`` atomically, self-contained or with ``<name>.data`` beside it (returned)."""
    import onnx

    folder, name = os.path.split(os.path.abspath(path))
    data = f"{name}.data"
    tmp = tempfile.mkdtemp(prefix=f".{name}.", dir=folder)
    try:
        if layout == "single":
            onnx.save(proto, os.path.join(tmp, name))
        else:
            onnx.save(proto, os.path.join(tmp, name), save_as_external_data=True, all_tensors_to_one_file=True,
                      location=data, size_threshold=1024)
            os.replace(os.path.join(tmp, data), os.path.join(folder, data))
        os.replace(os.path.join(tmp, name), path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if layout == "single" and os.path.exists(os.path.join(folder, data)):
        os.remove(os.path.join(folder, data))  # an earlier large export's weights: not ours any more
    return os.path.join(folder, data) if layout == "external" else None


def export_onnx(model: nn.Module, path: str | os.PathLike, input_size: Sequence[int] | None = None,
                opset: int = DEFAULT_OPSET, exporter: str = "dynamo", attention: str = "explicit",
                check: bool = True, atol: float = 1e-4,
                program: torch.export.ExportedProgram | None = None, classes: Sequence[str] | None = None,
                single_file_limit: int = ONNX_SINGLE_FILE_LIMIT) -> ExportResult:
    """Write ``model`` as ONNX with a dynamic batch; with ``check``, compare onnxruntime to PyTorch.

    ``attention``: 'explicit' (matmul + softmax, default), 'sdpa' (fused op) or 'auto' (sdpa, else explicit).
    The check runs batches 1 and 3 and raises if the max abs difference exceeds ``atol``. ``program``: an
    :func:`export_program` of the same model, traced with the same ``attention``, to translate (saves a trace).
    ``classes``: class names stored as ``vitkit.classes`` (JSON list). A model of ``single_file_limit`` bytes
    or more is written with external data (see the module docstring).
    """
    import onnx

    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    meta_classes = list(classes) if classes is not None else None
    size = _input_size(model, input_size)
    model = model.eval()
    x = _example(model, size, 2)
    if attention not in ("auto", "sdpa", "explicit"):
        raise ValueError(f"attention must be 'auto', 'sdpa' or 'explicit', got {attention!r}")
    modes = {"auto": ["sdpa", "explicit"], "sdpa": ["sdpa"], "explicit": ["explicit"]}[attention]
    errors = []
    used = None
    meta = _meta(model, size, "explicit", meta_classes)  # checks the class count before any tracing
    work = tempfile.mkdtemp(prefix=".vitkit-onnx-", dir=os.path.dirname(os.path.abspath(path)))
    raw = os.path.join(work, "model.onnx")  # the exporter may write weights beside it: kept out of the way
    try:
        for mode in modes:
            try:
                with explicit_attention(mode == "explicit"):
                    _onnx_once(_tracing_copy(model, x), x, raw, opset, exporter,
                               program if mode == modes[0] else None)
                used = mode
                break
            except Exception as e:  # the exporter raises many types; keep the message for the final error
                errors.append(f"{mode}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        if used is None:
            raise RuntimeError("ONNX export failed: " + " | ".join(errors))
        proto = onnx.load(raw)  # with any external data the exporter wrote
        meta["vitkit.attention"] = used
        for k, v in meta.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = k, v
        data = _save_onnx(proto, path, onnx_layout(proto, single_file_limit))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = ExportResult(path, "onnx", tuple(x.shape), accepted_input(size), used, external_data=data)
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
               program: torch.export.ExportedProgram | None = None,
               classes: Sequence[str] | None = None) -> ExportResult:
    """``torch.export`` the model with a dynamic batch (any N >= 1), save it as ``.pt2`` plus a JSON sidecar.

    ``program``: an :func:`export_program` of the same model traced with ``attention``, to save a trace.
    ``classes``: class names stored in the sidecar as ``vitkit.classes``.

    Load with ``torch.export.load(path).module()``.
    """
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    size = _input_size(model, input_size)
    model = model.eval()
    x = _example(model, size, 2)
    meta = _meta(model, size, attention, classes)  # checks the class count before tracing
    prog = program if program is not None else export_program(model, size, attention)
    torch.export.save(prog, path)
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
