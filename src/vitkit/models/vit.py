"""Vision Transformer (Dosovitskiy et al., ICLR 2021), its hybrid (ResNet stem) and the video ViT baseline.

Pre-norm encoder ``x + MSA(LN(x))``, ``x + MLP(LN(x))``, final LN; class token or global average pooling;
learned position embedding, resampled (bicubic in 2-D, trilinear in 3-D) when the input grid differs from the
configured one, both at load time and at run time. The video baseline (as the MViT paper runs it) embeds
tubelets and attends jointly over space and time, with a joint or a separate space/time position embedding.
"""
from __future__ import annotations

import math
from functools import partial
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn as nn

from vitkit.layers import Attention, DropPath, Mlp, PatchEmbed, drop_path_rates, to_tuple
from vitkit.layers.rebuild import normed
from vitkit.layers.resnetv2 import ResNetV2Stem
from vitkit.layers.init import clamped_normal_, trunc_normal_init

from .base import VitkitModel, select_indices
from .input_spec import INCEPTION_MEAN, INCEPTION_STD, KINETICS_MEAN, KINETICS_STD
from .tokens import TokenEmbedding
from .variants import declare


@dataclass(frozen=True)
class ViTConfig:
    """Hyper-parameters of a ViT. ``num_frames`` set makes it a video model over (T, H, W)."""

    img_size: int | tuple[int, int] = 224
    patch_size: int = 16
    in_chans: int = 3
    num_classes: int = 1000
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    class_token: bool = True
    global_pool: str = "token"  # "token" (class token) or "avg" (global average pooling)
    fc_norm: bool | None = None  # LayerNorm after pooling instead of before; None: only with "avg" (timm)
    representation_size: int | None = None  # the paper's pre-logits layer (Linear + tanh)
    drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    norm_eps: float = 1e-6
    hybrid_layers: tuple[int, ...] | None = None  # BiT ResNet stem stages, e.g. (3, 4, 9) for R50+ViT-B/16
    num_frames: int | None = None  # video: clip length T
    tubelet_size: int = 1  # video: temporal patch size
    sep_pos_embed: bool = False  # video: separate spatial + temporal (+ class) position embeddings


