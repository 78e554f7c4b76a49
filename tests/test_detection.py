"""Detection and instance segmentation: COCO reading, the detector on vitkit backbones, COCO AP, mmdet keys."""
from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("pycocotools")
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402

from vitkit.checkpoints.mmdet_heads import convert_mmdet_heads  # noqa: E402
from vitkit.data.coco import CocoDetection, collate_detection  # noqa: E402
from vitkit.tasks.coco_eval import coco_ap, detection_records  # noqa: E402
from vitkit.tasks.detection_model import build_detector  # noqa: E402

TINY_SWIN = dict(embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1))


def _write_coco(tmp_path, *, bad: bool = True, sizes=((96, 80), (64, 72), (80, 80))) -> tuple[str, str]:
    """Noise images (``sizes``: width, height) with square objects, as polygons, RLE and a crowd region; plus bad
    annotations and an image without any."""
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(0)
    img_dir = tmp_path / "images"
    img_dir.mkdir()
    images, anns = [], []
    for i, (w, h) in enumerate(sizes, start=1):
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(img_dir / f"{i}.png")
        images.append({"id": i, "file_name": f"{i}.png", "width": w, "height": h})
        anns.append({"id": 10 * i, "image_id": i, "category_id": 3, "iscrowd": 0, "bbox": [10, 12, 30, 20],
                     "area": 600, "segmentation": [[10, 12, 40, 12, 40, 32, 10, 32]]})
        m = np.zeros((h, w), np.uint8, order="F")
        m[40:60, 20:50] = 1
        rle = mask_utils.encode(m)
        rle["counts"] = rle["counts"].decode("ascii")
        anns.append({"id": 10 * i + 1, "image_id": i, "category_id": 7, "iscrowd": 0, "bbox": [20, 40, 30, 20],
                     "area": 600, "segmentation": rle})
    anns.append({"id": 99, "image_id": 1, "category_id": 3, "iscrowd": 1, "bbox": [0, 0, 5, 5], "area": 25,
                 "segmentation": [[0, 0, 5, 0, 5, 5, 0, 5]]})
    if bad:
        anns += [
            {"id": 100, "image_id": 2, "category_id": 3, "iscrowd": 0, "bbox": [5, 5, 0, 10], "area": 0,
             "segmentation": [[5, 5, 5, 5, 5, 15]]},                                  # zero area
            {"id": 101, "image_id": 2, "category_id": 42, "iscrowd": 0, "bbox": [1, 1, 5, 5], "area": 25,
             "segmentation": [[1, 1, 6, 1, 6, 6, 1, 6]]},                            # unknown category
            {"id": 102, "image_id": 3, "category_id": 7, "iscrowd": 0, "bbox": [60, 60, 40, 40], "area": 400,
             "segmentation": [[60, 60, 100, 60, 100, 100, 60, 100]]},                  # reaches outside
        ]
        empty = len(sizes) + 1
        images.append({"id": empty, "file_name": f"{empty}.png", "width": 32, "height": 32})  # no annotations
        Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(img_dir / f"{empty}.png")
    cats = [{"id": 3, "name": "square"}, {"id": 7, "name": "blob"}]
    path = tmp_path / "ann.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return str(path), str(img_dir)


def test_coco_reader_targets_and_counted_problems(tmp_path):
    ann, img_dir = _write_coco(tmp_path)
    ds = CocoDetection(ann, img_dir, train=True, flip=0)
    assert ds.class_names == ["square", "blob"] and ds.num_classes == 2
    assert len(ds) == 3                                   # the image without annotations is left out
    assert ds.problems == {"boxes of zero area (after clipping to the image)": 1,
                           "annotations with unknown category ids": 1,
                           "annotations reaching outside the image (clipped)": 1,
                           "images without usable annotations (left out of training)": 1}
    image, target = ds[0]
    assert image.shape == (3, 80, 96) and image.dtype == torch.float32 and 0 <= image.min() <= image.max() <= 1
    assert target["labels"].tolist() == [1, 2]            # crowd region left out; ids 3, 7 -> labels 1, 2
    assert target["boxes"].tolist() == [[10, 12, 40, 32], [20, 40, 50, 60]]
    assert target["masks"].shape == (2, 80, 96) and target["masks"][1, 40:60, 20:50].all()
    assert int(target["masks"][1].sum()) == 600
    _, clipped = ds[2]
    assert clipped["boxes"][2].tolist() == [60, 60, 80, 80]
    assert clipped["masks"].shape == (3, 80, 80) and int(clipped["masks"][2].sum()) == 400   # polygon clipped
    assert len(CocoDetection(ann, img_dir, train=False)) == 4


