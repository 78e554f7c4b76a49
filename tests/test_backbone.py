"""The backbone view (``features_only``): channels and strides of every family at two input sizes, per-output norm
names of the official dense code, pruning, gradients to every parameter, weights loaded before the conversion."""
import math

import pytest
import torch

import vitkit
from vitkit.models.backbone import as_backbone

pytestmark = pytest.mark.usefixtures("one_thread")


# small members of each family (image and video); Swin has no demo variant, so a narrow Swin-T
SMALL = {
    "vit_demo_patch4_32": {},
    "vit_demo_video_8x32": {},
    "uniformer_demo_32": {},
    "uniformer_demo_video_8x32": {},
    "mvit_demo_8x32": {},
    "swin_tiny_patch4_window7_224": dict(embed_dim=16, depths=(1, 1, 2, 1), num_heads=(1, 2, 2, 4)),
    "swin3d_tiny": dict(embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 2, 2, 4), window_size=(2, 4, 4)),
}
NORM_NAMES = {
    "swin": ["norm0", "norm1", "norm2", "norm3"],
    "uniformer": ["norm1", "norm2", "norm3", "norm4"],
    "vit": ["simfp_2", "simfp_3", "simfp_4", "simfp_5"],
}


def _input(model, hw):
    t = (4,) if model.spatial_rank == 3 else ()
    return torch.randn(2, 3, *t, *hw)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_channels_and_strides_at_two_sizes(name):
    # a narrow ViT pyramid keeps the stride-1 level of the patch-4 demo cheap
    model = as_backbone(vitkit.create_model(name, **SMALL[name]), pyramid_channels=32).eval()
    info = model.feature_info
    assert len(info) == len(model.out_indices) >= 3
    assert all({"num_chs", "reduction", "module"} <= set(f) for f in info)
    assert info.channels() == [f["num_chs"] for f in info]
    for hw in [(32, 32), (37, 53)]:
        with torch.no_grad():
            maps = model(_input(model, hw))
        assert len(maps) == len(info)
        for y, f in zip(maps, info):
            assert y.ndim == model.spatial_rank + 2
            assert y.shape[1] == f["num_chs"]
            assert tuple(y.shape[-2:]) == (math.ceil(hw[0] / f["reduction"]), math.ceil(hw[1] / f["reduction"]))
            assert torch.isfinite(y).all()
    names = NORM_NAMES.get(model.family)
    if names:
        assert info.module_name() == names
        assert all(hasattr(model, n) for n in names)
    reductions = info.reduction()
    assert reductions == sorted(reductions) and len(set(reductions)) == len(reductions)


def test_official_strides_and_widths_swin_and_uniformer():
    swin = vitkit.create_model("swin_tiny_patch4_window7_224", features_only=True, depths=(1, 1, 1, 1))
    assert swin.feature_info.channels() == [96, 192, 384, 768]
    assert swin.feature_info.reduction() == [4, 8, 16, 32]
    keys = swin.state_dict().keys()
    assert "norm0.weight" in keys and "norm3.bias" in keys and "head.weight" not in keys and "norm.weight" not in keys
    uni = vitkit.create_model("uniformer_small", features_only=True, depth=(1, 1, 1, 1), windows=True)
    assert uni.feature_info.channels() == [64, 128, 320, 512]
    assert uni.norm1.eps == 1e-6 and "norm.weight" not in uni.state_dict()
    with torch.no_grad():
        out = uni(torch.randn(1, 3, 70, 100))  # windowed stage 3 (window 14) on a padded map
    assert [tuple(o.shape[-2:]) for o in out] == [(18, 25), (9, 13), (5, 7), (3, 4)]


def test_out_indices_prune_and_every_parameter_gets_a_gradient():
    model = vitkit.create_model("swin_tiny_patch4_window7_224", features_only=True, out_indices=(1, 2),
                                embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 2, 2, 4), drop_path_rate=0.1)
    assert model.feature_info.reduction() == [8, 16]
    assert len(model.layers) == 3 and model.layers[2].downsample is None  # stage 4 pruned
    assert not hasattr(model, "norm0")
    maps = model(torch.randn(2, 3, 40, 40))
    sum(m.float().mean() for m in maps).backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert no_grad == []
    uni = vitkit.create_model("uniformer_demo_32", features_only=True, out_indices=2)
    assert uni.out_indices == (2, 3)
    vit = as_backbone(vitkit.create_model("vit_demo_patch4_32"), (-1,), pyramid_channels=32)
    assert vit.feature_info.module_name() == ["simfp_5"]
    sum(m.mean() for m in vit(torch.randn(1, 3, 32, 32))).backward()
    assert [n for n, p in vit.named_parameters() if p.grad is None] == []


def test_llrd_and_weight_decay_hooks_carry_over():
    model = vitkit.create_model("vit_demo_patch4_32", features_only=True)
    depth = len(model.blocks)
    assert model.layer_id("blocks.0.attn.qkv.weight") == 1
    assert model.layer_id("simfp_2.0.weight") == depth + 1  # added modules: the top layer
    assert "pos_embed" in model.no_weight_decay()


def test_weights_load_into_the_classifier_before_conversion(tmp_path):
    from vitkit.checkpoints import save_weights

    clf = vitkit.create_model("uniformer_demo_32")
    path = tmp_path / "w.safetensors"
    save_weights(clf, path)
    bb = vitkit.create_model("uniformer_demo_32", features_only=True, weights=str(path))
    assert torch.equal(bb.blocks3[0].attn.qkv.weight, clf.blocks3[0].attn.qkv.weight)


def test_errors():
    with pytest.raises(TypeError, match="features_only"):
        vitkit.create_model("vit_demo_patch4_32", out_indices=(0,))
    with pytest.raises(IndexError):
        vitkit.create_model("vit_demo_patch4_32", features_only=True, out_indices=(4,))
    bb = vitkit.create_model("vit_demo_patch4_32", features_only=True)
    with pytest.raises(ValueError, match="already"):
        as_backbone(bb)
