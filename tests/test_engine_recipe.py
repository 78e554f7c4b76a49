"""Recipe schema: YAML + dotted overrides, type conversion, unknown keys named with the valid ones."""
import re
from pathlib import Path

import pytest
import yaml

from vitkit.engine.recipe import (RecipeError, configs_dir, default_run_name, find_recipe, list_recipes, load_recipe,
                                  recipe_from_dict)

ROOT = Path(__file__).resolve().parents[1]


def test_demo_recipe_loads_and_overrides():
    r = load_recipe(find_recipe("demo/digits"), ["optim.lr=1e-3", "train.batch_size=32", "model.depth=4",
                                                 "data.augment.hflip=false", "train.clip_grad=null"])
    assert r.optim.lr == pytest.approx(1e-3) and isinstance(r.optim.lr, float)
    assert r.train.batch_size == 32 and r.train.clip_grad is None
    assert r.model.config["depth"] == 4 and r.model.name == "vit_demo_patch8_32"
    assert r.data.augment["hflip"] is False  # merged into the recipe's augment mapping
    assert r.data.augment["crop"] == "rrc"


def test_resolved_recipe_round_trips():
    r = load_recipe(find_recipe("demo/digits"), ["model.drop_path_rate=0.2"])
    again = recipe_from_dict(yaml.safe_load(r.to_yaml()))
    assert again == r


@pytest.mark.parametrize("override, words", [
    ("optim.lrr=1", ["'lrr'", "lr", "weight_decay", "layer_decay"]),
    ("trian.seed=1", ["'trian'", "train", "schedule"]),
    ("model.dept=3", ["'dept'", "depth", "drop_path_rate"]),
    ("train.batch_size=abc", ["train.batch_size", "integer"]),
    ("train.amp=fp8", ["bf16", "fp16", "none"]),
    ("eval.num_crops=2", ["num_crops", "3"]),
    ("optimlr", ["section.key=value"]),
])
def test_bad_overrides_name_what_is_valid(override, words):
    with pytest.raises(RecipeError) as e:
        load_recipe(find_recipe("demo/digits"), [override])
    for w in words:
        assert w in str(e.value)


def test_unknown_model_is_an_error():
    with pytest.raises(RecipeError, match="model.name"):
        recipe_from_dict({"model": {"name": "no_such_model"}})


def test_every_shipped_recipe_is_valid():
    files = [find_recipe(n) for n in list_recipes()]
    assert len(files) >= 20, "recipes missing under configs/"
    for f in files:
        try:
            load_recipe(f)
        except RecipeError as e:
            if "model.name" in str(e) and "unknown model" in str(e):
                continue  # a family not registered yet in this checkout
            raise AssertionError(f"{f}: {e}") from e


# -- inheritance -------------------------------------------------------------------------------------------------

def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_base_recipes_are_deep_merged(tmp_path):
    _write(tmp_path / "_base_" / "common.yaml",
           "data:\n  augment: {crop: rrc, hflip: 0.5}\noptim: {lr: 1.0e-3, weight_decay: 0.1}\n"
           "schedule: {epochs: 4}\n")
    _write(tmp_path / "_base_" / "short.yaml", "schedule: {epochs: 2}\n")
    child = _write(tmp_path / "exp" / "child.yaml",
                   "_base_: [../_base_/common.yaml, ../_base_/short.yaml]\n"
                   "data:\n  augment: {hflip: 0.0}\noptim: {lr: 5.0e-4}\n")
    r = load_recipe(child)
    assert r.data.augment == {"crop": "rrc", "hflip": 0.0}      # merged key by key
    assert r.optim.lr == 5e-4 and r.optim.weight_decay == 0.1   # the child wins, the rest is inherited
    assert r.schedule.epochs == 2                               # later parents override earlier ones
    grandchild = _write(tmp_path / "exp" / "grand.yaml",
                        "base: child.yaml\ndata:\n  augment: {_delete_: true, crop: center}\n")
    r = load_recipe(grandchild, ["optim.lr=1e-4"])
    assert r.data.augment == {"crop": "center"}                 # _delete_ replaces the parent's mapping
    assert r.optim.lr == 1e-4 and r.optim.weight_decay == 0.1


