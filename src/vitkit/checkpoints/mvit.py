"""MViT checkpoint layouts: PySlowFast / facebookresearch/mvit (official), torchvision ``mvit_v1_b`` /
``mvit_v2_s`` and timm ``mvitv2_*``; and :func:`build_official` for ``from_official("mvit", sd, config)``.

vitkit's own keys are PySlowFast's (``blocks.N.attn.qkv``, ``attn.pool_q``, ``attn.norm_q``, ``blocks.N.proj``,
``pos_embed_spatial`` ...) except the classifier, ``head`` instead of ``head.projection``. Old v1-era official
checkpoints with separate ``attn.q/k/v`` are fused into ``qkv`` (pooling after projection makes that exact).
PySlowFast's head applies softmax at eval; vitkit returns the logits before it.
"""
from __future__ import annotations

import copy
import os
import re
from typing import Any, Mapping

import torch

from vitkit.layers import resample_1d, resample_pos_embed
from vitkit.models.mvit import MViT, MViTConfig

from .base import StateDict, load_checkpoint, register_adapter, register_converter, register_official, rename_prefix


# -- detection -------------------------------------------------------------------------------------------------
def _is_torchvision(sd: Mapping[str, torch.Tensor]) -> bool:
    return "conv_proj.weight" in sd and "pos_encoding.class_token" in sd


def _is_timm(sd: Mapping[str, torch.Tensor]) -> bool:
    return any(k.startswith("stages.0.blocks.0.") for k in sd)


def _is_official(sd: Mapping[str, torch.Tensor]) -> bool:
    return "head.projection.weight" in sd or any(re.match(r"blocks\.\d+\.attn\.q\.weight$", k) for k in sd)


# -- converters ------------------------------------------------------------------------------------------------
def _fuse_qkv(sd: StateDict) -> StateDict:
    """Separate ``attn.q/k/v`` (v1-era PySlowFast) -> fused ``attn.qkv`` (rows q, k, v)."""
    out: StateDict = {}
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for k, v in sd.items():
        m = re.match(r"(blocks\.\d+\.attn)\.([qkv])\.(weight|bias)$", k)
        if m:
            parts.setdefault(f"{m.group(1)}.qkv.{m.group(3)}", {})[m.group(2)] = v
        else:
            out[k] = v
    for k, p in parts.items():
        if set(p) != {"q", "k", "v"}:
            raise KeyError(f"{k}: incomplete q/k/v projections in the checkpoint ({sorted(p)})")
        out[k] = torch.cat([p["q"], p["k"], p["v"]], dim=0)
    return out


def _squeeze_time(sd: StateDict, model) -> StateDict:
    """Official image checkpoints store 3-D pooling kernels with T=1: squeeze them for a 2-D model."""
    if getattr(model, "spatial_rank", 3) != 2:
        return sd
    for k, v in sd.items():
        if re.search(r"(attn\.pool_[qkv]|patch_embed\.proj)\.weight$", k) and v.ndim == 5 and v.shape[2] == 1:
            sd[k] = v.squeeze(2)
    return sd


@register_converter("mvit", "pyslowfast", _is_official)
def from_official_layout(sd: StateDict, model) -> StateDict:
    out = {("head." + k[len("head.projection."):] if k.startswith("head.projection.") else k): v
           for k, v in _fuse_qkv(sd).items()}
    return _squeeze_time(out, model)


_TV_BLOCK = [
    ("attn.project.0.", "attn.proj."),
    ("attn.pool_q.pool.", "attn.pool_q."), ("attn.pool_k.pool.", "attn.pool_k."), ("attn.pool_v.pool.", "attn.pool_v."),
    ("attn.pool_q.norm_act.0.", "attn.norm_q."), ("attn.pool_k.norm_act.0.", "attn.norm_k."),
    ("attn.pool_v.norm_act.0.", "attn.norm_v."),
    ("mlp.0.", "mlp.fc1."), ("mlp.3.", "mlp.fc2."), ("project.", "proj."),
]


@register_converter("mvit", "torchvision", _is_torchvision)
def from_torchvision(sd: StateDict, model) -> StateDict:
    out: StateDict = {}
    top = {
        "conv_proj.weight": "patch_embed.proj.weight", "conv_proj.bias": "patch_embed.proj.bias",
        "head.1.weight": "head.weight", "head.1.bias": "head.bias",
    }
    for k, v in sd.items():
        if k in top:
            out[top[k]] = v
        elif k.startswith("pos_encoding."):
            name = k[len("pos_encoding."):]
            dst = {"class_token": "cls_token", "class_pos": "pos_embed_class", "spatial_pos": "pos_embed_spatial",
                   "temporal_pos": "pos_embed_temporal"}.get(name, k)
            out[dst] = v.reshape(1, -1, v.shape[-1])
        else:
            m = re.match(r"(blocks\.\d+\.)(.+)", k)
            rest = m.group(2) if m else None
            if rest is not None:
                out[m.group(1) + rename_prefix(rest, list(_TV_BLOCK))] = v
            else:
                out[k] = v
    return out


