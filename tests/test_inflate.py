"""Inflation of image weights into the video model of every family: on a clip of identical frames the video model
equals the image model where the method guarantees it, and the report says where it does not."""
from __future__ import annotations

import pytest
import torch

import vitkit
from vitkit.checkpoints.inflate import inflate_into, inflate_state_dict

SWIN = dict(embed_dim=24, depths=(1, 1, 2, 1), num_heads=(1, 1, 1, 1), img_size=64, num_classes=5)
NO_CLS = dict(class_token=False, global_pool="avg")
MVIT_AVG = dict(cls_embed_on=False, global_pool="avg")
MVIT_IMAGE = dict(num_frames=None, patch_kernel=(4, 4), patch_stride=(4, 4), patch_padding=(0, 0),
                  pool_q_stride=((1, 2, 2), (3, 2, 2)), pool_kv_stride_adaptive=(2, 2), pool_kvq_kernel=(3, 3))


def _random(model):
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.1)
    return model.eval()


PAIRS = {
    # name: (image model, video model, frames, image size, exact with "average", exact with "center")
    "swin": (lambda: vitkit.create_model("swin_tiny_patch4_window7_224", window_size=2, **SWIN),
             lambda: vitkit.create_model("swin3d_tiny", num_frames=4, window_size=(2, 2, 2), **SWIN), 4, 64, True, True),
    "vit-joint": (lambda: vitkit.create_model("vit_demo_patch4_32", **NO_CLS),
                  lambda: vitkit.create_model("vit_demo_patch4_32", num_frames=4, tubelet_size=2, **NO_CLS), 4, 32,
                  True, True),
    "vit-class-token": (lambda: vitkit.create_model("vit_demo_patch4_32"),
                        lambda: vitkit.create_model("vit_demo_patch4_32", num_frames=4, tubelet_size=2), 4, 32,
                        False, False),
    "vit-separate": (lambda: vitkit.create_model("vit_demo_patch4_32", **NO_CLS),
                     lambda: vitkit.create_model("vit_demo_patch4_32", num_frames=4, tubelet_size=2,
                                                 sep_pos_embed=True, **NO_CLS), 4, 32, True, True),
    "mvit": (lambda: vitkit.create_model("mvit_demo_8x32", **MVIT_IMAGE, **MVIT_AVG),
             lambda: vitkit.create_model("mvit_demo_8x32", **MVIT_AVG), 8, 32, False, True),
    "uniformer": (lambda: vitkit.create_model("uniformer_demo_32"),
                  lambda: vitkit.create_model("uniformer_demo_video_8x32"), 8, 32, False, True),
}


@pytest.mark.parametrize("method", ["average", "center"])
@pytest.mark.parametrize("family", list(PAIRS))
def test_static_clip_equals_image_model_where_guaranteed(family, method):
    make_image, make_video, frames, size, average_exact, center_exact = PAIRS[family]
    image, video = _random(make_image()), make_video().eval()
    report, inflation = inflate_into(video, image.state_dict(), method)
    assert inflation.kernels, inflation.describe()
    assert inflation.exact_on_static_clips == (center_exact if method == "center" else average_exact), \
        inflation.describe()
    frame = torch.randn(2, 3, size, size)
    clip = frame.unsqueeze(2).expand(-1, -1, frames, -1, -1).contiguous()
    with torch.no_grad():
        want, got = image(frame), video(clip)
    if inflation.exact_on_static_clips:
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    else:  # the report is honest: zero padding at the clip's ends, or the class token, make outputs differ
        assert (got - want).abs().max() > 1e-4


def test_swin_tables_and_positions_are_inflated_as_the_papers_do():
    image = _random(vitkit.create_model("swin_tiny_patch4_window7_224", window_size=2, **SWIN))
    video = vitkit.create_model("swin3d_tiny", num_frames=4, window_size=(2, 2, 2), **SWIN)
    sd, inflation = inflate_state_dict(image.state_dict(), video)
    t2 = image.state_dict()["layers.0.blocks.0.attn.relative_position_bias_table"]
    t3 = sd["layers.0.blocks.0.attn.relative_position_bias_table"]
    assert t3.shape == (3 * 9, 1) and torch.equal(t3, t2.repeat(3, 1))  # Video Swin: repeated over 2Wt-1 offsets
    w2, w3 = image.state_dict()["patch_embed.proj.weight"], sd["patch_embed.proj.weight"]
    torch.testing.assert_close(w3, w2.unsqueeze(2).expand(-1, -1, 2, -1, -1) / 2)
    assert "relative-position tables repeated" in inflation.describe()

    vit = _random(vitkit.create_model("vit_demo_patch4_32"))
    sep = vitkit.create_model("vit_demo_patch4_32", num_frames=4, tubelet_size=2, sep_pos_embed=True)
    sd, inflation = inflate_state_dict(vit.state_dict(), sep)
    assert not sd["pos_embed_temporal"].any()
    assert torch.equal(sd["pos_embed_spatial"], vit.pos_embed[:, 1:]) and torch.equal(sd["pos_embed_class"],
                                                                                       vit.pos_embed[:, :1])


def test_inflation_needs_a_video_model_and_a_known_method():
    image = vitkit.create_model("vit_demo_patch4_32")
    with pytest.raises(ValueError, match="video model"):
        inflate_state_dict(image.state_dict(), image)
    video = vitkit.create_model("vit_demo_patch4_32", num_frames=4, tubelet_size=2)
    with pytest.raises(ValueError, match="method"):
        inflate_state_dict(image.state_dict(), video, "nearest")


def test_inflate_command_any_family(tmp_path, capsys):
    from safetensors.torch import save_file

    from vitkit.cli import main

    image = _random(vitkit.create_model("swin_tiny_patch4_window7_224", window_size=2, **SWIN))
    save_file(image.state_dict(), str(tmp_path / "img.safetensors"))
    out = tmp_path / "vid.safetensors"
    assert main(["inflate", str(tmp_path / "img.safetensors"), str(out), "--model", "swin3d_tiny"]) == 2
    assert "do not fit the video model" in capsys.readouterr().err  # the full-size swin3d_tiny: said clearly
