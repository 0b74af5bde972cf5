"""readconfig.py: one merged, validated pipeline.config for a zoo model.

    python readconfig.py --pretrained_model "SSD MobileNet V2 FPNLite 320x320" \\
        --records_dir RECORDS --output_dir TRAINING_DIR \\
        [--config_override training.config] [--hparams traininghparams.json] \\
        [--pretrained_dir DIR] [--cache_dir DIR] [--num_gpus N] [--from_scratch]
    python readconfig.py --list_models

Fixed precedence, lowest first, logged field by field:
  1. pretrained   the zoo model's pipeline.config (or configs/base/ offline)
  2. defaults     what the toolkit knows is right for fine-tuning a zoo model
                  (fine_tune_checkpoint_type for the architecture, no bfloat16)
  3. override     --config_override: a partial TrainEvalPipelineConfig in
                  protobuf text; a repeated field given there replaces the list
  4. hparams      --hparams JSON (keys below)
  5. paths        records, label map, fine_tune_checkpoint: owned by the toolkit

Everything is validated before anything is written; <output_dir>/pipeline.config
is written atomically, with <output_dir>/toolkit.json (the settings that are
not pipeline fields, such as checkpoint_every_n and seed, and the table of changes).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tfodkit import zoo
from tfodkit.errors import ArgumentParser, UserError, cli, did_you_mean
from tfodkit.fsutil import write_json_atomic, write_text_atomic
from tfodkit.paths import BASE_CONFIGS
from tfodkit.records import RecordsDir, read_dir
from tfodkit.settings import CHECKPOINT_EVERY_N, check_batch_size

# ----------------------------------------------------------------------------- hparams

FINE_TUNE_TYPES = ("classification", "detection", "fine_tune", "full")


@dataclass(frozen=True)
class HParam:
    kind: str  # "int", "float", "str", "size", "bool"
    help: str
    minimum: float | None = None
    choices: tuple[str, ...] = ()


HPARAMS: dict[str, HParam] = {
    "num_classes": HParam("int", "number of classes (default: from the label map)", 1),
    "batch_size": HParam("int", "training batch size, over all GPUs", 1),
    "train_steps": HParam("int", "training steps; the zoo config's learning-rate schedule is rescaled to them "
                          "(steps written in the override are kept)", 1),
    "num_examples": HParam("int", "number of evaluation examples", 1),
    "learning_rate": HParam("float", "the schedule's base learning rate", 0),
    "warmup_steps": HParam("int", "warm-up steps of a cosine schedule", 0),
    "fine_tune_checkpoint_type": HParam("str", "what to restore from the zoo checkpoint", choices=FINE_TUNE_TYPES),
    "min_dim": HParam("int", "keep_aspect_ratio_resizer min_dimension", 16),
    "max_dim": HParam("int", "keep_aspect_ratio_resizer max_dimension", 16),
    "image_size": HParam("size", "fixed_shape_resizer size: N or [height, width]", 16),
    "checkpoint_every_n": HParam("int", "save a checkpoint every N steps (and always at the end)", 1),
    "seed": HParam("int", "seed Python, NumPy and TensorFlow: initial weights, shuffling, augmentation", 0),
    "deterministic": HParam("bool", "TensorFlow op determinism: same seed, same run (slower)"),
}


def _check_value(key: str, value: Any, spec: HParam, source: str) -> Any:
    where = f"{source}: {key}"
    if spec.kind == "size":
        if isinstance(value, int) and not isinstance(value, bool):
            value = [value, value]
        if not (isinstance(value, list) and len(value) == 2
                and all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
            raise UserError(f"{where} must be an integer or [height, width], got {value!r}",
                            f'e.g. "{key}": 320 or "{key}": [320, 480]')
        if min(value) < spec.minimum:
            raise UserError(f"{where} must be at least {int(spec.minimum)}, got {value!r}", "use a larger size")
        return value
    if spec.kind == "int":
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise UserError(f"{where} must be an integer, got {type(value).__name__} {value!r}",
                            f'e.g. "{key}": {int(spec.minimum or 0) + 1}')
    elif spec.kind == "float":
        if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
            raise UserError(f"{where} must be a number, got {type(value).__name__} {value!r}", f'e.g. "{key}": 0.01')
        value = float(value)
        if value <= spec.minimum:
            raise UserError(f"{where} must be greater than {spec.minimum:g}, got {value!r}", "use a positive rate")
        return value
    elif spec.kind == "bool":
        if not isinstance(value, bool):
            raise UserError(f"{where} must be true or false, got {type(value).__name__} {value!r}",
                            f'e.g. "{key}": true')
        return value
    elif spec.kind == "str":
        if not isinstance(value, str) or (spec.choices and value not in spec.choices):
            raise UserError(f"{where} must be one of {', '.join(spec.choices)}, got {value!r}",
                            did_you_mean(str(value), spec.choices) or "pick one of those")
        return value
    if spec.minimum is not None and value < spec.minimum:
        raise UserError(f"{where} must be at least {int(spec.minimum)}, got {value!r}", "use a larger value")
    return value


def load_hparams(path: Path | None) -> dict[str, Any]:
    """The hparams JSON, every key known and every value of the right type and range."""
    if path is None:
        return {}
    if not path.is_file():
        raise UserError(f"hparams file {path} not found", "check the --hparams path")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}", "fix the JSON syntax") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} must hold a JSON object of hyper-parameters, got {type(data).__name__}",
                        'e.g. {"batch_size": 8, "train_steps": 2000}')
    return check_hparams(data, str(path))


def check_key(key: str, source: str) -> HParam:
    """The spec of a hyper-parameter name; an unknown one is a one-line error with the closest names."""
    if key not in HPARAMS:
        hint = did_you_mean(key, list(HPARAMS)) or f"known keys: {', '.join(HPARAMS)}"
        raise UserError(f"{source}: unknown hyper-parameter {key!r}", hint)
    return HPARAMS[key]


def check_hparams(data: dict[str, Any], source: str) -> dict[str, Any]:
    """Hyper-parameters (from ``source``, for the errors) with every key known and every value checked."""
    out = {key: _check_value(key, value, check_key(key, source), source) for key, value in data.items()}
    if out.get("deterministic") and "seed" not in out:
        raise UserError(f"{source}: deterministic is true but no seed is set", 'add e.g. "seed": 0')
    if "min_dim" in out and "max_dim" in out and out["min_dim"] > out["max_dim"]:
        raise UserError(f"{source}: min_dim {out['min_dim']} is larger than max_dim {out['max_dim']}",
                        "make min_dim <= max_dim")
    return out


# ----------------------------------------------------------------------------- records and label map

def records_have_keypoints(paths: Iterable[Path]) -> bool:
    import tensorflow as tf

    for path in paths:
        for raw in tf.data.TFRecordDataset(str(path)).take(1):
            example = tf.train.Example.FromString(raw.numpy())
            return "image/object/keypoint/x" in example.features.feature
    return False


# ----------------------------------------------------------------------------- proto helpers

def flatten(msg, prefix: str = "") -> dict[str, Any]:
    """Every set leaf field of a message as {"a.b[0].c": value}."""
    out: dict[str, Any] = {}
    for fd, value in msg.ListFields():
        name = f"{prefix}{fd.name}"
        is_msg = fd.type == fd.TYPE_MESSAGE
        if fd.is_repeated:
            if is_msg and not fd.message_type.GetOptions().map_entry:
                for i, item in enumerate(value):
                    sub = flatten(item, f"{name}[{i}].")
                    out.update(sub or {f"{name}[{i}]": "{}"})
            else:
                out[name] = list(value) if not is_msg else str(value)
        elif is_msg:
            sub = flatten(value, f"{name}.")
            out.update(sub or {name: "{}"})
        else:
            out[name] = fd.enum_type.values_by_number[value].name if fd.enum_type else value
    return out


def merge_replacing_lists(base, override) -> None:
    """Merge ``override`` into ``base``; a repeated field set in override replaces base's list.

    (protobuf's MergeFrom appends repeated fields: a user who lists two
    data_augmentation_options would silently get the zoo's ones as well.)
    """
    for fd, value in override.ListFields():
        if fd.is_repeated:
            target = getattr(base, fd.name)
            del target[:]
            if fd.type == fd.TYPE_MESSAGE:
                for item in value:
                    target.add().CopyFrom(item)
            else:
                target.extend(value)
        elif fd.type == fd.TYPE_MESSAGE:
            sub = getattr(base, fd.name)
            sub.SetInParent()  # also clears the other members of a oneof
            merge_replacing_lists(sub, value)
        else:
            setattr(base, fd.name, value)


def _parse_text(text: str, message, source: str) -> None:
    from google.protobuf import text_format

    try:
        text_format.Parse(text, message)
    except text_format.ParseError as exc:
        msg = re.sub(r"^(\d+):(\d+) : ", r"\1:\2: ", str(exc))
        hint = "see the TrainEvalPipelineConfig fields in object_detection/protos/pipeline.proto"
        m = re.search(r'Message type "([\w.]+)" has no field named "(\w+)"', msg)
        if m:
            from google.protobuf import descriptor_pool

            desc = descriptor_pool.Default().FindMessageTypeByName(m.group(1))
            hint = did_you_mean(m.group(2), [f.name for f in desc.fields]) or \
                f"{m.group(1).rsplit('.', 1)[-1]} has: {', '.join(f.name for f in desc.fields)}"
        raise UserError(f"{source}:{msg}", hint) from None


def model_oneof(pipeline) -> tuple[str, Any]:
    arch = pipeline.model.WhichOneof("model")
    if arch is None:
        raise UserError("the pipeline config has no model", "start from a zoo model's pipeline.config")
    return arch, getattr(pipeline.model, arch)


# ----------------------------------------------------------------------------- the merge

@dataclass
class Change:
    field: str
    old: Any
    new: Any
    source: str


@dataclass
class Result:
    pipeline: Any
    changes: list[Change]
    settings: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


class _Tracker:
    """Records which stage changed which field (old value -> new value)."""

    def __init__(self, pipeline):
        self.pipeline = pipeline
        self.snapshot = flatten(pipeline)
        self.changes: dict[str, Change] = {}

    def stage(self, source: str) -> None:
        now = flatten(self.pipeline)
        for key in sorted(set(now) | set(self.snapshot)):
            old, new = self.snapshot.get(key), now.get(key)
            if old != new:
                first = self.changes.get(key)
                if first is not None and first.old == new:  # set by one stage, undone by a later one
                    del self.changes[key]
                else:
                    self.changes[key] = Change(key, first.old if first else old, new, source)
        self.snapshot = now


def _learning_rate(train_config) -> tuple[str, Any] | None:
    opt_name = train_config.optimizer.WhichOneof("optimizer")
    if opt_name is None:
        return None
    lr = getattr(train_config.optimizer, opt_name).learning_rate
    kind = lr.WhichOneof("learning_rate")
    return (kind, getattr(lr, kind)) if kind else None


def fit_schedule(train_config, train_steps: int, zoo_schedule: tuple[str, Any] | None, zoo_steps: int,
                 written: tuple[str, Any] | None = None, warmup_steps: int | None = None) -> list[str]:
    """Fit the learning-rate schedule to a run of ``train_steps``; returns one warning per entry moved or dropped.

    The rule, the same for every schedule type:
    - a step number the override wrote (``written``: the override's own schedule message) is kept as
      written, whatever the run's length: whoever wrote a step number meant it (the ``warmup_steps`` hparam
      sets the cosine warm-up the same way);
    - a step number that came from the zoo config (``zoo_schedule``, the user never saw it) is rescaled by
      train_steps / the zoo config's length (its num_steps; a cosine schedule's total_steps), keeping the
      schedule's shape; a manual-step entry that then lies at or past the end is dropped;
    - a cosine schedule's total_steps is the run's length (TFOD's rate is 0 after total_steps).
    An explicit step that lies past the end is kept, with a warning that it never takes effect.
    """
    train_config.num_steps = train_steps
    sched = _learning_rate(train_config)
    if sched is None:
        return []
    kind, lr = sched
    same_kind = zoo_schedule is not None and zoo_schedule[0] == kind
    zoo_lr = zoo_schedule[1] if same_kind else None
    mine = written[1] if written is not None and written[0] == kind else None
    warnings: list[str] = []

    def rescaled(ref: int) -> str:
        return f"the zoo config's schedule, rescaled from its {ref} steps to {train_steps}"

    def origin(name: str) -> str:
        if mine is not None and (len(mine.schedule) > 0 if name == "schedule" else mine.HasField(name)):
            return "override"
        return "zoo" if zoo_lr is not None else "default"

    def moved(name: str, old: int, new: int, why: str) -> None:
        if old != new:
            warnings.append(f"learning-rate schedule: {kind}.{name} {old} -> {new} ({why})")

    if kind == "cosine_decay_learning_rate":
        ref = (zoo_lr.total_steps if zoo_lr is not None and zoo_lr.HasField("total_steps") else zoo_steps) \
            or train_steps
        old_total = lr.total_steps
        lr.total_steps = train_steps
        moved("total_steps", old_total, train_steps, "a cosine schedule ends at train_steps")
        for name in ("warmup_steps", "hold_base_rate_steps"):
            old = getattr(lr, name)
            if name == "warmup_steps" and warmup_steps is not None:
                lr.warmup_steps = warmup_steps  # asked for: the change table shows it, no warning
            elif origin(name) == "zoo" and old:
                new = round(old * train_steps / ref)
                setattr(lr, name, new)
                moved(name, old, new, rescaled(ref))
        if lr.hold_base_rate_steps and lr.warmup_steps + lr.hold_base_rate_steps >= train_steps:
            warnings.append(f"learning-rate schedule: warmup_steps {lr.warmup_steps} + hold_base_rate_steps "
                            f"{lr.hold_base_rate_steps} reach train_steps {train_steps}: the rate never decays")
    elif kind == "manual_step_learning_rate":
        if origin("schedule") == "zoo":
            ref = zoo_steps or (lr.schedule[-1].step * 2 if lr.schedule else train_steps)
            last, keep = 0, 0
            for i, item in enumerate(lr.schedule):
                step = max(round(item.step * train_steps / ref), last + 1)  # TFOD: strictly increasing
                if step >= train_steps:
                    warnings.append(f"learning-rate schedule: dropped {kind}.schedule[{i}] (step {item.step}, "
                                    f"rate {item.learning_rate:.6g}): {rescaled(ref)}, it lands on step {step}, "
                                    "at or past the end")
                    continue
                moved(f"schedule[{i}].step", item.step, step, rescaled(ref))
                item.step = last = step
                keep = i + 1
            del lr.schedule[keep:]
        else:
            for i, item in enumerate(lr.schedule):
                if item.step >= train_steps:
                    warnings.append(f"learning-rate schedule: {kind}.schedule[{i}] (step {item.step}, rate "
                                    f"{item.learning_rate:.6g}) is at or past train_steps {train_steps}: it never "
                                    f"takes effect (kept as the override wrote it)")
    elif kind == "exponential_decay_learning_rate":
        ref = zoo_steps or train_steps
        for name in ("decay_steps", "burnin_steps"):
            old = getattr(lr, name)
            if origin(name) == "zoo" and old:
                new = round(old * train_steps / ref)
                new = max(1, new) if name == "decay_steps" else min(new, train_steps - 1)
                setattr(lr, name, new)
                moved(name, old, new, rescaled(ref))
        if lr.burnin_steps >= train_steps:
            warnings.append(f"learning-rate schedule: burnin_steps {lr.burnin_steps} is at or past train_steps "
                            f"{train_steps}: the whole run is burn-in")
    return warnings


def set_learning_rate(train_config, rate: float) -> None:
    """Set the schedule's base rate; the schedule's other rates keep their ratio to it."""
    sched = _learning_rate(train_config)
    if sched is None:
        raise UserError("learning_rate: the config has no optimizer learning rate", "add an optimizer in the override")
    kind, lr = sched
    if kind == "cosine_decay_learning_rate":
        scale = rate / lr.learning_rate_base if lr.learning_rate_base else 1.0
        lr.learning_rate_base = rate
        lr.warmup_learning_rate = min(lr.warmup_learning_rate * scale, rate)
    elif kind == "manual_step_learning_rate":
        scale = rate / lr.initial_learning_rate if lr.initial_learning_rate else 1.0
        lr.initial_learning_rate = rate
        for item in lr.schedule:
            item.learning_rate *= scale
    elif kind == "exponential_decay_learning_rate":
        scale = rate / lr.initial_learning_rate if lr.initial_learning_rate else 1.0
        lr.initial_learning_rate = rate
        lr.burnin_learning_rate *= scale
        lr.min_learning_rate *= scale
    else:
        lr.learning_rate = rate


def _apply_resizer(arch_config, hparams: dict[str, Any]) -> None:
    resizer = arch_config.image_resizer
    kind = resizer.WhichOneof("image_resizer_oneof")
    if "image_size" in hparams:
        if kind != "fixed_shape_resizer":
            raise UserError(f"image_size applies to a fixed_shape_resizer, this model has {kind}",
                            "use min_dim / max_dim instead")
        resizer.fixed_shape_resizer.height, resizer.fixed_shape_resizer.width = hparams["image_size"]
    if "min_dim" in hparams or "max_dim" in hparams:
        if kind != "keep_aspect_ratio_resizer":
            raise UserError(f"min_dim/max_dim apply to a keep_aspect_ratio_resizer, this model has {kind}",
                            "use image_size instead")
        r = resizer.keep_aspect_ratio_resizer
        r.min_dimension = hparams.get("min_dim", r.min_dimension)
        r.max_dimension = hparams.get("max_dim", r.max_dimension)
        if r.min_dimension > r.max_dimension:
            raise UserError(f"min_dim {r.min_dimension} would exceed max_dim {r.max_dimension}",
                            "set both min_dim and max_dim")


def detect_gpus() -> int:
    import tensorflow as tf

    return len(tf.config.list_physical_devices("GPU"))


def _check_meta_arch(model: zoo.ZooModel, arch: str | None) -> None:
    if arch is not None and arch != model.meta_arch:
        raise UserError(f"the config's model is {arch} but {model.name} is {model.meta_arch}",
                        "do not switch the meta-architecture in the override: pick another zoo model")


def _check_num_classes(num_classes: int, records: RecordsDir) -> None:
    labels = records.labels
    if num_classes != labels.num_classes:
        raise UserError(f"num_classes is {num_classes} but the label map {records.label_map} has "
                        f"{len(labels.items)} classes with ids up to {labels.num_classes}",
                        "drop num_classes from the hparams (it defaults to the label map's largest id) or fix it")


def precheck(model: zoo.ZooModel, records: RecordsDir, override_text: str | None, override_source: str,
             hparams: dict[str, Any], num_gpus: int | None) -> None:
    """The checks that need no zoo config, made before its download (a typo should not cost a gigabyte):
    the override's syntax and meta-architecture, num_classes against the label map, and the batch size
    against the GPUs when the hparams or the override set it. build_pipeline checks the merged result again."""
    import tfodkit.compat  # noqa: F401

    from object_detection.protos import pipeline_pb2

    batch = hparams.get("batch_size")
    if override_text is not None:
        override = pipeline_pb2.TrainEvalPipelineConfig()
        _parse_text(override_text, override, override_source)
        _check_meta_arch(model, override.model.WhichOneof("model"))
        if batch is None and override.train_config.batch_size > 0:
            batch = override.train_config.batch_size
    if "num_classes" in hparams:
        _check_num_classes(hparams["num_classes"], records)
    if batch is not None:
        check_batch_size(batch, num_gpus if num_gpus is not None else detect_gpus(), "GPUs", "or pass --num_gpus")


def build_pipeline(model: zoo.ZooModel, base_text: str, base_source: str, records: RecordsDir,
                   override_text: str | None = None, override_source: str = "override",
                   hparams: dict[str, Any] | None = None, checkpoint: Path | None = None,
                   num_gpus: int | None = None) -> Result:
    """Merge the stages in their fixed order and validate the result (writes nothing)."""
    import tfodkit.compat  # noqa: F401

    from object_detection.protos import pipeline_pb2, train_pb2

    hparams = dict(hparams or {})
    pipeline = pipeline_pb2.TrainEvalPipelineConfig()
    _parse_text(base_text, pipeline, base_source)
    tracker = _Tracker(pipeline)
    warnings: list[str] = []

    # 2. toolkit defaults
    arch, arch_config = model_oneof(pipeline)
    train = pipeline.train_config
    train.fine_tune_checkpoint_type = model.fine_tune_checkpoint_type
    if not train.HasField("fine_tune_checkpoint_version"):  # the proto's default is V1 (TF1 checkpoints)
        train.fine_tune_checkpoint_version = train_pb2.CheckpointVersion.Value("V2")
    train.use_bfloat16 = False  # TPU only; fails on CPU/GPU
    tracker.stage("defaults")
    zoo_steps, zoo_schedule = train.num_steps, _learning_rate(train)
    if zoo_schedule is not None:  # a copy: the merge below changes the pipeline's own message
        zoo_schedule = (zoo_schedule[0], type(zoo_schedule[1]).FromString(zoo_schedule[1].SerializeToString()))

    # 3. override
    written_schedule = None
    if override_text is not None:
        override = pipeline_pb2.TrainEvalPipelineConfig()
        _parse_text(override_text, override, override_source)
        written_schedule = _learning_rate(override.train_config)
        merge_replacing_lists(pipeline, override)
        tracker.stage("override")
    arch, arch_config = model_oneof(pipeline)
    _check_meta_arch(model, arch)

    # 4. hparams
    num_classes = hparams.get("num_classes", records.labels.num_classes)
    _check_num_classes(num_classes, records)
    arch_config.num_classes = num_classes
    if "batch_size" in hparams:
        train.batch_size = hparams["batch_size"]
    sched = _learning_rate(train)
    if "warmup_steps" in hparams and (sched or ("none",))[0] != "cosine_decay_learning_rate":
        raise UserError(f"warmup_steps applies to a cosine_decay_learning_rate, this config has "
                        f"{(sched or ('none',))[0]}", "set the warm-up in the override instead")
    steps = hparams.get("train_steps") or train.num_steps or \
        (sched[1].total_steps if sched and sched[0] == "cosine_decay_learning_rate" else 0)
    if "warmup_steps" in hparams and hparams["warmup_steps"] >= steps:
        raise UserError(f"warmup_steps {hparams['warmup_steps']} must be below train_steps {steps}",
                        "use fewer warm-up steps")
    if steps:
        warnings += fit_schedule(train, steps, zoo_schedule, zoo_steps, written_schedule, hparams.get("warmup_steps"))
    if "learning_rate" in hparams:
        set_learning_rate(train, hparams["learning_rate"])
    if "num_examples" in hparams:
        pipeline.eval_config.num_examples = hparams["num_examples"]
    if "fine_tune_checkpoint_type" in hparams:
        train.fine_tune_checkpoint_type = hparams["fine_tune_checkpoint_type"]
    _apply_resizer(arch_config, hparams)
    tracker.stage("hparams")

    # 5. paths the toolkit owns
    for reader, files in [(pipeline.train_input_reader, records.train)] + \
            [(r, records.test) for r in (pipeline.eval_input_reader or [pipeline.eval_input_reader.add()])]:
        reader.label_map_path = str(records.label_map)
        del reader.tf_record_input_reader.input_path[:]
        reader.tf_record_input_reader.input_path.extend(str(p) for p in files)
    if checkpoint is None:
        train.ClearField("fine_tune_checkpoint")
    else:
        train.fine_tune_checkpoint = str(checkpoint)
    tracker.stage("paths")

    # validation of the result
    if train.num_steps <= 0:
        raise UserError("train_config.num_steps is not set", 'set "train_steps" in the hparams')
    if train.batch_size <= 0:
        raise UserError("train_config.batch_size is not set", 'set "batch_size" in the hparams')
    replicas = num_gpus if num_gpus is not None else detect_gpus()
    check_batch_size(train.batch_size, replicas, "GPUs", "or pass --num_gpus")
    sched = _learning_rate(train)
    if sched and sched[0] == "cosine_decay_learning_rate" and sched[1].warmup_steps > sched[1].total_steps:
        raise UserError(f"cosine warm-up {sched[1].warmup_steps} exceeds total_steps {sched[1].total_steps}",
                        "lower warmup_steps (in the override or the hparams; unset, TFOD's default is 10000)")
    if checkpoint is not None and train.fine_tune_checkpoint_type not in FINE_TUNE_TYPES:
        raise UserError(f"fine_tune_checkpoint_type {train.fine_tune_checkpoint_type!r} is not one of "
                        f"{', '.join(FINE_TUNE_TYPES)}", f"use {model.fine_tune_checkpoint_type!r} for {model.name}")
    wants_keypoints = model.keypoints or (arch == "center_net" and len(arch_config.keypoint_estimation_task) > 0)
    if wants_keypoints and not records_have_keypoints(records.train):
        raise UserError(f"{model.name} predicts keypoints but {records.train[0].name} has no keypoint data "
                        "(image/object/keypoint/x)", "pick the model without Keypoints or add keypoints to the "
                        "records")
    if checkpoint is None:
        decays = [v for k, v in flatten(arch_config).items() if k.endswith("batch_norm.decay")]
        if decays and max(decays) > 0.99 and train.num_steps < 20000:
            warnings.append(f"training from scratch for {train.num_steps} steps with batch-norm decay "
                            f"{max(decays):g}: the moving statistics will barely move and evaluation can collapse; "
                            "set decay 0.9 in the override for short runs")
    return Result(pipeline, sorted(tracker.changes.values(), key=lambda c: c.field), {}, warnings)


# ----------------------------------------------------------------------------- CLI

def _short(value: Any, width: int = 48) -> str:
    if isinstance(value, float):
        value = f"{value:.6g}"  # float32 fields: 0.08, not 0.07999999821186066
    text = "-" if value is None else str(value)
    return text if len(text) <= width else "..." + text[-(width - 3):]


def format_changes(changes: Sequence[Change]) -> str:
    if not changes:
        return "no field changed"
    wf = max(len("field"), *(len(c.field) for c in changes))
    rows = [f"{'field':<{wf}}  {'old':<30}  {'new':<48}  source", "-" * (wf + 96)]
    rows += [f"{c.field:<{wf}}  {_short(c.old, 30):<30}  {_short(c.new):<48}  {c.source}" for c in changes]
    return "\n".join(rows)


def resolve_base(model: zoo.ZooModel, pretrained_dir: Path | None, cache_dir: Path | None,
                 from_scratch: bool) -> tuple[Path, Path | None]:
    """(pipeline.config to start from, checkpoint prefix or None)."""
    if pretrained_dir is not None:
        config = pretrained_dir / "pipeline.config"
        if not config.is_file():
            raise UserError(f"{pretrained_dir} has no pipeline.config", "give an extracted zoo model directory")
        ckpt = pretrained_dir / "checkpoint" / "ckpt-0"
        has_ckpt = Path(f"{ckpt}.index").is_file()
        return config, (ckpt if has_ckpt and not from_scratch else None)
    if from_scratch and model.base_config:
        return BASE_CONFIGS / model.base_config, None
    model_dir = zoo.fetch(model, cache_dir)
    return model_dir / "pipeline.config", (None if from_scratch else model_dir / "checkpoint" / "ckpt-0")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = ArgumentParser(
        prog="readconfig.py", description="Merge a zoo model's pipeline.config with your override and "
        "hyper-parameters into <output_dir>/pipeline.config.",
        epilog="hparams keys: " + "; ".join(f"{k} ({v.help})" for k, v in HPARAMS.items()))
    parser.add_argument("--pretrained_model", help='zoo model display name, e.g. "SSD MobileNet V2 FPNLite 320x320"')
    parser.add_argument("--records_dir", type=Path, help="folder with training.record, testing.record, classes.pbtxt")
    parser.add_argument("--output_dir", type=Path, help="training directory; pipeline.config is written there")
    parser.add_argument("--config_override", type=Path, help="partial pipeline.config in protobuf text format")
    parser.add_argument("--hparams", type=Path, help="JSON of hyper-parameters (keys below)")
    parser.add_argument("--pretrained_dir", type=Path, help="an extracted zoo model directory (no download)")
    parser.add_argument("--cache_dir", type=Path, help="zoo download cache (default: $TFOD_CACHE_DIR or "
                        "~/.cache/tfodkit/zoo)")
    parser.add_argument("--num_gpus", type=int, help="replicas to check batch_size against (default: visible GPUs)")
    parser.add_argument("--from_scratch", action="store_true", help="no fine_tune_checkpoint: random weights")
    parser.add_argument("--list_models", action="store_true", help="print every zoo model and exit")
    args = parser.parse_args(argv)
    if not args.list_models:
        missing = [f"--{n}" for n in ("pretrained_model", "records_dir", "output_dir") if getattr(args, n) is None]
        if missing:
            parser.error(f"the following arguments are required: {', '.join(missing)}")
    if args.num_gpus is not None and args.num_gpus < 0:
        parser.error("--num_gpus must be 0 or more")
    return args


def run(args: argparse.Namespace) -> Result:
    """Everything but printing: validate, merge, write pipeline.config and toolkit.json."""
    model = zoo.resolve(args.pretrained_model)
    hparams = load_hparams(args.hparams)
    override_text = None
    if args.config_override is not None:
        if not args.config_override.is_file():
            raise UserError(f"config override {args.config_override} not found", "check the --config_override path")
        override_text = args.config_override.read_text()
    records = read_dir(args.records_dir)
    precheck(model, records, override_text, str(args.config_override), hparams, args.num_gpus)
    base_config, checkpoint = resolve_base(model, args.pretrained_dir, args.cache_dir, args.from_scratch)
    result = build_pipeline(model, base_config.read_text(), str(base_config), records, override_text,
                            str(args.config_override), hparams, checkpoint, args.num_gpus)
    result.settings = {
        "model": model.name,
        "meta_arch": model.meta_arch,
        "base_config": str(base_config),
        "fine_tune_checkpoint": str(checkpoint) if checkpoint else None,
        "checkpoint_every_n": hparams.get("checkpoint_every_n", CHECKPOINT_EVERY_N),
        "seed": hparams.get("seed"),
        "deterministic": hparams.get("deterministic", False),
        "num_gpus": args.num_gpus,
        "config_override": str(args.config_override) if args.config_override else None,
        "hparams": hparams,
        "labels": {str(k): v for k, v in records.labels.items},
    }
    from google.protobuf import text_format

    out = args.output_dir
    text = text_format.MessageToString(result.pipeline)
    write_text_atomic(out / "pipeline.config", text)
    write_json_atomic(out / "toolkit.json", {**result.settings, "changes": [c.__dict__ for c in result.changes],
                                             "warnings": result.warnings})
    return result


@cli
def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list_models:
        zoo.print_models()
        return 0
    result = run(args)
    print(f"readconfig: {result.settings['model']} ({result.settings['meta_arch']}), "
          f"precedence: pretrained < defaults < override < hparams < paths")
    print(format_changes(result.changes))
    for w in result.warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(f"readconfig: wrote {args.output_dir / 'pipeline.config'}")
    return 0
