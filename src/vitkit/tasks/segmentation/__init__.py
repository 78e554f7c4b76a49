"""Semantic segmentation: a backbone view of any image model + UperNet or Semantic FPN, trained by the one engine.

Recipe (``task:`` section; the other sections as for classification, ``data.input_size`` being the crop)::

    task:
      name: segmentation
      head: upernet            # upernet (PPM + FPN, auxiliary FCN on stage 3) | fpn (Semantic FPN)
      channels: null           # decode-head width; null: the official 512 (UperNet) / 128 (Semantic FPN)
      aux: true                # auxiliary FCN head (256 channels) on backbone level aux_index, weight aux_weight
      aux_weight: 0.4
      ignore_index: 255
      num_classes: null        # null: the data's (digit-scenes: 11); ADE20K: 150
      reduce_zero_label: false # ADE20K: true
      class_map: null          # YAML/JSON raw label -> train id (Cityscapes-like); unlisted -> ignore_index
      scale: null              # training resize bounds (long, short); null: (4 x crop, crop), mmseg's (2048, 512)
      ratio_range: [0.5, 2.0]
      cat_max_ratio: 0.75
      test_mode: whole         # whole | slide (test_crop x test_crop windows every test_stride pixels)
      test_scales: [1.0]       # multi-scale test: [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]; with test_flip: true

``vitkit train`` ends with ``mIoU NN.NN%`` on the test split; ``vitkit evaluate RUN`` prints per-class IoU and
writes overlays; ``vitkit predict RUN image.jpg`` writes ``<stem>_mask.png`` and ``<stem>_overlay.png``.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from .. import register_task
from ..base import Task
from .data import build_seg_dataset
from .metrics import confusion_matrix, segmentation_metrics
from .segmentor import HEADS, Segmentor, EvalProtocol, build_segmentor, segmentation_loss


@dataclass(frozen=True)
class SegmentationOptions:
    head: str = "upernet"
    channels: int | None = None
    aux: bool = True
    aux_weight: float = 0.4
    aux_channels: int = 256
    aux_index: int = 2
    neck_channels: int = 256
    dropout: float = 0.1
    pool_scales: tuple[int, ...] = (1, 2, 3, 6)
    pyramid_channels: int = 256
    num_classes: int | None = None
    class_names: str | None = None
    ignore_index: int = 255
    reduce_zero_label: bool = False
    class_map: str | None = None
    scene_size: int = 64
    scale: tuple[int, ...] | None = None
    ratio_range: tuple[float, ...] = (0.5, 2.0)
    cat_max_ratio: float = 0.75
    flip: float = 0.5
    photometric: bool = True
    test_scale: tuple[int, ...] | None = None
    test_mode: str = "whole"
    test_crop: int | None = None
    test_stride: int | None = None
    test_scales: tuple[float, ...] = (1.0,)
    test_flip: bool = False
    overlays: int = 8


def _collate(items: list) -> list:
    return items


def _batches(items: list) -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
    """Consecutive items of equal image size stacked: [(images (B, 3, H, W), [masks])]."""
    out, cur = [], []
    for x, m in items:
        if cur and cur[0][0].shape != x.shape:
            out.append(cur)
            cur = []
        cur.append((x, m))
    if cur:
        out.append(cur)
    return [(torch.stack([x for x, _ in c]), [m for _, m in c]) for c in out]


class Segmentation(Task):
    name = "segmentation"
    input_follows_model = False  # data.input_size is the crop; the backbone runs at any size
    options = SegmentationOptions
    headline = "mIoU"
    train_metric = "train_pixel_acc"

    # -- recipe ---------------------------------------------------------------------------------------------
    def validate(self, recipe: Any) -> None:
        from vitkit.engine.recipe import RecipeError
        from vitkit.registry import model_info

        o = self.opts(recipe)
        if o.head not in HEADS:
            raise RecipeError(f"task.head must be one of {', '.join(HEADS)}, got {o.head!r}")
        if o.test_mode not in ("whole", "slide"):
            raise RecipeError(f"task.test_mode must be 'whole' or 'slide', got {o.test_mode!r}")
        if o.test_mode == "slide" and not (o.test_crop and o.test_stride):
            raise RecipeError("task.test_mode slide needs task.test_crop and task.test_stride (pixels)")
        if len(o.ratio_range) != 2 or not 0 < o.ratio_range[0] <= o.ratio_range[1]:
            raise RecipeError(f"task.ratio_range must be [low, high] with 0 < low <= high, got {o.ratio_range}")
        if not 0 < o.cat_max_ratio <= 1:
            raise RecipeError(f"task.cat_max_ratio must be in (0, 1], got {o.cat_max_ratio}")
        if o.aux_weight < 0:
            raise RecipeError(f"task.aux_weight must be >= 0, got {o.aux_weight}")
        if o.num_classes is not None and o.num_classes < 2:
            raise RecipeError(f"task.num_classes must be >= 2, got {o.num_classes}")
        t = recipe.train
        if t.mixup > 0 or t.cutmix > 0 or t.label_smoothing:
            raise RecipeError("segmentation does not take train.mixup, train.cutmix or train.label_smoothing")
        if model_info(recipe.model.name).is_video:
            raise RecipeError(f"segmentation takes image models; {recipe.model.name} is a video model")

    # -- data and model -------------------------------------------------------------------------------------
    def build_datasets(self, recipe: Any, spec: Any) -> tuple[Any, Any]:
        o = self.opts(recipe)
        kw = dict(crop=spec.size, mean=spec.mean, std=spec.std, opts=o, root=recipe.data.root)
        train = build_seg_dataset(recipe.data.dataset, recipe.data.train_split, train=True, **kw)
        test = build_seg_dataset(recipe.data.dataset, recipe.data.val_split, train=False, **kw)
        test.protocol = self.protocol(o)
        return train, test

    @staticmethod
    def protocol(o: SegmentationOptions) -> EvalProtocol:
        return EvalProtocol(o.test_mode, o.test_crop, o.test_stride, tuple(o.test_scales), o.test_flip)

    def build_model(self, recipe: Any, num_classes: int, log: Callable[[str], None] = print) -> nn.Module:
        from vitkit.checkpoints import CheckpointError, load_checkpoint, read_state_dict
        from vitkit.models.backbone import as_backbone
        from vitkit.registry import create_model

        from .checkpoint import is_segmentor_state, load_segmentor_weights

        o = self.opts(recipe)
        cfg = {k: v for k, v in recipe.model.config.items() if k != "num_classes"}
        weights = recipe.model.weights
        sd = read_state_dict(weights) if weights else None
        whole = sd is not None and is_segmentor_state(sd)
        model = create_model(recipe.model.name, **cfg)
        if sd is not None and not whole:  # a classification checkpoint initialises the backbone
            report = load_checkpoint(model, sd, strict=False)
            trunk = [k for k in report.missing + report.unexpected + [m[0] for m in report.mismatched]
                     if not k.startswith(("head.", "aux_head."))]
            if trunk:
                raise CheckpointError(f"{weights} does not fit {recipe.model.name}:\n{report.describe()}")
            log(f"backbone initialised from {weights} ({report.source} layout)")
        backbone = as_backbone(model, pyramid_channels=o.pyramid_channels)
        seg = build_segmentor(backbone, num_classes, o.head, o.channels, o.aux, o.aux_channels, o.aux_index,
                              o.neck_channels, o.dropout, o.pool_scales)
        if whole:
            report = load_segmentor_weights(seg, sd, strict=True)
            log(f"segmentor loaded from {weights} ({report.source})")
        return seg

    # -- training -------------------------------------------------------------------------------------------
    def __init__(self, opts: SegmentationOptions | None = None) -> None:
        self.o = opts or SegmentationOptions()

    def bind(self, recipe: Any) -> "Segmentation":
        return Segmentation(self.opts(recipe))

    def loss(self, output: Any, target: torch.Tensor, soft_target=None, label_smoothing: float = 0.0
             ) -> torch.Tensor:
        return segmentation_loss(output, target, self.o.ignore_index, self.o.aux_weight)

    def batch_stats(self, output: Any, target: torch.Tensor) -> tuple[int, int]:
        from .heads import resize

        pred = resize(output["out"].detach().float(), target.shape[-2:]).argmax(1)
        valid = target != self.o.ignore_index
        return int((pred[valid] == target[valid]).sum()), int(valid.sum())

    # -- evaluation -----------------------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, model: nn.Module, dataset: Any, *, batch_size: int = 8, workers: int = 0,
                 device: torch.device = torch.device("cpu"), amp: str = "none", dist=None, progress: bool = False,
                 on_image: Callable | None = None, with_confusion: bool = False, **_) -> dict[str, Any]:
        """mIoU, mAcc, aAcc, per-class IoU/Acc over ``dataset`` (each rank a shard; confusion matrices summed).

        ``on_image(index, image, scores, mask)`` is called for every image (overlays, predictions)."""
        from vitkit.engine import distributed as D
        from vitkit.engine.amp import autocast
        from vitkit.engine.evaluate import Indexed, ShardSampler

        dist = dist or D.DistInfo(device=device)
        base = getattr(dataset, "dataset", dataset)
        protocol = getattr(base, "protocol", EvalProtocol())
        ignore = getattr(base, "ignore_index", 255)
        k = getattr(model, "num_classes", None) or base.num_classes
        loader = DataLoader(Indexed(dataset), batch_size=batch_size, num_workers=workers,
                            sampler=ShardSampler(len(dataset), dist.rank, dist.world_size), collate_fn=_collate)
        net = model.module if hasattr(model, "module") and isinstance(model.module, Segmentor) else model
        cm = torch.zeros(k, k, dtype=torch.long)
        it = loader
        if progress:
            from vitkit.engine.progress import progress_bar

            it = progress_bar(loader, desc="eval", unit="batch")
        for items in it:
            indices = [i for _, i in items]
            pos = 0
            for x, masks in _batches([item for item, _ in items]):
                with autocast(amp, device):
                    if len({tuple(m.shape) for m in masks}) == 1:
                        scores = net.inference(x.to(device), protocol, out_size=masks[0].shape[-2:]).float().cpu()
                        per = list(scores)
                    else:
                        per = [net.inference(x[j:j + 1].to(device), protocol, out_size=m.shape[-2:])[0].float().cpu()
                               for j, m in enumerate(masks)]
                for j, (s, m) in enumerate(zip(per, masks)):
                    cm += confusion_matrix(s.argmax(0), m, k, ignore)
                    if on_image is not None:
                        on_image(indices[pos + j], x[j], s, m)
                pos += len(masks)
        cm = D.all_reduce_sum(cm)
        res = segmentation_metrics(cm)
        res["num_samples"] = len(dataset)
        if with_confusion:
            res["confusion"] = cm
        return res

    def describe(self, result: dict) -> str:
        return f"mIoU {result['mIoU']:.2f}% mAcc {result['mAcc']:.2f}% aAcc {result['aAcc']:.2f}%"

    # -- commands -------------------------------------------------------------------------------------------
    def default_num_classes(self, recipe: Any) -> int:
        return self.bind(recipe).o.num_classes or 0

    def run_evaluate(self, args: Any, trained: Any, dist: Any) -> None:
        from torch.utils.data import Subset

        from vitkit.engine.data import resolve_input

        from .overlay import save_overlay

        r = trained.recipe
        o = self.opts(r)
        model = trained.model.to(dist.device)
        spec = resolve_input(r, data_follows_model=False)[1]
        ds = build_seg_dataset(r.data.dataset, r.data.val_split, train=False, crop=spec.size,
                               mean=spec.mean, std=spec.std, opts=o, root=r.data.root)
        ds.protocol = self.protocol(o)
        n = len(ds)
        if args.limit:
            n = min(args.limit, n)
            sub = Subset(ds, range(n))
            sub.protocol, sub.ignore_index, sub.num_classes = ds.protocol, ds.ignore_index, ds.num_classes
            ds_eval = sub
        else:
            ds_eval = ds
        src = Path(args.source)
        out = Path(args.out) if args.out else (src if src.is_dir() else src.parent) / "eval"
        names = trained.classes or ds.classes
        mean, std = torch.tensor(spec.mean).view(3, 1, 1), torch.tensor(spec.std).view(3, 1, 1)

        def on_image(i, x, scores, mask):
            if dist.is_main and i < o.overlays:
                img = ((x.float() * std + mean) * 255).clamp(0, 255).to(torch.uint8)
                save_overlay(out / f"overlay_{i:04d}.png", img, scores.argmax(0), mask, o.ignore_index)

        if dist.is_main:
            out.mkdir(parents=True, exist_ok=True)
        res = self.evaluate(model, ds_eval, batch_size=r.eval.batch_size, workers=args.workers, device=dist.device,
                            amp=r.train.amp if r.train.amp != "fp16" or dist.device.type == "cuda" else "none",
                            dist=dist, progress=dist.is_main, on_image=on_image, with_confusion=True)
        if not dist.is_main:
            return
        p = ds.protocol
        print(f"{r.model.name} + {o.head} on {r.data.dataset}/{r.data.val_split}: {n} images, {p.mode} inference"
              f", scales {list(p.scales)}{' + flip' if p.flip else ''}")
        print(self.describe(res))
        print("per-class IoU / Acc:")
        width = max(len(str(c)) for c in names)
        for c, (iou, acc) in enumerate(zip(res["per_class_iou"], res["per_class_acc"])):
            fmt = (lambda v: "     -" if math.isnan(v) else f"{v:6.2f}")
            print(f"  {c:4d} {str(names[c]):<{width}}  {fmt(iou)}%  {fmt(acc)}%")
        report = {k: v for k, v in res.items() if k != "confusion"}
        report.update(model=r.model.name, head=o.head, weights=str(trained.weights), dataset=r.data.dataset,
                      split=r.data.val_split, classes=list(map(str, names)), confusion=res["confusion"].tolist())
        (out / "eval.json").write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {out / 'eval.json'} and {min(n, o.overlays)} overlay PNG(s) in {out}")

    def run_predict(self, args: Any, trained: Any) -> int:
        from vitkit.data.datasets import load_image, readable_files
        from vitkit.engine.data import resolve_input

        from .data import SegTestTransform
        from .overlay import save_mask, save_overlay

        r = trained.recipe
        o = self.opts(r)
        device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        model = trained.model.to(device)
        spec = resolve_input(r, data_follows_model=False)[1]
        tf = SegTestTransform(spec.mean, spec.std, o.test_scale)
        out = Path(args.out) if getattr(args, "out", None) else Path(".")
        out.mkdir(parents=True, exist_ok=True)
        failed: list[str] = []
        for _, f, img in readable_files(args.files, load_image, failed):
            x, _ = tf(img, torch.zeros(img.shape[-2:], dtype=torch.long))
            scores = model.inference(x[None].to(device), self.protocol(o), out_size=img.shape[-2:])[0].cpu()
            pred = scores.argmax(0)
            stem = Path(f).stem
            save_mask(out / f"{stem}_mask.png", pred)
            save_overlay(out / f"{stem}_overlay.png", img, pred)
            names = trained.classes or [str(i) for i in range(model.num_classes)]
            counts = torch.bincount(pred.flatten(), minlength=model.num_classes).float() / pred.numel()
            top = counts.topk(min(3, len(counts)))
            share = ", ".join(f"{names[c]} {100 * v:.1f}%" for v, c in zip(top.values.tolist(), top.indices.tolist())
                              if v > 0)
            print(f"{f}: {out / (stem + '_mask.png')}, {out / (stem + '_overlay.png')} ({share})")
        return 1 if failed else 0


register_task(Segmentation())
