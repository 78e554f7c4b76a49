"""ViT: paper figures, parity with timm / torchvision / Hugging Face, resolution changes, checkpoint loading."""
from __future__ import annotations

import pytest
import torch

import vitkit
from vitkit.checkpoints import CheckpointError, load_checkpoint, save_weights

# Parameters: the official/timm count (exact); the issue's rounded paper figures are checked too.
PAPER = {
    "vit_base_patch16_224": (86.6, 17.6),
    "vit_large_patch16_224": (304.0, 61.6),
    "vit_huge_patch14_224": (632.0, 167.0),
}


@pytest.mark.parametrize("name", vitkit.list_models("vit_*", include_demo=False))
def test_params_and_macs_match_the_paper_or_official_figures(name):
    info = vitkit.model_info(name)
    r = vitkit.profile(name)
    assert abs(r.params / 1e6 - info.paper_params) / info.paper_params < 0.001
    assert abs(r.macs / 1e9 - info.paper_macs) / info.paper_macs < 0.03


@pytest.mark.parametrize("name", sorted(PAPER))
def test_issue_figures(name):
    params, macs = PAPER[name]
    r = vitkit.profile(name)
    assert abs(r.params / 1e6 - params) / params < 0.005
    assert abs(r.macs / 1e9 - macs) / macs < 0.03


def test_vit_b16_macs_closed_form():
    # 12 blocks x (4 D^2 attention projections + 8 D^2 MLP) x 197 tokens + 2 x 197^2 x D attention matmuls,
    # + the patch embedding (196 x 768 x 768) + the head (768 x 1000).
    D, N, L = 768, 197, 12
    expected = L * (12 * D * D * N + 2 * N * N * D) + 196 * 3 * 16 * 16 * D + D * 1000
    assert vitkit.profile("vit_base_patch16_224").macs == expected


def _max_diff(a, b) -> float:
    return (a - b).abs().max().item()


def test_parity_timm_vit_base_patch16_224():
    timm = pytest.importorskip("timm")
    ref = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=10).eval()
    model = vitkit.create_model("vit_base_patch16_224", num_classes=10).eval()
    report = load_checkpoint(model, ref.state_dict())
    assert report.ok and report.source == "vitkit"
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert _max_diff(model(x), ref(x)) <= 1e-5


def test_parity_timm_hybrid_r50_b16():
    timm = pytest.importorskip("timm")
    ref = timm.create_model("vit_base_r50_s16_384", pretrained=False, num_classes=10, img_size=128).eval()
    model = vitkit.create_model("vit_base_r50_s16_384", num_classes=10, img_size=128).eval()
    assert load_checkpoint(model, ref.state_dict()).ok
    x = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        assert _max_diff(model(x), ref(x)) <= 1e-5


def test_parity_torchvision_vit_b_16():
    tv = pytest.importorskip("torchvision")
    ref = tv.models.vit_b_16(num_classes=10).eval()
    # torchvision zero-initialises its head: randomise so the logits are not trivially equal
    torch.nn.init.normal_(ref.heads.head.weight, std=0.02)
    model = vitkit.create_model("vit_base_patch16_224", num_classes=10).eval()
    report = load_checkpoint(model, ref.state_dict())
    assert report.source == "torchvision" and report.ok
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert _max_diff(model(x), ref(x)) <= 1e-5


def test_parity_transformers_vit_for_image_classification():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.ViTConfig(
        hidden_size=192, num_hidden_layers=3, num_attention_heads=3, intermediate_size=768,
        image_size=64, patch_size=16, num_labels=10, hidden_act="gelu",
    )
    ref = transformers.ViTForImageClassification(cfg).eval()
    # Hugging Face's ViT uses LayerNorm eps 1e-12 (its config default) where the paper's code uses 1e-6
    model = vitkit.create_model(
        "vit_tiny_patch16_224", img_size=64, depth=3, num_classes=10, norm_eps=cfg.layer_norm_eps
    ).eval()
    report = load_checkpoint(model, ref.state_dict())
    assert report.source == "huggingface" and report.ok
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert _max_diff(model(x), ref(pixel_values=x).logits) <= 1e-5


