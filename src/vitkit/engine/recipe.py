"""Training recipes: a YAML file, resolved against this schema, overridable key by key from the command line.

A recipe has these sections (every key optional; the defaults below apply)::

    task:                        # what is trained (vitkit.tasks): classification (default) or segmentation
      name: classification       # then the task's own keys (vitkit.tasks.<name>; e.g. segmentation: head, ...)
    model:                       # the network
      name: vit_demo_patch8_32   # a registered variant (``vitkit models``)
      weights: null              # initial weights, any layout vitkit.load_checkpoint reads (fine-tuning)
      pretrained: null           # or published weights: a tag of this model, or model.tag (``vitkit models --pretrained``)
      finetune: full             # full | linear_probe (only the classifier trains) | freeze (see freeze_stages)
      freeze_stages: 0           # with finetune=freeze: the stem and the first N stages stay frozen
      <config field>: value      # any field of the variant's config dataclass: drop_path_rate, depth, img_size ...
                                 # (num_classes defaults to the dataset's)
    data:
      dataset: digits            # spec given to vitkit.data.build_dataset: built-in name, folder or list file
      root: null                 # base directory for relative paths in list files
      train_split: train
      val_split: test
      input_size: null           # H (=W) or [H, W]; null: the model's
      num_frames: null           # video clip length T; null: the model's
      resize_model: false        # true: input_size / num_frames differing from the model's build the model at
                                 # the data's size (logged); false: such a difference is an error naming both
      sampling_rate: null        # video: tau, frames between sampled frames; null: the model's (T x tau)
      mean: null                 # normalisation; null: the model's
      std: null
      augment: {}                # passed to build_dataset (e.g. randaugment, color_jitter, random_erasing ...)
      repeated_aug: 1            # > 1: RepeatAugSampler with this many repeats (the MViT video recipe uses 2)
      short_video: pad           # a video shorter than a clip: pad (repeat its last frame), loop, or skip it
    optim:                       # no weight decay on norms, biases and model.no_weight_decay()
      name: adamw                # adamw, or sgd (momentum; the ViT paper's fine-tuning)
      momentum: 0.9              # sgd only
      lr: 1.0e-3                 # peak lr for ``base_batch_size`` (absolute when base_batch_size is null)
      base_batch_size: null      # lr scales linearly: lr * train.batch_size / base_batch_size
      weight_decay: 0.05
      betas: [0.9, 0.999]        # adamw only
      eps: 1.0e-8
      layer_decay: 1.0           # < 1: layer-wise lr decay (lr * layer_decay ** (L - layer_id))
    schedule:                    # linear warm-up, then half-cosine (or poly, step), evaluated every optimiser step
      name: cosine               # cosine, poly (lr (1 - t)^power; mmseg's "poly" with linear warm-up), or step
      power: 1.0                 # poly only
      milestones: null           # step only: lr x gamma at each (epochs; iterations when iters is set)
      gamma: 0.1                 # step only
      epochs: 10
      iters: null                # total optimiser steps; set: replaces epochs (the dense recipes' 160k iterations)
      warmup_epochs: 0
      warmup_iters: null         # warm-up in optimiser steps; set: replaces warmup_epochs
      warmup_lr: 1.0e-6
      min_lr: 1.0e-6
    train:
      batch_size: 64             # GLOBAL batch per optimiser step, over all processes and accumulation steps
      accum_steps: 1             # micro-batches per step; per-process micro-batch = batch_size / (world * accum)
      clip_grad: null            # max global L2 norm of the gradients
      amp: none                  # bf16 | fp16 | none; fp16 (with gradient scaling) is GPU-only
      ema_decay: null            # e.g. 0.9999: keep an EMA of the weights, evaluated beside the model
      grad_checkpointing: false  # activation checkpointing (non-reentrant)
      compile: false             # true: torch.compile the model (static shapes, symbolic after a size change);
                                 # dynamic: symbolic sizes from the start; the first step pays the compile time
                                 # (on a CPU the compiled step measured 0.91-1.08x vitkit's eager one: README)
      seed: 0
      deterministic: false       # torch.use_deterministic_algorithms
      cudnn_benchmark: null      # CUDA: cuDNN's per-shape algorithm search; null: on where the task's batches
                                 # share one shape (all but detection) and not deterministic
      reuse_freed_memory: true   # CPU, glibc: malloc keeps freed memory (no page faults per step; holds the peak)
      workers: 2                 # DataLoader worker processes per training process
      label_smoothing: 0.0
      mixup: 0.0                 # mixup alpha (0 = off)
      cutmix: 0.0                # cutmix alpha (0 = off)
      mixup_switch_prob: 0.5     # with both on: probability of cutmix for a batch
      max_steps: null            # stop after this many optimiser steps in total (the schedule still spans epochs)
      log_every: 20              # steps between metric lines
    eval:
      batch_size: 128            # per process
      every: 1                   # evaluate every N epochs (and always after the last)
      num_clips: 1               # video: K uniformly spaced clips
      num_crops: 1               # 1 (centre) or 3 spatial crops; scores averaged per sample
      ema: true                  # also evaluate the EMA weights when there are any
    run:
      name: null                 # run directory runs/<name>-<time>; null: <model>-<dataset>
      output_dir: runs
      dir: null                  # exact run directory (overrides output_dir/name)
      save_every: 0              # steps between checkpoints (0: every epoch end)
      keep: 2                    # checkpoints kept (the newest)
      tensorboard: null          # TensorBoard events in RUN/tensorboard; null: when tensorboard is installed
      wandb: null                # Weights & Biases; null: when wandb is installed and configured (WANDB_API_KEY/MODE)
      wandb_project: vitkit

Override from the command line with dotted keys: ``vitkit train configs/demo/digits.yaml optim.lr=1e-3
train.batch_size=64 model.drop_path_rate=0.1``. Values are parsed as YAML and converted to the key's type
(``1e-3`` is a float). An unknown key is an error naming the valid keys of its section (and the section it belongs
to when it is in another: ``train.epochs`` -> ``schedule.epochs``); every value is range-checked when the recipe is
read, with the valid range in the message. A recipe may inherit from others with ``_base_`` (see
:mod:`vitkit.engine.recipe_files`).
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from .recipe_files import RecipeError, configs_dir, find_recipe, list_recipes, read_recipe_tree

__all__ = ["Recipe", "RecipeError", "configs_dir", "default_run_name", "find_recipe", "list_recipes",
           "load_recipe", "recipe_from_dict"]


@dataclass
class TaskSection:
    name: str = "classification"
    options: dict = field(default_factory=dict)  # filled from the extra keys of the YAML section


@dataclass
class ModelSection:
    name: str = "vit_demo_patch8_32"
    weights: str | None = None
    pretrained: str | None = None
    finetune: str = "full"
    freeze_stages: int = 0
    config: dict = field(default_factory=dict)  # filled from the extra keys of the YAML section


@dataclass
class DataSection:
    dataset: str = "digits"
    root: str | None = None
    train_split: str = "train"
    val_split: str = "test"
    input_size: int | list | None = None
    num_frames: int | None = None
    resize_model: bool = False
    sampling_rate: int | None = None
    mean: list | None = None
    std: list | None = None
    augment: dict = field(default_factory=dict)
    repeated_aug: int = 1
    format: str = "auto"          # auto | list | folder | rawframes | ssv2 | charades (vitkit.data.formats)
    sampling: str = "dense"       # video: dense (T x tau clips) | segment (one frame from each of T segments)
    decoder: str = "pyav"         # video files: pyav | torchcodec | decord (vitkit.data.decoders)
    short_video: str = "pad"  # a video shorter than a clip: pad (repeat the last frame), loop, or skip


@dataclass
class OptimSection:
    name: str = "adamw"
    momentum: float = 0.9
    lr: float = 1e-3
    base_batch_size: int | None = None
    weight_decay: float = 0.05
    betas: list = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    layer_decay: float = 1.0
    fused: bool | None = None  # AdamW's fused kernel; null: wherever torch has it (CPU and CUDA float weights)


@dataclass
class ScheduleSection:
    name: str = "cosine"
    power: float = 1.0
    epochs: int = 10
    iters: int | None = None
    warmup_epochs: float = 0.0
    warmup_iters: int | None = None
    warmup_lr: float = 1e-6
    min_lr: float = 1e-6
    milestones: list | None = None
    gamma: float = 0.1


@dataclass
class TrainSection:
    batch_size: int = 64
    accum_steps: int = 1
    clip_grad: float | None = None
    amp: str = "none"
    ema_decay: float | None = None
    grad_checkpointing: bool | list = False  # true: every block; [0, 1]: the blocks of stages 0 and 1 only
    compile: bool | str = False  # false | true | dynamic (vitkit.models.compile.COMPILE_MODES)
    seed: int = 0
    deterministic: bool = False
    cudnn_benchmark: bool | None = None  # null: vitkit.engine.trainer.wants_cudnn_benchmark decides
    reuse_freed_memory: bool = True  # vitkit.engine.allocator: CPU runs only
    workers: int = 2
    label_smoothing: float = 0.0
    mixup: float = 0.0
    cutmix: float = 0.0
    mixup_switch_prob: float = 0.5
    max_steps: int | None = None
    log_every: int = 20


@dataclass
class EvalSection:
    batch_size: int = 128
    every: int = 1
    num_clips: int = 1
    num_crops: int = 1
    ema: bool = True


@dataclass
class RunSection:
    name: str | None = None
    output_dir: str = "runs"
    dir: str | None = None
    save_every: int = 0
    keep: int = 2
    tensorboard: bool | None = None
    wandb: bool | None = None
    wandb_project: str = "vitkit"


@dataclass
class Recipe:
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    schedule: ScheduleSection = field(default_factory=ScheduleSection)
    train: TrainSection = field(default_factory=TrainSection)
    eval: EvalSection = field(default_factory=EvalSection)
    run: RunSection = field(default_factory=RunSection)
    #: what validation adjusted (e.g. a warm-up clipped to a short run); printed at the start of training
    notes: list = field(default_factory=list, compare=False, repr=False)
    task: TaskSection = field(default_factory=TaskSection)

    def to_dict(self) -> dict:
        """Plain nested dict; the model and task sections are flat (name, then the config / options)."""
        out = dataclasses.asdict(self)
        out.pop("notes")
        model = out.pop("model")
        task = out.pop("task")
        tune = {k: model[k] for k in _MODEL_KEYS[2:] if model[k] != getattr(ModelSection, k)}
        out = {"model": {"name": model["name"], "weights": model["weights"], **tune, **model["config"]}, **out}
        if task["name"] != TaskSection.name or task["options"]:
            out = {"task": {"name": task["name"], **task["options"]}, **out}
        return out

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=False)


SECTIONS = {f.name: f.type for f in dataclasses.fields(Recipe) if f.name != "notes"}
_SECTION_CLASSES = {
    "model": ModelSection, "data": DataSection, "optim": OptimSection, "schedule": ScheduleSection,
    "train": TrainSection, "eval": EvalSection, "run": RunSection, "task": TaskSection,
}
SCHEDULES = ("cosine", "poly", "step")
AMP_MODES = ("bf16", "fp16", "none")
OPTIMIZERS = ("adamw", "sgd")


def _unknown(kind: str, key: str, valid: list[str], section: str | None = None) -> RecipeError:
    close = difflib.get_close_matches(key, valid, n=3, cutoff=0.6)
    if section is not None and key not in valid:  # the key of another section: train.epochs -> schedule.epochs
        elsewhere = [f"{s}.{key}" for s, cls in _SECTION_CLASSES.items()
                     if s != section and key in {f.name for f in dataclasses.fields(cls)} - {"config"}]
        close = elsewhere + close
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    return RecipeError(f"unknown {kind} {key!r}{hint}; valid: {', '.join(valid)}")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Convert a YAML value to the declared type ``tp`` (int | float | bool | str | list | dict, optional)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where)
            except RecipeError as e:
                errors.append(str(e))
        names = " | ".join(getattr(a, "__name__", str(a)) for a in args)
        raise RecipeError(f"{where}: expected {names}, got {value!r}")
    if isinstance(value, str) and tp is not str and value.lower() in ("null", "none", "~"):
        value = None
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
            return value.lower() in ("true", "yes", "on", "1")
        raise RecipeError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise RecipeError(f"{where}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        try:
            f = float(value)
        except (TypeError, ValueError):
            raise RecipeError(f"{where}: expected an integer, got {value!r}") from None
        if not f.is_integer():
            raise RecipeError(f"{where}: expected an integer, got {value!r}")
        return int(f)
    if tp is float:
        if isinstance(value, bool):
            raise RecipeError(f"{where}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise RecipeError(f"{where}: expected a number, got {value!r}") from None
    if tp is str:
        if isinstance(value, (dict, list)) or value is None:
            raise RecipeError(f"{where}: expected a string, got {value!r}")
        return str(value)
    if tp is list or origin is list:
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise RecipeError(f"{where}: expected a list, got {value!r}")
        return value
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise RecipeError(f"{where}: expected a mapping, got {value!r}")
        return value
    return value


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _model_config_fields(name: str) -> dict[str, Any] | None:
    """Config field name -> type of a registered variant; None when the name is not registered."""
    from vitkit.registry import model_info

    try:
        info = model_info(name)
    except KeyError:
        return None
    return _field_types(type(info.config))


_MODEL_KEYS = ("name", "weights", "pretrained", "finetune", "freeze_stages")  # the rest are config fields


def _build_section(section: str, values: Mapping[str, Any]) -> Any:
    cls = _SECTION_CLASSES[section]
    types_ = _field_types(cls)
    kwargs: dict[str, Any] = {}
    if section == "model":
        name = values.get("name", ModelSection.name)
        config_types = _model_config_fields(str(name))
        if config_types is None:
            from vitkit.registry import model_info

            try:
                model_info(str(name))
            except KeyError as e:
                raise RecipeError(f"model.name: {e.args[0]}") from None
        config: dict[str, Any] = {}
        for key, value in values.items():
            if key in _MODEL_KEYS:
                kwargs[key] = _coerce(value, types_[key], f"model.{key}")
            elif key in config_types:
                config[key] = _coerce_config(value, config_types[key], f"model.{key}")
            else:
                raise _unknown("key in section 'model'", key, [*_MODEL_KEYS, *sorted(config_types)], "model")
        _check_model_config(str(name), config)
        kwargs["config"] = config
        return cls(**kwargs)
    if section == "task":
        return _build_task_section(values)
    for key, value in values.items():
        if key not in types_:
            raise _unknown(f"key in section {section!r}", key, list(types_), section)
        kwargs[key] = _coerce(value, types_[key], f"{section}.{key}")
    return cls(**kwargs)


def _check_model_config(name: str, config: dict) -> None:
    """The model's own range checks (the ones ``create_model`` applies), reported as ``model.<field>``."""
    from vitkit.models.config_check import check_config
    from vitkit.registry import model_info

    try:
        check_config(dataclasses.replace(model_info(name).config, **config), prefix="model.")
    except (ValueError, TypeError) as e:
        raise RecipeError(str(e)) from None


