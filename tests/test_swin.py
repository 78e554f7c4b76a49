"""Swin / Video Swin: official fixture, key manifests, paper figures, converted timm / torchvision / Hugging Face
models, windows against a brute-force reference, odd sizes, clipped windows, table resampling, errors."""
from __future__ import annotations

import ast
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import vitkit
from vitkit.checkpoints import CheckpointError, convert_state_dict, from_official, load_checkpoint
from vitkit.checkpoints.swin import config_from_official
from vitkit.layers import resample_rel_pos_table
from vitkit.models.swin import SwinBlock, SwinConfig, SwinTransformer

from op_calls import OpCalls
from reference_data import fixture, needs, reference

REF = reference("")  # manifests: carried in tests/fixtures/reference
FIXTURE = fixture("swin_public")  # 7 MB: read from shared/reference when present


def _randomise(model: torch.nn.Module) -> torch.nn.Module:
    """Random norms, biases and bias tables, so no layer is an identity and every converted key matters."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1 or "relative_position_bias_table" in name:
                base = 1.0 if name.endswith("weight") else 0.0
                p.copy_(base + 0.3 * torch.randn(p.shape, generator=g))
    return model.eval()


def _tiny(**kw) -> SwinTransformer:
    cfg = dict(embed_dim=24, depths=(2, 2, 2, 2), num_heads=(1, 2, 3, 6), num_classes=10)
    cfg.update(kw)
    return _randomise(SwinTransformer(SwinConfig(**cfg)))


# -- official fixture and manifests ----------------------------------------------------------------------------
def _fixture():
    from safetensors.torch import load_file

    tensors = load_file(f"{FIXTURE}.safetensors")
    meta = json.loads(Path(f"{FIXTURE}.json").read_text())
    sd = {k[len("state_dict."):]: v for k, v in tensors.items() if k.startswith("state_dict.")}
    return tensors, meta, sd


@needs("fixtures/swin_public.safetensors")
def test_official_fixture_reproduced():
    tensors, meta, sd = _fixture()
    model = from_official("swin", sd, meta["constructor"])
    assert sum(p.numel() for p in model.parameters()) == meta["num_params"]
    with torch.no_grad():
        feats = model.forward_features(tensors["input"])
        logits = model.forward_head(feats)
        pooled = model.forward_head(feats, pre_logits=True)
    assert (logits - tensors["logits"]).abs().max() <= 1e-5
    assert (pooled - tensors["features"]).abs().max() <= 1e-5


@needs("fixtures/swin_public.safetensors")
def test_official_buffers_are_recomputed_not_trusted():
    tensors, meta, sd = _fixture()
    assert any(k.endswith("attn_mask") for k in sd) and any(k.endswith("relative_position_index") for k in sd)
    bad = {k: (torch.zeros_like(v) if k.endswith(("attn_mask", "relative_position_index")) else v) for k, v in sd.items()}
    model = from_official("swin", bad, meta["constructor"])
    with torch.no_grad():
        assert (model(tensors["input"]) - tensors["logits"]).abs().max() <= 1e-5


@pytest.mark.parametrize("path", sorted((REF / "manifests").glob("swin_*.json")), ids=lambda p: p.stem)
def test_official_manifest_keys_load(path):
    manifest = json.loads(path.read_text())
    args = ast.literal_eval(manifest["source"].split("SwinTransformer(", 1)[1].rsplit(")", 1)[0])
    with torch.device("meta"):
        model = SwinTransformer(config_from_official(args))
    sd = {k: torch.empty(shape, device="meta") for k, shape in manifest["keys"]}
    converted, layout = convert_state_dict(sd, model)
    own = model.state_dict()
    assert layout == "official"
    assert sorted(converted) == sorted(own), set(converted) ^ set(own)
    assert all(converted[k].shape == own[k].shape for k in own)
    assert sum(p.numel() for p in model.parameters()) == manifest["num_params"]
    # the registered variant of the same name has exactly these parameters too
    with torch.device("meta"):
        registered = vitkit.create_model(path.stem)
    assert {k: v.shape for k, v in registered.state_dict().items()} == {k: v.shape for k, v in own.items()}


def test_from_official_rejects_unknown_arguments():
    with pytest.raises(TypeError, match="unknown official SwinTransformer argument"):
        config_from_official({"embed_dim": 96, "windowsize": 7})


# -- paper figures ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name,params,macs",
    [
        ("swin_tiny_patch4_window7_224", 28.3, 4.5),
        ("swin_small_patch4_window7_224", 49.6, 8.7),
        ("swin_base_patch4_window7_224", 87.8, 15.4),
        ("swin_base_patch4_window12_384", 87.9, 47.0),
        ("swin_large_patch4_window7_224", 196.5, 34.5),
    ],
)
def test_paper_params_and_macs(name, params, macs):
    info = vitkit.profile(name)
    assert abs(info.params / 1e6 - params) / params <= 1e-3
    assert abs(info.macs / 1e9 - macs) / macs <= 0.03


def test_video_swin_figures_match_torchvision():
    # torchvision swin3d_t: 28,158,070 parameters; 43.88 GFLOPs(MACs) at 16 frames = half of the paper's 88 G at 32
    info = vitkit.profile("swin3d_tiny", input_size=(3, 16, 224, 224))
    assert info.params == 28_158_070
    assert abs(info.macs / 1e9 - 43.88) / 43.88 <= 0.01


# -- parity with other libraries -------------------------------------------------------------------------------
def test_timm_swin_tiny_parity():
    timm = pytest.importorskip("timm")
    ref = _randomise(timm.create_model("swin_tiny_patch4_window7_224", pretrained=False))
    model = vitkit.create_model("swin_tiny_patch4_window7_224").eval()
    report = load_checkpoint(model, ref.state_dict())
    assert report.source == "timm" and report.ok
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert (model(x) - ref(x)).abs().max() <= 1e-5


def test_torchvision_swin_t_parity_including_padded_sizes():
    torchvision = pytest.importorskip("torchvision")
    ref = _randomise(torchvision.models.swin_t())
    model = vitkit.create_model("swin_tiny_patch4_window7_224").eval()
    report = load_checkpoint(model, ref.state_dict())
    assert report.source == "torchvision" and report.ok
    # 200x216: stage maps 50x54, 25x27, 13x14, 7x7 - padding to the window and odd patch merging in every
    # stage, shifted windows with masks on padded maps, and the same window rule as torchvision
    for shape in [(1, 3, 224, 224), (2, 3, 200, 216)]:
        x = torch.randn(shape)
        with torch.no_grad():
            assert (model(x) - ref(x)).abs().max() <= 1e-5, shape


@pytest.fixture(scope="module")
def swin3d_pair():
    """torchvision ``swin3d_t`` (randomised) and vitkit's ``swin3d_tiny`` with its weights, default config."""
    torchvision = pytest.importorskip("torchvision")
    ref = _randomise(torchvision.models.video.swin3d_t())
    model = vitkit.create_model("swin3d_tiny").eval()
    report = load_checkpoint(model, ref.state_dict())
    assert report.source == "torchvision-3d" and report.ok
    return model, ref


