"""Top-down pose: crops and heatmap targets, decoding back to the image, OKS AP, the deconvolution head."""
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

from vitkit.data.coco_keypoints import CocoKeypoints  # noqa: E402
from vitkit.tasks.coco_eval import keypoint_records  # noqa: E402
from vitkit.tasks.pose_model import TopDownPose, decode_heatmaps, joints_mse_loss  # noqa: E402

NAMES = ["nose", "left_end", "right_end", "middle"]
PAIRS = [(1, 2)]


def _write_people(tmp_path, bad: bool = False) -> tuple[str, str]:
    """Three noise images with one person of 4 keypoints each and one without labelled keypoints; ``bad`` adds a
    zero-area box, an unknown category, a keypoint outside the image and an image without annotations."""
    rng = np.random.default_rng(0)
    img_dir = tmp_path / "img"
    img_dir.mkdir()
    images, anns = [], []
    for i in range(1, 5 if bad else 4):
        w, h = 120 + 8 * i, 100
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(img_dir / f"{i}.png")
        images.append({"id": i, "file_name": f"{i}.png", "width": w, "height": h})
        x0, y0 = 20 + 5 * i, 15
        kps = [x0 + 20, y0 + 10, 2, x0 + 8, y0 + 40, 2, x0 + 36, y0 + 44, 2, x0 + 22, y0 + 60, 1]
        if i < 4:                                                            # image 4: no annotations
            anns.append({"id": i, "image_id": i, "category_id": 1, "iscrowd": 0, "bbox": [x0, y0, 45, 70],
                         "area": 45 * 70, "keypoints": kps, "num_keypoints": 4})
    if bad:
        kps = [60, 30, 2, 500, 40, 2, 70, 50, 2, 65, 60, 2]                   # the second one outside the image
        anns += [{"id": 20, "image_id": 2, "category_id": 1, "iscrowd": 0, "bbox": [5, 5, 0, 10], "area": 0,
                  "keypoints": [5, 6, 2] * 4, "num_keypoints": 4},           # zero area
                 {"id": 21, "image_id": 2, "category_id": 42, "iscrowd": 0, "bbox": [5, 5, 10, 10], "area": 100,
                  "keypoints": [7, 7, 2] * 4, "num_keypoints": 4},           # unknown category
                 {"id": 22, "image_id": 3, "category_id": 1, "iscrowd": 0, "bbox": [55, 25, 20, 40], "area": 800,
                  "keypoints": kps, "num_keypoints": 4}]
    anns.append({"id": 9, "image_id": 1, "category_id": 1, "iscrowd": 0, "bbox": [0, 0, 10, 10], "area": 100,
                 "keypoints": [0] * 12, "num_keypoints": 0})
    cats = [{"id": 1, "name": "person", "keypoints": NAMES, "skeleton": []}]
    path = tmp_path / "kp.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return str(path), str(img_dir)


def _to_image(ds: CocoKeypoints, target: dict) -> torch.Tensor:
    joints, _ = decode_heatmaps(target["heatmaps"][None])
    crop = joints[0] * ds.heatmap_stride
    m = target["to_image"]
    return crop @ m[:, :2].T + m[:, 2]


@pytest.mark.parametrize("train", [False, True])
def test_targets_decode_back_to_the_image_joints(tmp_path, train):
    ann, img_dir = _write_people(tmp_path)
    ds = CocoKeypoints(ann, img_dir, train=train, image_size=(48, 64), heatmap_stride=4, sigma=1.5,
                       flip_pairs=PAIRS)
    np.random.seed(3)
    assert ds.num_joints == 4 and len(ds) == 3
    assert ds.problems == {"people without labelled keypoints (left out)": 1}
    flipped = 0
    for i in list(range(len(ds))) * 4:  # in training: random scale, rotation and flip (with the left/right swap)
        crop, target = ds[i]
        assert crop.shape == (3, 64, 48) and target["heatmaps"].shape == (4, 16, 12)
        kps = torch.tensor(ds.samples[i]["joints"][:, :2], dtype=torch.float32)
        if torch.linalg.det(target["to_image"][:, :2]) < 0:  # a flipped crop: its left joints are the image's right
            kps = kps[[0, 2, 1, 3]]
            flipped += 1
        seen = target["weights"] > 0
        err = (_to_image(ds, target) - kps).norm(dim=-1)[seen]
        scale = ds.samples[i]["box"][3] * 1.25 * (1.5 if train else 1) / 64  # image pixels per crop pixel
        assert err.max() <= 4 * scale * 1.0 + 1e-3, err   # within a heatmap pixel
    assert (0 < flipped < 12) if train else flipped == 0