def test_base_errors_are_clear(tmp_path):
    a = _write(tmp_path / "a.yaml", "_base_: b.yaml\n")
    _write(tmp_path / "b.yaml", "_base_: a.yaml\n")
    with pytest.raises(RecipeError, match="cycle"):
        load_recipe(a)
    missing = _write(tmp_path / "c.yaml", "_base_: nowhere.yaml\n")
    with pytest.raises(RecipeError, match="nowhere.yaml.*not found"):
        load_recipe(missing)


def test_shipped_recipes_inherit_instead_of_copying():
    # the per-size variants are a few lines over their family's recipe, not 50-line copies
    small = find_recipe("imagenet/swin_small_patch4_window7_224").read_text()
    assert "_base_:" in small and len(small.splitlines()) < 15
    r = load_recipe(find_recipe("imagenet/swin_small_patch4_window7_224"))
    t = load_recipe(find_recipe("imagenet/swin_tiny_patch4_window7_224"))
    assert r.model.config == {"drop_path_rate": 0.3} and t.model.config == {"drop_path_rate": 0.2}
    assert (r.optim, r.schedule, r.data) == (t.optim, t.schedule, t.data)
    assert not any(n.startswith("_") or "/_" in n for n in list_recipes())  # parts are not listed as recipes


def test_recipe_comments_cite_only_what_ships():
    # no pointer to notes that live outside the repository
    for f in configs_dir().rglob("*.yaml"):
        text = f.read_text()
        for word in ("paper-facts", "dense-facts", "user-needs", "shared/", "notes/"):
            assert word not in text, f"{f} cites {word}, which is not in the repository"


# -- names -------------------------------------------------------------------------------------------------------

def test_recipe_names_work_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for spelling in ("demo/digits", "demo/digits.yaml", "configs/demo/digits.yaml", "./configs/demo/digits.yaml"):
        assert find_recipe(spelling) == configs_dir() / "demo" / "digits.yaml"
    with pytest.raises(RecipeError, match="did you mean demo/digits"):
        find_recipe("demo/digit")
    with pytest.raises(RecipeError, match="did you mean.*imagenet/swin_tiny_patch4_window7_224"):
        find_recipe("swin_tiny_patch4_window7_224")


def test_run_name_follows_the_model_and_data_used():
    r = load_recipe(find_recipe("demo/digits"))
    assert default_run_name(r) == "vit_demo_patch8_32-digits"
    r = load_recipe(find_recipe("demo/digits"), ["model.name=uniformer_demo_32", "model.drop_path_rate=0.0"])
    assert default_run_name(r) == "uniformer_demo_32-digits"
    r = load_recipe(find_recipe("kinetics/mvit_base_16x4"), ["data.dataset=/data/k400/train.csv"])
    assert default_run_name(r) == "mvit_base_16x4-k400"
    r = load_recipe(find_recipe("demo/digits"), ["run.name=mine"])
    assert default_run_name(r) == "mine"


def test_model_names_match_their_patch_size():
    import re

    import vitkit

    for name in vitkit.list_models():
        m = re.search(r"patch(\d+)", name)
        if m:
            ps = vitkit.model_info(name).config.patch_size
            assert (ps if isinstance(ps, int) else ps[-1]) == int(m.group(1)), name
    for n in list_recipes():  # and no shipped recipe overrides a patch size its model's name states
        r = load_recipe(find_recipe(n))
        m = re.search(r"patch(\d+)", r.model.name)
        if m and "patch_size" in r.model.config:
            assert r.model.config["patch_size"] == int(m.group(1)), n