# Clip sizes (B, C, T, H, W) -> token maps per stage (T, H, W), window 8x7x7 (shift 4x3x3):
SWIN3D_SIZES = [
    # 4x16x16, 4x8x8, 4x4x4, 4x2x2: time clipped to 4 (unshifted) everywhere, H/W shifted in stages 1-2
    # (stage 2 padded to 14), clipped to the map in stages 3-4 (smaller than the window)
    (1, 3, 8, 64, 64),
    # 9x16x12, 9x8x6, 9x4x3, 9x2x2: 9 > 8 tokens in time, so a temporal shift on a map padded to 16; W padded
    # to 14 and shifted in stage 1, clipped from stage 2; odd patch merging (3 -> 2)
    (1, 3, 18, 64, 48),
    # odd everything: 5 frames padded to 6 (3 tokens), 10x14 -> 5x7 -> 3x4 -> 2x2
    (2, 3, 5, 40, 56),
    # one frame: padded to the 2-frame patch, a single token in time
    (1, 3, 1, 32, 32),
]


@pytest.mark.parametrize("shape", SWIN3D_SIZES, ids=lambda s: "x".join(map(str, s[2:])))
def test_torchvision_swin3d_t_parity_at_any_size(swin3d_pair, shape):
    """The official Video Swin window rule at run time (window = min(window, map) per axis, no shift there,
    the full index sliced for a clipped window) matches torchvision at clip sizes the default never sees."""
    model, ref = swin3d_pair
    x = torch.randn(shape)
    with torch.no_grad():
        assert (model(x) - ref(x)).abs().max() <= 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("shape", [(1, 3, 16, 224, 224), (1, 3, 12, 160, 192)], ids=["16x224x224", "12x160x192"])
