"""UniFormer: official parity (fixtures, manifests), paper figures, block layout, inflation, windows, errors."""
from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn as nn
from safetensors.torch import load_file

import vitkit
from vitkit.checkpoints import CheckpointError, from_official, load_checkpoint
from vitkit.checkpoints.uniformer import inflate_image_to_video, inflate_weight
from vitkit.layers import explicit_attention
from vitkit.layers.windows import window_partition, window_reverse
from vitkit.models.uniformer import GlobalBlock, LocalBlock, UniFormer, UniFormerConfig

from reference_data import needs, reference

FIX = reference("fixtures/uniformer_image_public.safetensors").parent  # 6 MB each: shared/reference when present
MAN = reference("manifests")  # carried in tests/fixtures/reference
needs_ref = needs("fixtures/uniformer_image_public.safetensors")

TINY = dict(depth=(1, 1, 2, 1), embed_dim=(32, 64, 128, 256), head_dim=32, img_size=64)


def _fixture(kind: str):
    data = load_file(str(FIX / f"uniformer_{kind}_public.safetensors"))
    meta = json.loads((FIX / f"uniformer_{kind}_public.json").read_text())
    sd = {k[len("state_dict."):]: v for k, v in data.items() if k.startswith("state_dict.")}
    return data, meta, sd


# -- parity with the official code ----------------------------------------------------------------------------
@needs_ref
def test_image_fixture_reproduced_through_from_official():
    data, meta, sd = _fixture("image")
    kwargs = {k: v for k, v in meta["constructor"].items() if k not in ("class", "file")}
    model = from_official("uniformer", sd, kwargs)
    assert model.spatial_rank == 2 and model.num_classes == 10
    with torch.no_grad():
        feats = model.forward_features(data["input"])
        logits = model.forward_head(feats)
    assert (feats - data["features"]).abs().max() <= 1e-5
    assert (logits - data["logits"]).abs().max() <= 1e-5
    assert sum(p.numel() for p in model.parameters()) == meta["num_params"]


@needs_ref
def test_video_fixture_reproduced_through_from_official_with_yacs_keys():
    data, meta, sd = _fixture("video")
    c = meta["constructor"]
    nested = {
        "UNIFORMER": {k.split(".")[1]: v for k, v in c.items() if k.startswith("UNIFORMER.")},
        "MODEL": {"NUM_CLASSES": c["MODEL.NUM_CLASSES"]},
        "DATA": {"TRAIN_CROP_SIZE": c["DATA.TRAIN_CROP_SIZE"], "NUM_FRAMES": meta["input_shape"][2]},
    }
    model = from_official("uniformer", sd, nested)
    assert model.spatial_rank == 3 and model.num_classes == 7
    with torch.no_grad():
        feats = model.forward_features(data["input"])
        logits = model(data["input"])
    assert feats.shape == data["features"].shape
    assert (feats - data["features"]).abs().max() <= 1e-5
    assert (logits - data["logits"]).abs().max() <= 1e-5
    assert sum(p.numel() for p in model.parameters()) == meta["num_params"]


@needs_ref
def test_video_official_yaml_config(tmp_path):
    data, meta, sd = _fixture("video")
    c = meta["constructor"]
    (tmp_path / "config.yaml").write_text(
        "TRAIN:\n  ENABLE: False\nDATA:\n  NUM_FRAMES: 8\n  TRAIN_CROP_SIZE: 64\n  INPUT_CHANNEL_NUM: [3]\n"
        f"UNIFORMER:\n  DEPTH: {c['UNIFORMER.DEPTH']}\n  EMBED_DIM: {c['UNIFORMER.EMBED_DIM']}\n"
        "  HEAD_DIM: 32\n  DROP_DEPTH_RATE: 0.1\n  SPLIT: False\n  STD: False\nMODEL:\n  NUM_CLASSES: 7\n"
    )
    model = from_official("uniformer", {"model_state": sd}, str(tmp_path / "config.yaml"))
    with torch.no_grad():
        assert (model(data["input"]) - data["logits"]).abs().max() <= 1e-5


MANIFEST_VARIANT = {
    "uniformer_small": "uniformer_small",
    "uniformer_small_plus": "uniformer_small_plus",
    "uniformer_small_plus_dim64": "uniformer_small_plus_dim64",
    "uniformer_base": "uniformer_base",
    "uniformer_small_video_k400": "uniformer_small_16x4",
    "uniformer_base_video_k400": "uniformer_base_16x4",
}