def test_coco_reader_rejects_a_training_file_without_usable_annotations(tmp_path):
    ann, img_dir = _write_coco(tmp_path)
    data = json.loads(open(ann).read())
    data["annotations"] = [a for a in data["annotations"] if a["id"] in (99, 100, 101)]  # crowd, zero area, unknown
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="no image with usable annotations .*1 boxes of zero area"):
        CocoDetection(str(tmp_path / "bad.json"), img_dir, train=True)
    assert len(CocoDetection(str(tmp_path / "bad.json"), img_dir, train=False)) == 4   # evaluation reads it


def test_coco_reader_flip_moves_boxes_and_masks(tmp_path):
    ann, img_dir = _write_coco(tmp_path, bad=False)
    ds = CocoDetection(ann, img_dir, train=True, flip=1.0)
    image, target = ds[0]
    plain_image, plain = CocoDetection(ann, img_dir, train=False)[0]
    assert torch.equal(image, plain_image.flip(-1))
    assert target["boxes"][0].tolist() == [96 - 40, 12, 96 - 10, 32]
    assert torch.equal(target["masks"], plain["masks"].flip(-1))


def test_coco_reader_errors_and_unreadable_image(tmp_path, caplog):
    with pytest.raises(FileNotFoundError, match="COCO annotation file"):
        CocoDetection(str(tmp_path / "missing.json"), str(tmp_path), train=True)
    ann, img_dir = _write_coco(tmp_path, bad=False)
    (tmp_path / "images" / "1.png").write_bytes(b"not a png")
    ds = CocoDetection(ann, img_dir, train=True, flip=0)
    image, target = ds[0]                                  # replaced by the next image
    assert target["image_id"] == 2 and "1.png" in ds.unreadable


def _records_from_gt(coco: COCO, jitter: float) -> list[dict]:
    rng = np.random.default_rng(1)
    out = []
    for a in coco.loadAnns(coco.getAnnIds(iscrowd=False)):
        x, y, w, h = a["bbox"]
        out.append({"image_id": a["image_id"], "category_id": a["category_id"], "score": float(rng.random()),
                    "bbox": [x + jitter * rng.standard_normal(), y, w, h]})
    return out


def test_coco_ap_equals_pycocotools_and_perfect_predictions(tmp_path):
    ann, _ = _write_coco(tmp_path, bad=False)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(ann)
    assert coco_ap(gt, _records_from_gt(gt, 0.0), "bbox")["AP"] == pytest.approx(100.0)
    noisy = _records_from_gt(gt, 4.0)
    ours = coco_ap(gt, noisy, "bbox")
    (tmp_path / "dt.json").write_text(json.dumps(noisy))
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(gt, gt.loadRes(str(tmp_path / "dt.json")), "bbox")
        ev.evaluate(), ev.accumulate(), ev.summarize()
    assert ours["AP"] == pytest.approx(ev.stats[0] * 100) and ours["APl"] == pytest.approx(ev.stats[5] * 100)
    assert 0 < ours["AP"] < 100


def test_detection_records_masks_round_trip(tmp_path):
    ann, _ = _write_coco(tmp_path, bad=False)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(ann)
    m = torch.zeros(1, 1, 80, 96)
    m[0, 0, 40:60, 20:50] = 0.9
    out = {"boxes": torch.tensor([[20.0, 40, 50, 60]]), "scores": torch.tensor([0.8]), "labels": torch.tensor([2]),
           "masks": m}
    recs = detection_records(1, out, [3, 7], masks=True)
    assert recs[0]["category_id"] == 7 and recs[0]["bbox"] == [20, 40, 30, 20]
    segm = coco_ap(gt, recs, "segm", image_ids=[1])
    assert segm["AP"] > 49                                # one of the two objects found exactly