def test_torchvision_swin3d_t_parity_full_clip(swin3d_pair, shape):
    # 16x224^2: 8x56x56 ... 8x7x7 (the last stage exactly one window, unshifted); 12x160x192: 6x40x48 ... 6x5x6
    model, ref = swin3d_pair
    x = torch.randn(shape)
    with torch.no_grad():
        assert (model(x) - ref(x)).abs().max() <= 1e-5


def test_window_bias_default_follows_each_family():
    assert SwinConfig(num_frames=8).clipped_bias == "slice"  # official Video Swin / torchvision swin3d
    assert SwinConfig().clipped_bias == "offset"
    assert SwinConfig(num_frames=8, clipped_window_bias="offset").clipped_bias == "offset"
    model = vitkit.create_model("swin3d_tiny", embed_dim=24, depths=(1, 1), num_heads=(1, 2))
    assert model.layers[0].blocks[0].attn.clipped_bias == "slice"
    with pytest.raises(ValueError, match="clipped_window_bias"):
        SwinTransformer(SwinConfig(clipped_window_bias="nearest"))


def _hf_tiny(**kw):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.SwinConfig(embed_dim=24, depths=[2, 2, 2, 2], num_heads=[1, 2, 3, 6], num_labels=10, **kw)
    return _randomise(transformers.SwinForImageClassification(cfg)), cfg


def test_huggingface_swin_parity():
    ref, cfg = _hf_tiny()
    model = _tiny()
    report = load_checkpoint(model, ref.state_dict())
    assert report.source == "huggingface" and report.ok
    for shape in [(2, 3, 224, 224), (1, 3, 200, 216)]:
        x = torch.randn(shape)
        with torch.no_grad():
            assert (model(x) - ref(pixel_values=x).logits).abs().max() <= 1e-5, shape


def test_wrong_layout_is_reported():
    model = _tiny()
    sd = {k: v for k, v in model.state_dict().items() if "layers.1.blocks.0.mlp" not in k}
    with pytest.raises(CheckpointError, match="missing keys"):
        load_checkpoint(model, sd)


