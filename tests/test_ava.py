"""AVA-style action detection: the AVA file readers, frame mAP, the RoI head on video backbones, the task."""
from __future__ import annotations

import json
import math

import pytest
import torch

from vitkit.data.ava import (AvaDataset, clip_indices_around, collate_ava, read_ava_csv, read_exclusions,
                             read_frame_list, read_label_map)
from vitkit.data.ava_digits import ACTIONS, write_ava_digits
from vitkit.tasks.action_detection_model import ActionDetector, RoIHead
from vitkit.tasks.ava_eval import frame_ap

LABEL_MAP = 'item {\n  name: "stand"\n  id: 1\n}\nitem {\n  name: "talk to (e.g., self, a person)"\n  label_id: 3\n}\n'


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """A tiny ava-digits set: 2 training videos and 1 test video of 3 keyframes, 64x64 at 8 fps."""
    root = tmp_path_factory.mktemp("ava")
    train = write_ava_digits(root, "train", videos=2, seconds=3)
    test = write_ava_digits(root, "test", videos=1, seconds=3)
    return root, train, test


def _dataset(files, train, **kw):
    args = dict(num_frames=8, sampling_rate=1, crop_size=64, jitter=(64, 72), flip=0.0, fps=8)
    args.update(kw)
    return AvaDataset(files["frames"], files["annotations"], files["label_map"], train=train, **args)


# -- files -----------------------------------------------------------------------------------------------------

def test_label_map_reads_name_and_id_or_label_id(tmp_path):
    p = tmp_path / "labels.pbtxt"
    p.write_text(LABEL_MAP)
    assert read_label_map(str(p)) == {1: "stand", 3: "talk to (e.g., self, a person)"}
    p.write_text("item {\n  name: \"x\"\n}\n")
    with pytest.raises(ValueError, match="without a name or id"):
        read_label_map(str(p))


def test_annotation_rows_group_by_person_and_bad_rows_are_counted(tmp_path):
    p = tmp_path / "ava_train_v2.2.csv"
    p.write_text("\n".join([
        "vid_a,0902,0.1,0.2,0.5,0.9,1,0",
        "vid_a,0902,0.1,0.2,0.5,0.9,3,0",        # the same person, a second action
        "vid_a,0902,0.6,0.2,0.9,0.9,3,1",
        "vid_a,0902,0.6,0.2,oops,0.9,3,1",       # not a number
        "vid_a,0903,0.5,0.2,0.4,0.9,1,0",        # x2 < x1
        "vid_a,0903,0.1,0.2,0.5,0.9,99,0",       # action outside 1..80
        "vid_a,0903,0.1,0.2,0.5",                # too few columns
        "vid_b,0904.5,0.1,0.2,0.5,0.9,1,0",      # not a whole second
    ]) + "\n")
    boxes = read_ava_csv(str(p), num_classes=80)
    assert boxes.keys() == [("vid_a", 902)]
    assert [(b, a) for b, a, _ in boxes.boxes[("vid_a", 902)]] == [([0.1, 0.2, 0.5, 0.9], [1, 3]),
                                                                   ([0.6, 0.2, 0.9, 0.9], [3])]
    assert sorted(boxes.rejected) == [f"{p}:{i}" for i in (4, 5, 6, 7, 8)]
    assert "number" in boxes.rejected[f"{p}:4"] and "outside 1..80" in boxes.rejected[f"{p}:6"]
    assert "columns" in boxes.rejected[f"{p}:7"]
    p.write_text("just,a,header\n")
    with pytest.raises(ValueError, match="no valid row.*video_id,timestamp,x1,y1,x2,y2,action_id"):
        read_ava_csv(str(p))


def test_proposals_below_the_score_threshold_are_dropped_and_others_labelled_by_overlap(digits):
    _, train, _ = digits
    props = read_ava_csv(train["proposals"], proposals=True, score_threshold=0.8)
    low = read_ava_csv(train["proposals"], proposals=True, score_threshold=0.0)
    assert 0 < sum(map(len, props.boxes.values())) < sum(map(len, low.boxes.values()))
    ds = _dataset(train, True, proposals=[train["proposals"]], score_threshold=0.8)
    gt = read_ava_csv(train["annotations"])
    _, target = ds[0]
    n_gt = len(gt.boxes[ds.keys()[0]])
    assert len(target["labels"]) > n_gt                           # proposals were added after the truth
    assert torch.equal(target["labels"][n_gt:2 * n_gt], target["labels"][:n_gt])  # and took its actions