@pytest.mark.parametrize("masks", [True, False])
def test_detector_on_vitkit_backbone_trains_and_predicts(tmp_path, masks):
    torch.manual_seed(0)
    ann, img_dir = _write_coco(tmp_path, bad=False)
    ds = CocoDetection(ann, img_dir, train=True, masks=masks, flip=0)
    images, targets = collate_detection([ds[0], ds[1]])
    model = build_detector("swin_tiny_patch4_window7_224", ds.num_classes, masks=masks, min_size=(64, 96),
                           max_size=128, box_head_dim=64, fpn_channels=32, mask_head_dim=16, rois_per_image=64,
                           **TINY_SWIN)
    assert model.backbone.out_channels == 32
    model.train()
    losses = model(images, targets)
    assert ("loss_mask" in losses) == masks and all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert model.backbone.body.patch_embed.proj.weight.grad is not None
    model.eval()
    with torch.no_grad():
        out = model(images)
    assert len(out) == 2 and out[0]["boxes"].shape[-1] == 4
    if masks:
        assert out[1]["masks"].shape[-2:] == images[1].shape[-2:]


def test_detector_rejects_video_backbones_and_bad_counts():
    with pytest.raises(ValueError, match="at least 1"):
        build_detector("swin_tiny_patch4_window7_224", 0, **TINY_SWIN)
    with pytest.raises(ValueError, match="video model"):
        build_detector("vit_demo_video_8x32", 2)


def _mmdet_heads(num_classes: int, in_chs: list[int]) -> dict[str, torch.Tensor]:
    """Head keys and shapes of mmdet 2.x Mask R-CNN (mask_rcnn_swin_fpn.py), random values."""
    g = torch.Generator().manual_seed(0)
    shapes = {}
    for i, c in enumerate(in_chs):
        shapes[f"neck.lateral_convs.{i}.conv.weight"] = (256, c, 1, 1)
        shapes[f"neck.lateral_convs.{i}.conv.bias"] = (256,)
        shapes[f"neck.fpn_convs.{i}.conv.weight"] = (256, 256, 3, 3)
        shapes[f"neck.fpn_convs.{i}.conv.bias"] = (256,)
    shapes.update({
        "rpn_head.rpn_conv.weight": (256, 256, 3, 3), "rpn_head.rpn_conv.bias": (256,),
        "rpn_head.rpn_cls.weight": (3, 256, 1, 1), "rpn_head.rpn_cls.bias": (3,),
        "rpn_head.rpn_reg.weight": (12, 256, 1, 1), "rpn_head.rpn_reg.bias": (12,),
        "roi_head.bbox_head.shared_fcs.0.weight": (1024, 256 * 49), "roi_head.bbox_head.shared_fcs.0.bias": (1024,),
        "roi_head.bbox_head.shared_fcs.1.weight": (1024, 1024), "roi_head.bbox_head.shared_fcs.1.bias": (1024,),
        "roi_head.bbox_head.fc_cls.weight": (num_classes + 1, 1024), "roi_head.bbox_head.fc_cls.bias": (num_classes + 1,),
        "roi_head.bbox_head.fc_reg.weight": (num_classes * 4, 1024), "roi_head.bbox_head.fc_reg.bias": (num_classes * 4,),
        "roi_head.mask_head.upsample.weight": (256, 256, 2, 2), "roi_head.mask_head.upsample.bias": (256,),
        "roi_head.mask_head.conv_logits.weight": (num_classes, 256, 1, 1),
        "roi_head.mask_head.conv_logits.bias": (num_classes,),
    })
    for i in range(4):
        shapes[f"roi_head.mask_head.convs.{i}.conv.weight"] = (256, 256, 3, 3)
        shapes[f"roi_head.mask_head.convs.{i}.conv.bias"] = (256,)
    return {k: torch.randn(s, generator=g) for k, s in shapes.items()}