# -- windows against a brute-force reference -------------------------------------------------------------------
def _reference_block(block: SwinBlock, x: torch.Tensor) -> torch.Tensor:
    """Global attention over the explicitly zero-padded normalised map; a pair may attend iff, along every axis,
    floor((p - shift) / window) agrees (same shifted window, not wrapped around); bias from the pair's offset."""
    from vitkit.layers.windows import fit_window, padded_grid

    B, *grid, C = x.shape
    window, shift = fit_window(grid, block.window_size, block.shift_size)
    padded = padded_grid(grid, window)
    h = block.norm1(x)
    pad = []
    for g, p in zip(reversed(grid), reversed(padded)):
        pad += [0, p - g]
    h = F.pad(h, [0, 0] + pad).reshape(B, -1, C)
    pos = torch.stack(torch.meshgrid(*[torch.arange(p) for p in padded], indexing="ij"), -1).reshape(-1, len(grid))
    group = torch.div(pos - torch.tensor(shift), torch.tensor(window), rounding_mode="floor")
    allowed = (group[:, None, :] == group[None, :, :]).all(-1)
    attn = block.attn
    table_w = torch.tensor(attn.table_window)
    rel = (pos[:, None, :] - pos[None, :, :]).clamp(-(table_w - 1), table_w - 1) + table_w - 1
    sizes = [2 * w - 1 for w in attn.table_window]
    strides = torch.tensor([math.prod(sizes[d + 1:]) for d in range(len(sizes))])
    bias = attn.relative_position_bias_table[(rel * strides).sum(-1)].permute(2, 0, 1)  # (heads, L, L)
    qkv = attn.qkv(h).reshape(B, -1, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    logits = (q * attn.scale) @ k.transpose(-2, -1) + bias
    logits = logits.masked_fill(~allowed, float("-inf"))
    out = (logits.softmax(-1) @ v).transpose(1, 2).reshape(B, -1, C)
    out = attn.proj(out).reshape(B, *padded, C)[(slice(None), *[slice(0, g) for g in grid])]
    x = x + out
    return x + block.mlp(block.norm2(x))


@pytest.mark.parametrize(
    "grid,window,shift",
    [
        ((13, 17), (7, 7), (3, 3)),  # padded, shifted, non-square
        ((7, 11), (7, 7), (3, 3)),  # H clipped to the map (no shift there), W padded and shifted
        ((9, 9), (7, 7), (0, 0)),  # padded, unshifted
        ((3, 9, 11), (2, 3, 3), (1, 1, 1)),  # 3-D, padded in every axis
        ((5, 6, 4), (8, 3, 3), (4, 1, 1)),  # 3-D, T clipped, H exact, W padded
    ],
)
@pytest.mark.parametrize("train", [False, True])
def test_window_attention_matches_brute_force(grid, window, shift, train):
    """Evaluation (one cached bias-plus-mask tensor, SDPA) and training (bias and mask added to the scores apart,
    explicit): the block's output, and in training every parameter's gradient, equal the brute-force block's."""
    cfg = SwinConfig(embed_dim=8, num_heads=(2,), depths=(1,))
    block = SwinBlock(8, 2, window, shift, cfg).train(train)
    _randomise(block)
    x = torch.randn(2, *grid, 8)
    with torch.set_grad_enabled(train):
        out, ref = block(x), _reference_block(block, x)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    if train:
        params = list(block.parameters())
        grad_out = torch.randn_like(out)
        for a, b in zip(torch.autograd.grad(out, params, grad_out), torch.autograd.grad(ref, params, grad_out)):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)  # float32 sums in other orders


def test_shifted_window_training_builds_no_bias_plus_mask_tensor():
    """In training the relative position bias and the shift mask are added to the scores one after the other,
    in place: no (windows, heads, N, N) float32 bias-plus-mask tensor is built (nor its bf16 cast, nor the
    float32 cast of its gradient), which at Video Swin's 8x7x7 windows are 30-118 MB each per shifted block."""
    cfg = SwinConfig(embed_dim=8, num_heads=(2,), depths=(1,))
    block = SwinBlock(8, 2, (7, 7), (3, 3), cfg).train()
    _randomise(block)
    x = torch.randn(1, 14, 14, 8, requires_grad=True)
    heads, n = 2, 49

    def scores(func, args, out):  # outputs shaped like attention scores, (..., N, N)
        outs = out if isinstance(out, (tuple, list)) else (out,)
        return [(str(func), tuple(t.shape), t.dtype) for t in outs
                if isinstance(t, torch.Tensor) and t.dim() >= 3 and tuple(t.shape[-2:]) == (n, n)] or None

    with torch.no_grad():
        block(x)  # builds and caches the shift mask (windows, N, N)
    with OpCalls(scores) as calls:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = block(x)
        out.float().sum().backward()
    seen = [record for records in calls.seen for record in records]
    scores = [s for s in seen if s[1] == (4, heads, n, n) or s[1] == (1, 4, heads, n, n)]
    assert scores and all(dtype == torch.bfloat16 for _, _, dtype in scores), scores  # logits, probs, grads
    assert not [s for s in seen if s[2] == torch.float32 and math.prod(s[1]) > heads * n * n], seen
    assert block.attn.relative_position_bias_table.grad is not None


