"""Helpers written once for the whole package: padding to a multiple, the clamped-normal initialiser, atomic
writes, the clip assembly, and UniFormer's renamed downsampling flag."""
from __future__ import annotations

import os

import pytest
import torch

import vitkit
from vitkit.data.sampling import clips_to_views, sample_clips
from vitkit.fileio import atomic_write, atomic_write_text
from vitkit.layers import pad_to_multiple
from vitkit.layers.init import clamped_normal_


def test_pad_to_multiple_pads_the_end_of_the_named_dims_with_zeros():
    x = torch.ones(1, 3, 5, 7)
    y = pad_to_multiple(x, (4, 4), 2)
    assert y.shape == (1, 3, 8, 8) and torch.equal(y[:, :, :5, :7], x) and y[:, :, 5:].abs().sum() == 0
    t = torch.ones(2, 3, 5, 6, 8)  # channels-last (B, T, H, W, C)
    assert pad_to_multiple(t, (2, 7, 7), 1).shape == (2, 4, 7, 7, 8)
    assert pad_to_multiple(x, (5, 7), 2) is x


def test_clamped_normal_is_the_truncated_normal_of_the_official_inits():
    w = clamped_normal_(torch.empty(200_000))
    assert abs(float(w.std()) - 0.02) < 1e-3 and float(w.abs().max()) <= 2.0
    wide = clamped_normal_(torch.empty(10_000), std=10.0)
    assert float(wide.abs().max()) == 2.0  # the cut at +-2 (absolute), as timm's trunc_normal_


def test_atomic_write_keeps_the_old_file_when_the_writer_fails(tmp_path):
    path = tmp_path / "a.json"
    atomic_write_text(path, "old")

    def broken(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, broken)
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["a.json"]


def test_clip_assembly_dense_and_segment():
    torch.manual_seed(0)
    (train,) = sample_clips(100, 8, 4, train=True, num_clips=5)
    assert len(train) == 8 and all(b - a == 4 for a, b in zip(train, train[1:]))
    test = sample_clips(100, 8, 4, train=False, num_clips=3)
    assert len(test) == 3 and test[0][0] == 0 and test[-1][-1] == 99  # first and last possible starts
    assert sample_clips(10, 4, 4, train=False, short_video="loop")[0] == [0, 4, 8, 2]  # wraps past the end
    assert sample_clips(10, 4, 4, train=False)[0] == [0, 4, 8, 9]  # pad: the last frame repeated
    (seg,) = sample_clips(80, 8, 1, train=False, sampling="segment")
    assert len(seg) == 8 and seg == sorted(seg) and seg[-1] < 80
    frames = torch.arange(24).view(24, 1, 1, 1).expand(24, 3, 2, 2)
    views = clips_to_views(frames.split(8), lambda clip: clip.transpose(0, 1).float())
    assert [tuple(v.shape) for v in views] == [(3, 8, 2, 2)] * 3 and float(views[1][0, 0, 0, 0]) == 8.0
    crops = clips_to_views(frames.split(8), lambda clip: clip.transpose(0, 1).float().expand(3, 3, 8, 2, 2), 3)
    assert len(crops) == 9
    with pytest.raises(ValueError, match="sampling must be one of"):
        sample_clips(80, 8, 1, train=False, sampling="sparse")


def test_uniformer_downsample_flag_has_a_self_explaining_name():
    from vitkit.checkpoints.uniformer import video_config_from_official

    with torch.device("meta"):
        with pytest.warns(DeprecationWarning, match="downsample_3x2x2"):
            m = vitkit.create_model("uniformer_small_16x4", std=True)
        m2 = vitkit.create_model("uniformer_small_16x4", downsample_3x2x2=True)
    assert m.patch_embed3.proj.kernel_size == m2.patch_embed3.proj.kernel_size == (3, 2, 2)
    assert video_config_from_official({"UNIFORMER": {"STD": True}}).downsample_3x2x2