def test_bad_keypoint_annotations_are_counted_and_left_out(tmp_path):
    ann, img_dir = _write_people(tmp_path, bad=True)
    ds = CocoKeypoints(ann, img_dir, train=True, image_size=(48, 64), flip_pairs=PAIRS)
    assert ds.problems == {"people without labelled keypoints (left out)": 1,
                           "people with a box of zero area (left out)": 1,
                           "annotations of categories other than 'person' (left out)": 1,
                           "labelled keypoints outside the image (not learned)": 1}
    assert len(ds) == 4 and ds.samples[-1]["joints"][:, 2].tolist() == [2, 0, 2, 2]
    _, target = CocoKeypoints(ann, img_dir, train=False, image_size=(48, 64), flip_pairs=PAIRS)[3]
    assert target["weights"].tolist() == [1, 0, 1, 1]     # the joint outside the image is not learned


def test_training_rotation_can_be_turned_off(tmp_path):
    ann, img_dir = _write_people(tmp_path)
    np.random.seed(0)
    turned = [CocoKeypoints(ann, img_dir, train=True, image_size=(48, 64), flip_pairs=PAIRS, rotation=r)
              for r in (40.0, 0.0)]
    off_diagonal = [[abs(float(ds[i % 3][1]["to_image"][0, 1])) for i in range(12)] for ds in turned]
    assert max(off_diagonal[0]) > 0.01 and max(off_diagonal[1]) == 0.0


def test_digit_keypoints_mirror_with_the_digit():
    """The digits' extreme points (median of tied pixels): a mirrored stroke has the mirrored points, left and
    right swapped - what the flip augmentation and the flip test assume."""
    from vitkit.data.digit_scenes import make_scene, stroke_keypoints

    checked = 0
    for i in range(10):
        for m in make_scene("train", i).instance_masks.numpy():
            w = m.shape[1]
            plain = np.array(stroke_keypoints(m))
            mirrored = np.array(stroke_keypoints(m[:, ::-1]))[[0, 1, 3, 2, 4]]
            assert np.allclose(mirrored[:, 0], (w - 1) - plain[:, 0]) and np.allclose(mirrored[:, 1], plain[:, 1])
            checked += 1
    assert checked > 10


def test_flip_pairs_from_names():
    from vitkit.data.coco_keypoints import COCO_FLIP_PAIRS, flip_pairs_from_names

    coco = ["nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
            "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
            "right_knee", "left_ankle", "right_ankle"]
    assert flip_pairs_from_names(coco) == list(COCO_FLIP_PAIRS)
    assert flip_pairs_from_names(NAMES) == [(1, 2)]
    assert flip_pairs_from_names(["top", "left", "right"]) == [(1, 2)]