def test_shifted_window_training_multiplies_no_subnormal_numbers(monkeypatch, threads):
    """fp32 training of a shifted block: no batched matrix product (probs v, and the backward's) gets a subnormal
    operand, which x86 cores multiply 5-20x slower, with one thread (flushed softmax) or two (floored); with plain
    softmax the -100 shift mask makes some."""
    import importlib

    attention_module = importlib.import_module("vitkit.layers.attention")  # the package's name is the function
    cfg = SwinConfig(embed_dim=8, num_heads=(2,), depths=(1,))
    block = SwinBlock(8, 2, (7, 7), (3, 3), cfg).train()
    _randomise(block)
    x = torch.randn(1, 14, 14, 8, requires_grad=True)
    tiny = torch.finfo(torch.float32).tiny

    def subnormal_operands(func, args, out):
        counts = [int(((t != 0) & (t.abs() < tiny)).sum()) for t in args if isinstance(t, torch.Tensor)]
        return sum(counts) or None

    def products_with_subnormals() -> list:
        with OpCalls(subnormal_operands, [torch.ops.aten.bmm.default]) as calls:
            block(x).sum().backward()
        return calls.seen

    assert products_with_subnormals() == []
    monkeypatch.setattr(attention_module, "softmax_over_scores", lambda logits, masked: logits.softmax(dim=-1))
    assert products_with_subnormals()


@pytest.mark.parametrize("shape", [(2, 6, 8, 5), (1, 7, 9, 5), (2, 3, 6, 4, 5)])
def test_patch_merging_is_the_official_concat_with_a_one_copy_backward(shape):
    """Patch merging equals the official concat of the 2x2 neighbours (0,0), (1,0), (0,1), (1,1), odd sizes
    padded, 2-D and 3-D, values and gradients; its backward zero-fills no map (strided slices' backward does)."""
    from vitkit.models.swin import PatchMerging

    torch.manual_seed(0)
    merge = PatchMerging(5)
    x = torch.randn(shape, requires_grad=True)
    padded = F.pad(x, (0, 0, 0, shape[-2] % 2, 0, shape[-3] % 2))
    parts = [padded[..., i::2, j::2, :] for j in (0, 1) for i in (0, 1)]  # (0,0), (1,0), (0,1), (1,1)
    ref = merge.reduction(merge.norm(torch.cat(parts, dim=-1)))
    out = merge(x)
    assert torch.equal(out, ref)
    grad = torch.randn_like(out)
    with OpCalls(lambda func, args, out: tuple(args[1]), [torch.ops.aten.slice_backward.default]) as fills:
        (got,) = torch.autograd.grad(out, x, grad)
    (want,) = torch.autograd.grad(ref, x, grad)
    assert torch.equal(got, want) and not fills.seen, fills.seen


def test_masks_and_indices_are_cached():
    from vitkit.layers.windows import relative_position_index, shift_mask, window_order

    assert shift_mask((14, 14), (7, 7), (3, 3)) is shift_mask((14, 14), (7, 7), (3, 3))
    assert window_order((13, 13), (7, 7), (3, 3))[0] is window_order((13, 13), (7, 7), (3, 3))[0]
    assert relative_position_index((7, 7)) is relative_position_index((7, 7))
    assert shift_mask((14, 14), (7, 7), (0, 0)) is None
    m = shift_mask((14, 14), (7, 7), (3, 3))
    assert m.shape == (4, 49, 49) and set(m.unique().tolist()) == {0.0, -100.0}
    assert (m[0] == 0).all()  # the first window holds no wrapped-around tokens


def test_clipped_window_bias_modes():
    from vitkit.layers.windows import relative_position_index

    full = relative_position_index((7, 7))
    assert full.shape == (49, 49) and full.max() == 168 and full[0, 0] == 84
    # offset mode: a 3x3 window reads the entries of its true offsets in the 13x13 table
    small = relative_position_index((3, 3), (7, 7), "offset")
    assert small[0, 0] == 84 and small[0, 1] == 83 and small[0, 3] == 84 - 13
    sliced = relative_position_index((3, 3), (7, 7), "slice")
    torch.testing.assert_close(sliced, full[:9, :9])


