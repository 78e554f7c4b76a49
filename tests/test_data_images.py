"""Image folders and list files on scikit-image's sample photos, plus corrupt files."""
from __future__ import annotations

import logging
import os

import numpy as np
import pytest
import torch
from PIL import Image

from vitkit.data import build_dataset
from vitkit.data.sources import find_classes

skimage_data = pytest.importorskip("skimage.data")
PHOTOS = ["astronaut", "coffee", "chelsea", "rocket", "camera", "coins", "immunohistochemistry", "hubble_deep_field"]


def _photo(name: str) -> np.ndarray:
    img = getattr(skimage_data, name)()
    if isinstance(img, tuple):
        img = img[0]
    return img


@pytest.fixture(scope="module")
def photo_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    for split in ("train", "val"):
        for k, name in enumerate(PHOTOS):
            d = root / split / ("cat" if k % 2 else "dog")
            d.mkdir(parents=True, exist_ok=True)
            img = Image.fromarray(_photo(name))
            img.thumbnail((96, 96))
            img.save(d / f"{name}.{'jpg' if k % 3 else 'png'}")
    return root


def test_folder_tree_with_splits(photo_tree):
    tr = build_dataset(str(photo_tree), "train", train=True, input_size=(3, 48, 48),
                       augment={"crop": "rrc", "hflip": 0.5, "randaugment": "rand-m9-mstd0.5-inc1",
                                "random_erasing": 0.25})
    va = build_dataset(str(photo_tree), "val", train=False, input_size=(3, 48, 48))
    assert tr.classes == va.classes == ["cat", "dog"] and tr.num_classes == 2
    assert len(tr) == len(va) == len(PHOTOS)
    x, y = tr[0]
    assert x.shape == (3, 48, 48) and x.dtype == torch.float32 and y in (0, 1)
    xv, _ = va[0]
    assert torch.equal(xv, va[0][0])  # test transform is deterministic
    # grayscale photo ('camera') comes out with 3 channels
    cam = next(i for i, (p, _) in enumerate(va.samples) if "camera" in p)
    assert va[cam][0].shape == (3, 48, 48)
    assert tr.bad_samples() == {} and va.bad_samples() == {}


def test_three_crop_test_views(photo_tree):
    va = build_dataset(str(photo_tree), "test", train=False, input_size=(3, 32, 32), num_crops=3)
    views, label, idx = va[2]
    assert views.shape == (3, 3, 32, 32) and idx == 2
    assert not torch.equal(views[0], views[2])  # left and right crops of a non-square photo differ


def test_numeric_class_folders_sort_numerically(tmp_path):
    names = [str(i) for i in range(12)]
    rng = np.random.default_rng(0)
    for n in names:
        (tmp_path / n).mkdir()
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(tmp_path / n / "x.png")
    assert find_classes(str(tmp_path)) == names  # not '0', '1', '10', '11', '2', ...
    ds = build_dataset(str(tmp_path), "train", train=False, input_size=(3, 8, 8))
    assert ds.classes == names
    for path, label in ds.samples:
        assert int(os.path.basename(os.path.dirname(path))) == label


def test_image_list_with_bad_files(tmp_path, caplog):
    good = []
    for k, name in enumerate(PHOTOS[:4]):
        p = tmp_path / "imgs" / f"{name} {k}.jpg"  # a space in the path
        p.parent.mkdir(exist_ok=True)
        Image.fromarray(_photo(name)).convert("RGB").resize((40, 30)).save(p)
        good.append(p)
    raw = good[0].read_bytes()
    (tmp_path / "imgs" / "truncated.jpg").write_bytes(raw[: len(raw) // 2])
    (tmp_path / "imgs" / "empty.png").write_bytes(b"")
    (tmp_path / "imgs" / "text.jpg").write_text("not an image")
    lines = [f"imgs/{p.name} {i % 3}" for i, p in enumerate(good)]
    lines += ["imgs/truncated.jpg 0", "imgs/empty.png 1", "imgs/text.jpg 2", "imgs/gone.jpg 0",
              f"imgs/{good[1].name} -1", "just-one-field"]
    lst = tmp_path / "list.txt"
    lst.write_text("\n".join(lines) + "\n")
    with caplog.at_level(logging.WARNING, logger="vitkit.data"):
        ds = build_dataset(str(lst), "train", train=True, input_size=(3, 24, 24), augment={"crop": "rrc"},
                           num_classes=3)
    assert ds.num_classes == 3 and len(ds) == 8
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2)
    n = sum(len(y) for _, y in loader)
    assert n == 8
    bad = {os.path.basename(p.split(":")[0]) if ":" in p and not os.path.exists(p) else os.path.basename(p): r
           for p, r in ds.bad_samples().items()}
    assert set(bad) == {"truncated.jpg", "empty.png", "text.jpg", "gone.jpg", good[1].name, "list.txt"}
    assert "truncated" in bad["truncated.jpg"].lower() and "0 bytes" in bad["empty.png"]
    assert "UnidentifiedImageError" in bad["text.jpg"] and "missing" in bad["gone.jpg"]
    assert "out of range" in bad[good[1].name] and "cannot parse" in bad["list.txt"]


def test_unreadable_image_dataset_fails_clearly(tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "a.jpg").write_text("x")
    with pytest.raises(RuntimeError, match="none of its 1 samples can be read"):
        build_dataset(str(tmp_path), "train", train=True, input_size=(3, 8, 8))
    with pytest.raises(FileNotFoundError, match="expected 'digits'"):
        build_dataset(str(tmp_path / "nope"), "train", train=True, input_size=(3, 8, 8))
    (tmp_path / "empty").mkdir()
    with pytest.raises(RuntimeError, match="no class folders"):
        build_dataset(str(tmp_path / "empty"), "train", train=True, input_size=(3, 8, 8))
    (tmp_path / "empty" / "cls").mkdir()
    (tmp_path / "empty" / "cls" / "notes.txt").write_text("no images here")
    with pytest.raises(RuntimeError, match="no usable samples"):
        build_dataset(str(tmp_path / "empty"), "train", train=True, input_size=(3, 8, 8))


def test_folder_of_split_lists_shares_one_label_space(tmp_path):
    rng = np.random.default_rng(1)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    (tmp_path / "train.txt").write_text("0.png 0\n1.png 1\n")
    (tmp_path / "val.txt").write_text("2.png 4\n3.png 0\n")  # val has the largest label
    tr = build_dataset(str(tmp_path), "train", train=True, input_size=(3, 8, 8))
    te = build_dataset(str(tmp_path), "test", train=False, input_size=(3, 8, 8))  # falls back to val.txt
    # the classes are the labels seen in any split (0, 1, 4: sparse, so remapped with a warning; issue 17)
    assert tr.num_classes == te.num_classes == 3 and len(te) == 2 and te.classes == ["0", "1", "4"]
    assert [y for _, y in te.samples] == [2, 0]
