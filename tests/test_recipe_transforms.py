"""Every shipped recipe's training transform runs on real photos; a transform failure is a configuration error."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vitkit.data import build_dataset
from vitkit.data.transforms import Stage, TransformError, build_transforms
from vitkit.engine.data import resolve_input
from vitkit.engine.recipe import configs_dir, list_recipes, load_recipe

skimage_data = pytest.importorskip("skimage.data")

# classification recipes (not the _base_/ parts); the dense tasks' joint transforms are tested with their tasks
RECIPES = [f"{n}.yaml" for n in list_recipes() if load_recipe(configs_dir() / f"{n}.yaml").task.name == "classification"]


def _photo(name: str) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(getattr(skimage_data, name)())).permute(2, 0, 1)  # C, H, W


def _clip(frames: int) -> torch.Tensor:
    """A real photo panned across ``frames`` frames: (T, C, H, W) uint8, 256 x 340 like a Kinetics frame."""
    img = _photo("astronaut")  # 512 x 512
    return torch.stack([img[:, 40 + 4 * t:296 + 4 * t, 20 + 3 * t:360 + 3 * t] for t in range(frames)])


def test_every_shipped_recipe_is_checked():
    assert len(RECIPES) >= 20 and any(r.startswith("imagenet/") for r in RECIPES)


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_training_transform_runs_on_real_images(name):
    recipe = load_recipe(configs_dir() / name)
    _, spec = resolve_input(recipe)
    c, h, w, frames = spec.channels, spec.height, spec.width, spec.num_frames
    size = (c, frames, h, w) if frames else (c, h, w)
    t = build_transforms(True, size, spec.mean, spec.std, dict(recipe.data.augment))
    if frames:
        inputs, draws = [_clip(frames)], 1
    else:
        inputs, draws = [_photo(n) for n in ("astronaut", "chelsea", "coffee")], 2
    if c == 1:
        inputs = [x[..., :1, :, :] for x in inputs]
    for k in range(draws):  # many draws: RandAugment picks different ops every call
        torch.manual_seed(k)
        for x in inputs:
            out = t(x)
            want = (c, frames, h, w) if frames else (c, h, w)
            assert out.shape == want and out.dtype == torch.float32 and torch.isfinite(out).all()


def test_bicubic_randaugment_applies_geometric_ops_on_images_and_clips():
    """Rotate/shear/translate with bicubic run through PIL (as timm and PySlowFast do); every frame alike."""
    from vitkit.data.transforms import RandAugmentMstd
    from torchvision.transforms import InterpolationMode

    ra = RandAugmentMstd(n=1, m=9, interpolation=InterpolationMode.BICUBIC)
    img = _photo("chelsea")
    for op in ("Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY"):
        out = ra._apply_image_or_video_transform(img, op, {"Rotate": 10.0, "TranslateX": 20.0, "TranslateY": 20.0}.get(op, 0.2), ra.interpolation,
                                                 ra._fill)
        assert out.shape == img.shape and out.dtype == torch.uint8 and not torch.equal(out, img)
    clip = img.expand(3, -1, -1, -1).contiguous()
    from torchvision import tv_tensors

    out = ra._apply_image_or_video_transform(tv_tensors.Video(clip), "Rotate", 10.0, ra.interpolation, ra._fill)
    assert isinstance(out, tv_tensors.Video) and all(torch.equal(out[0], out[k]) for k in range(3))


class _Broken(torch.nn.Module):
    def forward(self, x):
        raise RuntimeError("cannot apply this op")


def _folder(tmp_path: Path) -> Path:
    root = tmp_path / "photos" / "train"
    for i, name in enumerate(("astronaut", "chelsea", "coffee", "rocket")):
        d = root / f"class{i % 2}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(getattr(skimage_data, name)()).save(d / f"{name}.jpg")
    return tmp_path / "photos"


def test_transform_error_fails_at_once_naming_the_recipe_key_and_is_never_a_bad_sample(tmp_path):
    root = _folder(tmp_path)
    ds = build_dataset(str(root), "train", train=True, input_size=(3, 32, 32),
                       augment={"crop": "rrc", "randaugment": "rand-m9"})
    ds.transform.photometric = Stage([("randaugment", _Broken())])  # a transform that always fails; data is fine
    with pytest.raises(TransformError, match=r"data\.augment\.randaugment") as exc:
        ds[0]
    assert "cannot apply this op" in str(exc.value)
    assert ds.bad_samples() == {}  # not counted as a corrupt file
    # at construction too: the readability probe does not classify a transform failure as bad data
    t = build_transforms(True, (3, 32, 32), augment={"crop": "rrc"})
    t.geometric = Stage([("crop", _Broken())])
    from vitkit.data.datasets import FileDataset
    from vitkit.data.sources import resolve_source

    with pytest.raises(TransformError, match=r"data\.augment\.crop"):
        FileDataset(resolve_source(str(root), "train", False), t, video=False, train=True)


def test_decode_errors_are_still_bad_samples(tmp_path):
    root = _folder(tmp_path)
    bad = root / "train" / "class0" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff not a jpeg")
    ds = build_dataset(str(root), "train", train=True, input_size=(3, 32, 32), augment={"crop": "rrc"})
    items = [ds[i] for i in range(len(ds))]
    assert len(items) == 5 and str(bad) in ds.bad_samples()


def test_transform_error_crosses_dataloader_workers_as_one_line(tmp_path):
    root = _folder(tmp_path)
    ds = build_dataset(str(root), "train", train=True, input_size=(3, 32, 32), augment={"crop": "rrc"})
    ds.transform.geometric = Stage([("crop", _Broken())])
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=1)
    with pytest.raises(TransformError) as exc:
        next(iter(loader))
    assert str(exc.value).startswith("training transform failed") and "\n" not in str(exc.value)