def test_oks_ap_of_the_targets_is_perfect_and_of_shifted_joints_lower(tmp_path):
    ann, img_dir = _write_people(tmp_path)
    ds = CocoKeypoints(ann, img_dir, train=False, image_size=(96, 128), heatmap_stride=4, sigma=2,
                       flip_pairs=PAIRS)
    batch = [ds[i][1] for i in range(len(ds))]
    stack = {k: torch.stack([b[k] for b in batch]) for k in batch[0]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(ann)
    gt.dataset["categories"][0]["keypoints"] = NAMES
    from pycocotools.cocoeval import COCOeval

    sigmas = np.full(4, 0.05)

    def ap(heat):
        recs = keypoint_records(heat, stack["to_image"], stack["image_id"], stack["score"], 4, 1)
        dt = gt.loadRes(recs)
        with contextlib.redirect_stdout(io.StringIO()):
            ev = COCOeval(gt, dt, "keypoints")
            ev.params.kpt_oks_sigmas = sigmas
            ev.evaluate(), ev.accumulate(), ev.summarize()
        return ev.stats[0] * 100

    perfect = ap(stack["heatmaps"])
    shifted = ap(torch.roll(stack["heatmaps"], 3, dims=-1))
    assert perfect > 90 and shifted < perfect


def test_pose_model_trains_and_flip_test_is_symmetric(tmp_path):
    torch.manual_seed(0)
    ann, img_dir = _write_people(tmp_path)
    ds = CocoKeypoints(ann, img_dir, train=True, image_size=(64, 64), flip_pairs=PAIRS)
    model = TopDownPose("uniformer_demo_32", ds.num_joints, flip_pairs=PAIRS)
    assert {k.split(".")[1] for k in model.state_dict() if k.startswith("keypoint_head.")} == {"deconv_layers",
                                                                                                "final_layer"}
    assert "keypoint_head.deconv_layers.6.weight" in model.state_dict()   # mmpose's indices
    crops, target = torch.utils.data.default_collate([ds[i] for i in range(3)])
    heat = model(crops)
    assert heat.shape[-2:] == target["heatmaps"].shape[-2:]
    loss = joints_mse_loss(heat, target["heatmaps"], target["weights"])
    loss.backward()
    assert torch.isfinite(loss) and model.keypoint_head.final_layer.weight.grad.abs().sum() > 0
    model.eval()
    h = torch.rand(1, 4, 8, 8)
    assert torch.equal(model.flip_heatmaps(h)[0, 1, :, 1:], h[0, 2].flip(-1)[:, :-1])   # swapped and shifted


def test_keypoint_file_errors(tmp_path):
    p = tmp_path / "det.json"
    p.write_text(json.dumps({"images": [], "annotations": [], "categories": [{"id": 1, "name": "x"}]}))
    with pytest.raises(ValueError, match="keypoints"):
        CocoKeypoints(str(p), str(tmp_path), train=True)


def test_pose_trains_and_predicts_through_the_cli(tmp_path, capsys):
    """``vitkit train`` (2 steps) on the test's keypoint file, then ``vitkit predict`` on a folder: whole images
    as one box each, then the boxes of a results file; COCO keypoint records and overlays."""
    from vitkit.cli import main

    ann, img_dir = _write_people(tmp_path, bad=True)                       # counted, never a crash
    run = tmp_path / "run"
    assert main(["train", "demo/digit_scenes_pose", "data.dataset=coco", f"task.train_annotations={ann}",
                 f"task.train_images={img_dir}", f"task.test_annotations={ann}", f"task.test_images={img_dir}",
                 "train.batch_size=3", "train.max_steps=2", f"run.dir={run}"]) == 0
    assert "keypoint AP" in capsys.readouterr().out
    final = json.loads((run / "results.json").read_text())
    assert {"keypoint_AP", "keypoint_AP50"} <= set(final) and 0 <= final["keypoint_AP"] <= 100
    pred = tmp_path / "pred"
    assert main(["predict", str(run), img_dir, "--out", str(pred)]) == 0
    records = json.loads((pred / "predictions.json").read_text())
    assert [r["image_id"] for r in records] == [1, 2, 3, 4] and all(r["category_id"] == 1 for r in records)
    for r in records:
        xy = np.asarray(r["keypoints"]).reshape(4, 3)
        w = 120 + 8 * r["image_id"]
        assert (xy[:, 0] >= -1).all() and (xy[:, 0] <= w + 1).all() and (xy[:, 1] <= 101).all()
        assert Image.open(pred / f"{r['image_id']}_overlay.png").size == (w, 100)
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps([
        {"file_name": str(tmp_path / "img" / "2.png"), "image_id": 7, "category_id": 1, "bbox": [35, 15, 45, 70],
         "score": 0.9},
        {"file_name": str(tmp_path / "img" / "2.png"), "image_id": 7, "category_id": 1, "bbox": [0, 0, 40, 40],
         "score": 0.8},
        {"file_name": str(tmp_path / "img" / "2.png"), "image_id": 7, "category_id": 1, "bbox": [0, 0, 9, 9],
         "score": 0.1},                                                      # below --score: left out
        {"file_name": str(tmp_path / "img" / "3.png"), "image_id": 8, "category_id": 1, "bbox": [40, 15, 45, 70],
         "score": 0.7}]))
    assert main(["predict", str(run), str(tmp_path / "img" / "2.png"), str(tmp_path / "img" / "1.png"), "--boxes",
                 str(boxes), "--out", str(tmp_path / "pred2")]) == 0
    assert "no person boxes" in capsys.readouterr().out                    # 1.png has none in the file
    again = json.loads((tmp_path / "pred2" / "predictions.json").read_text())
    assert [r["image_id"] for r in again] == [1, 1] and again[0]["keypoints"] != again[1]["keypoints"]
    assert all(r["score"] <= s for r, s in zip(again, (0.9, 0.8)))       # box score x mean joint score
    with contextlib.redirect_stdout(io.StringIO()):
        COCO(ann).loadRes(records)                                          # valid COCO keypoint results
    (tmp_path / "bad.json").write_text(json.dumps([{"image_id": 1}]))
    assert main(["predict", str(run), str(tmp_path / "img" / "2.png"), "--boxes", str(tmp_path / "bad.json")]) != 0
    assert "expected a JSON list of COCO result records with 'bbox'" in capsys.readouterr().err