def test_pyslowfast_frame_list_and_excluded_timestamps(digits, tmp_path):
    root, train, _ = digits
    frames = root / "frames"
    lines = ["original_vido_id video_id frame_id path labels"]
    for v, video in enumerate(("train000", "train001")):
        for i, f in enumerate(sorted((frames / video).iterdir())):
            lines.append(f'{video} {v} {i} {video}/{f.name} ""')
    lst = tmp_path / "train.csv"
    lst.write_text("\n".join(lines) + "\n")
    layout = read_frame_list(str(lst), str(frames))
    assert layout == {v: (str(frames / v), 48) for v in ("train000", "train001")}   # (2 + 3 + 1) s x 8 fps
    ds = _dataset(train, False, frame_list=str(lst))
    assert len(ds) == 6 and ds[5][0].shape == (3, 8, 64, 64)
    lst.write_text(lines[0] + "\ntrain000 0 0\n")
    with pytest.raises(ValueError, match="original_vido_id video_id frame_id path labels"):
        read_frame_list(str(lst), str(frames))
    ex = tmp_path / "excluded.csv"
    ex.write_text("train000,0903\n")
    assert read_exclusions(str(ex)) == {("train000", 903)} and read_exclusions(None) == set()
    ex.write_text("train000,0903,1\n")
    with pytest.raises(ValueError, match="video_id,timestamp"):
        read_exclusions(str(ex))


def test_clip_is_centred_on_the_keyframe_as_pyslowfast():
    # PySlowFast get_sequence(center, T*tau // 2, tau, n): range(c - T*tau/2, c + T*tau/2, tau), clamped
    assert clip_indices_around(60, 8, 4, 1000) == list(range(44, 76, 4))
    assert clip_indices_around(3, 4, 2, 10) == [0, 1, 3, 5]      # range(-1, 7, 2), clamped
    assert clip_indices_around(9, 4, 2, 10) == [5, 7, 9, 9]


def test_keyframe_clip_shows_the_digits_inside_their_boxes(digits):
    _, train, _ = digits
    ds = _dataset(train, True, jitter=(80, 96), flip=1.0)        # scaled, cropped and flipped
    torch.manual_seed(0)
    for i in range(len(ds)):
        clip, target = ds[i]
        assert clip.shape == (3, 8, 64, 64) and target["labels"].shape == (len(target["boxes"]), len(ACTIONS))
        key = clip[0, 4]                                          # the keyframe: frame T/2 of the clip
        inside = torch.zeros_like(key, dtype=torch.bool)
        for x1, y1, x2, y2 in target["boxes"].round().long().tolist():
            inside[y1:y2, x1:x2] = True
        assert key[inside].mean() > 2 * key[~inside].mean(), i   # the bright strokes are in the boxes


def test_missing_frame_is_counted_and_the_clip_replaced_or_left_out(digits, tmp_path):
    import shutil

    _, train, _ = digits
    frames = tmp_path / "frames"
    shutil.copytree(train["frames"], frames)
    video = "train000"
    (frames / video / f"{video}_000025.jpg").unlink()            # inside the first keyframe's clip (frames 13-20+)
    (frames / video / f"{video}_000010.jpg").write_bytes(b"not a jpeg")
    files = dict(train, frames=str(frames))
    ds = _dataset(files, True)
    clip, target = ds[1]                                         # second 903: frames 21..28 -> replaced
    assert target["key"] != (video, 903) and clip.shape == (3, 8, 64, 64)
    bad = ds.bad_samples()
    assert any("missing frame" in why and video in where for where, why in bad.items())
    test = _dataset(files, False)
    clip, target = test[1]                                       # testing: no boxes, the truth counts as missed
    assert target["key"] == (video, 903) and len(target["boxes"]) == 0
    clip, target = test[0]                                       # second 902: frames 13..20, the corrupt 10 unused
    assert len(target["boxes"]) == 2
    shutil.rmtree(frames / video)
    ds = _dataset(files, True)                                   # a video without frames: its keyframes left out
    assert all(k[0] != video for k in ds.keys()) and any("no frame folder" in w for w in ds.bad_samples().values())