def test_mmdet_heads_load_into_the_detector_with_background_moved():
    model = build_detector("swin_tiny_patch4_window7_224", 3, **TINY_SWIN)
    state = _mmdet_heads(3, model.backbone.body.feature_info.channels())
    state["backbone.patch_embed.proj.weight"] = torch.zeros(1)       # left to the backbone's converter
    state["roi_head.bbox_head.fc_cls2.weight"] = torch.zeros(1)     # a part that does not map
    mapped, unmapped = convert_mmdet_heads(state)
    assert unmapped == ["roi_head.bbox_head.fc_cls2.weight"]
    own = {k for k in model.state_dict() if not k.startswith("backbone.body.")}
    assert set(mapped) == own                                        # every head and neck tensor, nothing else
    missing, unexpected = model.load_state_dict(mapped, strict=False)
    assert not unexpected and all(k.startswith("backbone.body.") for k in missing)
    sd = model.state_dict()
    cls = state["roi_head.bbox_head.fc_cls.weight"]
    assert torch.equal(sd["roi_heads.box_predictor.cls_score.weight"][0], cls[3])   # background first
    assert torch.equal(sd["roi_heads.box_predictor.cls_score.weight"][1:], cls[:3])
    assert torch.equal(sd["roi_heads.box_predictor.bbox_pred.weight"][4:], state["roi_head.bbox_head.fc_reg.weight"])
    assert not sd["roi_heads.box_predictor.bbox_pred.weight"][:4].any()
    assert torch.equal(sd["backbone.fpn.inner_blocks.2.0.weight"], state["neck.lateral_convs.2.conv.weight"])


def test_detection_trains_evaluates_and_predicts_through_the_cli(tmp_path, capsys):
    """The demo recipe on the test's own COCO files (narrow heads): 2 steps by ``vitkit train``, then ``vitkit
    evaluate`` (box and mask AP by pycocotools) and ``vitkit predict`` (COCO result records and overlays)."""
    from pycocotools import mask as mask_utils

    from vitkit.cli import main

    ann, img_dir = _write_coco(tmp_path)        # with the bad annotations and the image without any: no crash
    run = tmp_path / "run"
    assert main(["train", "demo/digit_scenes_det", "data.dataset=coco", f"task.train_annotations={ann}",
                 f"task.train_images={img_dir}", f"task.test_annotations={ann}", f"task.test_images={img_dir}",
                 "task.min_size=[64]", "task.test_size=64", "task.fpn_channels=16", "task.box_head_dim=16",
                 "task.rois_per_image=16", "task.mask_head_dim=8", "train.batch_size=2", "train.max_steps=2",
                 "eval.batch_size=2", f"run.dir={run}"]) == 0
    final = json.loads((run / "results.json").read_text())
    assert {"box_AP", "box_AP50", "mask_AP", "mask_APl"} <= set(final)
    assert all(0.0 <= final[k] <= 100.0 for k in ("box_AP", "mask_AP"))
    assert "box AP" in capsys.readouterr().out

    assert main(["evaluate", str(run), "--out", str(tmp_path / "ev")]) == 0
    report = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert report["box_AP"] == pytest.approx(final["box_AP"]) and report["num_samples"] == 4
    assert (tmp_path / "ev" / "overlay_0000.png").is_file()

    pred = tmp_path / "pred"
    assert main(["predict", str(run), img_dir, str(tmp_path / "missing.png"), "--out", str(pred),
                 "--score", "0"]) == 1                                      # a folder of 4 images, one bad file
    out = capsys.readouterr().out
    assert "missing.png: cannot read" in out and "predictions.json" in out
    records = json.loads((pred / "predictions.json").read_text())
    assert records and {r["image_id"] for r in records} <= {1, 2, 3, 4}
    sizes = {1: (80, 96), 2: (72, 64), 3: (80, 80), 4: (32, 32)}
    for r in records:
        assert r["category_id"] in (3, 7) and 0.05 <= r["score"] <= 1 and len(r["bbox"]) == 4
        assert r["file_name"].endswith(f"{r['image_id']}.png")
        assert mask_utils.decode(r["segmentation"]).shape == sizes[r["image_id"]]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(ann)
        gt.loadRes(records)                                                 # valid COCO results
    for i in (1, 2, 3, 4):
        assert Image.open(pred / f"{i}_overlay.png").size == sizes[i][::-1]
    # a weights file with its recipe gives the same records
    assert main(["predict", str(run / "model.safetensors"), str(tmp_path / "images" / "2.png"), "--recipe",
                 str(run / "recipe.yaml"), "--out", str(tmp_path / "pred2")]) == 0
    again = json.loads((tmp_path / "pred2" / "predictions.json").read_text())
    assert [r["bbox"] for r in again] == [r["bbox"] for r in records if r["image_id"] == 2]


