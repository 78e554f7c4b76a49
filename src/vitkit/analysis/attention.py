"""Attention maps, attention rollout and mean attention distance, in input coordinates, for every family.

:func:`collect_attention` runs a model under :func:`vitkit.layers.record_attention` and turns each recorded
attention call into an :class:`AttentionLayer`: the probabilities as ``(B, G, heads, Nq, Nk)`` over ``G``
groups (1 for global attention, the windows for window attention) and, for queries and keys, a
:class:`TokenLayout` giving each token's cell in a token grid that covers the input. Prefix tokens (the class
token) and padding tokens have index -1. With that one description, global (ViT, UniFormer), windowed and
shifted (Swin) and pooled (MViT) attention all map back to pixel (and frame) coordinates the same way.

Layouts come from the ``meta`` each attention call passes, completed from the model where the call leaves
something out (ViT passes none: one global grid from the patch embedding). ``meta`` keys understood:

- ``grid`` (or ``q_grid``): the query token grid ``(H, W)`` / ``(T, H, W)`` of the input map (unpadded);
- ``k_grid`` / ``kv_grid``: the key grid where keys are pooled (MViT); default ``grid``;
- ``stride`` / ``k_stride``: input pixels (frames) per grid cell; default: input size / grid, rounded up to a
  power of two where it does not divide (patch and merge strides of 2^k);
- ``prefix`` / ``num_prefix``: number of prefix tokens (default 0);
- ``window`` and ``shift``: window attention on ``grid`` padded up to a multiple of ``window``, rolled by
  ``-shift``; windows in row-major order, tokens row-major inside a window. For calls that give ``window`` but
  no ``grid`` (Swin), the grid and shift are read by a hook on the calling block (a module with
  ``window_size`` and ``shift_size`` attributes), through :func:`vitkit.layers.windows.fit_window`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from vitkit.layers import Attention, record_attention
from vitkit.layers.windows import fit_window


@dataclass
class TokenLayout:
    """Where each token of a (grouped) sequence sits: ``index`` (G, N) into the flat ``grid``, -1 = none.

    ``stride`` is the size of one grid cell in input units (frames, pixels); cell ``c`` covers
    ``[c * stride, (c + 1) * stride)`` along each axis, its centre is ``(c + 0.5) * stride``.
    """

    grid: tuple[int, ...]
    stride: tuple[float, ...]
    index: torch.Tensor

    @property
    def valid(self) -> torch.Tensor:
        return self.index >= 0

    def positions(self) -> torch.Tensor:
        """(G, N, rank) centres in input units; rows of invalid tokens are NaN."""
        idx = self.index.clamp(min=0)
        coords = []
        for size in reversed(self.grid):
            coords.append(idx % size)
            idx = idx // size
        c = torch.stack(coords[::-1], dim=-1).float()
        pos = (c + 0.5) * torch.tensor(self.stride, dtype=torch.float32)
        return pos.masked_fill(~self.valid.unsqueeze(-1), float("nan"))


@dataclass
class AttentionLayer:
    """One attention call: ``probs`` (B, G, heads, Nq, Nk) and the query / key layouts."""

    name: str
    probs: torch.Tensor
    q: TokenLayout
    k: TokenLayout
    num_prefix: int = 0

    @property
    def num_heads(self) -> int:
        return self.probs.shape[2]


# -- layouts --------------------------------------------------------------------------------------------------
def global_layout(grid: Sequence[int], stride: Sequence[float], prefix: int = 0) -> TokenLayout:
    """A single group: ``prefix`` prefix tokens then the whole ``grid`` in row-major order."""
    n = math.prod(grid)
    index = torch.cat([torch.full((prefix,), -1, dtype=torch.long), torch.arange(n)]).unsqueeze(0)
    return TokenLayout(tuple(grid), tuple(float(s) for s in stride), index)


def window_layout(grid: Sequence[int], stride: Sequence[float], window: Sequence[int],
                  shift: Sequence[int] | None = None) -> TokenLayout:
    """Window partition of ``grid`` padded to a multiple of ``window`` and rolled by ``-shift``.

    Token ``j`` of window ``g`` sits at padded position ``p = (window origin + offset + shift) mod padded``;
    positions in the padding get index -1.
    """
    grid, window = tuple(grid), tuple(window)
    shift = tuple(shift) if shift is not None else (0,) * len(grid)
    if not (len(grid) == len(window) == len(shift)):
        raise ValueError(f"grid {grid}, window {window} and shift {shift} must have the same rank")
    padded = tuple(math.ceil(g / w) * w for g, w in zip(grid, window))
    counts = [p // w for p, w in zip(padded, window)]
    # coordinates in the rolled, padded grid: window-major, then row-major inside a window
    win = torch.stack(torch.meshgrid(*[torch.arange(c) for c in counts], indexing="ij"), -1).reshape(-1, 1, len(grid))
    off = torch.stack(torch.meshgrid(*[torch.arange(w) for w in window], indexing="ij"), -1).reshape(1, -1, len(grid))
    rolled = win * torch.tensor(window) + off
    orig = (rolled + torch.tensor(shift)) % torch.tensor(padded)
    inside = (orig < torch.tensor(grid)).all(-1)
    flat = torch.zeros(orig.shape[:2], dtype=torch.long)
    for axis, size in enumerate(grid):
        flat = flat * size + orig[..., axis]
    return TokenLayout(grid, tuple(float(s) for s in stride), flat.masked_fill(~inside, -1))


def _stride(size: Sequence[int], grid: Sequence[int]) -> tuple[float, ...]:
    out = []
    for s, g in zip(size, grid):
        r = s / g
        out.append(float(r) if r == int(r) else float(2 ** math.ceil(math.log2(r) - 1e-9)))
    return tuple(out)


def layout_from_meta(meta: dict[str, Any], which: str, size: Sequence[int] | None = None) -> TokenLayout:
    """The query (``which='q'``) or key (``'k'``) layout described by an attention call's ``meta``.

    ``size`` is the input's (T, H, W) / (H, W), used when ``meta`` has no stride.
    """
    q_grid = tuple(meta.get("grid") or meta["q_grid"])
    grid = tuple(meta.get("k_grid") or meta.get("kv_grid") or q_grid) if which == "k" else q_grid
    stride = meta.get("k_stride") if which == "k" else meta.get("q_stride")
    stride = stride or (meta.get("stride") if grid == q_grid else None)
    if stride is None:
        if size is None:
            raise ValueError(f"attention meta {sorted(meta)} has no stride and no input size was given")
        stride = _stride(size[-len(grid):], grid)
    if meta.get("window") is not None:
        return window_layout(grid, stride, meta["window"], meta.get("shift"))
    return global_layout(grid, stride, int(meta.get("prefix", meta.get("num_prefix", 0))))


def _vit_meta(model: nn.Module, x: torch.Tensor) -> dict[str, Any]:
    embed = model.patch_embed
    stride = tuple(getattr(embed, "stride"))
    if model.spatial_rank == 3 and len(stride) == 2:
        stride = (1, *stride)
    grid = embed.output_grid(tuple(x.shape[2:]))
    return {"grid": tuple(grid), "stride": stride, "prefix": int(getattr(model, "num_prefix_tokens", 0))}


#: family -> function(model, input) giving the ``meta`` of every attention call, for families that pass none
META_ADAPTERS: dict[str, Callable[[nn.Module, torch.Tensor], dict[str, Any]]] = {"vit": _vit_meta}


def _hook_window_blocks(model: nn.Module) -> tuple[list, list]:
    """Pre-hooks on window-attention blocks (``window_size`` + ``shift_size``) noting (grid, window, shift)."""
    seen: list[dict[str, Any]] = []
    handles = []
    for mod in model.modules():
        if hasattr(mod, "window_size") and hasattr(mod, "shift_size") and not isinstance(mod.window_size, int):
            def hook(m, args, seen=seen):
                grid = tuple(args[0].shape[1:-1])  # channels-last map (B, *grid, C)
                window, shift = fit_window(grid, m.window_size, m.shift_size)
                seen.append({"grid": grid, "window": window, "shift": shift})
            handles.append(mod.register_forward_pre_hook(hook))
    return seen, handles


def _hook_attention_names(model: nn.Module) -> tuple[list[str], list]:
    """Pre-hooks on every :class:`vitkit.layers.Attention` noting its module name, in call order."""
    names: list[str] = []
    handles = []
    for name, mod in model.named_modules():
        if isinstance(mod, Attention):
            label = name[: -len(".attn")] if name.endswith(".attn") else name
            handles.append(mod.register_forward_pre_hook(lambda m, a, label=label: names.append(label)))
    return names, handles


@torch.no_grad()
def collect_attention(model: nn.Module, x: torch.Tensor) -> list[AttentionLayer]:
    """Run ``model(x)`` in eval mode and return every attention call as an :class:`AttentionLayer`, in order."""
    was_training = model.training
    model.eval()
    window_calls, handles = _hook_window_blocks(model)
    called, name_handles = _hook_attention_names(model)
    handles += name_handles
    try:
        with record_attention() as records:
            model(x)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    if not records:
        raise ValueError(f"{type(model).__name__} made no attention call through vitkit.layers.attention()")
    family = getattr(model, "family", "")
    size = tuple(x.shape[2:])
    layouts = []
    windows = iter(window_calls)
    for r in records:
        meta = {k: v for k, v in r.items() if k != "probs"}
        if "grid" not in meta and "q_grid" not in meta:
            if "window" in meta:
                meta = {**meta, **next(windows, {})}
            elif family in META_ADAPTERS:
                meta = {**META_ADAPTERS[family](model, x), **meta}
        if "grid" not in meta and "q_grid" not in meta:
            raise ValueError(
                f"an attention call of family {family!r} carries no layout meta (grid, stride, window...) and no "
                f"adapter is registered in vitkit.analysis.attention.META_ADAPTERS"
            )
        prefix = int(meta.get("prefix", meta.get("num_prefix", 0)))
        layouts.append((layout_from_meta(meta, "q", size), layout_from_meta(meta, "k", size), prefix))
    names = called if len(called) == len(records) else [f"attention.{i}" for i in range(len(records))]
    out = []
    for name, r, (q, k, prefix) in zip(names, records, layouts):
        p = r["probs"]
        g = q.index.shape[0]
        if p.shape[0] % g or p.shape[-2] != q.index.shape[1] or p.shape[-1] != k.index.shape[1]:
            raise ValueError(
                f"{name}: attention of shape {tuple(p.shape)} does not fit the layout "
                f"({g} groups x {q.index.shape[1]} queries x {k.index.shape[1]} keys)"
            )
        # window attention batches windows as (B * nW); split them back into (B, G)
        probs = p.reshape(p.shape[0] // g, g, *p.shape[1:])
        out.append(AttentionLayer(name, probs, q, k, prefix))
    return out


# -- maps -----------------------------------------------------------------------------------------------------
def centre_query(layer: AttentionLayer) -> int:
    """The flat grid index of the query token at the centre of the input."""
    return sum(c // 2 * math.prod(layer.q.grid[i + 1:]) for i, c in enumerate(layer.q.grid))


def attention_map(layer: AttentionLayer, query: int | str | None = None, batch: int = 0) -> torch.Tensor:
    """Attention of one query over the key grid: (heads, *key grid), zeros where the query does not look.

    ``query`` is a flat index into the query grid, ``'cls'`` for the first prefix token; None picks the class
    token for class-token layers and the centre token otherwise.
    """
    if query is None:
        query = "cls" if layer.num_prefix else centre_query(layer)
    if query == "cls":
        if not layer.num_prefix:
            raise ValueError(f"{layer.name} has no class token; pass a query index into grid {layer.q.grid}")
        group, row = 0, 0
    else:
        hits = (layer.q.index == int(query)).nonzero()
        if len(hits) == 0:
            raise ValueError(f"query {query} is not a token of {layer.name} (grid {layer.q.grid})")
        group, row = hits[0].tolist()
    probs = layer.probs[batch, group, :, row]  # (heads, Nk)
    keys = layer.k.index[group]
    keep = keys >= 0
    out = torch.zeros(probs.shape[0], math.prod(layer.k.grid))
    out.index_add_(1, keys[keep], probs[:, keep])
    return out.reshape(probs.shape[0], *layer.k.grid)


def to_input(grid_map: torch.Tensor, layout: TokenLayout, size: Sequence[int]) -> torch.Tensor:
    """Paint a (..., *grid) map onto the input: each cell fills its ``stride`` block; cropped/padded to ``size``."""
    rank = len(layout.grid)
    lead = grid_map.shape[:-rank]
    full = tuple(round(g * s) for g, s in zip(layout.grid, layout.stride))
    m = grid_map.reshape(-1, 1, *layout.grid).float()
    m = F.interpolate(m, size=full, mode="nearest")
    pads = []
    for have, want in zip(reversed(full), reversed(tuple(size))):
        pads += [0, want - have]
    m = F.pad(m, pads)  # negative padding crops
    return m.reshape(*lead, *size)


def attention_rollout(layers: Sequence[AttentionLayer], residual: float = 0.5, head_fusion: str = "mean",
                      batch: int = 0) -> tuple[torch.Tensor, TokenLayout]:
    """Attention rollout (Abnar & Zuidema, 2020) of the class token: where it draws from in the first layer's grid.

    Each layer contributes ``residual * I + (1 - residual) * A`` (heads fused by mean or max, rows renormalised).
    Where queries or keys are pooled (MViT), ``I`` and the key side are mapped to the layer's input tokens by
    cell membership (each pooled cell spreads evenly over the input tokens inside it). Returns the map over the
    first layer's query grid and that layout.
    """
    if not layers:
        raise ValueError("no attention layers")
    if any(l.num_prefix == 0 for l in layers):
        raise ValueError("attention rollout needs a class token in every layer (ViT, MViT); "
                         "use attention_map() for models without one")
    if any(l.probs.shape[1] != 1 for l in layers):
        raise ValueError("attention rollout is defined for global attention, not windowed attention")
    # propagate the class-token row vector from the last layer down to the first layer's queries
    r = None
    for i in range(len(layers) - 1, -1, -1):
        layer = layers[i]
        a = layer.probs[batch, 0]  # (heads, Nq, Nk)
        if head_fusion == "mean":
            a = a.mean(0)
        elif head_fusion == "max":
            a = a.amax(0)
            a = a / a.sum(-1, keepdim=True)
        else:
            raise ValueError(f"head_fusion must be 'mean' or 'max', got {head_fusion!r}")
        inputs = layers[i - 1].q if i > 0 else layer.q
        if r is None:
            r = torch.zeros(a.shape[0])
            r[0] = 1.0  # the class token
        r = residual * _cells_to_inputs(r, layer.q, inputs) + (1 - residual) * _cells_to_inputs(r @ a, layer.k, inputs)
    return r, layers[0].q


def _cells_to_inputs(v: torch.Tensor, cells: TokenLayout, inputs: TokenLayout) -> torch.Tensor:
    """Spread a vector over ``cells`` tokens onto ``inputs`` tokens (prefix to prefix, each cell evenly)."""
    if cells.index.shape[0] != 1 or inputs.index.shape[0] != 1:
        raise ValueError("only single-group layouts can be mapped")
    if cells.grid == inputs.grid and torch.equal(cells.index, inputs.index):
        return v
    c_idx, i_idx = cells.index[0], inputs.index[0]
    out = torch.zeros(i_idx.shape[0])
    n_prefix = min(int((c_idx < 0).sum()), int((i_idx < 0).sum()))
    out[:n_prefix] = v[:n_prefix]
    pos = inputs.positions()[0][i_idx >= 0]
    cell = [(pos[:, a] / cells.stride[a]).floor().long().clamp(0, cells.grid[a] - 1) for a in range(len(cells.grid))]
    flat = torch.zeros_like(cell[0])
    for a, size in enumerate(cells.grid):
        flat = flat * size + cell[a]
    lookup = torch.full((math.prod(cells.grid),), -1, dtype=torch.long)
    lookup[c_idx[c_idx >= 0]] = (c_idx >= 0).nonzero().squeeze(1)
    src = lookup[flat]
    count = torch.bincount(src[src >= 0], minlength=v.shape[0]).clamp(min=1)
    spatial = (i_idx >= 0).nonzero().squeeze(1)
    out[spatial] = torch.where(src >= 0, v[src.clamp(min=0)] / count[src.clamp(min=0)], torch.zeros(()))
    return out


# -- mean attention distance ----------------------------------------------------------------------------------
def mean_attention_distance(layers: Sequence[AttentionLayer], spatial_only: bool = True,
                            chunk: int = 1024) -> list[torch.Tensor]:
    """Per layer, a (heads,) tensor: the attention-weighted distance between query and key, in input pixels.

    As in the ViT paper (Fig. 7): for each query, sum over keys of attention x distance between the token
    centres, averaged over queries and the batch. Prefix tokens are left out on both sides and each query's
    attention is renormalised over the spatial keys it sees. ``spatial_only`` measures (y, x) distance and
    ignores time in video.
    """
    out = []
    for layer in layers:
        qp, kp = layer.q.positions(), layer.k.positions()
        if spatial_only:
            qp, kp = qp[..., -2:], kp[..., -2:]
        kvalid = layer.k.valid.float()  # (G, Nk)
        total = torch.zeros(layer.num_heads, dtype=torch.float64)
        count = 0
        B, G = layer.probs.shape[:2]
        for g in range(G):
            qv = layer.q.valid[g]
            qpos = qp[g][qv]
            probs = layer.probs[:, g][:, :, qv]  # (B, heads, nq, Nk)
            kpos = kp[g].nan_to_num(0.0)
            for s in range(0, qpos.shape[0], chunk):
                d = torch.cdist(qpos[s:s + chunk], kpos)  # (n, Nk)
                w = probs[:, :, s:s + chunk] * kvalid[g]
                w = w / w.sum(-1, keepdim=True).clamp(min=1e-12)
                total += (w * d).sum(-1).sum((0, 2)).double()
            count += B * qpos.shape[0]
        out.append((total / max(count, 1)).float())
    return out


def grouped_by_depth(distances: Sequence[torch.Tensor]) -> tuple[list[int], list[float]]:
    """Flatten per-layer head distances to (layer number from 1, distance) pairs for plotting."""
    depth, value = [], []
    for i, d in enumerate(distances):
        depth += [i + 1] * d.numel()
        value += d.tolist()
    return depth, value
