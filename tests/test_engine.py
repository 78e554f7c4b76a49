"""Engine parts: parameter groups, schedule, EMA, atomic checkpoints, evaluation metrics and views."""
from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
import torch.nn as nn

import vitkit
from vitkit.engine import checkpoint as ckpt
from vitkit.engine.ema import ModelEma
from vitkit.engine.evaluate import metrics_from_scores, score_dataset, shuffle_frames
from vitkit.engine.optim import build_optimizer, param_groups
from vitkit.engine.schedule import WarmupCosine


# -- parameter groups -----------------------------------------------------------------------------------------
def _group_models() -> list[str]:
    names = vitkit.list_models("*demo*") + ["vit_base_patch16_224", "vit_base_patch16_8x8"]
    for fam in ("swin", "mvit", "uniformer"):
        found = vitkit.list_models(family=fam, include_demo=False)
        names += found[:1]
    return sorted(set(names))


@pytest.mark.parametrize("name", _group_models())
@pytest.mark.parametrize("layer_decay", [1.0, 0.75])
def test_every_parameter_in_exactly_one_group(name, layer_decay):
    with torch.device("meta"):
        model = vitkit.create_model(name)
    groups = param_groups(model, weight_decay=0.05, layer_decay=layer_decay)
    seen: dict[int, int] = {}
    for gi, g in enumerate(groups):
        assert len(g["params"]) == len(g["names"])
        for p in g["params"]:
            assert id(p) not in seen, "a parameter is in two groups"
            seen[id(p)] = gi
    params = dict(model.named_parameters())
    assert set(seen) == {id(p) for p in params.values()}, "a parameter is in no group"
    skip = model.no_weight_decay()
    n_layers = model.num_layer_ids()
    for g in groups:
        for n, p in zip(g["names"], g["params"]):
            no_decay = p.ndim <= 1 or n.endswith(".bias") or n in skip
            assert g["weight_decay"] == (0.0 if no_decay else 0.05), n
            if layer_decay < 1:
                lid = model.layer_id(n)
                assert g["layer_id"] == lid
                assert g["lr_scale"] == pytest.approx(layer_decay ** (n_layers - 1 - lid)), n
            else:
                assert g["lr_scale"] == 1.0
    # position tables and tokens never decay; the head trains at full rate, the stem at the lowest
    by_name = {n: g for g in groups for n in g["names"]}
    for n in params:
        leaf = n.split(".")[-1]  # parameters themselves, not e.g. UniFormer's pos_embed conv (which decays)
        if leaf.startswith(("pos_embed", "cls_token", "relative_position_bias_table", "rel_pos")):
            assert by_name[n]["weight_decay"] == 0.0, f"{n} takes weight decay"
    if layer_decay < 1:
        head = [n for n in params if n.startswith("head.")]
        assert head and all(by_name[n]["lr_scale"] == 1.0 for n in head)
        stem = [n for n in params if n.startswith("patch_embed.")]
        assert all(by_name[n]["lr_scale"] == pytest.approx(layer_decay ** (n_layers - 1)) for n in stem)


def test_vit_block_depths_for_layer_decay():
    with torch.device("meta"):
        model = vitkit.create_model("vit_demo_patch4_32")
    groups = param_groups(model, 0.05, 0.5)
    by_name = {n: g for g in groups for n in g["names"]}
    depth = model.config.depth
    for i in range(depth):
        assert by_name[f"blocks.{i}.mlp.fc1.weight"]["layer_id"] == i + 1
    assert by_name["pos_embed"]["layer_id"] == 0 and by_name["cls_token"]["layer_id"] == 0
    assert by_name["head.weight"]["layer_id"] == depth + 1
    assert by_name["blocks.0.mlp.fc1.weight"]["lr_scale"] == pytest.approx(0.5 ** depth)


def test_optimizer_lrs_follow_scales():
    model = vitkit.create_model("vit_demo_patch4_32", depth=2, embed_dim=32, num_heads=2)
    opt = build_optimizer(model, lr=1e-3, weight_decay=0.05, layer_decay=0.5)
    sched = WarmupCosine(lr=1e-3, total_steps=10, warmup_steps=2, warmup_lr=0.0, min_lr=0.0)
    sched.apply(opt, 2)
    for g in opt.param_groups:
        assert g["lr"] == pytest.approx(1e-3 * g["lr_scale"])