# -- odd sizes, window rules, intermediates, errors --------------------------------------------------------------
@pytest.mark.parametrize("size", [(225, 300), (97, 97)])
def test_odd_sizes_equal_explicit_padding(size):
    model = _tiny()
    x = torch.randn(1, 3, *size)
    padded = F.pad(x, (0, -size[1] % 4, 0, -size[0] % 4))
    with torch.no_grad():
        y = model(x)
        assert torch.isfinite(y).all() and y.shape == (1, 10)
        torch.testing.assert_close(y, model(padded), rtol=0, atol=0)
        maps = model.forward_intermediates(x)
    h, w = math.ceil(size[0] / 4), math.ceil(size[1] / 4)
    for i, m in enumerate(maps):
        assert m.shape == (1, 24 * 2**i, h, w)
        h, w = math.ceil(h / 2), math.ceil(w / 2)


def test_official_construction_rule_at_112():
    # official SwinTransformer(img_size=112): stage 4 map 3x3 -> window 3 (5x5 bias table), no shift
    model = vitkit.create_model("swin_tiny_patch4_window7_224", img_size=112)
    last = model.layers[3].blocks
    assert last[1].window_size == (3, 3) and last[1].shift_size == (0, 0)
    assert last[1].attn.relative_position_bias_table.shape == (25, 24)
    assert model.layers[2].blocks[1].shift_size == (0, 0)  # 7x7 map: no shift either
    assert model.layers[1].blocks[1].shift_size == (3, 3)


def test_3d_model_with_unit_time_equals_2d_model():
    """One code: a Video Swin with 1-frame patches and windows is the image Swin on each frame."""
    image = _tiny()
    video = SwinTransformer(SwinConfig(embed_dim=24, depths=(2, 2, 2, 2), num_heads=(1, 2, 3, 6), num_classes=10,
                                       num_frames=1, patch_size=(1, 4, 4), window_size=(1, 7, 7),
                                       clipped_window_bias="offset"))  # the image rule for clipped windows
    sd = dict(image.state_dict())
    sd["patch_embed.proj.weight"] = sd["patch_embed.proj.weight"].unsqueeze(2)
    load_checkpoint(video.eval(), sd)
    x = torch.randn(2, 3, 100, 120)
    with torch.no_grad():
        torch.testing.assert_close(video(x.unsqueeze(2)), image(x), rtol=1e-5, atol=1e-5)


def test_forward_intermediates_strides_224():
    model = _tiny()
    with torch.no_grad():
        maps = model.forward_intermediates(torch.randn(1, 3, 224, 224))
        last = model.forward_intermediates(torch.randn(1, 3, 224, 224), indices=[-1])
    assert [tuple(m.shape[1:]) for m in maps] == [(24, 56, 56), (48, 28, 28), (96, 14, 14), (192, 7, 7)]
    assert len(last) == 1 and last[0].shape == (1, 192, 7, 7)


def test_video_intermediates_shapes():
    model = SwinTransformer(SwinConfig(embed_dim=24, depths=(1, 1, 1, 1), num_heads=(1, 2, 3, 6), num_classes=5,
                                       num_frames=8, patch_size=(2, 4, 4), window_size=(8, 7, 7))).eval()
    with torch.no_grad():
        maps = model.forward_intermediates(torch.randn(1, 3, 8, 64, 96))
    assert [tuple(m.shape[1:]) for m in maps] == [(24, 4, 16, 24), (48, 4, 8, 12), (96, 4, 4, 6), (192, 4, 2, 3)]


def test_bad_inputs_are_clear_errors():
    model = _tiny()
    with pytest.raises(ValueError, match="expects 3 channels"):
        model(torch.randn(1, 1, 64, 64))
    with pytest.raises(ValueError, match=r"4-D input \(B, C, H, W\)"):
        model(torch.randn(1, 3, 4, 64, 64))
    with pytest.raises(ValueError, match="same length"):
        SwinTransformer(SwinConfig(depths=(2, 2), num_heads=(3, 6, 12)))


