"""Export parity: every registered family (image and video) to ONNX (onnxruntime vs PyTorch, max abs diff
<= 1e-4, dynamic batch) and to a torch.export program, at small inputs.

One case per family runs by default (its cheaper modality, demo variants first); the other modality runs with
``-m slow``. The older TorchScript exporter is checked on ViT only: it cannot export ``movedim``/negative
permutations, which the other families use, so the ``torch.export``-based exporter is the default.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import vitkit
from vitkit.export import accepted_input, export_onnx, export_program, export_pt2, size_overrides

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def _pick(family: str, video: bool) -> str | None:
    """The family's demo variant of that modality, else its cheapest registered one."""
    names = [n for n in vitkit.list_models(family=family) if vitkit.model_info(n).is_video == video]
    if not names:
        return None
    demo = [n for n in names if vitkit.model_info(n).demo]
    if demo:
        return demo[0]
    return min(names, key=lambda n: (vitkit.model_info(n).paper_macs or float("inf"), n))


def _cases():
    """Per family: its image and video variant; the cheaper one (demo first) runs by default, the other is slow."""
    cases = []
    families = sorted({vitkit.model_info(n).family for n in vitkit.list_models()})
    for fam in families:
        names = [n for n in (_pick(fam, False), _pick(fam, True)) if n is not None]
        names.sort(key=lambda n: (not vitkit.model_info(n).demo, vitkit.model_info(n).paper_macs or 0.0))
        for i, name in enumerate(names):
            cases.append(pytest.param(name, marks=[pytest.mark.slow] if i else [], id=name))
    return cases


CASES = _cases()


def _small(name: str) -> tuple[torch.nn.Module, tuple[int, ...]]:
    """The variant at its test input size; paper variants with at most 2 blocks per stage (tracing time grows
    with depth; every kind of block, e.g. Swin's shifted one, is still there)."""
    import dataclasses

    info = vitkit.model_info(name)
    size = info.test_input_size or ((3, 4, 64, 64) if info.is_video else (3, 64, 64))
    overrides = size_overrides(info, size)
    fields = {f.name for f in dataclasses.fields(info.config)}
    if not info.demo and "depths" in fields:
        overrides["depths"] = tuple(min(d, 2) for d in info.config.depths)
    torch.manual_seed(0)
    model = vitkit.create_model(name, **overrides).eval()
    return model, tuple(size)