def test_adamw_is_fused_where_torch_has_it_and_updates_as_the_plain_path():
    """The engine's AdamW takes torch's fused kernel on the CPU by default (optim.fused: null); the update
    matches the per-tensor path to float rounding, and fused=false keeps the plain path."""
    torch.manual_seed(0)
    models = [vitkit.create_model("vit_demo_patch4_32", depth=2, embed_dim=32, num_heads=2) for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    opts = [build_optimizer(models[0], 1e-3, 0.05, layer_decay=0.8), build_optimizer(models[1], 1e-3, 0.05,
                                                                                     layer_decay=0.8, fused=False)]
    assert opts[0].defaults.get("fused") is True and not opts[1].defaults.get("fused")
    x = torch.randn(4, 3, 32, 32)
    for _ in range(3):
        for m, o in zip(models, opts):
            o.zero_grad()
            m(x).square().mean().backward()
            o.step()
    for a, b in zip(models[0].parameters(), models[1].parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    models[0].double()  # float64 is fused too
    assert build_optimizer(models[0], 1e-3, 0.05).defaults.get("fused") is True


# -- schedule -------------------------------------------------------------------------------------------------
def test_warmup_cosine_shape():
    s = WarmupCosine(lr=1.0, total_steps=110, warmup_steps=10, warmup_lr=0.1, min_lr=0.01)
    assert s(0) == pytest.approx(0.1)
    assert s(5) == pytest.approx(0.55)
    assert s(10) == pytest.approx(1.0)
    assert s(60) == pytest.approx(0.01 + 0.99 * 0.5)
    assert s(110) == pytest.approx(0.01)
    vals = [s(i) for i in range(10, 111)]
    assert all(a >= b for a, b in zip(vals, vals[1:])), "cosine phase must not increase"
    with pytest.raises(ValueError):
        WarmupCosine(lr=1.0, total_steps=5, warmup_steps=6)


# -- EMA ------------------------------------------------------------------------------------------------------
def test_ema_follows_weights():
    model = nn.Linear(3, 2)
    ema = ModelEma(model, decay=0.9)
    w0 = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)
    torch.testing.assert_close(ema.module.weight, w0 + 0.1)
    assert ema.updates == 1 and not any(p.requires_grad for p in ema.module.parameters())
    with pytest.raises(ValueError):
        ModelEma(model, 1.0)


# -- atomic checkpoints ---------------------------------------------------------------------------------------
def _model(fill: float) -> nn.Module:
    m = nn.Linear(64, 64)
    with torch.no_grad():
        m.weight.fill_(fill)
        m.bias.fill_(fill)
    return m


def test_checkpoint_roundtrip_and_pruning(tmp_path):
    for step in (1, 2, 3):
        ckpt.save_checkpoint(tmp_path, step, _model(step), {"step": step, "rng": ckpt.rng_state()},
                             ema=_model(-step), keep=2)
    assert sorted(p.name for p in tmp_path.glob("step_*")) == ["step_0000002", "step_0000003"]
    got = ckpt.load_checkpoint_dir(tmp_path)
    assert got["state"]["step"] == 3
    assert torch.all(got["model"]["weight"] == 3) and torch.all(got["ema"]["weight"] == -3)
    # the weights file is a plain vitkit checkpoint
    m = _model(0)
    vitkit.load_checkpoint(m, got["dir"] / ckpt.MODEL_FILE)
    assert torch.all(m.weight == 3)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        ckpt.resolve_checkpoint(tmp_path / "nothing")


def test_failed_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    ckpt.save_checkpoint(tmp_path, 1, _model(1.0), {"step": 1})
    real_save = torch.save

    def broken_save(obj, f, *a, **k):  # write half a file, then die like a full disk would
        real_save(obj, f, *a, **k)
        with open(f, "r+b") as fh:
            fh.truncate(os.path.getsize(f) // 2)
        raise OSError("No space left on device (injected)")

    monkeypatch.setattr(ckpt.torch, "save", broken_save)
    with pytest.raises(OSError, match="injected"):
        ckpt.save_checkpoint(tmp_path, 2, _model(2.0), {"step": 2})
    monkeypatch.setattr(ckpt.torch, "save", real_save)
    got = ckpt.load_checkpoint_dir(tmp_path)
    assert got["state"]["step"] == 1 and torch.all(got["model"]["weight"] == 1.0)
    assert not (tmp_path / "step_0000002").exists()
    ckpt.save_checkpoint(tmp_path, 3, _model(3.0), {"step": 3})  # the next save cleans the leftovers
    assert not list(tmp_path.glob(".tmp-*"))
    assert ckpt.load_checkpoint_dir(tmp_path)["state"]["step"] == 3


_WRITER = textwrap.dedent("""
    import sys, torch, torch.nn as nn
    from vitkit.engine.checkpoint import save_checkpoint
    folder = sys.argv[1]
    m = nn.Linear(1024, 2048)  # 8 MB of weights + 8 MB of state per checkpoint
    for step in range(1, 10_000):
        with torch.no_grad():
            m.weight.fill_(step); m.bias.fill_(step)
        save_checkpoint(folder, step, m, {"step": step, "blob": torch.full((2048, 1024), float(step))}, keep=2)
        print(step, flush=True)
""")


def test_killed_writer_leaves_a_complete_checkpoint(tmp_path):
    """SIGKILL a process that is writing checkpoints back to back; the latest one must load and be whole."""
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    for attempt, delay in enumerate((0.05, 0.23)):
        folder = tmp_path / f"ck{attempt}"
        proc = subprocess.Popen([sys.executable, str(script), str(folder)], stdout=subprocess.PIPE, text=True)
        try:
            first = proc.stdout.readline()  # one checkpoint is complete
            assert first.strip() == "1", "writer failed to start"
            time.sleep(delay)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        got = ckpt.load_checkpoint_dir(folder)
        step = got["state"]["step"]
        assert step >= 1
        assert torch.all(got["model"]["weight"] == step) and torch.all(got["model"]["bias"] == step)
        assert torch.all(got["state"]["blob"] == step)


# -- evaluation -----------------------------------------------------------------------------------------------
def test_metrics_from_scores():
    scores = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.5, 0.4, 0.1], [0.2, 0.5, 0.3]])
    labels = torch.tensor([0, 1, 1, 1])
    r = metrics_from_scores(scores, labels)
    assert r.top1 == pytest.approx(50.0) and r.top5 == pytest.approx(100.0)
    assert r.confusion.tolist() == [[1, 0, 0], [1, 1, 1], [0, 0, 0]]
    assert r.per_class[0] == pytest.approx(100.0) and r.per_class[1] == pytest.approx(100 / 3)
    assert math.isnan(r.per_class[2])
    assert r.loss == pytest.approx(-(math.log(0.7) + math.log(0.3) + math.log(0.4) + math.log(0.5)) / 4)