@needs_ref
@pytest.mark.parametrize("manifest", sorted(MANIFEST_VARIANT))
def test_manifest_keys_and_shapes_match_exactly(manifest):
    man = json.loads((MAN / f"{manifest}.json").read_text())
    with torch.device("meta"):
        model = vitkit.create_model(MANIFEST_VARIANT[manifest])
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs = {k: tuple(s) for k, s in man["keys"]}
    assert sorted(set(theirs) - set(ours)) == [], "missing in vitkit"
    assert sorted(set(ours) - set(theirs)) == [], "unexpected in vitkit"
    assert {k: s for k, s in ours.items() if theirs[k] != s} == {}
    assert sum(p.numel() for p in model.parameters()) == man["num_params"]


@needs_ref
def test_manifest_checkpoint_loads_with_empty_report():
    """A state dict with exactly the official keys (random values, wrapped as the official training code does)."""
    man = json.loads((MAN / "uniformer_small_video_k400.json").read_text())
    g = torch.Generator().manual_seed(0)
    sd = {k: (torch.randn(s, generator=g) if s else torch.tensor(0)) for k, s in man["keys"]}
    model = vitkit.create_model("uniformer_small_16x4")
    report = load_checkpoint(model, {"model_state": sd})
    assert report.ok and not report.missing and not report.unexpected and not report.resampled
    assert torch.equal(model.state_dict()["blocks3.0.attn.qkv.weight"], sd["blocks3.0.attn.qkv.weight"])


# -- paper figures --------------------------------------------------------------------------------------------
# (variant, paper params M (rounded), paper GMACs, official exact params or None)
PAPER = [
    ("uniformer_small", 22, 3.6, 21_545_256),
    ("uniformer_small_plus", 24, 4.2, 24_032_552),
    ("uniformer_base", 50, 8.3, 49_776_552),
    ("uniformer_small_16x4", 21.4, 41.8, 21_400_400),
    ("uniformer_base_16x4", 49.8, 96.7, 49_813_200),
]
PAPER_SLOW = [
    ("uniformer_small_plus_dim64", 24, 4.2, 24_032_552),
    ("uniformer_small_384", None, 11.9, None),
    ("uniformer_small_plus_384", None, 13.7, None),
    ("uniformer_base_384", None, 27.2, None),
    ("uniformer_small_8x8", 21.4, 17.5, 21_400_400),
    ("uniformer_small_32x4", 21.4, 109.6, 21_400_400),
    ("uniformer_base_8x8", 49.8, 40.3, 49_813_200),
    ("uniformer_base_32x4", 49.8, 259, 49_813_200),
]


def _check_paper(name, params_m, macs_g, exact):
    r = vitkit.profile(name)
    if exact is not None:
        assert r.params == exact
    if params_m is not None:
        assert exact == r.params or abs(r.params / 1e6 - params_m) / params_m < 0.005
    assert abs(r.macs / 1e9 - macs_g) / macs_g < 0.03, f"{name}: {r.macs / 1e9:.3f} G vs paper {macs_g}"


@pytest.mark.parametrize("name,params_m,macs_g,exact", PAPER)
def test_paper_params_and_macs(name, params_m, macs_g, exact):
    _check_paper(name, params_m, macs_g, exact)


@pytest.mark.slow
@pytest.mark.parametrize("name,params_m,macs_g,exact", PAPER_SLOW)
def test_paper_params_and_macs_other_variants(name, params_m, macs_g, exact):
    _check_paper(name, params_m, macs_g, exact)


def test_large_follows_the_released_config_not_the_papers_macs():
    """UniFormer-L: 100 M parameters as in the paper (with the token-labeling head), but the released config
    (depths 5-10-24-7, widths 128-192-448-640) counts 19.7 GMACs, not the paper's 12.6 (paper-facts §5)."""
    r = vitkit.profile("uniformer_large")
    assert abs(r.params / 1e6 - 100) / 100 < 0.005
    assert r.params == 100_103_888  # the official token-labeling uniformer_large_ls
    assert abs(r.macs / 1e9 - 19.714) < 0.01
    assert sum(m for name, (_, m) in r.stages.items() if name.startswith("blocks3")) / 1e9 > 11


# -- block layout (traps: head_dim per variant, BN vs LN per stage) ----------------------------------------------
@pytest.mark.parametrize("name,head_dim", [("uniformer_small", 64), ("uniformer_small_plus", 32),
                                           ("uniformer_small_plus_dim64", 64), ("uniformer_base_384", 32),
                                           ("uniformer_large", 64), ("uniformer_base_16x4", 64)])