# -- range checks --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("override, words", [
    ("train.clip_grad=-1", ["train.clip_grad", "> 0", "-1"]),
    ("train.clip_grad=0", ["train.clip_grad", "> 0"]),
    ("model.depth=0", ["model.depth", "positive integer", "0"]),
    ("model.patch_size=-4", ["model.patch_size", "positive integer"]),
    ("model.drop_path_rate=1.0", ["model.drop_path_rate", "[0, 1)"]),
    ("model.drop_path_rate=-0.1", ["model.drop_path_rate", "[0, 1)"]),
    ("train.label_smoothing=1.0", ["train.label_smoothing", "[0, 1)"]),
    ("train.label_smoothing=-0.1", ["train.label_smoothing", "[0, 1)"]),
    ("schedule.min_lr=-1e-6", ["schedule.min_lr", "[0,"]),
    ("schedule.min_lr=1.0", ["schedule.min_lr", "peak lr"]),
    ("run.save_every=-5", ["run.save_every", ">= 0"]),
    ("data.mean=[0.5,0.5]", ["data.mean", "3 numbers"]),
    ("data.std=[0.5,0.5,0.5,0.5]", ["data.std", "3 numbers"]),
    ("data.std=[0.5,0.0,0.5]", ["data.std", "> 0"]),
    ("data.input_size=0", ["data.input_size", "positive integer"]),
    ("data.input_size=[32,32,32]", ["data.input_size", "[H, W]"]),
    ("optim.lr=0", ["optim.lr", "> 0"]),
    ("optim.weight_decay=-0.05", ["optim.weight_decay", ">= 0"]),
    ("train.mixup=-1", ["train.mixup", ">= 0"]),
    ("train.epochs=3", ["'epochs'", "schedule.epochs"]),
    ("eval.lr=3", ["'lr'", "optim.lr"]),
    ("model.epochs=3", ["schedule.epochs"]),
])
def test_values_are_range_checked_when_read(override, words):
    with pytest.raises(RecipeError) as e:
        load_recipe(find_recipe("demo/digits"), [override])
    for w in words:
        assert w in str(e.value), (w, str(e.value))


def test_in_range_values_are_accepted():
    r = load_recipe(find_recipe("demo/digits"), ["train.clip_grad=1.0", "data.input_size=[32,32]",
                                                 "data.mean=[0.5,0.5,0.5]", "data.std=[0.5,0.5,0.5]",
                                                 "run.save_every=0", "schedule.min_lr=0"])
    assert r.train.clip_grad == 1.0 and r.data.input_size == [32, 32]


def test_one_epoch_clips_the_warmup_with_a_note():
    r = load_recipe(find_recipe("demo/digits"), ["schedule.epochs=1"])
    assert r.schedule.epochs == 1 and 0 < r.schedule.warmup_epochs < 1
    assert any("warmup_epochs" in n and "clipped" in n for n in r.notes)
    assert not load_recipe(find_recipe("demo/digits")).notes  # nothing to say about the recipe as shipped


def test_create_model_validates_its_overrides():
    import vitkit

    for kw, words in [({"depth": 0}, "depth"), ({"drop_path_rate": 1.5}, "[0, 1)"), ({"num_heads": -1}, "num_heads"),
                      ({"patch_size": 0}, "patch_size")]:
        with pytest.raises(ValueError, match=re.escape(words)):
            vitkit.create_model("vit_demo_patch8_32", **kw)
    with pytest.raises(ValueError, match="depths"):
        vitkit.create_model("swin_tiny_patch4_window7_224", depths=(2, 0, 6, 2))


def test_cudnn_benchmark_follows_the_task_unless_set():
    """CUDA runs search cuDNN's algorithms per shape where a task's batches share one shape; detection (a shape
    per batch) and deterministic runs leave it off; train.cudnn_benchmark overrides either way."""
    from vitkit.engine.trainer import wants_cudnn_benchmark
    from vitkit.tasks import get_task

    demo = find_recipe("demo/digits")
    train = load_recipe(demo).train
    assert train.cudnn_benchmark is None
    assert wants_cudnn_benchmark(train, get_task("classification")) is True
    assert wants_cudnn_benchmark(train, get_task("segmentation")) is True
    assert wants_cudnn_benchmark(train, get_task("pose")) is True
    assert wants_cudnn_benchmark(train, get_task("detection")) is False
    assert wants_cudnn_benchmark(load_recipe(demo, ["train.deterministic=true"]).train,
                                 get_task("classification")) is False
    forced = load_recipe(demo, ["train.cudnn_benchmark=true"]).train
    assert forced.cudnn_benchmark is True and wants_cudnn_benchmark(forced, get_task("detection")) is True
    off = load_recipe(demo, ["train.cudnn_benchmark=false"]).train
    assert wants_cudnn_benchmark(off, get_task("classification")) is False
    with pytest.raises(RecipeError, match="cudnn_benchmark"):
        load_recipe(demo, ["train.cudnn_benchmark=fast"])