class _Views(torch.utils.data.Dataset):
    """Multi-view items: view v of sample i is the constant i + v; the model reads the mean pixel."""

    def __init__(self, n=5, views=3):
        self.n, self.views = n, views

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        v = torch.stack([torch.full((1, 2, 2, 2), float(i + k)) for k in range(self.views)])
        return v, i % 2, i


class _MeanModel(nn.Module):
    def forward(self, x):  # logits (a, -a): class 0 likes big inputs
        a = x.mean(dim=(1, 2, 3, 4)) - 2.0
        return torch.stack([a, -a], 1)


def test_multiview_scores_are_averaged_softmax():
    ds = _Views()
    scores, labels, views = score_dataset(_MeanModel(), ds, batch_size=2)
    assert views == 3 and labels.tolist() == [0, 1, 0, 1, 0]
    for i in range(5):
        a = torch.tensor([i + k - 2.0 for k in range(3)])
        want = torch.stack([a, -a], 1).softmax(-1).mean(0)
        torch.testing.assert_close(scores[i], want)


def test_shuffle_frames_permutes_time_only():
    x = torch.arange(8.0).view(1, 1, 8, 1, 1).expand(2, 3, 8, 2, 2).contiguous()
    y = shuffle_frames(x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape
    assert not torch.equal(y, x)
    for b in range(2):
        order = y[b, 0, :, 0, 0]
        assert sorted(order.tolist()) == list(range(8))
        assert torch.equal(y[b], order.view(1, 8, 1, 1).expand(3, 8, 2, 2))  # same order on every channel
    with pytest.raises(ValueError, match="video"):
        shuffle_frames(torch.zeros(2, 3, 4, 4), torch.Generator())


def test_sgd_for_vit_fine_tuning_recipe():
    from vitkit.engine.recipe import find_recipe, load_recipe

    r = load_recipe(find_recipe("imagenet/vit_base_patch16_384"))
    assert r.optim.name == "sgd" and r.optim.weight_decay == 0.0 and r.train.clip_grad == 1.0
    model = vitkit.create_model("vit_demo_patch4_32", depth=1, embed_dim=16, num_heads=2)
    opt = build_optimizer(model, lr=0.01, weight_decay=0.0, name="sgd", momentum=0.9)
    assert isinstance(opt, torch.optim.SGD) and all(g["momentum"] == 0.9 for g in opt.param_groups)


@pytest.mark.parametrize("repeats", [1, 2])
def test_epoch_sampler_shards_and_skips(repeats):
    from vitkit.engine.data import train_sampler
    from vitkit.engine.recipe import load_recipe

    r = load_recipe(None, [f"data.repeated_aug={repeats}"])
    data = list(range(11))
    ranks = [train_sampler(data, r, rank=k, world_size=2) for k in range(2)]
    for s in ranks:
        s.set_epoch(3)
    full = [list(s) for s in ranks]
    assert all(e == 3 for part in full for e, _, _ in part)
    assert len(full[0]) == len(full[1])
    seen = [i for part in full for _, i, _ in part]
    if repeats == 1:
        assert set(seen) == set(data)  # every sample seen in the epoch
    else:  # repeated augmentation (DeiT): each chosen sample appears `repeats` times, on different ranks
        assert {i for _, i, _ in full[0]} == {i for _, i, _ in full[1]}
        views = [v for part in full for _, _, v in part]
        assert len(set(views)) == len(views), "repeats of a sample must get distinct augmentation seeds"
    ranks[0].set_epoch(3, start=4)
    assert list(ranks[0]) == full[0][4:]  # resume skips exactly what was consumed
    ranks[0].set_epoch(4)
    assert [i for _, i, _ in ranks[0]] != [i for _, i, _ in full[0]]  # a new order every epoch
    if repeats == 1:  # one process sees the same global order, interleaved by rank
        one = train_sampler(data, r, rank=0, world_size=1)
        one.set_epoch(3)
        merged = [x for pair in zip(full[0], full[1]) for x in pair]
        assert [i for _, i, _ in merged][:10] == [i for _, i, _ in list(one)][:10]
        assert {v for part in full for _, _, v in part} == {0}  # same seeds as one process: DDP == 1 process