# -- resampled bias tables ---------------------------------------------------------------------------------------
def test_window12_model_loads_window7_weights_with_bicubic_tables():
    src = _tiny()
    dst = SwinTransformer(SwinConfig(embed_dim=24, depths=(2, 2, 2, 2), num_heads=(1, 2, 3, 6), num_classes=10,
                                     img_size=384, window_size=12))
    report = load_checkpoint(dst, src.state_dict())
    key = "layers.0.blocks.1.attn.relative_position_bias_table"
    assert key in report.resampled
    old = src.state_dict()[key]
    expect = F.interpolate(old.T.reshape(1, -1, 13, 13), size=(23, 23), mode="bicubic", align_corners=False)
    torch.testing.assert_close(dst.state_dict()[key], expect.reshape(-1, 529).T)
    torch.testing.assert_close(dst.state_dict()[key], resample_rel_pos_table(old, (7, 7), (12, 12)))
    with torch.no_grad():
        assert torch.isfinite(dst(torch.randn(1, 3, 384, 384))).all()


# -- precision, training hooks -----------------------------------------------------------------------------------
def test_bf16_matches_fp32_without_nan():
    model = _tiny()
    x = torch.randn(2, 3, 97, 97)  # padded tokens and masks in every stage
    with torch.no_grad():
        ref = model(x)
        low = model.to(torch.bfloat16)(x.to(torch.bfloat16)).float()
    assert torch.isfinite(low).all()
    assert (low - ref).abs().max() <= 0.05 * ref.abs().max() + 0.05


@pytest.mark.parametrize("amp", [False, True])
def test_fused_inference_linears_equal_plain_ops(amp):
    """qkv, proj and patch merging run through the fused CPU linear at inference (bf16 under CPU bf16 autocast
    on CPUs with bf16 units): the same logits as the plain ops, to float32 or bf16 rounding."""
    from vitkit.layers.fused import fused_linear_enabled

    model, x = _tiny().eval(), torch.randn(2, 3, 97, 97)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        with fused_linear_enabled(False):
            ref = model(x).float()
        out = model(x).float()
    tol = 0.05 * ref.abs().max().item() + 0.02 if amp else 1e-5
    torch.testing.assert_close(out, ref, atol=tol, rtol=0)


def test_no_weight_decay_and_layer_ids():
    model = _tiny()
    nwd = model.no_weight_decay()
    assert len(nwd) == 8 and all(n.endswith("relative_position_bias_table") for n in nwd)
    assert model.layer_id("patch_embed.proj.weight") == 0
    assert model.layer_id("layers.0.blocks.0.attn.qkv.weight") == 1
    assert model.layer_id("layers.0.blocks.1.mlp.fc1.weight") == 2
    assert model.layer_id("layers.0.downsample.reduction.weight") == 3
    assert model.layer_id("layers.1.blocks.0.norm1.weight") == 3
    assert model.layer_id("layers.3.blocks.1.norm2.bias") == 8
    assert model.layer_id("norm.weight") == model.layer_id("head.weight") == 9


def test_grad_checkpointing_same_gradients():
    model = _tiny(drop_path_rate=0.0).train()
    x = torch.randn(2, 3, 64, 64)
    model(x).sum().backward()
    ref = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model.set_grad_checkpointing(True)
    model(x).sum().backward()
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, ref[n], rtol=1e-4, atol=1e-6)


@needs("fixtures/swin_public.safetensors")
def test_convert_cli_with_official_yaml(tmp_path):
    from vitkit.cli import main

    tensors, meta, sd = _fixture()
    ckpt = tmp_path / "swin_public.pth"
    torch.save({"model": sd}, ckpt)  # the official training wrapper
    cfg = tmp_path / "swin_public.yaml"
    cfg.write_text(
        "MODEL:\n  TYPE: swin\n  NUM_CLASSES: 10\n  SWIN:\n    EMBED_DIM: 24\n    DEPTHS: [2, 2, 2, 2]\n"
        "    NUM_HEADS: [1, 2, 3, 6]\n    WINDOW_SIZE: 7\nDATA:\n  IMG_SIZE: 224\n"
    )
    out = tmp_path / "converted.safetensors"
    assert main(["convert", str(ckpt), str(out), "--official", "swin", "--config", str(cfg)]) == 0
    model = _tiny()
    report = load_checkpoint(model, str(out))
    assert report.ok
    with torch.no_grad():
        assert (model(tensors["input"]) - tensors["logits"]).abs().max() <= 1e-5