def _build_task_section(values: Mapping[str, Any]) -> TaskSection:
    """``name`` picks the task (vitkit.tasks); the other keys are that task's options, typed by its dataclass."""
    from vitkit.tasks import get_task

    name = _coerce(values.get("name", TaskSection.name), str, "task.name")
    try:
        task = get_task(name)
    except KeyError as e:
        raise RecipeError(f"task.name: {e.args[0]}") from None
    types_ = _field_types(task.options)
    options: dict[str, Any] = {}
    for key, value in values.items():
        if key == "name":
            continue
        if key not in types_:
            raise _unknown(f"key in section 'task' ({name})", key, ["name", *types_])
        options[key] = _coerce_config(value, types_[key], f"task.{key}")
    return TaskSection(name=name, options=options)


def _coerce_config(value: Any, tp: Any, where: str) -> Any:
    """Model config fields: same conversion, lists become tuples where the field is a tuple."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("null", "none", "~")):
            if len(args) < len(typing.get_args(tp)):
                return None
        for a in args:
            try:
                return _coerce_config(value, a, where)
            except RecipeError:
                continue
        raise RecipeError(f"{where}: expected {tp}, got {value!r}")
    if tp is tuple or origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise RecipeError(f"{where}: expected a list, got {value!r}")
        return tuple(tuple(v) if isinstance(v, list) else v for v in value)
    if tp in (int, float, bool, str):
        return _coerce(value, tp, where)
    return value


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"optim.lr=1e-3"`` -> (["optim", "lr"], 0.001); the value is parsed as YAML."""
    if "=" not in text:
        raise RecipeError(f"override {text!r} is not of the form section.key=value (e.g. optim.lr=1e-3)")
    key, raw = text.split("=", 1)
    parts = key.strip().split(".")
    if len(parts) < 2 or not all(parts):
        raise RecipeError(f"override key {key!r} must be dotted, section.key (e.g. train.batch_size=64)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return parts, value


def merge_overrides(tree: dict, overrides: list[str]) -> dict:
    """Apply dotted ``key=value`` overrides to a nested dict (a copy); sections are checked here."""
    tree = {k: dict(v) if isinstance(v, Mapping) else v for k, v in tree.items()}
    for text in overrides:
        parts, value = parse_override(text)
        if parts[0] not in SECTIONS:
            raise _unknown("recipe section", parts[0], list(SECTIONS))
        node = tree.setdefault(parts[0], {})
        for p in parts[1:-1]:
            child = node.get(p)
            if not isinstance(child, dict):
                child = {}
            node[p] = child = dict(child)
            node = child
        node[parts[-1]] = value
    return tree


def recipe_from_dict(tree: Mapping[str, Any] | None) -> Recipe:
    """Validate a nested mapping against the schema; unknown sections or keys raise naming the valid ones."""
    tree = dict(tree or {})
    sections = {}
    for name, values in tree.items():
        if name not in SECTIONS:
            raise _unknown("recipe section", str(name), list(SECTIONS))
        if values is None:
            values = {}
        if not isinstance(values, Mapping):
            raise RecipeError(f"recipe section {name!r} must be a mapping of keys, got {values!r}")
        sections[name] = _build_section(name, values)
    recipe = Recipe(**sections)
    validate(recipe)
    return recipe


def _in_range(key: str, value: float | None, lo: float | None = None, hi: float | None = None, *,
              lo_open: bool = False, hi_open: bool = False, extra: str = "") -> None:
    """Raise ``key must be in [lo, hi)`` (the interval as declared) when ``value`` lies outside it."""
    if value is None:
        return
    ok = (lo is None or (value > lo if lo_open else value >= lo)) and \
         (hi is None or (value < hi if hi_open else value <= hi))
    if ok and math.isfinite(value):
        return
    if hi is None:
        rng = f"{'>' if lo_open else '>='} {lo:g}"
    elif lo is None:
        rng = f"{'<' if hi_open else '<='} {hi:g}"
    else:
        rng = f"in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    raise RecipeError(f"{key} must be {rng}{extra}, got {value}")


def _check_sizes(r: Recipe, in_chans: int) -> None:
    d = r.data
    size = d.input_size
    if size is not None:
        sizes = size if isinstance(size, list) else [size]
        if len(sizes) not in (1, 2) or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1
                                               for v in sizes):
            raise RecipeError(f"data.input_size must be a positive integer H (=W) or [H, W], got {size!r}")
    if d.num_frames is not None and d.num_frames < 1:
        raise RecipeError(f"data.num_frames must be >= 1 or null (the model's), got {d.num_frames}")
    for key in ("mean", "std"):
        v = getattr(d, key)
        if v is None:
            continue
        if len(v) != in_chans or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
            raise RecipeError(f"data.{key} must be a list of {in_chans} numbers (one per input channel), got {v!r}")
        if key == "std" and not all(x > 0 for x in v):
            raise RecipeError(f"data.std must be > 0 for every channel, got {v!r}")


