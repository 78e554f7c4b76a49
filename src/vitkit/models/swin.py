"""Swin Transformer (Liu et al., ICCV 2021) and Video Swin (Liu et al., CVPR 2022) from one code.

Tokens stay channels-last (B, *grid, C) with grid (H, W) for images and (T, H, W) for video. A block is
pre-norm window attention with a relative position bias, then an MLP; every other block shifts its windows
cyclically by half a window, with the region mask of the paper's batched computation. Patch merging
concatenates 2x2 spatial neighbours (never time) and halves the token count per axis. Any input size runs:
the input is zero-padded to a multiple of the patch, each block zero-pads its (normalised) map to a multiple
of its window and patch merging to an even size. Window orders, masks and bias indices are cached per size
(:mod:`vitkit.layers.windows`).

Each family follows its own official code for windows on small maps:

* **Video Swin** (official ``SwinTransformer3D``; torchvision ``swin3d_*`` alike) decides at run time, in every
  block and per axis, from the feature map it is given: the window is ``min(window, map)`` and there is no shift
  along an axis the window covers (:func:`vitkit.layers.windows.fit_window`); a window so clipped reads the
  top-left block of the full window's bias index (``clipped_window_bias="slice"``, the video default). The
  3-D model therefore equals torchvision's at every clip length and resolution.
* **Swin** (official ``SwinTransformer``, microsoft/Swin-Transformer) decides once, at construction, from
  ``img_size``: a stage whose map is no larger than the window (``min(input_resolution) <= window_size``) gets
  a square window of that size, a bias table to match, and no shift. The 2-D model does the same, so it equals
  the official model built at its ``img_size`` and loads its checkpoints shape for shape. The official
  classification code runs at ``img_size`` only; at another size vitkit keeps the constructed windows and
  shifts (as timm does), and where a map is no larger than a window it clips that window per axis, unshifted,
  reading each pair's true offset in the table (``"offset"``, the image default); torchvision's ``swin_*`` pads
  the map instead and keeps no construction rule. For the official model at another size, build with
  ``img_size=...``.
"""
from __future__ import annotations

import math
from functools import partial
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from vitkit.layers import (Attention, DropPath, Mlp, PatchEmbed, drop_path_rates, pad_to_multiple,
                           resample_pos_embed, to_tuple)
from vitkit.layers.cache import TensorCache
from vitkit.layers.fused import is_tracing, linear
from vitkit.layers.init import clamped_normal_, trunc_normal_init
from vitkit.layers.materialize import materialized
from vitkit.layers.rebuild import normed
from vitkit.layers.windows import (
    fit_window, padded_grid, permute_tokens, relative_position_index, shift_mask, window_order,
)

from .base import VitkitModel, select_indices
from .variants import declare


@dataclass(frozen=True)
class SwinConfig:
    """Hyper-parameters, named as the official ``SwinTransformer(...)`` arguments.

    ``num_frames`` set makes it a Video Swin over (T, H, W); ``patch_size`` and ``window_size`` are then
    (t, h, w) triples (ints broadcast). ``clipped_window_bias`` says how a window clipped to a small map reads
    the bias table: ``"offset"`` (each pair's true relative offset) or ``"slice"`` (official Video Swin /
    torchvision ``swin3d``: the top-left block of the full window's index); None (default) takes the family's
    official rule, ``"slice"`` for video and ``"offset"`` for images.
    """

    img_size: int | tuple[int, int] = 224
    patch_size: int | tuple[int, ...] = 4
    in_chans: int = 3
    num_classes: int = 1000
    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (3, 6, 12, 24)
    window_size: int | tuple[int, ...] = 7
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    qk_scale: float | None = None
    drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.1
    ape: bool = False
    patch_norm: bool = True
    norm_eps: float = 1e-5
    num_frames: int | None = None
    clipped_window_bias: str | None = None

    @property
    def clipped_bias(self) -> str:
        """``clipped_window_bias`` resolved: the official Video Swin rule for video, true offsets for images."""
        if self.clipped_window_bias is not None:
            return self.clipped_window_bias
        return "slice" if self.num_frames is not None else "offset"