def test_heads_and_norms_per_stage(name, head_dim):
    with torch.device("meta"):
        model = vitkit.create_model(name)
    bn = nn.BatchNorm3d if model.spatial_rank == 3 else nn.BatchNorm2d
    for i in (1, 2):
        for blk in getattr(model, f"blocks{i}"):
            assert isinstance(blk, LocalBlock)
            assert isinstance(blk.norm1, bn) and isinstance(blk.norm2, bn)
            assert blk.attn.groups == blk.attn.in_channels and blk.attn.kernel_size == (5,) * model.spatial_rank
            assert blk.pos_embed.kernel_size == (3,) * model.spatial_rank
    for i in (3, 4):
        for blk in getattr(model, f"blocks{i}"):
            assert isinstance(blk, GlobalBlock)
            assert isinstance(blk.norm1, nn.LayerNorm) and blk.norm1.eps == 1e-6
            assert blk.attn.head_dim == head_dim and blk.attn.num_heads == model.embed_dim[i - 1] // head_dim
    assert isinstance(model.norm, bn)
    keys = model.state_dict().keys()
    assert "blocks1.0.norm1.running_mean" in keys and "norm.running_var" in keys


def test_video_stem_and_downsampling():
    with torch.device("meta"):
        m = vitkit.create_model("uniformer_small_16x4")
        std = vitkit.create_model("uniformer_small_16x4", std=True)
    c = m.patch_embed1.proj
    assert (c.kernel_size, c.stride, c.padding) == ((3, 4, 4), (2, 4, 4), (1, 0, 0))
    assert m.patch_embed2.proj.kernel_size == (1, 2, 2) and m.patch_embed2.proj.stride == (1, 2, 2)
    assert std.patch_embed3.proj.kernel_size == (3, 2, 2) and std.patch_embed3.proj.padding == (1, 0, 0)
    x = torch.zeros(1, 3, 16, 224, 224, device="meta")
    shapes = [tuple(t.shape) for t in m.forward_intermediates(x)]
    assert shapes == [(1, 64, 8, 56, 56), (1, 128, 8, 28, 28), (1, 320, 8, 14, 14), (1, 512, 8, 7, 7)]


def test_forward_intermediates_image_strides_and_indices():
    model = UniFormer(UniFormerConfig(**TINY, num_classes=5)).eval()
    x = torch.randn(2, 3, 96, 64)
    with torch.no_grad():
        maps = model.forward_intermediates(x)
        assert [tuple(m.shape) for m in maps] == [(2, 32, 24, 16), (2, 64, 12, 8), (2, 128, 6, 4), (2, 256, 3, 2)]
        last = model.forward_intermediates(x, indices=[-1], norm=True)
        torch.testing.assert_close(last[0], model.forward_features(x))
        assert len(model.forward_intermediates(x, indices=2)) == 2


def test_conv_stem_layout_matches_official_keys():
    with torch.device("meta"):
        m = vitkit.create_model("uniformer_small_plus")
    assert [type(l).__name__ for l in m.patch_embed1.proj] == ["Conv2d", "BatchNorm2d", "GELU", "Conv2d",
                                                               "BatchNorm2d"]
    assert m.patch_embed1.proj[0].out_channels == 32 and m.patch_embed2.proj[0].stride == (2, 2)


# -- token labeling, layer scale, optimiser hooks ----------------------------------------------------------------
def test_token_labeling_head():
    torch.manual_seed(0)
    model = UniFormer(UniFormerConfig(**TINY, num_classes=6, return_dense=True)).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        cls, dense = model.forward_dense(x)
        assert dense.shape == (2, 4, 6)
        torch.testing.assert_close(model(x), cls + 0.5 * dense.max(1).values)
    model.reset_classifier(3)
    assert model.aux_head.out_features == 3
    with pytest.raises(RuntimeError, match="return_dense"):
        UniFormer(UniFormerConfig(**TINY)).forward_dense(x)


def test_layer_scale_variants_and_weight_decay_names():
    with torch.device("meta"):
        ls = vitkit.create_model("uniformer_base_ls")
        large = vitkit.create_model("uniformer_large")
    assert ls.blocks1[0].gamma_1 is None and ls.blocks3[0].gamma_1.shape == (320,)
    assert large.blocks1[0].gamma_1.shape == (1, 128, 1, 1) and large.blocks4[0].gamma_2.shape == (640,)
    assert "blocks3.0.gamma_1" in ls.no_weight_decay() and "blocks1.0.gamma_2" in large.no_weight_decay()
    # the 20k LayerScale parameters of the official uniformer_base_ls
    assert sum(p.numel() for p in ls.parameters()) - 49_776_552 == 2 * (20 * 320 + 7 * 512)