# -- the metric --------------------------------------------------------------------------------------------------

def test_frame_ap_matches_a_hand_computed_case():
    a, b, c = ("v", 902), ("v", 903), ("w", 902)
    gt = [(a, [0.0, 0.0, 0.5, 0.5], 1), (a, [0.5, 0.5, 1.0, 1.0], 1), (b, [0.0, 0.0, 0.5, 0.5], 1),
          (a, [0.0, 0.0, 0.5, 0.5], 2)]
    dets = [(a, [0.0, 0.0, 0.5, 0.5], 1, 0.9),    # TP
            (a, [0.0, 0.0, 0.5, 0.5], 1, 0.8),    # the same truth again: FP
            (b, [0.0, 0.0, 0.25, 0.5], 1, 0.7),   # IoU exactly 0.5: TP
            (a, [0.6, 0.6, 1.0, 1.0], 1, 0.6),    # IoU 0.64: TP
            (c, [0.0, 0.0, 0.5, 0.5], 1, 0.95),   # a keyframe without truth: FP
            (a, [0.5, 0.5, 1.0, 1.0], 2, 0.5),    # class 2, no overlap: FP
            (a, [0.0, 0.0, 0.5, 0.5], 3, 0.5)]    # class 3 has no truth: left out of the mean
    # class 1, by score: FP TP FP TP TP; precision 0 1/2 1/3 2/4 3/5 at recall 0 1/3 1/3 2/3 1; the envelope is
    # 0.6 at every recall step: AP = 3 x 1/3 x 0.6 = 0.6. Class 2: AP 0. mAP = (0.6 + 0) / 2 = 30 %.
    mean_ap, per_class = frame_ap(gt, dets)
    assert per_class[1] == pytest.approx(0.6) and per_class[2] == 0.0 and math.isnan(per_class[3])
    assert mean_ap == pytest.approx(30.0)
    # without keyframe c: precision 1 1/2 2/3 3/4, envelope 1, .75, .75: AP = (1 + .75 + .75) / 3
    mean_ap, per_class = frame_ap(gt, dets, classes=[1], excluded={c})
    assert per_class == {1: pytest.approx(2.5 / 3)} and mean_ap == pytest.approx(250 / 3)
    assert frame_ap(gt, [], classes=[1])[0] == 0.0


# -- the model -------------------------------------------------------------------------------------------------------

def test_roi_head_pools_time_then_takes_the_box_region():
    head = RoIHead(1, 1, stride=8, dropout=0.0)
    with torch.no_grad():
        head.projection.weight.fill_(1.0)
        head.projection.bias.zero_()
    feats = torch.zeros(1, 1, 2, 4, 4)
    feats[0, 0, 0, 3, 3] = 2.0                                    # a hot cell at t=0 only: 1 after the time mean
    with torch.no_grad():
        out = head(feats, [torch.tensor([[24.0, 24.0, 32.0, 32.0], [0.0, 0.0, 8.0, 8.0]])])
    assert out.shape == (2, 1)
    assert out[0, 0] == pytest.approx(1.0, abs=0.05) and out[1, 0] == 0.0


@pytest.mark.parametrize("name", ["mvit_demo_8x32", "uniformer_demo_video_8x32"])
def test_detector_gives_one_row_of_logits_per_box(name):
    torch.manual_seed(0)
    model = ActionDetector(name, 5).eval()
    batch = {"clips": torch.rand(2, 3, 8, 32, 48),
             "boxes": [torch.tensor([[0.0, 0.0, 16.0, 20.0], [10.0, 5.0, 40.0, 30.0], [2.0, 2.0, 4.0, 4.0]]),
                       torch.zeros(0, 4)]}
    out = model(batch)
    assert out.shape == (3, 5) and torch.isfinite(out).all()
    assert model.head.projection.weight.shape == (5, model.backbone.feature_info.channels(0))