def test_fine_tune_at_higher_resolution_resamples_pos_embed_at_load(tmp_path):
    small = vitkit.create_model("vit_tiny_patch16_224", img_size=64, depth=2, num_classes=5)
    path = tmp_path / "w.safetensors"
    save_weights(small, path)
    big = vitkit.create_model("vit_tiny_patch16_224", img_size=96, depth=2, num_classes=5, weights=str(path))
    assert big.pos_embed.shape == (1, 1 + 36, 192)
    # the class-token entry is kept; the grid is interpolated
    torch.testing.assert_close(big.pos_embed[:, :1], small.pos_embed[:, :1])
    # runtime resampling of the small model at 96 equals the load-time resampled model
    small.eval(), big.eval()
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(small(x), big(x), atol=1e-5, rtol=1e-5)


def test_any_input_size_and_clear_error_for_non_divisible():
    m = vitkit.create_model("vit_tiny_patch16_224", depth=1, num_classes=3).eval()
    with torch.no_grad():
        assert m(torch.randn(1, 3, 160, 96)).shape == (1, 3)
        assert m.forward_intermediates(torch.randn(1, 3, 160, 96))[0].shape == (1, 192, 10, 6)
    with pytest.raises(ValueError, match="not divisible by the patch size"):
        m(torch.randn(1, 3, 150, 96))


def test_gap_pooling_pre_logits_and_head_zero_init():
    m = vitkit.create_model("vit_tiny_patch16_224", depth=1, global_pool="avg", class_token=False,
                            representation_size=64, num_classes=4)
    assert m.cls_token is None and isinstance(m.fc_norm, torch.nn.LayerNorm)
    assert m.forward_head(m.forward_features(torch.randn(1, 3, 32, 32)), pre_logits=True).shape == (1, 64)
    m.reset_classifier(6)
    assert m.head.weight.abs().sum() == 0 and m.head.in_features == 64


def test_strict_loading_lists_missing_and_unexpected_keys():
    m = vitkit.create_model("vit_tiny_patch16_224", depth=2, num_classes=5)
    sd = m.state_dict()
    sd.pop("blocks.1.attn.qkv.weight")
    sd["blocks.7.foo"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match=r"missing keys \(1\): blocks.1.attn.qkv.weight"):
        load_checkpoint(m, sd)
    report = load_checkpoint(m, sd, strict=False)
    assert report.missing == ["blocks.1.attn.qkv.weight"] and report.unexpected == ["blocks.7.foo"]


def test_checkpoint_file_formats_and_wrappers(tmp_path):
    m = vitkit.create_model("vit_tiny_patch16_224", depth=1, num_classes=5)
    path = tmp_path / "train.pth"
    torch.save({"model": {f"module.{k}": v for k, v in m.state_dict().items()}, "epoch": 3}, path)
    m2 = vitkit.create_model("vit_tiny_patch16_224", depth=1, num_classes=5)
    assert load_checkpoint(m2, str(path)).ok
    torch.testing.assert_close(m2.state_dict(), m.state_dict())


def test_untrusted_pickle_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pth"
    torch.save({"model": Evil()}, path)
    m = vitkit.create_model("vit_tiny_patch16_224", depth=1)
    with pytest.raises(CheckpointError, match="weights-only"):
        load_checkpoint(m, str(path))


def test_video_vit_baseline_joint_and_separate_position_embeddings():
    joint = vitkit.create_model("vit_base_patch16_8x8", depth=1, num_classes=4, img_size=32, num_frames=4)
    sep = vitkit.create_model("vit_base_patch16_8x8", depth=1, num_classes=4, img_size=32, num_frames=4,
                              sep_pos_embed=True)
    x = torch.randn(1, 3, 4, 32, 32)
    assert joint(x).shape == sep(x).shape == (1, 4)
    assert sep.pos_embed is None and sep.pos_embed_temporal.shape == (1, 4, 768)
    # other clip lengths resample the temporal embedding
    assert sep(torch.randn(1, 3, 6, 32, 32)).shape == (1, 4)
    assert joint.forward_intermediates(x)[0].shape == (1, 768, 4, 2, 2)