class HybridEmbed(nn.Module):
    """ResNet feature map -> 1x1 projection, as the paper's hybrid (patch size 1 on the CNN map)."""

    def __init__(self, layers: Sequence[int], in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.backbone = ResNetV2Stem(layers, in_chans)
        self.proj = nn.Conv2d(self.backbone.out_channels, embed_dim, 1)
        self.stride = (self.backbone.reduction,) * 2
        self.in_chans = in_chans

    def output_grid(self, size: Sequence[int]) -> tuple[int, ...]:
        return tuple(math.ceil(s / st) for s, st in zip(size, self.stride))

    def check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != self.in_chans:
            raise ValueError(f"expected (B, {self.in_chans}, H, W), got shape {tuple(x.shape)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.proj(self.backbone(x))


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, cfg: ViTConfig, drop_path: float) -> None:
        super().__init__()
        d = cfg.embed_dim
        self.norm1 = nn.LayerNorm(d, eps=cfg.norm_eps)
        self.attn = Attention(d, cfg.num_heads, cfg.qkv_bias, cfg.attn_drop_rate, cfg.drop_rate)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(d, eps=cfg.norm_eps)
        self.mlp = Mlp(d, int(d * cfg.mlp_ratio), drop=cfg.drop_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # in training, qkv's saved input is normalised again in the backward, not kept (layers.rebuild); a
        # replaced qkv (an adapter's wrapper reading the tokens twice) takes them as several products do
        y, rebuilt = normed(self.norm1, x, one_product=type(self.attn.qkv) is nn.Linear)
        if isinstance(self.drop_path, nn.Identity) or not self.training:
            # residual adds fused into the output projections (see layers.fused)
            with rebuilt:
                x = self.attn(y, residual=x)
            return self.mlp(self.norm2(x), residual=x)
        with rebuilt:
            x = x + self.drop_path(self.attn(y))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class VisionTransformer(TokenEmbedding, VitkitModel):
    family = "vit"

    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        if cfg.global_pool not in ("token", "avg"):
            raise ValueError(f"global_pool must be 'token' or 'avg', got {cfg.global_pool!r}")
        if cfg.global_pool == "token" and not cfg.class_token:
            raise ValueError("global_pool='token' needs class_token=True")
        self.config = cfg
        self.in_chans = cfg.in_chans
        self.num_classes = cfg.num_classes
        self.is_video = cfg.num_frames is not None
        self.spatial_rank = 3 if self.is_video else 2
        d = cfg.embed_dim
        self.num_features = self.embed_dim = d
        img = to_tuple(cfg.img_size, 2)
        if cfg.hybrid_layers is not None:
            if self.is_video:
                raise ValueError("hybrid ViT is image-only")
            self.patch_embed = HybridEmbed(cfg.hybrid_layers, cfg.in_chans, d)
            self.grid = self.patch_embed.output_grid(img)
        elif self.is_video:
            patch = (cfg.tubelet_size, cfg.patch_size, cfg.patch_size)
            self.patch_embed = PatchEmbed(patch, cfg.in_chans, d)
            self.grid = self.patch_embed.output_grid((cfg.num_frames, *img))
            self.patch_embed.check_input(torch.empty(0, cfg.in_chans, cfg.num_frames, *img, device="meta"))
        else:
            self.patch_embed = PatchEmbed(cfg.patch_size, cfg.in_chans, d)
            self.grid = self.patch_embed.output_grid(img)
            self.patch_embed.check_input(torch.empty(0, cfg.in_chans, *img, device="meta"))
        self.init_tokens(d, self.grid, cfg.class_token, True, self.is_video and cfg.sep_pos_embed)
        self.pos_drop = nn.Dropout(cfg.drop_rate)
        dpr = drop_path_rates(cfg.drop_path_rate, cfg.depth)
        self.blocks = nn.ModuleList([Block(cfg, dpr[i]) for i in range(cfg.depth)])
        use_fc_norm = cfg.global_pool == "avg" if cfg.fc_norm is None else cfg.fc_norm
        self.norm = nn.Identity() if use_fc_norm else nn.LayerNorm(d, eps=cfg.norm_eps)
        self.fc_norm = nn.LayerNorm(d, eps=cfg.norm_eps) if use_fc_norm else nn.Identity()
        if cfg.representation_size:
            self.pre_logits = nn.Sequential()
            self.pre_logits.add_module("fc", nn.Linear(d, cfg.representation_size))
            self.pre_logits.add_module("act", nn.Tanh())
        else:
            self.pre_logits = nn.Identity()
        self.head_drop = nn.Dropout(cfg.drop_rate)
        head_in = cfg.representation_size or d
        self.head = nn.Linear(head_in, cfg.num_classes) if cfg.num_classes > 0 else nn.Identity()
        self._init_weights()

    def _init_weights(self) -> None:
        if self.pos_embed is not None and self.pos_embed.device.type != "meta":
            clamped_normal_(self.pos_embed, std=0.02)
        for name in ("pos_embed_spatial", "pos_embed_temporal", "pos_embed_class"):
            p = getattr(self, name, None)
            if p is not None and p.device.type != "meta":
                clamped_normal_(p, std=0.02)
        if self.cls_token is not None and self.cls_token.device.type != "meta":
            nn.init.normal_(self.cls_token, std=1e-6)
        if next(self.parameters()).device.type != "meta":
            trunc_normal_init(self.modules())

    def _head_in_features(self) -> int:
        return self.config.representation_size or self.num_features

    def no_weight_decay(self) -> set[str]:
        names = {"cls_token", "pos_embed", "pos_embed_spatial", "pos_embed_temporal", "pos_embed_class"}
        return {n for n, _ in self.named_parameters() if n in names}

    # -- embedding -----------------------------------------------------------------------------------------
    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
        """Input -> tokens (B, prefix + N, C) with position embedding added (and dropout), and the token grid."""
        self.check_input(x)
        x, grid = self.tokens(self.patch_embed(x))
        return self.pos_drop(x), grid

    def stage_blocks(self) -> list[list[nn.Module]]:
        return [list(self.blocks)]  # one stage: every block works at one resolution

    # -- forward -------------------------------------------------------------------------------------------
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x, _ = self.embed(x)
        for blk in self.blocks:
            x = self.run_block(blk, x)
        return self.norm(x)

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        if self.config.global_pool == "avg":
            return x[:, self.num_prefix_tokens :].mean(dim=1)
        return x[:, 0]

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.pre_logits(self.fc_norm(self.pool(x)))
        return x if pre_logits else self.head(self.head_drop(x))

    def forward_intermediates(
        self, x: torch.Tensor, indices: int | Sequence[int] | None = None, norm: bool = False
    ) -> list[torch.Tensor]:
        """Outputs of the selected blocks as maps (B, C, [T,] H, W), prefix tokens dropped (all blocks by default)."""
        take = set(select_indices(len(self.blocks), indices))
        x, grid = self.embed(x)
        out = []
        for i, blk in enumerate(self.blocks):
            x = self.run_block(blk, x)
            if i in take:
                y = self.norm(x) if norm else x
                y = y[:, self.num_prefix_tokens :]
                out.append(y.transpose(1, 2).reshape(y.shape[0], -1, *grid))
        return out

    def stem_pattern(self) -> str:
        return r"(patch_embed|cls_token|pos_embed|pos_drop)"

    @classmethod
    def input_defaults(cls, cfg: ViTConfig) -> dict:
        """The ViT paper's [-1, 1] scaling for images, Kinetics statistics for video; full image from 384."""
        video = cfg.num_frames is not None
        return {"mean": KINETICS_MEAN if video else INCEPTION_MEAN, "std": KINETICS_STD if video else INCEPTION_STD,
                "crop_pct": 1.0 if to_tuple(cfg.img_size, 2)[0] >= 384 else 0.9}

    def profile_stages(self) -> list[tuple[str, nn.Module]]:
        return [("patch_embed", self.patch_embed)] + [(f"blocks.{i}", b) for i, b in enumerate(self.blocks)] + [
            ("head", self.head)
        ]


_vit = partial(declare, VisionTransformer)

_VIT_PAPER = "Dosovitskiy et al., An Image is Worth 16x16 Words, ICLR 2021"
_TI = dict(embed_dim=192, depth=12, num_heads=3)
_S = dict(embed_dim=384, depth=12, num_heads=6)
_B = dict(embed_dim=768, depth=12, num_heads=12)
_L = dict(embed_dim=1024, depth=24, num_heads=16)
_H = dict(embed_dim=1280, depth=32, num_heads=16)

# paper_params / paper_macs: the ViT paper's Table 1 parameters where it gives them, else the official
# (google-research/vision_transformer, timm-identical) model's count with a 1000-class head; MACs are the
# official model counted with attention matmuls included (paper-facts §1.1).
_vit("vit_tiny_patch16_224", ViTConfig(**_TI), paper=f"{_VIT_PAPER}; Ti from the official configs (DeiT-Ti)",
     follows="official config get_ti16_config", paper_params=5.717, paper_macs=1.254, top1=72.2)
_vit("vit_small_patch16_224", ViTConfig(**_S), paper=f"{_VIT_PAPER}; S from the official configs (DeiT-S)",
     follows="official config get_s16_config", paper_params=22.05, paper_macs=4.599, top1=79.9)
_vit("vit_base_patch16_224", ViTConfig(**_B), paper=f"{_VIT_PAPER}, Table 1 (ViT-Base)",
     follows="paper Table 1", paper_params=86.57, paper_macs=17.56, top1=81.8)
_vit("vit_base_patch32_224", ViTConfig(patch_size=32, **_B), paper=f"{_VIT_PAPER}, Table 1 (ViT-B/32)",
     follows="paper Table 1", paper_params=88.22, paper_macs=4.409)
_vit("vit_base_patch16_384", ViTConfig(img_size=384, **_B), paper=f"{_VIT_PAPER}, Table 5 (ViT-B/16 at 384)",
     follows="paper Table 5", paper_params=86.86, paper_macs=55.48, top1=83.97)
_vit("vit_large_patch16_224", ViTConfig(**_L), paper=f"{_VIT_PAPER}, Table 1 (ViT-Large)",
     follows="official code (paper's 307M is ~1% above any count of the released model)",
     paper_params=304.33, paper_macs=61.56)
_vit("vit_large_patch16_384", ViTConfig(img_size=384, **_L), paper=f"{_VIT_PAPER}, Table 5 (ViT-L/16 at 384)",
     follows="official code", paper_params=304.72, paper_macs=191.07, top1=85.15)
_vit("vit_huge_patch14_224", ViTConfig(patch_size=14, **_H), paper=f"{_VIT_PAPER}, Table 1 (ViT-Huge)",
     follows="paper Table 1", paper_params=632.05, paper_macs=167.30, test_input_size=(3, 56, 56))
_vit("vit_base_r50_s16_384", ViTConfig(img_size=384, patch_size=1, hybrid_layers=(3, 4, 9), **_B),
     paper=f"{_VIT_PAPER}, §4.1 hybrids / Table 6 (R50+ViT-B/16)",
     follows="official get_r50_b16_config (ResNet stages (3,4,9), 1x1 patches on the stride-16 map)",
     paper_params=98.95, paper_macs=67.16, top1=85.58)
_vit("vit_base_patch16_8x8",
     ViTConfig(num_frames=8, tubelet_size=1, num_classes=400, **_B),
     paper="Fan et al., Multiscale Vision Transformers, ICCV 2021, Table 4 (ViT-B baseline, 8x8, 1x16x16 patches)",
     follows="MViT paper Table 4 (joint space-time attention and position embedding)",
     paper_params=87.2, paper_macs=179.6, top1=68.5, interpolation="bilinear", crop_pct=224 / 256, sampling_rate=8)

# Small demonstration variants, sized for training on a CPU with the built-in data.
_vit("vit_demo_patch4_32",
     ViTConfig(img_size=32, patch_size=4, embed_dim=128, depth=6, num_heads=4, num_classes=10),
     paper="demonstration variant (not from a paper)", demo=True, crop_pct=1.0, interpolation="bilinear")
_vit("vit_demo_patch8_32",  # the digits demo's model (configs/demo/digits.yaml)
     ViTConfig(img_size=32, patch_size=8, embed_dim=96, depth=4, num_heads=4, num_classes=10),
     paper="demonstration variant (not from a paper)", demo=True, crop_pct=1.0, interpolation="bilinear")
_vit("vit_demo_video_8x32",
     ViTConfig(img_size=32, patch_size=4, num_frames=8, tubelet_size=2, embed_dim=128, depth=4, num_heads=4,
               num_classes=10, sep_pos_embed=True),
     paper="demonstration variant (not from a paper)", demo=True, crop_pct=1.0, interpolation="bilinear")