@register_converter("mvit", "timm", _is_timm)
def from_timm(sd: StateDict, model) -> StateDict:
    depths: dict[int, int] = {}
    for k in sd:
        m = re.match(r"stages\.(\d+)\.blocks\.(\d+)\.", k)
        if m:
            s, b = int(m.group(1)), int(m.group(2))
            depths[s] = max(depths.get(s, 0), b + 1)
    offsets, total = {}, 0
    for s in sorted(depths):
        offsets[s] = total
        total += depths[s]
    out: StateDict = {}
    for k, v in sd.items():
        m = re.match(r"stages\.(\d+)\.blocks\.(\d+)\.(.+)", k)
        if m:
            rest = re.sub(r"^shortcut_proj_(attn|mlp)\.", "proj.", m.group(3))
            out[f"blocks.{offsets[int(m.group(1))] + int(m.group(2))}.{rest}"] = v
        elif k.startswith("head.fc."):
            out["head." + k[len("head.fc."):]] = v
        else:
            out[k] = v
    return out


@register_adapter("mvit")
def adapt(sd: StateDict, model, resampled: list[str]) -> StateDict:
    """Resample position embeddings and relative-position tables to the model's sizes."""
    own = model.state_dict()
    for name, t in list(sd.items()):
        if name not in own or t.shape == own[name].shape:
            continue
        if name == "pos_embed_spatial":
            sd[name] = resample_pos_embed(t, model.grid[1:], None, 0)
        elif name == "pos_embed_temporal":
            sd[name] = resample_pos_embed(t, model.grid[:1], (t.shape[1],), 0)
        elif name == "pos_embed" and model.spatial_rank == 2:
            sd[name] = resample_pos_embed(t, model.grid, None, model.num_prefix_tokens)
        elif "rel_pos_" in name and t.ndim == 2 and t.shape[1] == own[name].shape[1]:
            sd[name] = resample_1d(t, own[name].shape[0])
        else:
            continue
        resampled.append(name)
    return sd


# -- official configuration ------------------------------------------------------------------------------------
#: PySlowFast ``slowfast/config/defaults.py`` values of the keys MViT reads (commit 287ec00).
OFFICIAL_DEFAULTS: dict[str, dict[str, Any]] = {
    "MVIT": {
        "MODE": "conv", "POOL_FIRST": False, "CLS_EMBED_ON": True, "PATCH_KERNEL": [3, 7, 7],
        "PATCH_STRIDE": [2, 4, 4], "PATCH_PADDING": [2, 4, 4], "PATCH_2D": False, "EMBED_DIM": 96,
        "NUM_HEADS": 1, "MLP_RATIO": 4.0, "QKV_BIAS": True, "DROPPATH_RATE": 0.1, "LAYER_SCALE_INIT_VALUE": 0.0,
        "DEPTH": 16, "NORM": "layernorm", "DIM_MUL": [], "HEAD_MUL": [], "POOL_KV_STRIDE": [],
        "POOL_KV_STRIDE_ADAPTIVE": None, "POOL_Q_STRIDE": [], "POOL_KVQ_KERNEL": None, "ZERO_DECAY_POS_CLS": True,
        "NORM_STEM": False, "SEP_POS_EMBED": False, "DROPOUT_RATE": 0.0, "USE_ABS_POS": True,
        "REL_POS_SPATIAL": False, "REL_POS_TEMPORAL": False, "REL_POS_ZERO_INIT": False, "RESIDUAL_POOLING": False,
        "DIM_MUL_IN_ATT": False, "SEPARATE_QKV": False, "HEAD_INIT_SCALE": 1.0, "USE_MEAN_POOLING": False,
        "USE_FIXED_SINCOS_POS": False, "REV": {"ENABLE": False},
    },
    "DATA": {"NUM_FRAMES": 8, "TRAIN_CROP_SIZE": 224, "TEST_CROP_SIZE": 256, "INPUT_CHANNEL_NUM": [3, 3]},
    "MODEL": {"NUM_CLASSES": 400, "DROPOUT_RATE": 0.5, "HEAD_ACT": "softmax", "MODEL_NAME": "MViT"},
}


def _merge(base: dict, over: Mapping) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def resolve_official_config(config: str | os.PathLike | Mapping) -> dict:
    """The official yacs configuration (nested dict or YAML path) merged over the official defaults.

    Dotted top-level keys (``"MVIT.DEPTH": 4``, as in a command-line override list) are expanded.
    """
    if isinstance(config, (str, os.PathLike)):
        import yaml

        path = os.fspath(config)
        if not os.path.exists(path):
            raise FileNotFoundError(f"official config not found: {path}")
        with open(path) as f:
            config = yaml.safe_load(f) or {}
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a nested dict or a YAML path, got {type(config).__name__}")
    nested: dict = {}
    for k, v in config.items():
        if "." in k:
            head, _, tail = k.partition(".")
            nested = _merge(nested, {head: {tail: v}})
        else:
            nested = _merge(nested, {k: v})
    return _merge(OFFICIAL_DEFAULTS, nested)