def test_whole_mmdet_detector_checkpoint_loads_with_a_report():
    from vitkit.checkpoints import CheckpointError
    from vitkit.tasks.detection_model import load_detector_weights

    model = build_detector("swin_tiny_patch4_window7_224", 3, **TINY_SWIN)
    source = build_detector("swin_tiny_patch4_window7_224", 3, **TINY_SWIN)
    state = {f"backbone.{k}": v for k, v in source.backbone.body.state_dict().items()}
    state.update(_mmdet_heads(3, model.backbone.body.feature_info.channels()))
    report = load_detector_weights(model, state)
    assert report.ok and not report.missing and not report.unexpected
    for k, v in source.backbone.body.state_dict().items():
        assert torch.equal(model.backbone.body.state_dict()[k], v), k
    assert torch.equal(model.rpn.head.conv[0][0].weight, state["rpn_head.rpn_conv.weight"])
    state["roi_head.bbox_head.0.fc_cls.weight"] = torch.zeros(4, 1024)   # a Cascade stage: does not map
    with pytest.raises(CheckpointError, match="roi_head.bbox_head.0.fc_cls.weight"):
        load_detector_weights(model, state)
    assert "roi_head.bbox_head.0.fc_cls.weight" in load_detector_weights(model, state, strict=False).unexpected


# -- 2-process evaluation -----------------------------------------------------------------------------------------
class _NoisyGroundTruth(torch.nn.Module):
    """A stand-in detector whose detections are the ground truth moved by noise, plus a false positive, looked up
    by image content: its AP lies well between 0 and 100, so a lost or doubled image changes it."""

    def __init__(self, ds) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.table = {}
        for i in range(len(ds)):
            image, t = ds[i]
            h, w = image.shape[-2:]
            boxes = torch.cat([t["boxes"] + 4 * torch.randn(len(t["boxes"]), 4, generator=g),
                               torch.tensor([[0.0, 0, 12, 12]])])
            boxes = torch.maximum(boxes.clamp(min=0).minimum(torch.tensor([w, h, w, h])), boxes[:, [0, 1, 0, 1]] + 1)
            masks = torch.cat([t["masks"].float(), torch.zeros(1, h, w)])[:, None]
            self.table[_key(image)] = {"boxes": boxes, "scores": torch.rand(len(boxes), generator=g),
                                       "labels": torch.cat([t["labels"], torch.tensor([1])]), "masks": masks}

    def forward(self, batch):
        return [self.table[_key(im)] for im in batch["images"]]


def _key(image: torch.Tensor) -> bytes:
    import hashlib

    return hashlib.sha1(image.cpu().numpy().tobytes()).digest()


def _ddp_models(ds, weights: str) -> dict[str, torch.nn.Module]:
    from vitkit.tasks.detection import DetectionModel

    det = build_detector("swin_tiny_patch4_window7_224", ds.num_classes, min_size=(64,), max_size=96,
                         box_head_dim=32, fpn_channels=32, mask_head_dim=16, **TINY_SWIN)
    det.load_state_dict(torch.load(weights, weights_only=True))
    return {"detector": DetectionModel(det, 64), "noisy_gt": _NoisyGroundTruth(ds)}


def _ddp_eval_worker(rank: int, world: int, init: str, ann: str, img_dir: str, weights: str, out: str) -> None:
    from ddp_eval import evaluate_two_then_one

    from vitkit.tasks.detection import Detection, DetectionSet

    torch.set_num_threads(1)
    ds = DetectionSet(CocoDetection(ann, img_dir, train=False))
    two, one = evaluate_two_then_one(Detection(), _ddp_models(ds, weights), ds, 1, rank, world, init)
    if rank == 0:
        torch.save({"two": two, "one": one}, out)