def validate(r: Recipe) -> None:
    """Range and cross-key checks with messages that say what is expected.

    Adjustments that keep a recipe usable are recorded in ``r.notes`` rather than raised: a warm-up as long as
    the run (``schedule.epochs=1`` on a recipe with 3 warm-up epochs) is clipped to half the run.
    """
    if r.optim.name not in OPTIMIZERS:
        raise RecipeError(f"optim.name must be one of {', '.join(OPTIMIZERS)}, got {r.optim.name!r}")
    if r.train.amp not in AMP_MODES:
        raise RecipeError(f"train.amp must be one of {', '.join(AMP_MODES)}, got {r.train.amp!r}")
    if r.train.compile not in (False, True, "dynamic"):
        raise RecipeError(f"train.compile: expected true/false or dynamic, got {r.train.compile!r}")
    positive = {
        "train.batch_size": r.train.batch_size, "train.accum_steps": r.train.accum_steps,
        "schedule.epochs": r.schedule.epochs, "eval.batch_size": r.eval.batch_size,
        "eval.num_clips": r.eval.num_clips, "eval.every": r.eval.every, "data.sampling_rate": r.data.sampling_rate,
        "data.repeated_aug": r.data.repeated_aug, "train.log_every": r.train.log_every, "run.keep": r.run.keep,
    }
    for k, v in positive.items():
        if v is not None and v < 1:
            raise RecipeError(f"{k} must be >= 1, got {v}")
    from vitkit.data.decoders import DECODERS
    from vitkit.data.formats import FORMATS
    from vitkit.data.sampling import SAMPLING_MODES

    choices = {"data.format": (r.data.format, FORMATS), "data.sampling": (r.data.sampling, SAMPLING_MODES),
               "data.decoder": (r.data.decoder, DECODERS)}
    for k, (v, valid) in choices.items():
        if v not in valid:
            raise RecipeError(f"{k} must be one of {', '.join(valid)}, got {v!r}")
    if r.data.short_video not in ("pad", "loop", "skip"):
        raise RecipeError(f"data.short_video must be pad, loop or skip, got {r.data.short_video!r}")
    if r.eval.num_crops not in (1, 3):
        raise RecipeError(f"eval.num_crops must be 1 (centre) or 3, got {r.eval.num_crops}")
    if r.train.batch_size % r.train.accum_steps:
        raise RecipeError(
            f"train.batch_size ({r.train.batch_size}) must be divisible by train.accum_steps ({r.train.accum_steps})"
        )
    if not 0 < r.optim.layer_decay <= 1:
        raise RecipeError(f"optim.layer_decay must be in (0, 1], got {r.optim.layer_decay}")
    if len(r.optim.betas) != 2 or not all(isinstance(b, (int, float)) and not isinstance(b, bool)
                                          for b in r.optim.betas):
        raise RecipeError(f"optim.betas must be two numbers, got {r.optim.betas}")
    r.optim.betas = [float(b) for b in r.optim.betas]
    for i, b in enumerate(r.optim.betas):
        _in_range(f"optim.betas[{i}]", b, 0, 1, hi_open=True)
    _in_range("optim.lr", r.optim.lr, 0, lo_open=True)
    _in_range("optim.weight_decay", r.optim.weight_decay, 0)
    _in_range("optim.eps", r.optim.eps, 0, lo_open=True)
    _in_range("optim.momentum", r.optim.momentum, 0, 1, hi_open=True)
    if r.optim.base_batch_size is not None and r.optim.base_batch_size < 1:
        raise RecipeError(f"optim.base_batch_size must be >= 1 or null, got {r.optim.base_batch_size}")
    peak = r.optim.lr * (r.train.batch_size / r.optim.base_batch_size if r.optim.base_batch_size else 1.0)
    _in_range("schedule.min_lr", r.schedule.min_lr, 0, peak,
              extra=f" (0 up to the peak lr {peak:g} = optim.lr scaled by the batch)")
    _in_range("schedule.warmup_lr", r.schedule.warmup_lr, 0)
    _in_range("schedule.warmup_epochs", r.schedule.warmup_epochs, 0)
    _in_range("train.clip_grad", r.train.clip_grad, 0, lo_open=True,
              extra=" (the largest gradient norm; null: no clipping)")
    _in_range("train.label_smoothing", r.train.label_smoothing, 0, 1, hi_open=True)
    _in_range("train.mixup", r.train.mixup, 0, extra=" (the Beta distribution's alpha; 0: off)")
    _in_range("train.cutmix", r.train.cutmix, 0, extra=" (the Beta distribution's alpha; 0: off)")
    _in_range("train.mixup_switch_prob", r.train.mixup_switch_prob, 0, 1)
    _in_range("train.workers", r.train.workers, 0)
    _in_range("run.save_every", r.run.save_every, 0, extra=" (optimiser steps between checkpoints; 0: every epoch)")
    if r.train.ema_decay is not None and not 0 <= r.train.ema_decay < 1:
        raise RecipeError(f"train.ema_decay must be in [0, 1), got {r.train.ema_decay}")
    if r.train.max_steps is not None and r.train.max_steps < 1:
        raise RecipeError(f"train.max_steps must be >= 1 or null, got {r.train.max_steps}")
    in_chans = getattr(_model_config(r.model), "in_chans", 3)
    _check_sizes(r, in_chans)
    s = r.schedule
    if s.warmup_epochs > 0 and s.warmup_epochs >= s.epochs:
        clipped = s.epochs / 2
        r.notes.append(f"note: schedule.warmup_epochs {s.warmup_epochs:g} is not shorter than schedule.epochs "
                       f"{s.epochs}; warm-up clipped to {clipped:g} epoch(s) (half the run)")
        s.warmup_epochs = clipped
    if r.schedule.name not in SCHEDULES:
        raise RecipeError(f"schedule.name must be one of {', '.join(SCHEDULES)}, got {r.schedule.name!r}")
    for k in ("iters", "warmup_iters"):
        v = getattr(r.schedule, k)
        if v is not None and v < (1 if k == "iters" else 0):
            raise RecipeError(f"schedule.{k} must be {'>= 1' if k == 'iters' else '>= 0'} or null, got {v}")
    if r.schedule.name == "step":
        span = r.schedule.iters if r.schedule.iters is not None else r.schedule.epochs
        if not r.schedule.milestones or any(not 0 < m <= span for m in r.schedule.milestones):
            raise RecipeError(f"schedule.milestones must list points in (0, {span}] for the step schedule "
                              f"(epochs, or iterations with schedule.iters), got {r.schedule.milestones}")
    if r.schedule.iters is not None and (r.schedule.warmup_iters or 0) > r.schedule.iters:
        raise RecipeError(f"schedule.warmup_iters ({r.schedule.warmup_iters}) exceeds schedule.iters "
                          f"({r.schedule.iters})")
    from vitkit.tasks import get_task

    get_task(r.task.name).validate(r)


