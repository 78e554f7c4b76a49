"""Multiscale Vision Transformers: MViT (Fan et al., ICCV 2021) for video and images, with the MViTv2 options.

A stage schedule (``dim_mul`` / ``head_mul`` / ``pool_q_stride`` keyed by block index, as in PySlowFast) is
expanded into one :class:`BlockSpec` per block. Each block is pre-norm pooling attention: q, k, v come from one
fused ``qkv`` projection, are pooled per head over the token grid (conv / max / avg, optional norm after
pooling, class token passed through), attend, and the skip connection is max-pooled with the query's stride.
MViT v1 widens the channels in the MLP of the last block of a stage with a ``proj`` of ``norm2(x)`` on the
skip; MViTv2 (``dim_mul_in_att``) widens in the attention of the first block with a ``proj`` of ``norm1(x)``,
and adds decomposed relative position bias (``rel_pos_spatial`` / ``rel_pos_temporal``) and residual pooling.
Images and video are the same code: the grid rank follows ``num_frames`` (None for images).

Speed (CPU): q and k|v are computed as two dense token-major maps from the halves of the ``qkv`` weight, so the
depthwise pooling runs on channels-last maps without per-head layout copies (k and v in one call), attention is
the fused SDPA kernel, and without active stochastic depth the residual adds ride in the output projections.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from vitkit.layers import Attention, DropPath, Mlp, PatchEmbed, attention, drop_path_rates, resample_1d
from vitkit.layers.rebuild import normed
from vitkit.layers import to_tuple
from vitkit.layers.cache import TensorCache
from vitkit.layers.depthwise import TiledFilters
from vitkit.layers.fused import linear, split_linear
from vitkit.layers.pooling import POOL_MODES, make_pool, pool_tokens, pooled_grid
from vitkit.layers.init import clamped_normal_, trunc_normal_init

from .base import VitkitModel, select_indices
from .input_spec import KINETICS_MEAN, KINETICS_STD
from .tokens import TokenEmbedding
from .variants import declare


@dataclass(frozen=True)
class MViTConfig:
    """Hyper-parameters of an MViT, named after PySlowFast's ``MVIT.*`` keys (lower case).

    Schedules are keyed by block index: ``dim_mul=((1, 2.0), ...)`` multiplies the width at block 1,
    ``pool_q_stride=((1, 1, 2, 2), ...)`` pools the query of block 1 with stride 1x2x2. ``pool_kvq_kernel`` None
    means kernel = stride + 1 where the stride exceeds 1 (the official rule). ``num_frames=None`` builds an image
    model whose kernels and strides are 2-D.
    """

    img_size: int | tuple[int, int] = 224
    num_frames: int | None = 16
    in_chans: int = 3
    num_classes: int = 400
    embed_dim: int = 96
    depth: int = 16
    num_heads: int = 1
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    patch_kernel: tuple[int, ...] = (3, 7, 7)
    patch_stride: tuple[int, ...] = (2, 4, 4)
    patch_padding: tuple[int, ...] = (1, 3, 3)
    dim_mul: tuple[tuple[int, float], ...] = ((1, 2.0), (3, 2.0), (14, 2.0))
    head_mul: tuple[tuple[int, float], ...] = ((1, 2.0), (3, 2.0), (14, 2.0))
    pool_q_stride: tuple[tuple[int, ...], ...] = ((1, 1, 2, 2), (3, 1, 2, 2), (14, 1, 2, 2))
    pool_kv_stride: tuple[tuple[int, ...], ...] = ()  # explicit (block, *stride) entries; used if not adaptive
    pool_kv_stride_adaptive: tuple[int, ...] | None = (1, 8, 8)
    pool_kvq_kernel: tuple[int, ...] | None = (3, 3, 3)
    mode: str = "conv"  # pooling function: "conv" | "max" | "avg" (the paper's Table 15)
    pool_norm: bool | None = None  # LayerNorm after pooling; None: with "conv" only (official)
    cls_embed_on: bool = True
    sep_pos_embed: bool = True  # video: separate space / time / class position embeddings
    use_abs_pos: bool = True
    rel_pos_spatial: bool = False  # MViTv2 decomposed relative position bias over H, W
    rel_pos_temporal: bool = False  # ... and over T
    residual_pooling: bool = False  # MViTv2: add the pooled query to the attention output
    dim_mul_in_att: bool = False  # MViTv2: widen in the attention of a stage's first block
    global_pool: str = "token"  # "token" (class token) or "avg" (mean of the grid tokens, after the norm)
    drop_rate: float = 0.0  # dropout before the classifier (MODEL.DROPOUT_RATE)
    attn_drop_rate: float = 0.0  # dropout after the attention projection (MVIT.DROPOUT_RATE)
    drop_path_rate: float = 0.0
    norm_eps: float = 1e-6


@dataclass(frozen=True)
class BlockSpec:
    """One block of the expanded schedule. Empty kernel/stride tuples mean no pooling."""

    dim: int
    dim_out: int
    num_heads: int
    kernel_q: tuple[int, ...]
    stride_q: tuple[int, ...]
    kernel_kv: tuple[int, ...]
    stride_kv: tuple[int, ...]
    input_grid: tuple[int, ...]  # token grid at the block's input at the configured size (sizes rel-pos tables)


def round_width(width: float, multiplier: float, min_width: int = 1, divisor: int = 1) -> int:
    """PySlowFast's channel rounding: ``width * multiplier`` to a multiple of ``divisor`` (never below 90 %)."""
    if not multiplier:
        return int(width)
    width *= multiplier
    min_width = min_width or divisor
    out = max(min_width, int(width + divisor / 2) // divisor * divisor)
    if out < 0.9 * width:
        out += divisor
    return int(out)


def _default_kernel(stride: Sequence[int]) -> tuple[int, ...]:
    return tuple(s + 1 if s > 1 else s for s in stride)


def block_specs(cfg: MViTConfig, grid: Sequence[int]) -> list[BlockSpec]:
    """Expand the stage schedule of ``cfg`` into per-block settings (the official builder's arithmetic)."""
    depth, rank = cfg.depth, len(grid)
    dim_mul, head_mul = [1.0] * (depth + 1), [1.0] * (depth + 1)
    for table, name in ((dim_mul, "dim_mul"), (head_mul, "head_mul")):
        for i, m in getattr(cfg, name):
            if not 0 <= i <= depth:
                raise ValueError(f"{name} entry for block {i} is outside 0..{depth}")
            table[i] = float(m)
    stride_q: list[tuple[int, ...]] = [()] * depth
    for entry in cfg.pool_q_stride:
        i, s = int(entry[0]), tuple(int(v) for v in entry[1:])
        if len(s) != rank or not 0 <= i < depth:
            raise ValueError(f"pool_q_stride entry {entry} must be (block < {depth}, {rank} strides)")
        stride_q[i] = s
    stride_kv: list[tuple[int, ...]] = [()] * depth
    if cfg.pool_kv_stride_adaptive is not None:
        s = tuple(int(v) for v in cfg.pool_kv_stride_adaptive)
        if len(s) != rank:
            raise ValueError(f"pool_kv_stride_adaptive {s} must have {rank} values")
        for i in range(depth):
            if stride_q[i]:
                s = tuple(max(a // b, 1) for a, b in zip(s, stride_q[i]))
            stride_kv[i] = s
    else:
        for entry in cfg.pool_kv_stride:
            i, s = int(entry[0]), tuple(int(v) for v in entry[1:])
            if len(s) != rank or not 0 <= i < depth:
                raise ValueError(f"pool_kv_stride entry {entry} must be (block < {depth}, {rank} strides)")
            stride_kv[i] = s
    kernel = tuple(cfg.pool_kvq_kernel) if cfg.pool_kvq_kernel is not None else None
    if kernel is not None and len(kernel) != rank:
        raise ValueError(f"pool_kvq_kernel {kernel} must have {rank} values")

    specs = []
    dim, heads, size = cfg.embed_dim, cfg.num_heads, tuple(grid)
    for i in range(depth):
        heads = round_width(heads, head_mul[i])
        if cfg.dim_mul_in_att:
            dim_out = round_width(dim, dim_mul[i], divisor=round_width(heads, head_mul[i]))
        else:
            dim_out = round_width(dim, dim_mul[i + 1], divisor=round_width(heads, head_mul[i + 1]))
        kq = (kernel or _default_kernel(stride_q[i])) if stride_q[i] else ()
        kkv = (kernel or _default_kernel(stride_kv[i])) if stride_kv[i] else ()
        specs.append(BlockSpec(dim, dim_out, heads, kq, stride_q[i], kkv, stride_kv[i], size))
        if stride_q[i]:
            size = tuple(g // s for g, s in zip(size, stride_q[i]))
        dim = dim_out
    return specs


# -- relative position bias ------------------------------------------------------------------------------------
_DIST = TensorCache(maxsize=256)  # per (q, k, device): a few hundred integers each


def _rel_dist(q: int, k: int, device: torch.device) -> torch.Tensor:
    """Table index of query position i vs key position j on one axis, scaled when q and k differ (MViTv2)."""

    def build() -> torch.Tensor:
        q_ratio, k_ratio = max(k / q, 1.0), max(q / k, 1.0)
        dist = torch.arange(q).unsqueeze(-1) * q_ratio - torch.arange(k).unsqueeze(0) * k_ratio
        dist = dist + (k - 1) * k_ratio
        return dist.long().to(device)

    return _DIST.get((q, k, torch.device(device)), build)


def decomposed_rel_pos_bias(
    q: torch.Tensor,
    q_grid: Sequence[int],
    k_grid: Sequence[int],
    tables: Sequence[torch.Tensor | None],
    num_prefix: int,
) -> torch.Tensor:
    """MViTv2 decomposed relative position bias for (B, heads, Nq, D) queries, as an additive attention bias.

    ``tables[a]`` ((2 max(q_a, k_a) - 1, D), resampled linearly if its length differs; None skips axis a) gives
    the bias of axis a as ``q . R_a[dist_a(i, j)]``; the biases of the axes add up. Prefix tokens get none.
    Returns (B, heads, prefix + prod(q_grid), prefix + prod(k_grid)).
    """
    B, h, _, D = q.shape
    rank = len(q_grid)
    r_q = q[:, :, num_prefix:].reshape(B, h, *q_grid, D)
    letters = "xyz"[:rank]
    bias = None
    for a, table in enumerate(tables):
        if table is None:
            continue
        qa, ka = q_grid[a], k_grid[a]
        table = resample_1d(table, 2 * max(qa, ka) - 1)
        R = table[_rel_dist(qa, ka, q.device)]  # (qa, ka, D)
        rel = torch.einsum(f"bn{letters}c,{letters[a]}mc->bn{letters}m", r_q, R.to(q.dtype))
        # contiguous (1/k of the bias): the sum then comes out contiguous and the reshape below needs no copy
        rel = rel.reshape(B, h, *q_grid, *[ka if j == a else 1 for j in range(rank)]).contiguous()
        bias = rel if bias is None else bias + rel
    if bias is None:
        raise ValueError("no relative position table given")
    bias = bias.expand(B, h, *q_grid, *k_grid).reshape(B, h, math.prod(q_grid), math.prod(k_grid))
    if num_prefix:
        bias = F.pad(bias, (num_prefix, 0, num_prefix, 0))
    return bias


# -- modules ---------------------------------------------------------------------------------------------------
class MultiScaleAttention(Attention):
    """Pooling attention: fused ``qkv``, per-head pooling of q / k / v over the grid, attention, ``proj``.

    Keys follow PySlowFast: ``pool_q/pool_k/pool_v`` (depthwise conv, no parameters for max/avg) and
    ``norm_q/norm_k/norm_v``; MViTv2 adds ``rel_pos_h/rel_pos_w`` (+ ``rel_pos_t`` in video).
    """

    def __init__(self, spec: BlockSpec, cfg: MViTConfig, num_prefix: int) -> None:
        att_dim = spec.dim_out if cfg.dim_mul_in_att else spec.dim
        super().__init__(spec.dim, spec.num_heads, cfg.qkv_bias, 0.0, cfg.attn_drop_rate, dim_out=att_dim)
        self.num_prefix = num_prefix
        self.residual_pooling = cfg.residual_pooling
        hd = self.head_dim
        use_norm = cfg.mode == "conv" if cfg.pool_norm is None else cfg.pool_norm
        for name, kernel, stride in (("q", spec.kernel_q, spec.stride_q), ("k", spec.kernel_kv, spec.stride_kv),
                                     ("v", spec.kernel_kv, spec.stride_kv)):
            pool = make_pool(cfg.mode, hd, kernel, stride) if kernel else None
            setattr(self, f"pool_{name}", pool)
            setattr(self, f"norm_{name}", nn.LayerNorm(hd, eps=cfg.norm_eps) if pool is not None and use_norm else None)
        rank = len(spec.input_grid)
        grid = spec.input_grid
        self.rel_pos_t = self.rel_pos_h = self.rel_pos_w = None
        if cfg.rel_pos_spatial:
            for axis, name in zip(range(rank - 2, rank), ("rel_pos_h", "rel_pos_w")):
                q_size = grid[axis] // (spec.stride_q[axis] if spec.stride_q else 1)
                kv_size = grid[axis] // (spec.stride_kv[axis] if spec.stride_kv else 1)
                setattr(self, name, nn.Parameter(torch.zeros(2 * max(q_size, kv_size) - 1, hd)))
        if cfg.rel_pos_temporal:
            if rank != 3:
                raise ValueError("rel_pos_temporal needs a video model (num_frames set)")
            self.rel_pos_t = nn.Parameter(torch.zeros(2 * grid[0] - 1, hd))

    def rel_tables(self, rank: int) -> list[torch.Tensor | None]:
        spatial = [self.rel_pos_h, self.rel_pos_w]
        return ([self.rel_pos_t] + spatial) if rank == 3 else spatial

    def _tiled(self, pools: Sequence[nn.Module]) -> TiledFilters | None:
        """Conv pooling: the per-head filters of ``pools`` tiled over the heads, (len * heads * head_dim, 1, *k)."""
        if not isinstance(pools[0], (nn.Conv2d, nn.Conv3d)):
            return None
        return TiledFilters(tuple(p.weight for p in pools), self.num_heads)

    def forward(
        self, x: torch.Tensor, grid: tuple[int, ...], residual: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, tuple[int, ...]]:
        """Attention of ``x`` (B, prefix + prod(grid), C) -> (output, pooled query grid); ``+ residual`` if given.

        q and k|v come from the two halves of the fused ``qkv`` weight, so each is a dense token-major map that
        pools without a layout copy; k and v pool together in one depthwise call (their kernels and strides agree).
        """
        B, N, _ = x.shape
        h, d, p = self.num_heads, self.head_dim, self.num_prefix
        C = h * d
        q, kv = split_linear(x, self.qkv, (C, 2 * C))
        q_grid = k_grid = tuple(grid)
        if self.pool_q is not None:
            q, q_grid = pool_tokens(q, self.pool_q, grid, p, None, self._tiled([self.pool_q]))
        q = q.view(B, -1, h, d)
        if self.norm_q is not None:
            q = self.norm_q(q)
        if self.pool_k is not None:
            kv, k_grid = pool_tokens(kv, self.pool_k, grid, p, None, self._tiled([self.pool_k, self.pool_v]))
        k, v = kv.view(B, -1, 2, h, d).unbind(2)  # unbind, not two selects: no zero-filled kv per gradient
        if self.norm_k is not None:
            # LayerNorm copies a strided input (k and v interleave in kv) in its forward and again in its backward
            # from the view it saved; given the copy, it saves that (MViTv2-T fp32 step: 40 ms fewer copies)
            k, v = self.norm_k(k.contiguous()), self.norm_v(v.contiguous())
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        bias = None
        if self.rel_pos_h is not None or self.rel_pos_t is not None:
            bias = decomposed_rel_pos_bias(q, q_grid, k_grid, self.rel_tables(len(grid)), p)
        drop = self.attn_drop if self.training else 0.0
        out = attention(q, k, v, bias, drop, self.scale, {"q_grid": q_grid, "k_grid": k_grid, "num_prefix": p})
        if self.residual_pooling:
            if p:  # split, not slices: a slice's backward fills a zero tensor of the whole input
                head, rest = out.split([p, out.shape[2] - p], dim=2)
                out = torch.cat([head, rest + q.split([p, q.shape[2] - p], dim=2)[1]], dim=2)
            else:
                out = out + q
        return self.merge_heads(out, residual), q_grid


class MultiScaleBlock(nn.Module):
    """``x = pool_skip(x) + attn(norm1(x))``; ``x = x + mlp(norm2(x))``, with ``proj`` on the widening skip."""

    def __init__(self, spec: BlockSpec, cfg: MViTConfig, drop_path: float, num_prefix: int) -> None:
        super().__init__()
        self.dim_mul_in_att = cfg.dim_mul_in_att
        self.num_prefix = num_prefix
        att_dim = spec.dim_out if cfg.dim_mul_in_att else spec.dim
        self.norm1 = nn.LayerNorm(spec.dim, eps=cfg.norm_eps)
        self.attn = MultiScaleAttention(spec, cfg, num_prefix)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(att_dim, eps=cfg.norm_eps)
        self.mlp = Mlp(att_dim, int(att_dim * cfg.mlp_ratio), spec.dim_out)
        self.proj = nn.Linear(spec.dim, spec.dim_out) if spec.dim != spec.dim_out else None
        stride = spec.stride_q
        self.pool_skip = make_pool("max", spec.dim, _default_kernel(stride), stride) if stride else None

    def forward(self, x: torch.Tensor, grid: tuple[int, ...]) -> tuple[torch.Tensor, tuple[int, ...]]:
        # without active stochastic depth the residual adds go into the output projections (fused at inference)
        fuse = not self.training or isinstance(self.drop_path, nn.Identity)
        # in float32 training the products' saved input is normalised again in the backward (layers.rebuild)
        x_norm, rebuilt = normed(self.norm1, x, one_product=False)
        with rebuilt:
            skip = linear(x_norm, self.proj) if self.dim_mul_in_att and self.proj is not None else x
            skip, _ = pool_tokens(skip, self.pool_skip, grid, self.num_prefix)
            if fuse:
                x, new_grid = self.attn(x_norm, grid, residual=skip)
            else:
                x_attn, new_grid = self.attn(x_norm, grid)
                x = skip + self.drop_path(x_attn)
        x_norm = self.norm2(x)
        skip = linear(x_norm, self.proj) if not self.dim_mul_in_att and self.proj is not None else x
        if fuse:
            return self.mlp(x_norm, residual=skip), new_grid
        return skip + self.drop_path(self.mlp(x_norm)), new_grid


class MViT(TokenEmbedding, VitkitModel):
    """MViT v1 / v2 for video (B, C, T, H, W) or images (B, C, H, W)."""

    family = "mvit"

    def __init__(self, cfg: MViTConfig) -> None:
        super().__init__()
        self._check_config(cfg)
        self.config = cfg
        self.in_chans = cfg.in_chans
        self.num_classes = cfg.num_classes
        self.is_video = cfg.num_frames is not None
        self.spatial_rank = rank = 3 if self.is_video else 2
        img = to_tuple(cfg.img_size, 2)
        size = (cfg.num_frames, *img) if self.is_video else img
        d = cfg.embed_dim
        self.patch_embed = PatchEmbed(cfg.patch_kernel, cfg.in_chans, d, cfg.patch_stride, cfg.patch_padding,
                                      rank=rank, strict_size=False)
        self.grid = self.patch_embed.output_grid(size)
        self.init_tokens(d, self.grid, cfg.cls_embed_on, cfg.use_abs_pos, self.is_video and cfg.sep_pos_embed)
        p = self.num_prefix_tokens
        self.specs = block_specs(cfg, self.grid)
        dpr = drop_path_rates(cfg.drop_path_rate, cfg.depth)
        self.blocks = nn.ModuleList([MultiScaleBlock(s, cfg, dpr[i], p) for i, s in enumerate(self.specs)])
        self.num_features = self.specs[-1].dim_out
        self.norm = nn.LayerNorm(self.num_features, eps=cfg.norm_eps)
        self.head_drop = nn.Dropout(cfg.drop_rate)
        self.head = nn.Linear(self.num_features, cfg.num_classes) if cfg.num_classes > 0 else nn.Identity()
        # a stage ends before each block that pools the query with a stride > 1, and at the last block
        starts = [i for i, s in enumerate(self.specs) if s.stride_q and math.prod(s.stride_q) > 1 and i > 0]
        self.stage_ends = [i - 1 for i in starts] + [cfg.depth - 1]
        self._init_weights()

    @staticmethod
    def _check_config(cfg: MViTConfig) -> None:
        rank = 3 if cfg.num_frames is not None else 2
        for name in ("patch_kernel", "patch_stride", "patch_padding"):
            if len(getattr(cfg, name)) != rank:
                kind = "video" if rank == 3 else "image"
                raise ValueError(f"{name} {getattr(cfg, name)} must have {rank} values for an {kind} model")
        if cfg.mode not in POOL_MODES:
            raise ValueError(f"mode must be one of {POOL_MODES}, got {cfg.mode!r}")
        if cfg.global_pool not in ("token", "avg"):
            raise ValueError(f"global_pool must be 'token' or 'avg', got {cfg.global_pool!r}")
        if cfg.global_pool == "token" and not cfg.cls_embed_on:
            raise ValueError("global_pool='token' needs cls_embed_on=True")

    def _init_weights(self) -> None:
        if next(self.parameters()).device.type == "meta":
            return
        trunc_normal_init(self.modules())
        for name, p in self.named_parameters():
            if "pos_embed" in name or "rel_pos" in name or name == "cls_token":
                clamped_normal_(p, std=0.02)

    @classmethod
    def input_defaults(cls, cfg: MViTConfig) -> dict:
        """PySlowFast: Kinetics statistics, bilinear, short side 256 for 224 clips; ImageNet for images."""
        if cfg.num_frames is not None:
            return {"mean": KINETICS_MEAN, "std": KINETICS_STD, "interpolation": "bilinear", "crop_pct": 224 / 256,
                    "test_input_size": (3, 2, 32, 32)}
        return {"crop_pct": 0.875 if to_tuple(cfg.img_size, 2)[0] < 320 else 1.0, "test_input_size": (3, 32, 32)}

    def no_weight_decay(self) -> set[str]:
        return {n for n, _ in self.named_parameters() if "pos_embed" in n or "rel_pos" in n or n == "cls_token"}

    # -- embedding -----------------------------------------------------------------------------------------
    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
        """Input -> tokens (B, prefix + N, C) with the position embedding added, and the token grid."""
        self.check_input(x)
        return self.tokens(self.patch_embed(x))

    def stage_blocks(self) -> list[list[nn.Module]]:
        starts = [0] + [e + 1 for e in self.stage_ends[:-1]]
        return [list(self.blocks)[a : b + 1] for a, b in zip(starts, self.stage_ends)]

    # -- forward -------------------------------------------------------------------------------------------
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x, grid = self.embed(x)
        for blk in self.blocks:
            x, grid = self.run_block(blk, x, grid)
        return self.norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool (class token, or the mean of the grid tokens) and classify. Returns logits (no softmax)."""
        if self.config.global_pool == "avg":
            x = x[:, self.num_prefix_tokens :].mean(dim=1)
        else:
            x = x[:, 0]
        return x if pre_logits else self.head(self.head_drop(x))

    def forward_intermediates(
        self, x: torch.Tensor, indices: int | Sequence[int] | None = None, norm: bool = False
    ) -> list[torch.Tensor]:
        """Per-stage output maps (B, C, [T,] H, W) (the last block of each stage), all stages by default.

        ``norm=True`` applies the final norm to the last stage's map (it is sized for that stage only).
        """
        take = set(select_indices(len(self.stage_ends), indices))
        ends = {b: s for s, b in enumerate(self.stage_ends)}
        x, grid = self.embed(x)
        out = []
        for i, blk in enumerate(self.blocks):
            x, grid = self.run_block(blk, x, grid)
            stage = ends.get(i)
            if stage is not None and stage in take:
                y = self.norm(x) if norm and i == len(self.blocks) - 1 else x
                y = y[:, self.num_prefix_tokens :]
                out.append(y.transpose(1, 2).reshape(y.shape[0], -1, *grid))
            if stage is not None and stage == max(take):
                break
        return out

    def stage_grids(self, size: Sequence[int] | None = None) -> list[tuple[int, ...]]:
        """Token grid after each block for an input of spatial ``size`` (the configured size by default)."""
        grid = self.grid if size is None else self.patch_embed.output_grid(size)
        grids = []
        for blk in self.blocks:
            grid = pooled_grid(grid, blk.attn.pool_q)
            grids.append(grid)
        return grids

    def stem_pattern(self) -> str:
        return r"(patch_embed|cls_token|pos_embed)"

    def profile_stages(self) -> list[tuple[str, nn.Module]]:
        return [("patch_embed", self.patch_embed)] + [(f"blocks.{i}", b) for i, b in enumerate(self.blocks)] + [
            ("norm", self.norm), ("head", self.head)
        ]


# -- variants --------------------------------------------------------------------------------------------------
_MVIT = "Fan et al., Multiscale Vision Transformers, ICCV 2021"
_MVIT2 = "Li et al., MViTv2: Improved Multiscale Vision Transformers for Classification and Detection, CVPR 2022"


def _schedule(switches: Sequence[int], stride: tuple[int, ...]) -> dict:
    """dim_mul / head_mul doubling and query pooling with ``stride`` at each of the ``switches`` blocks."""
    return dict(
        dim_mul=tuple((i, 2.0) for i in switches),
        head_mul=tuple((i, 2.0) for i in switches),
        pool_q_stride=tuple((i, *stride) for i in switches),
    )


def _v2_schedule(depths: Sequence[int], stride: tuple[int, ...]) -> dict:
    """MViTv2: the width doubles in the first block of each later stage; every block pools q (stride 1 inside)."""
    starts = [sum(depths[:i]) for i in range(1, len(depths))]
    ones = (1,) * len(stride)
    return dict(
        depth=sum(depths),
        dim_mul=tuple((i, 2.0) for i in starts),
        head_mul=tuple((i, 2.0) for i in starts),
        pool_q_stride=tuple((i, *(stride if i in starts else ones)) for i in range(sum(depths))),
        dim_mul_in_att=True,
        residual_pooling=True,
        rel_pos_spatial=True,
        use_abs_pos=False,
    )


_register = partial(declare, MViT)


_B16 = _schedule((1, 3, 14), (1, 2, 2))

_register("mvit_base_16x4", MViTConfig(drop_rate=0.5, drop_path_rate=0.2, **_B16),
          paper=f"{_MVIT}, Tables 3c and 4 (MViT-B, 16x4); config PySlowFast configs/Kinetics/MVIT_B_16x4_CONV.yaml",
          follows="official config (paper and code agree: 36.6 M, 70.5 G)",
          paper_params=36.6, paper_macs=70.5, top1=78.4, sampling_rate=4)
_register("mvit_base_32x3", MViTConfig(num_frames=32, drop_rate=0.5, drop_path_rate=0.2, **_B16),
          paper=f"{_MVIT}, Table 4 (MViT-B, 32x3: the depth-16 MViT-B at 32 frames)",
          follows="paper Table 4 (depth 16, as pytorchvideo's mvit_base_32x3); the official "
                  "MVIT_B_32x3_CONV.yaml builds MViT-B-24 instead (see mvit_base24_32x3)",
          paper_params=36.6, paper_macs=170.0, top1=80.2, sampling_rate=3)
_register("mvit_base24_32x3",
          MViTConfig(num_frames=32, depth=24, pool_kvq_kernel=None, drop_rate=0.5, drop_path_rate=0.3,
                     **_schedule((2, 5, 21), (1, 2, 2))),
          paper=f"{_MVIT}, Table 5 (MViT-B-24, 32x3); config PySlowFast configs/Kinetics/MVIT_B_32x3_CONV.yaml",
          follows="official config MVIT_B_32x3_CONV.yaml (depth 24, pooling kernel = stride + 1; 53.1 M with "
                  "400 classes; the paper's 52.9 M is its K600 row)",
          paper_params=53.115, paper_macs=236.0, top1=80.4, sampling_rate=3)
_register("mvit_small_16x4",
          MViTConfig(embed_dim=128, patch_kernel=(3, 8, 8), patch_stride=(2, 8, 8), patch_padding=(1, 0, 0),
                     depth=16, pool_kv_stride_adaptive=(1, 4, 4), drop_rate=0.5, drop_path_rate=0.2,
                     **_schedule((3, 10), (1, 2, 2))),
          paper=f"{_MVIT}, Tables 3b and 4 (MViT-S, 16x4)",
          follows="paper Table 3b (no official config or weights exist; see the registry note in the report)",
          paper_params=26.1, paper_macs=32.9, top1=76.0, sampling_rate=4)

# Image variants, MViT paper Section 5 (ImageNet) / Table 17 and Appendix A.3 (KV stride 4x4 for images).
_register("mvit_base16_224",
          MViTConfig(num_frames=None, num_classes=1000, patch_kernel=(7, 7), patch_stride=(4, 4),
                     patch_padding=(3, 3), pool_kvq_kernel=(3, 3), pool_kv_stride_adaptive=(4, 4),
                     drop_path_rate=0.1, **_schedule((1, 3, 14), (2, 2))),
          paper=f"{_MVIT}, Table 17 (MViT-B-16, conv pooling, 224); config PySlowFast "
                "configs/ImageNet/MVIT_B_16_CONV.yaml (joint position embedding, KV stride 4x4 as Table A.3)",
          follows="official config MVIT_B_16_CONV.yaml", paper_params=37.0, paper_macs=7.8, top1=83.0)
_register("mvit_base24_wide_320",
          MViTConfig(img_size=320, num_frames=None, num_classes=1000, embed_dim=112, depth=24,
                     patch_kernel=(7, 7), patch_stride=(4, 4), patch_padding=(3, 3), pool_kvq_kernel=(3, 3),
                     pool_kv_stride_adaptive=(4, 4), drop_path_rate=0.3, **_schedule((2, 5, 21), (2, 2))),
          paper=f"{_MVIT}, Table 17 (MViT-B-24-wide at 320^2: 'wide' = D=112, depth 24 as B-24, conv pooling)",
          follows="paper Table 17 text (no official config; B-24 schedule at blocks 2/5/21 as the B-24 video config)",
          paper_params=72.9, paper_macs=32.7, top1=84.8)

# MViTv2 (beyond the seed paper): timm's image models and torchvision's video model.
for _name, _depths, _p, _m, _t in (("mvitv2_tiny", (1, 2, 5, 2), 24.17, 4.7, 82.3),
                                  ("mvitv2_small", (1, 2, 11, 2), 34.87, 7.0, 83.6),
                                  ("mvitv2_base", (2, 3, 16, 3), 51.47, 10.2, 84.4)):
    _register(_name,
              MViTConfig(num_frames=None, num_classes=1000, patch_kernel=(7, 7), patch_stride=(4, 4),
                         patch_padding=(3, 3), pool_kvq_kernel=(3, 3), pool_kv_stride_adaptive=(4, 4),
                         cls_embed_on=False, global_pool="avg", **_v2_schedule(_depths, (2, 2))),
              paper=f"{_MVIT2}, Table 2 (MViTv2-{_name[7].upper()}); layout as timm {_name}",
              follows="timm mvitv2 (official facebookresearch/mvit configs)", paper_params=_p, paper_macs=_m,
              top1=_t, crop_pct=0.9)
_register("mvit_v2_s",
          MViTConfig(drop_rate=0.5, drop_path_rate=0.2, rel_pos_temporal=True,
                     **_v2_schedule((1, 2, 11, 2), (1, 2, 2))),
          paper=f"{_MVIT2}, Table 6 (MViTv2-S, 16x4, Kinetics-400); layout as torchvision mvit_v2_s",
          follows="torchvision mvit_v2_s (34.5 M params, 64.2 G)", paper_params=34.538, paper_macs=64.224,
          top1=80.757, sampling_rate=4)

# Small demonstration variant for CPU training on the built-in motion-digits clips.
_register("mvit_demo_8x32",
          MViTConfig(img_size=32, num_frames=8, num_classes=10, embed_dim=48, depth=5, num_heads=1,
                     patch_kernel=(3, 4, 4), patch_stride=(2, 4, 4), patch_padding=(1, 0, 0),
                     pool_kv_stride_adaptive=(1, 2, 2), drop_path_rate=0.0, **_schedule((1, 3), (1, 2, 2))),
          paper="demonstration variant (not from a paper)", demo=True, crop_pct=1.0,
          test_input_size=(3, 8, 32, 32))