# -- 2-process evaluation -----------------------------------------------------------------------------------------
class _NoisyTargets(torch.nn.Module):
    """A stand-in pose model whose heatmaps are the crop's targets, a third of them shifted by a pixel, looked up by
    crop content: its AP lies between 0 and 100, so a lost or doubled person changes it."""

    heatmap_stride = 4

    def __init__(self, kp) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.table = {}
        for i in range(len(kp)):
            crop, t = kp[i]
            dx = int(torch.randint(3, (1,), generator=g)) // 2
            self.table[crop.numpy().tobytes()] = torch.roll(t["heatmaps"], dx, dims=-1)

    def predict(self, crops: torch.Tensor, flip_test: bool = True) -> torch.Tensor:
        return torch.stack([self.table[c.numpy().tobytes()] for c in crops])


def _digit_people(count: int):
    from vitkit.data.digit_scenes_coco import export_coco
    from vitkit.tasks.pose import PoseSet

    kp = CocoKeypoints(*export_coco("test", "keypoints"), train=False, image_size=(64, 64), flip_pairs=[(2, 3)])
    kp.samples = kp.samples[:count]
    return PoseSet(kp)


def _ddp_pose_worker(rank: int, world: int, init: str, weights: str, out: str) -> None:
    from ddp_eval import evaluate_two_then_one

    from vitkit.tasks.pose import Pose

    torch.set_num_threads(1)
    ds = _digit_people(9)
    real = TopDownPose("uniformer_demo_32", 5, head_width=16)
    real.load_state_dict(torch.load(weights, weights_only=True))
    models = {"pose": real, "noisy_targets": _NoisyTargets(ds.kp)}
    two, one = evaluate_two_then_one(Pose(), models, ds, 2, rank, world, init)
    if rank == 0:
        torch.save({"two": two, "one": one, "image_ids": [s["image_id"] for s in ds.kp.samples]}, out)


@pytest.mark.slow
def test_two_process_pose_evaluation_equals_one(tmp_path):
    """Keypoint AP under 2 processes (gloo) equals 1 process, with the digits of one scene split over the ranks."""
    import torch.multiprocessing as mp

    torch.save(TopDownPose("uniformer_demo_32", 5, head_width=16).state_dict(), tmp_path / "w.pt")
    _digit_people(9)  # the export written once, before the workers start
    mp.spawn(_ddp_pose_worker, args=(2, f"file://{tmp_path / 'store'}", str(tmp_path / "w.pt"),
                                     str(tmp_path / "res.pt")), nprocs=2, join=True)
    res = torch.load(tmp_path / "res.pt", weights_only=False)
    ids = res["image_ids"]
    assert len(set(ids)) < len(ids)   # scenes with several digits: their crops go to both ranks
    for name in ("pose", "noisy_targets"):
        (two, two_recs), (one, one_recs) = res["two"][name], res["one"][name]
        assert one["num_samples"] == 9 and two == one, name
        assert two_recs == one_recs and [r["image_id"] for r in one_recs] == ids
    assert 10 < res["one"]["noisy_targets"][0]["keypoint_AP"] < 90