def test_layer_ids_follow_forward_order():
    with torch.device("meta"):
        m = vitkit.create_model("uniformer_small")
    n = sum(m.depth)
    assert m.num_layer_ids() == n + 2
    assert m.layer_id("patch_embed1.proj.weight") == 0
    assert m.layer_id("blocks1.0.conv1.weight") == 1
    assert m.layer_id("patch_embed2.proj.weight") == m.layer_id("blocks2.0.norm1.weight") == 4
    assert m.layer_id("blocks4.2.mlp.fc2.bias") == n
    assert m.layer_id("norm.weight") == m.layer_id("head.weight") == n + 1
    ids = [m.layer_id(k) for k, _ in m.named_parameters()]
    assert ids == sorted(ids)


# -- attention: fused vs explicit, windows, hybrid ---------------------------------------------------------------
def test_sdpa_and_explicit_attention_agree():
    torch.manual_seed(0)
    model = UniFormer(UniFormerConfig(**TINY, num_frames=4, num_classes=5)).eval()
    x = torch.randn(1, 3, 4, 64, 64)
    with torch.no_grad():
        a = model(x)
        with explicit_attention():
            b = model(x)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_window_partition_roundtrip_2d_and_3d():
    for grid, win in [((6, 8), (3, 4)), ((4, 6, 8), (2, 3, 4))]:
        x = torch.randn(2, *grid, 5)
        w = window_partition(x, win)
        assert w.shape == (2 * math.prod(g // s for g, s in zip(grid, win)), math.prod(win), 5)
        assert torch.equal(window_reverse(w, win, grid), x)


def test_window_covering_the_map_equals_global_attention():
    torch.manual_seed(0)
    cfg = UniFormerConfig(**TINY)
    blk = GlobalBlock(cfg, 32, 2, 0.0).eval()
    win = GlobalBlock(cfg, 32, 2, 0.0, window=(6, 5)).eval()
    win.load_state_dict(blk.state_dict())
    x = torch.randn(2, 32, 6, 5)
    with torch.no_grad():
        torch.testing.assert_close(win(x), blk(x))


def test_windows_do_not_mix_and_padding_is_cropped():
    torch.manual_seed(0)
    cfg = UniFormerConfig(**TINY)
    blk = GlobalBlock(cfg, 32, 2, 0.0, window=(4, 4)).eval()
    x = torch.randn(1, 32, 6, 7)  # padded to 8 x 8: windows rows 0-3 / 4-7, cols 0-3 / 4-7
    y = x.clone()
    y[..., 5, 6] += 1.0  # a token of the bottom-right window (its DPE reaches rows 4-6, cols 5-6)
    with torch.no_grad():
        a, b = blk(x), blk(y)
    assert a.shape == x.shape
    torch.testing.assert_close(a[..., :4, :], b[..., :4, :], atol=1e-6, rtol=0)
    torch.testing.assert_close(a[..., :, :4], b[..., :, :4], atol=1e-6, rtol=0)
    assert not torch.allclose(a[..., 4:, 4:], b[..., 4:, 4:])


def test_hybrid_layout_and_window_option_run():
    with torch.device("meta"):
        m = vitkit.create_model("uniformer_base", hybrid=True, window_size=14)
        w = vitkit.create_model("uniformer_small", windows=True)
    kinds = ["G" if b.window is None else "W" for b in m.blocks3]
    assert kinds == (["W", "W", "W", "G"] * 5)
    assert all(b.window is None for b in m.blocks4)
    assert all(b.window == (14, 14) for b in w.blocks3)
    model = UniFormer(UniFormerConfig(**{**TINY, "depth": (1, 1, 4, 1)}, hybrid=True, window_size=2)).eval()
    with torch.no_grad():
        out = model.forward_intermediates(torch.randn(1, 3, 160, 96))
    assert tuple(out[2].shape) == (1, 128, 10, 6)
    with pytest.raises(ValueError, match="exclusive"):
        UniFormer(UniFormerConfig(**TINY, hybrid=True, windows=True))


# -- inflation (image weights -> video model) ------------------------------------------------------------------
def _image_and_video(num_classes: int = 5):
    torch.manual_seed(0)
    img = UniFormer(UniFormerConfig(**TINY, num_classes=num_classes))
    for m in img.modules():  # non-trivial BatchNorm statistics
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    vid = UniFormer(UniFormerConfig(**TINY, num_classes=num_classes, num_frames=8))
    return img.eval(), vid.eval()


def test_inflate_weight_official_rule():
    w = torch.randn(4, 1, 5, 5)
    avg = inflate_weight(w, 5)
    assert avg.shape == (4, 1, 5, 5, 5)
    torch.testing.assert_close(avg.sum(2), w)
    assert torch.equal(avg[:, :, 0], avg[:, :, 4])
    c = inflate_weight(w, 3, center=True)
    assert torch.equal(c[:, :, 1], w) and not c[:, :, 0].any() and not c[:, :, 2].any()


def test_center_inflated_video_model_equals_image_model_on_a_static_clip():
    img, vid = _image_and_video()
    sd = inflate_image_to_video(img.state_dict(), vid, center=True)
    assert load_checkpoint(vid, sd).ok
    frame = torch.randn(2, 3, 64, 64)
    clip = frame.unsqueeze(2).expand(-1, -1, 6, -1, -1).contiguous()
    with torch.no_grad():
        torch.testing.assert_close(vid(clip), img(frame), atol=1e-5, rtol=1e-5)
        one = vid(frame.unsqueeze(2))  # a single frame: T=1
        torch.testing.assert_close(one, img(frame), atol=1e-5, rtol=1e-5)


def test_loading_image_weights_into_a_video_model_inflates_and_reports(tmp_path):
    img, _ = _image_and_video(num_classes=10)
    from safetensors.torch import save_file

    path = tmp_path / "image.safetensors"
    save_file(img.state_dict(), str(path))
    vid = UniFormer(UniFormerConfig(**TINY, num_classes=7, num_frames=8))
    with pytest.raises(CheckpointError, match="head.weight"):
        load_checkpoint(vid, path)  # a 10-class head does not fit a 7-class model: strict says so
    report = load_checkpoint(vid, path, strict=False)
    assert [k for k, *_ in report.mismatched] == ["head.bias", "head.weight"]
    assert any(r.startswith("patch_embed1.proj.weight") for r in report.resampled)
    w2, w3 = img.state_dict()["blocks1.0.attn.weight"], vid.state_dict()["blocks1.0.attn.weight"]
    torch.testing.assert_close(w3, w2.unsqueeze(2).expand(-1, -1, 5, -1, -1) / 5)
    with pytest.warns(UserWarning, match="head.weight"):
        sd = inflate_image_to_video(img.state_dict(), vid)
    assert "head.weight" not in sd


# -- clear errors -----------------------------------------------------------------------------------------------
def test_bad_inputs_and_configs_are_clear_errors():
    model = UniFormer(UniFormerConfig(**TINY))
    with pytest.raises(ValueError, match="divisible by 32"):
        model(torch.randn(1, 3, 64, 50))
    with pytest.raises(ValueError, match="4-D input"):
        model(torch.randn(1, 3, 4, 64, 64))
    with pytest.raises(ValueError, match="4 stages"):
        UniFormer(UniFormerConfig(depth=(1, 1, 1)))
    with pytest.raises(ValueError, match="head_dim"):
        UniFormer(UniFormerConfig(**{**TINY, "head_dim": 48}))
    with pytest.raises(ValueError, match="stage_types"):
        UniFormer(UniFormerConfig(**TINY, stage_types=("local", "conv", "global", "global")))
    with pytest.raises(ValueError, match="conv_stem"):
        UniFormer(UniFormerConfig(**TINY, conv_stem=True, num_frames=8))


@needs_ref
def test_official_config_errors():
    _, meta, sd = _fixture("video")
    with pytest.raises(ValueError, match="head_dim"):
        from_official("uniformer", sd, None)
    with pytest.raises(CheckpointError, match="video weights"):
        from_official("uniformer", sd, {"depth": [1, 1, 2, 1], "embed_dim": [32, 64, 128, 256], "head_dim": 32})
    with pytest.raises(NotImplementedError, match="SPLIT"):
        from_official("uniformer", sd, {"UNIFORMER": {"SPLIT": True}})
    with pytest.raises(ValueError, match="unknown official UniFormer argument"):
        from_official("uniformer", sd, {"depths": [1, 1, 2, 1]})


def test_stage_types_ablation_layouts():
    """The paper's LLLL / GGGG ablations are one config field; GGGG has no BatchNorm in blocks."""
    m = UniFormer(UniFormerConfig(**TINY, stage_types=("G", "G", "G", "G"))).eval()
    assert all(isinstance(b, GlobalBlock) for i in range(1, 5) for b in getattr(m, f"blocks{i}"))
    with torch.no_grad():
        assert m(torch.randn(1, 3, 64, 64)).shape == (1, 1000)


def test_uniformer_recipes_load_and_match_their_models():
    from vitkit.engine.recipe import configs_dir, load_recipe
    from vitkit.registry import model_info

    # the training-from-scratch recipes, one per variant (configs/finetune/ has its own test in test_finetune)
    files = sorted(f for f in configs_dir().glob("*/uniformer_*.yaml") if f.parent.name != "finetune")
    assert len(files) >= 8
    for f in files:
        r = load_recipe(f)
        info = model_info(r.model.name)
        if f.parent.name == "ssv2":  # segment sampling of T frames: the file names the frame count only
            assert r.model.name == f"{f.stem}x4", f
            assert r.data.sampling == "segment" and (r.eval.num_clips, r.eval.num_crops) == (1, 3), f
            continue
        assert r.model.name == f.stem, f
        if info.is_video:
            assert r.data.num_frames == info.input_size[1] and r.eval.num_clips == 4
            assert f"{r.data.num_frames}x{r.data.sampling_rate}" in r.model.name
        assert r.optim.weight_decay == 0.05 and r.train.mixup == 0.8 and r.train.label_smoothing == 0.1


def test_inflate_command_writes_a_loadable_video_checkpoint(tmp_path, capsys):
    from safetensors.torch import save_file

    from vitkit.cli import main

    img = vitkit.create_model("uniformer_demo_32", num_classes=4)
    save_file(img.state_dict(), str(tmp_path / "img.safetensors"))
    out = tmp_path / "vid.safetensors"
    assert main(["inflate", str(tmp_path / "img.safetensors"), str(out), "--model", "uniformer_demo_video_8x32",
                 "--center"]) == 0
    assert "new zero-initialised head" in capsys.readouterr().out  # 4 image classes, 10 video classes
    vid = vitkit.create_model("uniformer_demo_video_8x32", weights=str(out))
    w2, w3 = img.state_dict()["blocks1.0.attn.weight"], vid.state_dict()["blocks1.0.attn.weight"]
    assert torch.equal(w3[:, :, 2], w2) and not w3[:, :, 0].any()
    assert not vid.head.weight.any()


def test_grad_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    m = UniFormer(UniFormerConfig(**TINY, num_classes=3, num_frames=4))
    x = torch.randn(2, 3, 4, 64, 64)
    m.train()
    for blk in m.modules():  # BatchNorm in eval mode: the same statistics in both passes
        if isinstance(blk, nn.modules.batchnorm._BatchNorm):
            blk.eval()
    m(x).sum().backward()
    ref = {k: p.grad.clone() for k, p in m.named_parameters()}
    m.zero_grad()
    m.set_grad_checkpointing(True)
    m(x).sum().backward()
    for k, p in m.named_parameters():
        torch.testing.assert_close(p.grad, ref[k], atol=1e-5, rtol=1e-4)


def test_attention_analysis_sees_global_and_window_blocks():
    """The attention calls pass their grid, stride and window, so the shared analysis maps them to the input."""
    from vitkit.analysis.attention import collect_attention, mean_attention_distance

    torch.manual_seed(0)
    m = UniFormer(UniFormerConfig(**{**TINY, "depth": (1, 1, 2, 1)}, windows=True, window_size=2)).eval()
    layers = collect_attention(m, torch.randn(1, 3, 128, 128))
    assert len(layers) == 3  # two windowed stage-3 blocks, one global stage-4 block
    d = [float(t.mean()) for t in mean_attention_distance(layers)]
    assert max(d[:2]) < 32 < d[2]  # 2x2 windows of 16-px tokens stay within 32 px; global attention reaches further


@needs_ref
def test_from_official_with_a_registered_variant_name():
    """The demo variant has the fixture's architecture: the official weights load under its name."""
    data, _, sd = _fixture("image")
    model = from_official("uniformer", sd, "uniformer_demo_32")
    with torch.no_grad():
        assert (model(data["input"]) - data["logits"]).abs().max() <= 1e-5
