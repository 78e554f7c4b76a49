"""UniFormer (Li et al., ICLR 2022; TPAMI 2023): convolution and self-attention unified, images and video.

Four stages. Every block is ``x + DPE(x)``, ``x + MHRA(norm(x))``, ``x + FFN(norm(x))`` with a depthwise
convolution as dynamic position encoding (DPE). Shallow stages use *local* MHRA - ``1x1 conv, depthwise 5x5
conv, 1x1 conv`` after BatchNorm, a convolutional FFN - and deep stages *global* MHRA, multi-head
self-attention over all tokens after LayerNorm (heads of ``head_dim`` channels). The video model is the same
code at spatial rank 3: a 3x4x4 stem of temporal stride 2, 5x5x5 local aggregators, 3x3x3 DPE and joint
space-time attention. For high-resolution inputs (the extended paper's dense-prediction backbones) global
MHRA in stage 3 can be restricted to windows, or made hybrid (window blocks with every fourth block global).
Module names follow the official Sense-X code, so official checkpoints load without renaming.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import ClassVar, Sequence

import torch
import torch.nn as nn

from vitkit.layers import (Attention, DropPath, Mlp, PatchEmbed, batchnorm_nd, drop_path_rates,
                           pad_to_multiple, to_tuple)
from vitkit.layers.conv_blocks import ConvStem, depthwise_conv, pointwise_conv
from vitkit.layers.init import trunc_normal_init
from vitkit.layers.windows import padded_grid, window_partition, window_reverse

from .base import VitkitModel, select_indices
from .input_spec import IMAGENET_MEAN, IMAGENET_STD, KINETICS_MEAN, KINETICS_STD
from .variants import declare

STAGE_TYPES = ("local", "global")


@dataclass(frozen=True)
class UniFormerConfig:
    """Hyper-parameters of a UniFormer, named as in the official ``UniFormer(...)`` constructor.

    ``num_frames`` set makes it a video model (spatial rank 3) as in the official ``Uniformer(cfg)``; ``downsample_3x2x2``
    (the official video config's ``UNIFORMER.STD``) makes the downsampling convolutions of stages 2-4 3x2x2
    (temporal kernel 3) instead of 1x2x2; ``std=`` is still accepted by ``create_model`` for it. ``layer_scale``/``init_value``
    switch on LayerScale in global blocks (the image code's ``uniformer_base_ls``), ``layer_scale_local`` in local
    blocks as well (the token-labeling code's ``uniformer_large_ls``, gammas of shape (1, C, 1, 1)); ``return_dense`` adds the token-labeling auxiliary head.
    ``stage_types`` gives the local ("L") / global ("G") layout per stage (the paper's LLGG by default);
    ``windows``/``hybrid``/``window_size`` restrict stage-3 attention to windows as the dense-prediction code does.
    """

    depth: tuple[int, ...] = (3, 4, 8, 3)
    img_size: int = 224
    in_chans: int = 3
    num_classes: int = 1000
    embed_dim: tuple[int, ...] = (64, 128, 320, 512)
    head_dim: int = 64
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    qk_scale: float | None = None
    drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    conv_stem: bool = False
    layer_scale: bool = False
    layer_scale_local: bool = False
    init_value: float = 1e-6
    return_dense: bool = False
    num_frames: int | None = None
    downsample_3x2x2: bool = False
    local_kernel: int = 5
    dpe_kernel: int = 3
    stage_types: tuple[str, ...] = ("local", "local", "global", "global")
    windows: bool = False
    hybrid: bool = False
    window_size: int | tuple[int, ...] = 14

    #: earlier field names -> current ones (``create_model`` accepts both, with a DeprecationWarning)
    RENAMED: ClassVar[dict[str, str]] = {"std": "downsample_3x2x2"}


# -- blocks -----------------------------------------------------------------------------------------------------
class LocalBlock(nn.Module):
    """Local MHRA block (the official ``CBlock``): BatchNorm, PWConv - DWConv(k) - PWConv, convolutional FFN."""

    def __init__(self, cfg: UniFormerConfig, dim: int, rank: int, drop_path: float) -> None:
        super().__init__()
        self.pos_embed = depthwise_conv(rank, dim, cfg.dpe_kernel)
        self.norm1 = batchnorm_nd(rank, dim)
        self.conv1 = pointwise_conv(rank, dim, dim)
        self.attn = depthwise_conv(rank, dim, cfg.local_kernel)
        self.conv2 = pointwise_conv(rank, dim, dim)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = batchnorm_nd(rank, dim)
        self.mlp = Mlp(dim, int(dim * cfg.mlp_ratio), drop=cfg.drop_rate, rank=rank)
        if cfg.layer_scale_local:
            shape = (1, dim) + (1,) * rank
            self.gamma_1 = nn.Parameter(torch.full(shape, cfg.init_value))
            self.gamma_2 = nn.Parameter(torch.full(shape, cfg.init_value))
        else:
            self.gamma_1 = self.gamma_2 = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.pos_embed(x)
        y = self.conv2(self.attn(self.conv1(self.norm1(x))))
        x = x + self.drop_path(y if self.gamma_1 is None else self.gamma_1 * y)
        y = self.mlp(self.norm2(x))
        return x + self.drop_path(y if self.gamma_2 is None else self.gamma_2 * y)


class GlobalBlock(nn.Module):
    """Global MHRA block (the official ``SABlock``): LayerNorm, multi-head self-attention over all tokens, MLP.

    With ``window`` set, attention runs in non-overlapping windows (the official ``SABlock_Windows``): the
    normalised map is zero-padded at the end of each axis to a multiple of the window and cropped afterwards;
    as in the official code, padded tokens are not masked.
    """

    def __init__(
        self, cfg: UniFormerConfig, dim: int, rank: int, drop_path: float, window: tuple[int, ...] | None = None
    ) -> None:
        super().__init__()
        if dim % cfg.head_dim:
            raise ValueError(f"global MHRA width {dim} is not divisible by head_dim {cfg.head_dim}")
        self.window = window
        self.stride: tuple[int, ...] | None = None  # input pixels (frames) per token, for attention analysis
        self.pos_embed = depthwise_conv(rank, dim, cfg.dpe_kernel)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, dim // cfg.head_dim, cfg.qkv_bias, cfg.attn_drop_rate, cfg.drop_rate)
        if cfg.qk_scale is not None:
            self.attn.scale = cfg.qk_scale
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * cfg.mlp_ratio), drop=cfg.drop_rate)
        if cfg.layer_scale:
            self.gamma_1 = nn.Parameter(torch.full((dim,), cfg.init_value))
            self.gamma_2 = nn.Parameter(torch.full((dim,), cfg.init_value))
        else:
            self.gamma_1 = self.gamma_2 = None

    def mix(self, t: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
        """Self-attention over tokens (B, N, C) of a map of size ``grid``, globally or in windows."""
        meta = {"grid": tuple(grid), "stride": self.stride or (1,) * len(grid)}
        if self.window is None:
            return self.attn(t, meta=meta)
        B, _, C = t.shape
        window = self.window
        x = pad_to_multiple(t.reshape(B, *grid, C), window, 1)
        y = self.attn(window_partition(x, window), meta={**meta, "window": tuple(window)})
        y = window_reverse(y, window, padded_grid(grid, window))
        if tuple(x.shape[1:-1]) != tuple(grid):
            y = y[(slice(None), *(slice(0, g) for g in grid))]
        return y.reshape(B, -1, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.pos_embed(x)
        B, C, *grid = x.shape
        # tokens as a channels-last view: free when x is channels-last strided (as the embeddings leave it), and
        # the map handed back is a channels-last view of the tokens, so no block copies between layouts
        t = x.movedim(1, -1).reshape(B, -1, C)
        y = self.mix(self.norm1(t), grid)
        t = t + self.drop_path(y if self.gamma_1 is None else self.gamma_1 * y)
        y = self.mlp(self.norm2(t))
        t = t + self.drop_path(y if self.gamma_2 is None else self.gamma_2 * y)
        return t.reshape(B, *grid, C).movedim(-1, 1)


# -- model ------------------------------------------------------------------------------------------------------
class UniFormer(VitkitModel):
    """UniFormer for images (B, C, H, W) or, with ``num_frames`` set, video (B, C, T, H, W)."""

    family = "uniformer"
    classifier_names = ("head", "aux_head")  # aux_head: the token-labeling dense head

    def __init__(self, cfg: UniFormerConfig) -> None:
        super().__init__()
        depth, dims = tuple(cfg.depth), tuple(cfg.embed_dim)
        types = tuple({"l": "local", "g": "global"}.get(s.lower(), s.lower()) for s in cfg.stage_types)
        if not (len(depth) == len(dims) == len(types) == 4):
            raise ValueError(f"UniFormer has 4 stages: depth {depth}, embed_dim {dims}, stage_types {types}")
        if any(d < 1 for d in depth):
            raise ValueError(f"every stage needs at least one block, got depth {depth}")
        if any(t not in STAGE_TYPES for t in types):
            raise ValueError(f"stage_types must be 'local' or 'global' (or 'L'/'G'), got {cfg.stage_types}")
        if cfg.windows and cfg.hybrid:
            raise ValueError("windows and hybrid are exclusive: windows makes all stage-3 blocks windowed")
        self.config = cfg
        self.is_video = cfg.num_frames is not None
        self.spatial_rank = rank = 3 if self.is_video else 2
        if cfg.conv_stem and self.is_video:
            raise ValueError("conv_stem is an image option; the video model uses the 3x4x4 cube stem")
        self.in_chans = cfg.in_chans
        self.num_classes = cfg.num_classes
        self.depth, self.embed_dim, self.stage_types = depth, dims, types
        self.num_features = dims[-1]
        window = to_tuple(cfg.window_size, rank) if (cfg.windows or cfg.hybrid) else None
        dpr = drop_path_rates(cfg.drop_path_rate, sum(depth))
        for i in range(4):
            self.add_module(f"patch_embed{i + 1}", self._embedding(cfg, i, rank))
            if i == 0:
                self.pos_drop = nn.Dropout(cfg.drop_rate)
            blocks = []
            stride = ((2,) if self.is_video else ()) + (4 * 2**i,) * 2
            for j in range(depth[i]):
                p = dpr[sum(depth[:i]) + j]
                if types[i] == "local":
                    blocks.append(LocalBlock(cfg, dims[i], rank, p))
                else:
                    windowed = i == 2 and (cfg.windows or (cfg.hybrid and (j + 1) % 4 != 0))
                    blocks.append(GlobalBlock(cfg, dims[i], rank, p, window if windowed else None))
                    blocks[-1].stride = stride
            self.add_module(f"blocks{i + 1}", nn.ModuleList(blocks))
        self.norm = batchnorm_nd(rank, dims[-1])
        self.head = nn.Linear(dims[-1], cfg.num_classes) if cfg.num_classes > 0 else nn.Identity()
        self.aux_head = None
        if cfg.return_dense:
            self.aux_head = nn.Linear(dims[-1], cfg.num_classes) if cfg.num_classes > 0 else nn.Identity()
        if next(self.parameters()).device.type != "meta":
            trunc_normal_init(self.modules())

    @staticmethod
    def _embedding(cfg: UniFormerConfig, i: int, rank: int) -> nn.Module:
        dims = tuple(cfg.embed_dim)
        c_in = cfg.in_chans if i == 0 else dims[i - 1]

        def ln(d: int) -> nn.Module:
            return nn.LayerNorm(d)  # eps 1e-5, as the official PatchEmbed

        if cfg.conv_stem:
            return ConvStem(c_in, dims[i], rank, n=2 if i == 0 else 1)
        if rank == 2:
            return PatchEmbed(4 if i == 0 else 2, c_in, dims[i], norm_layer=ln, strict_size=False)
        if i == 0:
            return PatchEmbed((3, 4, 4), c_in, dims[0], stride=(2, 4, 4), padding=(1, 0, 0), norm_layer=ln,
                              strict_size=False)
        kt = 3 if cfg.downsample_3x2x2 else 1
        return PatchEmbed((kt, 2, 2), c_in, dims[i], stride=(1, 2, 2), padding=(kt // 2, 0, 0), norm_layer=ln,
                          strict_size=False)

    # -- input -------------------------------------------------------------------------------------------------
    def check_input(self, x: torch.Tensor) -> None:
        super().check_input(x)
        hw = tuple(x.shape[-2:])
        if not self.config.conv_stem and any(s % 32 for s in hw):
            raise ValueError(
                f"{type(self).__name__} needs H and W divisible by 32 (a 4x4 stem and three 2x2 downsamplings), "
                f"got input shape {tuple(x.shape)}"
            )
        if self.config.conv_stem and any(s < 32 for s in hw):
            raise ValueError(f"{type(self).__name__} needs H and W of at least 32, got input shape {tuple(x.shape)}")

    # -- forward -----------------------------------------------------------------------------------------------
    def stage_blocks(self) -> list[list[nn.Module]]:
        return [list(getattr(self, f"blocks{i + 1}")) for i in range(4) if hasattr(self, f"blocks{i + 1}")]

    def stage(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """Downsampling embedding and blocks of stage ``i`` (0-based), on maps (B, C, [T,] H, W)."""
        x = getattr(self, f"patch_embed{i + 1}")(x)
        if i == 0:
            x = self.pos_drop(x)
        for blk in getattr(self, f"blocks{i + 1}"):
            x = self.run_block(blk, x)
        return x

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The final map (B, C, [T,] H, W) after the last BatchNorm, before pooling."""
        self.check_input(x)
        for i in range(4):
            x = self.stage(i, x)
        return self.norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average pool and classify; with the token-labeling head, ``cls + 0.5 * max over tokens(aux)``."""
        pooled = x.flatten(2).mean(-1)
        if pre_logits:
            return pooled
        out = self.head(pooled)
        if self.aux_head is not None and self.num_classes > 0:
            out = out + 0.5 * self.aux_head(x.flatten(2).transpose(1, 2)).amax(1)
        return out

    def forward_dense(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Token-labeling training outputs: class logits (B, K) and per-token logits (B, N, K)."""
        if self.aux_head is None:
            raise RuntimeError("forward_dense needs the token-labeling head: build with return_dense=True")
        f = self.forward_features(x)
        return self.head(f.flatten(2).mean(-1)), self.aux_head(f.flatten(2).transpose(1, 2))

    def forward_intermediates(
        self, x: torch.Tensor, indices: int | Sequence[int] | None = None, norm: bool = False
    ) -> list[torch.Tensor]:
        """The selected stage outputs (all four by default) as maps (B, C, [T,] H, W) at strides 4, 8, 16, 32.

        ``norm`` applies the final BatchNorm to the last stage's map (what ``forward_features`` returns).
        """
        take = select_indices(4, indices)
        self.check_input(x)
        out = []
        for i in range(max(take) + 1):
            x = self.stage(i, x)
            if i in take:
                out.append(self.norm(x) if norm and i == 3 else x)
        return out

    # -- head / optimiser hooks --------------------------------------------------------------------------------
    def reset_classifier(self, num_classes: int) -> None:
        super().reset_classifier(num_classes)
        if self.aux_head is not None:
            aux = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
            if num_classes > 0:
                nn.init.zeros_(aux.weight)
                nn.init.zeros_(aux.bias)
            self.aux_head = aux.to(next(self.parameters()).device)

    @classmethod
    def input_defaults(cls, cfg: UniFormerConfig) -> dict:
        """Official: Kinetics statistics, bilinear, short side 256 for video; ImageNet, full image from 384."""
        if cfg.num_frames is not None:
            return {"mean": KINETICS_MEAN, "std": KINETICS_STD, "interpolation": "bilinear", "crop_pct": 224 / 256,
                    "test_input_size": (cfg.in_chans, 2, 32, 32)}  # the smallest valid clip: keeps tests fast
        return {"mean": IMAGENET_MEAN, "std": IMAGENET_STD, "crop_pct": 1.0 if cfg.img_size >= 384 else 0.875,
                "test_input_size": (cfg.in_chans, 32, 32)}

    def no_weight_decay(self) -> set[str]:
        """LayerScale factors (1-D, as the official optimiser groups leave them undecayed)."""
        return {n for n, _ in self.named_parameters() if n.endswith(("gamma_1", "gamma_2"))}

    def layer_id(self, name: str) -> int:
        """Stem 0, blocks 1..N in forward order; a stage's downsampling embedding shares its first block's id."""
        if name.startswith("patch_embed"):
            s = int(name[len("patch_embed")])
            return 0 if s == 1 else 1 + sum(self.depth[: s - 1])
        return super().layer_id(name)

    def stem_pattern(self) -> str:
        return r"(patch_embed1|pos_drop)"

    def profile_stages(self) -> list[tuple[str, nn.Module]]:
        stages: list[tuple[str, nn.Module]] = []
        for i in range(4):
            stages.append((f"patch_embed{i + 1}", getattr(self, f"patch_embed{i + 1}")))
            stages += [(f"blocks{i + 1}.{j}", b) for j, b in enumerate(getattr(self, f"blocks{i + 1}"))]
        stages += [("norm", self.norm), ("head", self.head)]
        if self.aux_head is not None:
            stages.append(("aux_head", self.aux_head))
        return stages


# -- variants ---------------------------------------------------------------------------------------------------
_ICLR = "Li et al., UniFormer: Unified Transformer for Efficient Spatiotemporal Representation Learning, ICLR 2022"
_TPAMI = "Li et al., UniFormer: Unifying Convolution and Self-attention for Visual Recognition, TPAMI 2023"
_CODE = "official Sense-X/UniFormer"


_uniformer = partial(declare, UniFormer)


_S = dict(depth=(3, 4, 8, 3), embed_dim=(64, 128, 320, 512))
_SP = dict(depth=(3, 5, 9, 3), embed_dim=(64, 128, 320, 512), conv_stem=True)
_B = dict(depth=(5, 8, 20, 7), embed_dim=(64, 128, 320, 512))
_L = dict(depth=(5, 10, 24, 7), embed_dim=(128, 192, 448, 640), layer_scale=True, layer_scale_local=True)
_TL = dict(return_dense=True)  # token-labeling models: auxiliary dense head
_IMG_T7 = f"{_TPAMI}, Table 7 / {_ICLR}, Table 7 and README"

# paper_params: the official model's exact count (the papers round it: 22 / 24 / 50 / 100 M); paper_macs: the
# paper's GFLOPs (fvcore MACs) where they reproduce, else the official model's count (paper-facts §4.1, §4.3).
_uniformer("uniformer_small", UniFormerConfig(**_S, head_dim=64),
           paper=f"{_IMG_T7} (UniFormer-S: 22M, 3.6G, 82.9)", follows=f"{_CODE} image uniformer_small (head_dim 64)",
           paper_params=21.545, paper_macs=3.6, top1=82.9)
_uniformer("uniformer_small_plus", UniFormerConfig(**_SP, head_dim=32),
           paper=f"{_IMG_T7} (UniFormer-S\u2020: 24M, 4.2G, 83.4)",
           follows=f"{_CODE} image uniformer_small_plus (overlapping conv stem, head_dim 32)",
           paper_params=24.033, paper_macs=4.2, top1=83.4)
_uniformer("uniformer_small_plus_dim64", UniFormerConfig(**_SP, head_dim=64),
           paper=f"{_IMG_T7} (UniFormer-S\u2020, head_dim 64: 83.4)",
           follows=f"{_CODE} image uniformer_small_plus_dim64", paper_params=24.033, paper_macs=4.2, top1=83.4)
_uniformer("uniformer_base", UniFormerConfig(**_B, head_dim=64),
           paper=f"{_IMG_T7} (UniFormer-B: 50M, 8.3G, 83.8)", follows=f"{_CODE} image uniformer_base",
           paper_params=49.777, paper_macs=8.3, top1=83.8)
_uniformer("uniformer_base_ls", UniFormerConfig(**_B, head_dim=64, layer_scale=True),
           paper=f"{_IMG_T7} (UniFormer-B with LayerScale: 83.9)", follows=f"{_CODE} image uniformer_base_ls",
           paper_params=49.797, paper_macs=8.3, top1=83.9)
_uniformer("uniformer_large", UniFormerConfig(**_L, **_TL, head_dim=64),
           paper=f"{_IMG_T7} (UniFormer-L +TL: 100M, 12.6G, 85.6)",
           follows=f"{_CODE} token_labeling uniformer_large_ls (the paper's 12.6G does not match the released "
                   "config, which counts 19.7 GMACs; we follow the code)",
           paper_params=100.104, paper_macs=19.714, top1=85.6)
_uniformer("uniformer_small_384", UniFormerConfig(**_S, **_TL, head_dim=32, img_size=384),
           paper=f"{_IMG_T7} (UniFormer-S +TL at 384: 11.9G, 84.6)",
           follows=f"{_CODE} token_labeling uniformer_small (head_dim 32) at 384",
           paper_params=21.546 + 0.513, paper_macs=11.9, top1=84.6)
_uniformer("uniformer_small_plus_384", UniFormerConfig(**_SP, **_TL, head_dim=32, img_size=384),
           paper=f"{_IMG_T7} (UniFormer-S\u2020 +TL at 384: 13.7G, 84.9)",
           follows=f"{_CODE} token_labeling uniformer_small_plus (head_dim 32) at 384",
           paper_params=24.033 + 0.513, paper_macs=13.7, top1=84.9)
_uniformer("uniformer_base_384", UniFormerConfig(**_B, **_TL, head_dim=32, img_size=384),
           paper=f"{_IMG_T7} (UniFormer-B +TL at 384: 27.2G, 86.0)",
           follows=f"{_CODE} token_labeling uniformer_base (head_dim 32) at 384",
           paper_params=49.777 + 0.513, paper_macs=27.2, top1=86.0)
_uniformer("uniformer_large_384", UniFormerConfig(**_L, **_TL, head_dim=64, img_size=384),
           paper=f"{_IMG_T7} (UniFormer-L +TL at 384: 39.2G, 86.3)",
           follows=f"{_CODE} token_labeling uniformer_large_ls at 384 (the paper's 39.2G does not match the "
                   "released config, which counts 62.8 GMACs; we follow the code)",
           paper_params=100.104, paper_macs=62.764, top1=86.3)

_K400 = dict(num_classes=400, head_dim=64)
_VID = f"{_ICLR}, Tables 1-2 / Kinetics-400"
_uniformer("uniformer_small_8x8", UniFormerConfig(**_S, **_K400, num_frames=8),
           paper=f"{_VID} (UniFormer-S 8x8, README: 78.4 with 1x4 views)",
           follows=f"{_CODE} video exp/uniformer_s8x8_k400", paper_params=21.4, paper_macs=17.5, top1=78.4, sampling_rate=8)
_uniformer("uniformer_small_16x4", UniFormerConfig(**_S, **_K400, num_frames=16),
           paper=f"{_VID} (UniFormer-S 16x4: 21.4M, 41.8G per view, 80.8)",
           follows=f"{_CODE} video exp/uniformer_s16x4_k400", paper_params=21.4, paper_macs=41.8, top1=80.8, sampling_rate=4)
_uniformer("uniformer_small_32x4", UniFormerConfig(**_S, **_K400, num_frames=32),
           paper=f"{_VID} (UniFormer-S 32x4: 109.6G per view, 82.0)",
           follows=f"{_CODE} video exp/uniformer_s32x4_k400", paper_params=21.4, paper_macs=109.6, top1=82.0, sampling_rate=4)
_uniformer("uniformer_base_8x8", UniFormerConfig(**_B, **_K400, num_frames=8),
           paper=f"{_VID} (UniFormer-B 8x8, README: 79.8 with 1x4 views)",
           follows=f"{_CODE} video exp/uniformer_b8x8_k400", paper_params=49.8, paper_macs=40.3, top1=79.8, sampling_rate=8)
_uniformer("uniformer_base_16x4", UniFormerConfig(**_B, **_K400, num_frames=16),
           paper=f"{_VID} (UniFormer-B 16x4: 49.8M, 96.7G per view, 82.0)",
           follows=f"{_CODE} video exp/uniformer_b16x4_k400", paper_params=49.8, paper_macs=96.7, top1=82.0, sampling_rate=4)
_uniformer("uniformer_base_32x4", UniFormerConfig(**_B, **_K400, num_frames=32),
           paper=f"{_VID} (UniFormer-B 32x4: 259G per view, 82.9)",
           follows=f"{_CODE} video exp/uniformer_b32x4_k400", paper_params=49.8, paper_macs=259.0, top1=82.9, sampling_rate=4)

# Small demonstration variants, sized for training on a CPU with the built-in data.
_uniformer("uniformer_demo_32",
           UniFormerConfig(depth=(1, 1, 2, 1), embed_dim=(32, 64, 128, 256), head_dim=32, img_size=32,
                           num_classes=10),
           paper="demonstration variant (not from a paper)", demo=True, crop_pct=1.0, interpolation="bilinear")
_uniformer("uniformer_demo_video_8x32",
           UniFormerConfig(depth=(1, 1, 2, 1), embed_dim=(32, 64, 128, 256), head_dim=32, img_size=32,
                           num_frames=8, num_classes=10),
           paper="demonstration variant (not from a paper)", demo=True, crop_pct=1.0, interpolation="bilinear")