def test_eval_bias_cache_follows_weight_updates():
    model = _tiny()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        before = model(x)
        model.load_state_dict({k: v + torch.randn_like(v) if k.endswith("bias_table") else v for k, v in model.state_dict().items()})
        after = model(x)  # the cached biases must not survive the new weights
    fresh = model(x).detach()  # with gradients: nothing cached
    assert (after - before).abs().max() > 1e-3
    torch.testing.assert_close(after, fresh, rtol=1e-5, atol=1e-6)


def test_bias_cache_not_shared_by_copies():
    import copy

    model = _tiny()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        model(x)  # fills the cache
        twin = copy.deepcopy(model)
        for p in twin.parameters():  # as many in-place updates as the original saw: versions could collide
            p.add_(0.0)
        twin.layers[0].blocks[1].attn.relative_position_bias_table.copy_(torch.randn(169, 1))
    twin.eval()
    fresh = twin(x).detach()  # gradients on: computed, not cached
    with torch.no_grad():
        torch.testing.assert_close(twin(x), fresh, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("grid", [(14, 14), (13, 11)])
def test_window_partition_backward_gathers_without_scattering(grid, monkeypatch):
    """Unpadded, the shifted window partition and its reverse are permutations: their backward gathers with the
    inverse one (no zero-filled index_add_), with the gradients of plain index_select; padded maps keep
    index_select's own backward, and both agree with it."""
    import vitkit.models.swin as swin_module

    cfg = SwinConfig(embed_dim=8, num_heads=(2,), depths=(1,))
    block = _randomise(SwinBlock(8, 2, (7, 7), (3, 3), cfg).train())
    base = torch.randn(2, *grid, 8)
    out_grad = torch.randn(2, *grid, 8)

    def run():
        x = base.clone().requires_grad_()
        block.zero_grad(set_to_none=True)
        y = block(x)
        # on token tensors (B, N, C); the bias table's gather (2-D) keeps its own backward
        with OpCalls(lambda func, args, out: str(func) if args[0].dim() == 3 else None,
                     [torch.ops.aten.index_add_.default, torch.ops.aten.index_add.default]) as scatters:
            y.backward(out_grad)
        return y.detach(), x.grad, block.attn.qkv.weight.grad, scatters.seen

    y, gx, gw, scatters = run()
    monkeypatch.setattr(swin_module, "permute_tokens", lambda t, index, inverse: t.index_select(1, index))
    y0, gx0, gw0, scatters0 = run()
    assert torch.equal(y, y0)
    torch.testing.assert_close(gx, gx0, rtol=0, atol=0)
    torch.testing.assert_close(gw, gw0, rtol=1e-6, atol=1e-6)
    assert len(scatters0) == 2  # index_select's backward: the partition's and the reverse's
    assert len(scatters) == (0 if grid == (14, 14) else 2)


def test_bias_cache_is_left_alone_under_tracing(monkeypatch):
    """Under torch.compile the bias is built in the graph: no cache key (torch 2.11's Dynamo broke the graph on
    ``id(None)`` there, seen on a lent GPU) and no entry."""
    import builtins

    from vitkit.models import swin as S

    attn = S.WindowAttention(8, 2, (4, 4)).eval()
    real_id = builtins.id
    monkeypatch.setattr(S, "is_tracing", lambda: True)
    monkeypatch.setattr(builtins, "id", lambda o: pytest.fail("id() under tracing") if o is None else real_id(o))
    with torch.no_grad():
        traced = attn.attention_bias((4, 4), None, torch.float32)
    monkeypatch.undo()
    assert len(attn._bias_cache._data) == 0
    with torch.no_grad():
        torch.testing.assert_close(traced, attn.attention_bias((4, 4), None, torch.float32))
    assert len(attn._bias_cache._data) == 1