@pytest.mark.slow
def test_two_process_detection_evaluation_equals_one(tmp_path):
    """Box and mask AP under 2 processes (gloo) equal 1 process: every image's records once, in the same order."""
    import torch.multiprocessing as mp

    ann, img_dir = _write_coco(tmp_path, sizes=((96, 80), (64, 72), (80, 80), (72, 64)))  # 5 images: uneven shards
    det = build_detector("swin_tiny_patch4_window7_224", 2, min_size=(64,), max_size=96, box_head_dim=32,
                         fpn_channels=32, mask_head_dim=16, **TINY_SWIN)
    torch.save(det.state_dict(), tmp_path / "w.pt")
    mp.spawn(_ddp_eval_worker, args=(2, f"file://{tmp_path / 'store'}", ann, img_dir, str(tmp_path / "w.pt"),
                                     str(tmp_path / "res.pt")), nprocs=2, join=True)
    res = torch.load(tmp_path / "res.pt", weights_only=False)
    for name in ("detector", "noisy_gt"):
        (two, two_recs), (one, one_recs) = res["two"][name], res["one"][name]
        assert one["num_samples"] == 5 and two == one, name
        assert two_recs == one_recs and len({json.dumps(r, sort_keys=True) for r in one_recs}) == len(one_recs)
        assert {r["image_id"] for r in one_recs} <= {1, 2, 3, 4, 5}
    gt = res["one"]["noisy_gt"][0]
    assert 10 < gt["box_AP"] < 90 and 10 < gt["mask_AP"] < 100     # far from both ends: a lost image would show
    assert len(res["one"]["detector"][1]) > 0                        # the real detector's records compared too


# -- COCO recipes -------------------------------------------------------------------------------------------------
def test_coco_recipes_resolve_with_the_papers_schedules():
    from vitkit.engine.recipe import load_recipe
    from vitkit.engine.recipe_files import find_recipe

    names = ["mask_rcnn_swin_tiny_1x", "mask_rcnn_swin_tiny_3x", "mask_rcnn_swin_small_3x",
             "mask_rcnn_uniformer_small_1x", "mask_rcnn_uniformer_small_3x", "mask_rcnn_uniformer_base_1x",
             "mask_rcnn_uniformer_base_3x", "mask_rcnn_mvitv2_tiny_3x", "top_down_uniformer_small_256x192"]
    recipes = {n: load_recipe(find_recipe(f"coco/{n}")) for n in names}
    for n, r in recipes.items():
        assert r.task.name == ("pose" if n.startswith("top_down") else "detection") and r.schedule.name == "step", n
    one, three = recipes["mask_rcnn_swin_tiny_1x"], recipes["mask_rcnn_swin_tiny_3x"]
    assert (one.schedule.epochs, one.schedule.milestones) == (12, [8, 11])
    assert (three.schedule.epochs, three.schedule.milestones) == (36, [27, 33])
    assert one.model.config["drop_path_rate"] == 0.1 and three.model.config["drop_path_rate"] == 0.2
    assert one.task.options["min_size"][0] == 480 and one.task.options["min_size"][-1] == 800
    assert recipes["mask_rcnn_uniformer_small_1x"].task.options["min_size"] == [800]     # 1x: single scale
    assert recipes["mask_rcnn_uniformer_small_3x"].model.config == {"hybrid": True, "window_size": 14,
                                                                    "drop_path_rate": 0.1}
    mv = recipes["mask_rcnn_mvitv2_tiny_3x"]
    assert (mv.schedule.iters, mv.schedule.milestones, mv.train.batch_size) == (67500, [52500, 62500], 64)


@pytest.mark.slow
def test_a_coco_recipe_trains_one_step_at_a_tiny_size(tmp_path):
    """configs/coco/mask_rcnn_swin_tiny_1x (the full Swin-T, narrow heads) one step on the test's COCO files at
    64 px, then box and mask AP."""
    from vitkit.engine.recipe import find_recipe, load_recipe
    from vitkit.engine.trainer import Trainer

    ann, img_dir = _write_coco(tmp_path, bad=False)
    r = load_recipe(find_recipe("coco/mask_rcnn_swin_tiny_1x"), [
        f"task.train_annotations={ann}", f"task.train_images={img_dir}", f"task.test_annotations={ann}",
        f"task.test_images={img_dir}", "task.min_size=[64]", "task.test_size=64", "task.max_size=128",
        "task.fpn_channels=32", "task.box_head_dim=32", "task.mask_head_dim=16", "task.rois_per_image=32",
        "train.batch_size=2", "train.max_steps=1", "train.amp=none", "train.workers=0", f"run.dir={tmp_path / 'run'}"])
    final = Trainer(r, quiet=True).fit().final
    assert 0 <= final["box_AP"] <= 100 and 0 <= final["mask_AP"] <= 100 and final["num_samples"] == 3
