import pytest
import torch

import vitkit
from vitkit.registry import resolve_config


def test_list_models_glob_and_sorted():
    names = vitkit.list_models("vit_base*")
    assert names == sorted(names) and "vit_base_patch16_224" in names
    assert all(n.startswith("vit_base") for n in names)
    assert vitkit.list_models("no_such_*") == []


def test_unknown_model_suggests_close_names():
    with pytest.raises(KeyError, match="vit_base_patch16_224"):
        vitkit.create_model("vit_base_patch16_244")


def test_overrides_replace_config_fields_and_unknown_fields_are_named():
    cfg = resolve_config("vit_tiny_patch16_224", num_classes=10, drop_path_rate=0.1)
    assert cfg.num_classes == 10 and cfg.drop_path_rate == 0.1
    with pytest.raises(TypeError, match="no_such_field"):
        resolve_config("vit_tiny_patch16_224", no_such_field=1)


def test_create_model_on_meta_costs_nothing():
    with torch.device("meta"):
        m = vitkit.create_model("vit_huge_patch14_224")
    assert next(m.parameters()).device.type == "meta"
    assert m.model_name == "vit_huge_patch14_224"