def _model_config(m: ModelSection) -> Any:
    from vitkit.registry import model_info

    return dataclasses.replace(model_info(m.name).config, **m.config)


def load_recipe(path: str | os.PathLike | None = None, overrides: list[str] | None = None) -> Recipe:
    """Read a recipe YAML file (None: the schema defaults) with its ``_base_`` parents, apply dotted overrides,
    validate."""
    tree = read_recipe_tree(path) if path is not None else {}
    tree = merge_overrides(tree, overrides or [])
    return recipe_from_dict(tree)


def dataset_tag(spec: str) -> str:
    """A short name for a dataset spec: ``digits``, ``/data/imagenet`` -> ``imagenet``,
    ``/data/k400/train.csv`` -> ``k400`` (a list file named after a split takes its folder's name)."""
    p = Path(str(spec).rstrip("/\\"))
    stem = p.stem if p.suffix.lower() in (".txt", ".csv", ".tsv", ".lst", ".list", ".json") else p.name
    if stem.lower() in ("train", "val", "test", "valid", "validation", "training", "list", "labels") and p.parent.name:
        return p.parent.name
    return stem or "data"


def default_run_name(r: Recipe) -> str:
    """``run.name``, or ``<model>-<dataset>`` from the model and data actually used (after overrides)."""
    return r.run.name or f"{r.model.name}-{dataset_tag(r.data.dataset)}"


DEMO_RECIPE = "demo/digits.yaml"