def _drop_time(values, what: str) -> tuple[int, ...]:
    values = tuple(int(v) for v in values)
    if len(values) == 3:
        if values[0] != 1:
            raise ValueError(f"{what} {values}: a 2-D (PATCH_2D) model needs a temporal value of 1")
        return values[1:]
    return values


def official_to_config(config: str | os.PathLike | Mapping):
    """Translate an official PySlowFast configuration into an :class:`~vitkit.models.mvit.MViTConfig`."""
    c = resolve_official_config(config)
    mv, data, model = c["MVIT"], c["DATA"], c["MODEL"]
    unsupported = {
        "POOL_FIRST": mv.get("POOL_FIRST"), "NORM_STEM": mv.get("NORM_STEM"),
        "USE_MEAN_POOLING": mv.get("USE_MEAN_POOLING"), "USE_FIXED_SINCOS_POS": mv.get("USE_FIXED_SINCOS_POS"),
        "LAYER_SCALE_INIT_VALUE": mv.get("LAYER_SCALE_INIT_VALUE"), "REV.ENABLE": (mv.get("REV") or {}).get("ENABLE"),
    }
    bad = [k for k, v in unsupported.items() if v]
    if mv.get("MODE") not in ("conv", "max", "avg"):
        bad.append(f"MODE={mv.get('MODE')}")
    if mv.get("NORM", "layernorm") != "layernorm":
        bad.append(f"NORM={mv.get('NORM')}")
    if bad:
        raise NotImplementedError(f"official MViT options not supported by vitkit: {bad}")
    image = bool(mv["PATCH_2D"])
    fix = (lambda v, what: _drop_time(v, what)) if image else (lambda v, what: tuple(int(x) for x in v))

    def entries(rows, what):
        return tuple((int(r[0]), *fix(r[1:], what)) for r in rows)

    kernel = mv["POOL_KVQ_KERNEL"]
    adaptive = mv["POOL_KV_STRIDE_ADAPTIVE"]
    return MViTConfig(
        img_size=int(data["TRAIN_CROP_SIZE"]),
        num_frames=None if image else int(data["NUM_FRAMES"]),
        in_chans=int(data["INPUT_CHANNEL_NUM"][0]),
        num_classes=int(model["NUM_CLASSES"]),
        embed_dim=int(mv["EMBED_DIM"]), depth=int(mv["DEPTH"]), num_heads=int(mv["NUM_HEADS"]),
        mlp_ratio=float(mv["MLP_RATIO"]), qkv_bias=bool(mv["QKV_BIAS"]),
        patch_kernel=fix(mv["PATCH_KERNEL"], "PATCH_KERNEL"), patch_stride=fix(mv["PATCH_STRIDE"], "PATCH_STRIDE"),
        patch_padding=fix(mv["PATCH_PADDING"], "PATCH_PADDING"),
        dim_mul=tuple((int(i), float(m)) for i, m in mv["DIM_MUL"]),
        head_mul=tuple((int(i), float(m)) for i, m in mv["HEAD_MUL"]),
        pool_q_stride=entries(mv["POOL_Q_STRIDE"], "POOL_Q_STRIDE"),
        pool_kv_stride=entries(mv["POOL_KV_STRIDE"], "POOL_KV_STRIDE") if adaptive is None else (),
        pool_kv_stride_adaptive=None if adaptive is None else fix(adaptive, "POOL_KV_STRIDE_ADAPTIVE"),
        pool_kvq_kernel=None if kernel is None else fix(kernel, "POOL_KVQ_KERNEL"),
        mode=mv["MODE"], cls_embed_on=bool(mv["CLS_EMBED_ON"]), sep_pos_embed=bool(mv["SEP_POS_EMBED"]),
        use_abs_pos=bool(mv["USE_ABS_POS"]), rel_pos_spatial=bool(mv["REL_POS_SPATIAL"]),
        rel_pos_temporal=bool(mv["REL_POS_TEMPORAL"]), residual_pooling=bool(mv["RESIDUAL_POOLING"]),
        dim_mul_in_att=bool(mv["DIM_MUL_IN_ATT"]),
        global_pool="token" if mv["CLS_EMBED_ON"] else "avg",
        drop_rate=float(model["DROPOUT_RATE"]), attn_drop_rate=float(mv["DROPOUT_RATE"]),
        drop_path_rate=float(mv["DROPPATH_RATE"]),
    )


@register_official("mvit")
def build_official(state_dict: StateDict, config) -> torch.nn.Module:
    """Build the vitkit MViT that an official PySlowFast config describes and load the official weights strictly.

    The model returns logits; PySlowFast's ``TransformerBasicHead`` applies softmax at eval time on top of them.
    """
    model = MViT(official_to_config(config))
    load_checkpoint(model, state_dict, strict=True)
    return model.eval()