class WindowAttention(Attention):
    """Multi-head attention inside windows with a learned relative position bias.

    The bias table holds one value per head for each relative offset in a ``table_window``: a
    ((2W-1)^rank, heads) parameter, as the official ``relative_position_bias_table``.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        table_window: Sequence[int],
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        clipped_bias: str = "offset",
    ) -> None:
        super().__init__(dim, num_heads, qkv_bias, attn_drop, proj_drop)
        if qk_scale is not None:
            self.scale = qk_scale
        self.table_window = tuple(table_window)
        self.clipped_bias = clipped_bias
        rows = math.prod(2 * w - 1 for w in self.table_window)
        self.relative_position_bias_table = nn.Parameter(torch.zeros(rows, num_heads))
        self._bias_cache = TensorCache(maxsize=8)

    def relative_position_bias(self, window: Sequence[int]) -> torch.Tensor:
        """(heads, N, N) bias for the token pairs of ``window``."""
        index = relative_position_index(window, self.table_window, self.clipped_bias, self.relative_position_bias_table.device)
        n = index.shape[0]
        # gathering from the transposed table gives a contiguous (heads, N*N) result: the fused attention
        # kernel then reads the bias in place instead of copying a strided one for every window. index_select
        # (backward: index_add_) rather than advanced indexing (backward: index_put_ with accumulation): the same
        # values and gradients, forward + backward 35 -> 8 ms for Video Swin's 8x7x7 windows (12 heads)
        return self.relative_position_bias_table.t().contiguous().index_select(1, index.reshape(-1)).reshape(-1, n, n)

    def attention_bias(self, window: Sequence[int], mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
        """(1 or num_windows, heads, N, N): the relative position bias plus the shift mask, in ``dtype``, for
        attention without gradients (training adds the two to the scores apart, :func:`vitkit.layers.attention`).

        The result is kept per (window, mask, dtype) until the table changes (its version counter moves on every
        in-place update: optimiser steps, ``load_state_dict``). Copies (EMA's deepcopy, pickling) start with an
        empty cache.
        """
        table = self.relative_position_bias_table

        def build() -> tuple[torch.Tensor, int, torch.Tensor | None, torch.Tensor]:
            bias = self.relative_position_bias(window).unsqueeze(0)
            if mask is not None:
                bias = bias + mask.unsqueeze(1)
            return table, table._version, mask, bias.to(dtype)

        # a graph is never kept; under torch.compile the bias is part of the traced graph (and the key below is
        # never built: torch 2.11's Dynamo cannot trace id(None), a graph break that fell back to eager per block)
        if torch.is_grad_enabled() or table.device.type == "meta" or is_tracing():
            return build()[3]
        # an entry holds its mask, so id(mask) names that mask for as long as the entry lives
        key = (tuple(window), dtype, id(mask))
        stale = lambda hit: hit[0] is not table or hit[1] != table._version or hit[2] is not mask  # noqa: E731
        return self._bias_cache.get(key, build, stale)[3]

    def forward(
        self, x: torch.Tensor, window: Sequence[int], mask: torch.Tensor | None = None, meta: dict | None = None
    ) -> torch.Tensor:
        """``x`` (B, num_windows, N, C) -> same shape; ``mask`` (num_windows, N, N) is added per head.

        ``meta`` (the token grid, window, shift) goes to :func:`vitkit.layers.attention` for analysis hooks.
        """
        B, nW, N, C = x.shape
        qkv = linear(x.reshape(B * nW, N, C), self.qkv)
        if torch.is_grad_enabled():  # the bias and the mask go in apart: attention() adds them to the scores
            # (compiled, each computed once: not inside every window's kernel, vitkit.layers.materialize)
            bias = materialized(self.relative_position_bias(window)).unsqueeze(0).to(qkv.dtype)
            apart = None if mask is None else materialized(mask)
        else:  # one bias-plus-mask tensor, kept until the table changes (what the fused kernel reads)
            bias, apart = self.attention_bias(window, mask, qkv.dtype), None
        if bias.shape[0] == 1:
            bias = bias.expand(B * nW, -1, -1, -1)  # a view: the kernel reads one copy for every window
        else:
            bias = bias.unsqueeze(0).expand(B, -1, -1, -1, -1).reshape(B * nW, -1, N, N)
        out = self.attend(qkv, bias, {"window": tuple(window), "num_windows": nW, **(meta or {})}, mask=apart)
        return self.merge_heads(out).reshape(B, nW, N, -1)


class SwinBlock(nn.Module):
    """``x + (S)W-MSA(LN(x))``, ``x + MLP(LN(x))`` on a channels-last map (B, *grid, C)."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: Sequence[int],
        shift_size: Sequence[int],
        cfg: SwinConfig,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.window_size = tuple(window_size)
        self.shift_size = tuple(shift_size)
        self.norm1 = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.attn = WindowAttention(
            dim, num_heads, self.window_size, cfg.qkv_bias, cfg.qk_scale, cfg.attn_drop_rate, cfg.drop_rate,
            cfg.clipped_bias,
        )
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.mlp = Mlp(dim, int(dim * cfg.mlp_ratio), drop=cfg.drop_rate)

    def window_attention(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise, pad, shift and partition, attend within windows, then undo it all (two gathers). In training
        the normalised windows qkv keeps are rebuilt in the backward from ``x`` (:mod:`vitkit.layers.rebuild`).

        Under ``torch.compile(dynamic=True)`` one graph serves every input size whose maps fall on the same side
        of the window in every block: the padding is applied unconditionally while tracing (by zero where none is
        needed) so that it guards nothing. Whether a map is larger than its window is a real branch of the model
        (a clipped window has fewer tokens and no shift, so another bias, no mask and another ``N``): an input
        size that moves some block's map across its window size (for Swin-T, 224 -> 7x7 last stage, clipped;
        256 and up, not clipped) compiles a second graph, which then serves every size on that side. Two cheap
        guards are kept on purpose (padding there unconditionally doubles the trace time): the input a multiple
        of the patch (:func:`~vitkit.layers.pad_to_multiple`) and an even map at each patch merging, both true
        of every multiple of 32 for the four-stage models.
        """
        B, *grid, C = x.shape
        window, shift = fit_window(grid, self.window_size, self.shift_size)
        padded = padded_grid(grid, window)
        pad = []
        if is_tracing() or padded != tuple(grid):
            for g, p in zip(reversed(grid), reversed(padded)):
                pad += [0, p - g]
        order, inverse = window_order(grid, window, shift, x.device)
        n = math.prod(window)
        # unpadded, order and inverse are permutations undoing each other, and the backward gathers as well
        # (not evaluated while tracing: the comparison would guard on the padding)
        permutation = not is_tracing() and padded == tuple(grid)

        def to_windows(y: torch.Tensor) -> torch.Tensor:  # holds no activation: it is also the rebuild's recipe
            tokens = (F.pad(y, [0, 0] + pad) if pad else y).reshape(B, -1, C)
            return permute_tokens(tokens, order, inverse) if permutation else tokens.index_select(1, order)

        windows, rebuilt = normed(self.norm1, x, type(self.attn.qkv) is nn.Linear, then=to_windows)
        meta = {"grid": tuple(grid), "shift": shift}
        with rebuilt:
            x = self.attn(windows.reshape(B, -1, n, C), window, shift_mask(padded, window, shift, x.device), meta)
        tokens = x.reshape(B, -1, C)
        x = permute_tokens(tokens, inverse, order) if permutation else tokens.index_select(1, inverse)
        return x.reshape(B, *grid, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.window_attention(x))
        return x + self.drop_path(self.mlp(self.norm2(x)))

    def extra_repr(self) -> str:
        return f"window_size={self.window_size}, shift_size={self.shift_size}"


class PatchMerging(nn.Module):
    """Concatenate each 2x2 spatial neighbourhood (odd maps zero-padded at the end), LN(4C), Linear(4C -> 2C).

    The channel order is the official one: (0,0), (1,0), (0,1), (1,1) as (h, w) offsets. Time is not merged.
    """

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim, eps=eps)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        H, W = x.shape[-3], x.shape[-2]
        if H % 2 or W % 2:
            x = F.pad(x, (0, 0, 0, W % 2, 0, H % 2))
        # the official order of the 2x2 neighbours, (0,0), (1,0), (0,1), (1,1), as one reshape: the backward is one
        # copy, where four strided slices and a cat zero-fill the whole map twice for each neighbour
        *lead, H, W, C = x.shape
        n = x.dim() + 2
        x = x.reshape(*lead, H // 2, 2, W // 2, 2, C).permute(*range(n - 5), n - 5, n - 3, n - 2, n - 4, n - 1)
        return linear(self.norm(x.reshape(*lead, H // 2, W // 2, 4 * C)), self.reduction)


class SwinStage(nn.Module):
    """Blocks at one resolution, then (except in the last stage) patch merging - the official layout."""

    def __init__(self, blocks: list[SwinBlock], downsample: PatchMerging | None) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.downsample = downsample


class SwinTransformer(VitkitModel):
    family = "swin"

    def __init__(self, cfg: SwinConfig) -> None:
        super().__init__()
        device = torch.get_default_device()
        # built on the meta device and materialised once: PyTorch's default init would run before ours
        with torch.device("meta"):
            self._build(cfg)
        if device.type != "meta":
            self.to_empty(device=device)
            self._init_weights()

    def _build(self, cfg: SwinConfig) -> None:
        if len(cfg.depths) != len(cfg.num_heads):
            raise ValueError(f"depths {cfg.depths} and num_heads {cfg.num_heads} must have the same length")
        if cfg.clipped_window_bias not in (None, "offset", "slice"):
            raise ValueError(f"clipped_window_bias must be 'offset' or 'slice', got {cfg.clipped_window_bias!r}")
        self.config = cfg
        self.in_chans = cfg.in_chans
        self.num_classes = cfg.num_classes
        self.is_video = cfg.num_frames is not None
        rank = self.spatial_rank = 3 if self.is_video else 2
        self.num_layers = len(cfg.depths)
        self.embed_dim = cfg.embed_dim
        self.num_features = int(cfg.embed_dim * 2 ** (self.num_layers - 1))
        size = to_tuple(cfg.img_size, 2)
        if self.is_video:
            size = (cfg.num_frames, *size)
        patch = to_tuple(cfg.patch_size, rank)
        window = to_tuple(cfg.window_size, rank)
        norm = (lambda d: nn.LayerNorm(d, eps=cfg.norm_eps)) if cfg.patch_norm else None
        self.patch_embed = PatchEmbed(patch, cfg.in_chans, cfg.embed_dim, norm_layer=norm, strict_size=False)
        self.grid = tuple(s // p for s, p in zip(size, patch))  # official: floor(img_size / patch_size)
        if cfg.ape:
            self.absolute_pos_embed = nn.Parameter(torch.zeros(1, math.prod(self.grid), cfg.embed_dim))
        else:
            self.absolute_pos_embed = None
        self.pos_drop = nn.Dropout(cfg.drop_rate)
        dpr = drop_path_rates(cfg.drop_path_rate, sum(cfg.depths))
        layers, k = [], 0
        for i, (depth, heads) in enumerate(zip(cfg.depths, cfg.num_heads)):
            dim = cfg.embed_dim * 2**i
            res = (*self.grid[:-2], self.grid[-2] // 2**i, self.grid[-1] // 2**i)
            win, shift = window, tuple(w // 2 for w in window)
            if not self.is_video and min(res) <= min(window):  # official construction rule (2-D only)
                win, shift = (min(res),) * 2, (0, 0)
            blocks = [
                SwinBlock(dim, heads, win, shift if j % 2 else (0,) * rank, cfg, dpr[k + j]) for j in range(depth)
            ]
            k += depth
            down = PatchMerging(dim, cfg.norm_eps) if i < self.num_layers - 1 else None
            layers.append(SwinStage(blocks, down))
        self.layers = nn.ModuleList(layers)
        self.norm = nn.LayerNorm(self.num_features, eps=cfg.norm_eps)
        self.head = nn.Linear(self.num_features, cfg.num_classes) if cfg.num_classes > 0 else nn.Identity()

    @torch.no_grad()
    def _init_weights(self) -> None:
        """The official init: Linear weights, bias tables and ``absolute_pos_embed`` trunc-normal(0.02) cut at +-2
        (absolute, timm's ``trunc_normal_``), Linear biases 0, LayerNorm 1 / 0, the patch convolution PyTorch's default.

        (:mod:`vitkit.layers.init`: a clamped normal, the same distribution, drawn faster.)
        """
        for name, p in self.named_parameters():
            if name.endswith("relative_position_bias_table") or name == "absolute_pos_embed":
                clamped_normal_(p)
        for m in self.modules():  # in module order, as the official init draws
            if isinstance(m, (nn.Conv2d, nn.Conv3d)):
                m.reset_parameters()
            else:
                trunc_normal_init([m])

    # -- optimiser hooks -----------------------------------------------------------------------------------
    @classmethod
    def input_defaults(cls, cfg: SwinConfig) -> dict:
        """ImageNet statistics, bicubic; the full image from 384 (official configs)."""
        return {"crop_pct": 1.0 if to_tuple(cfg.img_size, 2)[0] >= 384 else 0.875}

    def no_weight_decay(self) -> set[str]:
        """The official exclusions: ``absolute_pos_embed`` and every ``relative_position_bias_table``."""
        return {
            n for n, _ in self.named_parameters() if n == "absolute_pos_embed" or n.endswith("relative_position_bias_table")
        }

    def layer_id(self, name: str) -> int:
        """Blocks in forward order; the patch merging after stage i shares the id of the block that follows it."""
        if name.startswith("layers.") and ".downsample." in name:
            i = int(name.split(".")[1])
            return sum(self.config.depths[: i + 1]) + 1
        return super().layer_id(name)

    def stem_pattern(self) -> str:
        return r"(patch_embed|absolute_pos_embed|pos_drop)"

    def profile_stages(self) -> list[tuple[str, nn.Module]]:
        stages = [("patch_embed", self.patch_embed)]
        stages += [(f"layers.{i}", layer) for i, layer in enumerate(self.layers)]
        return stages + [("norm", self.norm), ("head", self.head)]

    # -- forward -------------------------------------------------------------------------------------------
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Input (B, C, [T,] H, W) -> channels-last tokens (B, [T,] H', W', C), input zero-padded to the patch."""
        self.check_input(x)
        x = self.patch_embed(pad_to_multiple(x, self.patch_embed.stride, 2)).movedim(1, -1)
        if self.absolute_pos_embed is not None:
            grid = tuple(x.shape[1:-1])
            pe = resample_pos_embed(self.absolute_pos_embed, grid, self.grid, 0)
            x = x + pe.reshape(1, *grid, -1)
        return self.pos_drop(x)

    def stage_blocks(self) -> list[list[nn.Module]]:
        return [list(layer.blocks) for layer in self.layers]

    def run_stage(self, layer: SwinStage, x: torch.Tensor) -> torch.Tensor:
        for blk in layer.blocks:
            x = self.run_block(blk, x)
        return x

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised tokens of the last stage, (B, N, C)."""
        x = self.embed(x)
        for layer in self.layers:
            x = self.run_stage(layer, x)
            if layer.downsample is not None:
                x = layer.downsample(x)
        return self.norm(x).flatten(1, -2)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x.mean(dim=1)
        return x if pre_logits else self.head(x)

    def forward_intermediates(
        self, x: torch.Tensor, indices: int | Sequence[int] | None = None, norm: bool = False
    ) -> list[torch.Tensor]:
        """Stage outputs before patch merging, (B, C, [T,] H, W) at strides 4, 8, 16, 32 (all stages by default).

        ``norm`` applies the final LayerNorm to the last stage's map.
        """
        take = set(select_indices(self.num_layers, indices))
        x = self.embed(x)
        out = []
        for i, layer in enumerate(self.layers):
            x = self.run_stage(layer, x)
            if i in take:
                y = self.norm(x) if (norm and i == self.num_layers - 1) else x
                out.append(y.movedim(-1, 1).contiguous())
            if i == max(take):
                break
            if layer.downsample is not None:
                x = layer.downsample(x)
        return out


# -- variants ------------------------------------------------------------------------------------------------
_SWIN = "Liu et al., Swin Transformer: Hierarchical Vision Transformer using Shifted Windows, ICCV 2021"
_VSWIN = "Liu et al., Video Swin Transformer, CVPR 2022"
_T = dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24))
_S = dict(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24))
_B = dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32))
_L = dict(embed_dim=192, depths=(2, 2, 18, 2), num_heads=(6, 12, 24, 48))


_swin = partial(declare, SwinTransformer)


# Params/MACs: the paper's Table 1 figures (params, FLOPs = MACs), which the official code reproduces
# (paper-facts 2.2: 28.29 / 49.61 / 87.77 / 87.90 / 196.53 M). drop_path_rate: the official training configs.
_swin("swin_tiny_patch4_window7_224", SwinConfig(drop_path_rate=0.2, **_T), paper=f"{_SWIN}, Table 1(a) (Swin-T)",
      follows="paper Table 1 = official configs/swin/swin_tiny_patch4_window7_224.yaml",
      paper_params=28.3, paper_macs=4.5, top1=81.3)
_swin("swin_small_patch4_window7_224", SwinConfig(drop_path_rate=0.3, **_S), paper=f"{_SWIN}, Table 1(a) (Swin-S)",
      follows="paper Table 1 = official configs", paper_params=49.6, paper_macs=8.7, top1=83.0)
_swin("swin_base_patch4_window7_224", SwinConfig(drop_path_rate=0.5, **_B), paper=f"{_SWIN}, Table 1(a) (Swin-B)",
      follows="paper Table 1 = official configs", paper_params=87.8, paper_macs=15.4, top1=83.5)
_swin("swin_base_patch4_window12_384", SwinConfig(img_size=384, window_size=12, drop_path_rate=0.2, **_B),
      paper=f"{_SWIN}, Table 1(a) (Swin-B 384^2)", follows="paper Table 1 = official configs",
      paper_params=87.9, paper_macs=47.0, top1=84.5, test_input_size=(3, 96, 96))
_swin("swin_large_patch4_window7_224", SwinConfig(drop_path_rate=0.2, **_L),
      paper=f"{_SWIN}, Table 1(b) (Swin-L, ImageNet-22K pre-trained)", follows="official configs (22k->1k)",
      paper_params=196.5, paper_macs=34.5, top1=86.3)
_swin("swin_large_patch4_window12_384", SwinConfig(img_size=384, window_size=12, drop_path_rate=0.2, **_L),
      paper=f"{_SWIN}, Table 1(b) (Swin-L 384^2, ImageNet-22K pre-trained)", follows="official configs (22k->1k)",
      paper_params=196.7, paper_macs=103.9, top1=87.3, test_input_size=(3, 96, 96))

# Video Swin, as torchvision swin3d_t/s/b: 2x4x4 patches, 8x7x7 windows, Kinetics-400 head, 32-frame clips
# (16 temporal tokens). Figures: Video Swin paper Table 1 (per view, 32x224^2).
_V = dict(num_frames=32, patch_size=(2, 4, 4), window_size=(8, 7, 7), num_classes=400, drop_path_rate=0.1)
_swin("swin3d_tiny", SwinConfig(**_T, **_V), paper=f"{_VSWIN}, Table 1 (Swin-T, K400)",
      follows="official Video Swin / torchvision swin3d_t", paper_params=28.2, paper_macs=88.0, top1=78.8,
      interpolation="bilinear", sampling_rate=2)
_swin("swin3d_small", SwinConfig(**_S, **_V), paper=f"{_VSWIN}, Table 1 (Swin-S, K400)",
      follows="official Video Swin / torchvision swin3d_s", paper_params=49.8, paper_macs=166.0, top1=80.6,
      interpolation="bilinear", sampling_rate=2)
_swin("swin3d_base", SwinConfig(**_B, **_V), paper=f"{_VSWIN}, Table 1 (Swin-B, K400, ImageNet-1K init)",
      follows="official Video Swin / torchvision swin3d_b", paper_params=88.0, paper_macs=282.0, top1=80.6,
      interpolation="bilinear", sampling_rate=2)