def test_the_paper_model_has_pyslowfast_head_geometry():
    model = ActionDetector("mvit_base_16x4", 80)                 # MViT-B 16x4: last map 768 channels at stride 32
    assert model.head.projection.weight.shape == (80, 768) and model.head.stride == 32
    assert model.head.resolution == 7 and model.head.aligned and model.head.dropout.p == 0.5


def test_an_image_backbone_is_refused():
    with pytest.raises(ValueError, match="video backbone"):
        ActionDetector("vit_demo_patch8_32", 3)


def test_a_few_steps_overfit_a_tiny_set(digits):
    from vitkit.engine.multilabel import multilabel_loss

    _, train, _ = digits
    ds = _dataset(train, False)
    batch, target = collate_ava([ds[i] for i in range(4)])
    torch.manual_seed(0)
    model = ActionDetector("uniformer_demo_video_8x32", len(ACTIONS), dropout=0.0)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(12):
        loss = multilabel_loss(model(batch), target["labels"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


# -- through the engine and the CLI ------------------------------------------------------------------------------------

def test_cli_trains_and_evaluates_the_paper_recipe_at_tiny_size(digits, tmp_path, capsys):
    from vitkit.cli import main

    root, train, test = digits
    run = tmp_path / "run"
    code = main(["train", "ava/mvit_base_16x4_ava", "model.name=uniformer_demo_video_8x32", "model.weights=null",
                 "model.drop_path_rate=0.0", f"task.frame_dir={train['frames']}",
                 f"task.label_map={train['label_map']}",
                 f"task.train_annotations={train['annotations']}", f"task.train_proposals=[{train['proposals']}]",
                 f"task.test_annotations={test['annotations']}", f"task.test_proposals=[{test['proposals']}]",
                 "task.exclusions=''", "task.num_classes=0", "task.fps=8", "task.jitter=[64,72]", "task.flip=0.0",
                 "data.input_size=64", "data.num_frames=8", "data.sampling_rate=1", "optim.name=adamw",
                 "optim.lr=1e-3", "optim.base_batch_size=null", "train.batch_size=2", "train.max_steps=2",
                 "train.workers=0", "eval.batch_size=4", f"run.dir={run}"])
    assert code == 0
    out = capsys.readouterr()
    assert "frame mAP" in out.out + out.err
    assert main(["evaluate", str(run), "--out", str(tmp_path / "ev")]) == 0
    report = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert report["num_samples"] == 3 and 0.0 <= report["frame_mAP"] <= 100.0
    assert "frame mAP" in capsys.readouterr().out
    assert main(["evaluate", str(run), "--out", str(tmp_path / "ev2"), "--limit", "2"]) == 0
    part = json.loads((tmp_path / "ev2" / "eval.json").read_text())
    assert part["num_samples"] == 2                             # a subset: only its keyframes' truth counts


def _ddp_eval_worker(rank: int, world: int, init: str, files: dict, out: str) -> None:
    import torch.distributed as dist

    from vitkit.engine.distributed import DistInfo
    from vitkit.tasks.action_detection import ActionDetection

    torch.set_num_threads(1)
    ds = _dataset(files, False, proposals=[files["proposals"]])
    torch.manual_seed(0)
    model = ActionDetector("uniformer_demo_video_8x32", len(ACTIONS))
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    two = ActionDetection().evaluate(model, ds, batch_size=1, dist=DistInfo(rank, world))
    dist.destroy_process_group()
    if rank == 0:
        torch.save({"two": two, "one": ActionDetection().evaluate(model, ds, batch_size=2)}, out)


@pytest.mark.slow
def test_two_process_evaluation_equals_one(digits, tmp_path):
    """Frame mAP under 2 processes (gloo; 3 keyframes: uneven shards) equals 1 process."""
    import torch.multiprocessing as mp

    _, _, test = digits
    mp.spawn(_ddp_eval_worker, args=(2, f"file://{tmp_path / 'store'}", test, str(tmp_path / "res.pt")),
             nprocs=2, join=True)
    res = torch.load(tmp_path / "res.pt", weights_only=False)
    assert res["one"]["num_samples"] == 3 and res["two"] == res["one"]
    assert 0.0 < res["one"]["frame_mAP"] < 100.0