@pytest.mark.parametrize("name", CASES)
def test_export_onnx_and_pt2_match_pytorch(name, tmp_path):
    model, size = _small(name)
    program = export_program(model, size, attention="explicit")  # traced once, used for both files
    r = export_pt2(model, tmp_path / "m.pt2", size, attention="explicit", program=program)
    assert r.max_abs_diff is not None and r.max_abs_diff <= 1e-5
    loaded = torch.export.load(str(tmp_path / "m.pt2")).module()
    x = torch.randn(5, *size)  # a batch size never seen at export
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x), atol=1e-5)
    meta = json.loads((tmp_path / "m.pt2.json").read_text())
    assert meta["vitkit.accepts"] == accepted_input(size)

    r = export_onnx(model, tmp_path / "m.onnx", size, program=program)
    assert r.max_abs_diff is not None and r.max_abs_diff <= 1e-4, r
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    assert isinstance(inp.shape[0], str)  # symbolic: the batch is dynamic
    assert inp.shape[1:] == list(size)  # the rest is fixed, as stated
    with torch.no_grad():
        want = model(x).numpy()
    got = sess.run(None, {inp.name: x.numpy()})[0]
    assert np.abs(got - want).max() <= 1e-4
    props = {p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    assert props["vitkit.model"] == name and props["vitkit.accepts"] == r.accepts
    # one self-contained file: no stray copy of the weights beside it, no tensor stored outside it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.pt2", "m.pt2.json"]
    assert r.external_data is None and not _external_tensors(tmp_path / "m.onnx")
    # a different spatial size is refused by onnxruntime, as the metadata says
    bad = torch.randn(1, *size[:-1], size[-1] + 8).numpy()
    with pytest.raises(Exception, match="(?i)dimension|shape"):
        sess.run(None, {inp.name: bad})


@pytest.mark.slow
@pytest.mark.parametrize("name", [c.values[0] for c in CASES])
def test_export_pt2_fused_attention_and_onnx_auto(name, tmp_path):
    # the defaults users get for .pt2 (fused SDPA kept in the program) and the 'auto' ONNX attention
    model, size = _small(name)
    r = export_pt2(model, tmp_path / "m.pt2", size)
    assert r.attention == "sdpa" and r.max_abs_diff <= 1e-5
    r = export_onnx(model, tmp_path / "m.onnx", size, attention="auto")
    assert r.attention in ("sdpa", "explicit") and r.max_abs_diff <= 1e-4


@pytest.mark.slow
def test_export_onnx_torchscript_exporter_vit_video(tmp_path):
    model, size = _small("vit_demo_video_8x32")
    r = export_onnx(model, tmp_path / "m.onnx", size, exporter="torchscript")
    assert r.attention == "explicit" and r.max_abs_diff <= 1e-4


def _external_tensors(path) -> list[str]:
    proto = onnx.load(str(path), load_external_data=False)
    return [t.name for t in proto.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]


def test_onnx_over_the_size_limit_gets_external_data_and_keeps_metadata(tmp_path):
    """The > 2 GB path, chosen by size: here with the limit lowered to 1 MB for a 1.2 M-parameter model."""
    from vitkit.export import onnx_layout

    model = vitkit.create_model("vit_demo_patch4_32", num_classes=3).eval()
    names = ["cat", "dog", "bird"]
    r = export_onnx(model, tmp_path / "m.onnx", exporter="torchscript", classes=names, single_file_limit=2**20)
    assert r.external_data == str(tmp_path / "m.onnx.data") and r.max_abs_diff <= 1e-4  # onnxruntime finds it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.onnx.data"]
    assert len(_external_tensors(tmp_path / "m.onnx")) > 10
    assert (tmp_path / "m.onnx").stat().st_size < 2**20 < (tmp_path / "m.onnx.data").stat().st_size
    props = {p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx"), load_external_data=False).metadata_props}
    assert json.loads(props["vitkit.classes"]) == names and props["vitkit.accepts"] == r.accepts
    # the same model under the real 2 GB limit: one file again, and the old weights file goes away
    r = export_onnx(model, tmp_path / "m.onnx", exporter="torchscript", check=False)
    assert r.external_data is None and sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]
    proto = onnx.load(str(tmp_path / "m.onnx"))
    assert onnx_layout(proto) == "single" and onnx_layout(proto, limit=proto.ByteSize()) == "external"
    assert "vitkit.classes" not in {p.key for p in proto.metadata_props}
    with pytest.raises(ValueError, match="2 class names for a model with 3 outputs"):
        export_onnx(model, tmp_path / "n.onnx", classes=["a", "b"])


def test_accepted_input_states_sizes():
    assert "N dynamic" in accepted_input((3, 224, 224)) and "H=224, W=224 fixed" in accepted_input((3, 224, 224))
    assert "T=16" in accepted_input((3, 16, 224, 224))


def test_size_overrides_and_errors():
    info = vitkit.model_info("vit_demo_patch4_32")
    assert size_overrides(info, (3, 32, 32)) == {}
    assert size_overrides(info, (3, 48, 64)) == {"img_size": (48, 64)}
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        size_overrides(info, (3, 4, 32, 32))
    with pytest.raises(ValueError, match="format must be"):
        from vitkit.export import export

        export(torch.nn.Linear(2, 2), "x", "tflite", (2,))


def test_cli_export_onnx(tmp_path):
    from vitkit.cli import main
    from vitkit.checkpoints.base import save_weights

    model = vitkit.create_model("vit_demo_patch4_32")
    save_weights(model, tmp_path / "w.safetensors")
    out = tmp_path / "demo.onnx"
    rc = main(["export", "vit_demo_patch4_32", "--weights", str(tmp_path / "w.safetensors"), "--format", "onnx",
               "-o", str(out), "--exporter", "torchscript"])
    assert rc == 0
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        want = model.eval()(x).numpy()
    assert np.abs(sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0] - want).max() <= 1e-4
    assert main(["export", "vit_demo_patch4_32", "--format", "onnx", "-o", str(out),
                 "--input-size", "3,4,32,32"]) == 2
