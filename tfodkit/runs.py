"""A named run: its name, its folders in S3, and which of its checkpoints are complete.

A run's artifacts live under ``<ARTIFACTS_TARGET>/runs/<RUN_NAME>/``:
``training/`` (checkpoints, events, run.json ...) and ``exported_model/`` (the
SavedModel and its export.json). :func:`layout` is the one place that spells
this out; the artifacts sidecar, train.sh's restore and end-of-run upload, and
runtask's checks all use it. The ``runs/`` level keeps run folders apart from
anything else under the target.

A checkpoint ``ckpt-N`` (N is the training step: tfodkit.train saves with
``checkpoint_number=step``) is complete when ``ckpt-N.index`` and every shard
``ckpt-N.data-0000k-of-0000M`` are there: an upload cut short by a spot
reclaim can leave the newest one partial, and the resume then starts from the
newest complete one. Standard library only, apart from the S3 calls (boto3
through tfodkit/s3.py, imported on first use).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from tfodkit import s3
from tfodkit.errors import UserError

RUNS = "runs"  # the folder under the target that holds the run folders
TRAINING, EXPORTED = "training", "exported_model"
# Letters, digits, '-' and '_': safe in an S3 key, and in ECS's startedBy (which runtask sets to find a run again).
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$")
STARTED_BY_PREFIX = "tfodkit-run/"  # startedBy = this + the run name (ECS allows 128 characters)
# Local files a restore leaves out: the fetched inputs, which the fetch step gets again from their source.
RESTORE_SKIP = ("inputs/",)


def check_name(name: str, what: str = "RUN_NAME") -> str:
    if not _NAME.match(name):
        raise UserError(f"{what} {name!r} is not a valid run name",
                        "use 1-100 letters, digits, '-' and '_', starting with a letter or digit, e.g. shapes-ssd-1")
    return name


def generate_name(model: str, now: dt.datetime | None = None) -> str:
    """A readable default: the model's name and the UTC time, e.g. ssd-mobilenet-v2-fpnlite-320x320-20261202-061233."""
    now = now or dt.datetime.now(dt.timezone.utc)  # noqa: UP017 (python3 < 3.11 fallback)
    slug = re.sub(r"[^a-z0-9]+", "-", model.lower()).strip("-")[:80] or "run"
    return f"{slug}-{now:%Y%m%d-%H%M%S}"


def task_id(task_arn: str) -> str:
    """arn:aws:ecs:r:a:task/cluster/ID (or task/ID, or ID) -> ID."""
    return task_arn.rsplit("/", 1)[-1]


def ecs_task_id(timeout: float = 2.0, warn: Callable[[str], None] | None = None) -> str | None:
    """The ECS task id (the last segment of TaskARN at $ECS_CONTAINER_METADATA_URI_V4/task), None outside ECS."""
    base = os.environ.get("ECS_CONTAINER_METADATA_URI_V4")
    if not base:
        return None
    try:
        with urllib.request.urlopen(f"{base.rstrip('/')}/task", timeout=timeout) as resp:
            return task_id(str(json.load(resp)["TaskARN"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        if warn:
            warn(f"no task id from the ECS metadata endpoint ({exc})")
        return None


class Layout(NamedTuple):
    """Where one run's artifacts are in S3."""

    name: str
    root: s3.S3Uri  # <target>/runs/<name>
    training: s3.S3Uri
    exported_model: s3.S3Uri

    @property
    def export_json(self) -> s3.S3Uri:
        return self.exported_model.join("export.json")


def layout(target: str | s3.S3Uri, name: str) -> Layout:
    """<target>/runs/<name>/training/ and .../exported_model/."""
    base = target if isinstance(target, s3.S3Uri) else s3.parse_s3_uri(target, "ARTIFACTS_TARGET")
    root = base.join(RUNS, check_name(name))
    return Layout(name, root, root.join(TRAINING), root.join(EXPORTED))


def uri_text(uri: s3.S3Uri) -> str:
    """A folder URI as printed: with its trailing slash."""
    return f"{uri}/"


# --- checkpoints ---------------------------------------------------------------------------------

_INDEX = re.compile(r"^(?P<name>.+-(?P<step>\d+))\.index$")
_SHARD = re.compile(r"^(?P<name>.+-\d+)\.data-(?P<k>\d+)-of-(?P<n>\d+)$")


@dataclass(frozen=True)
class Checkpoint:
    name: str  # ckpt-40
    step: int
    files: tuple[str, ...]  # the ones present
    missing: tuple[str, ...]  # what a complete checkpoint would have besides

    @property
    def complete(self) -> bool:
        return not self.missing


def checkpoints(names: Iterable[str]) -> list[Checkpoint]:
    """The checkpoints among the files of a training dir (names relative to it), oldest first."""
    top = [n for n in names if "/" not in n]
    shards: dict[str, list[tuple[int, int]]] = {}
    for n in top:
        m = _SHARD.match(n)
        if m:
            shards.setdefault(m["name"], []).append((int(m["k"]), int(m["n"])))
    indexed = {m["name"]: int(m["step"]) for m in map(_INDEX.match, top) if m}
    found = []
    for name in sorted(set(indexed) | set(shards)):
        step = indexed.get(name, int(name.rsplit("-", 1)[1]))
        present = shards.get(name, [])
        total = max((n for _k, n in present), default=1)
        have = {k for k, _n in present}
        missing = [] if name in indexed else [f"{name}.index"]
        missing += [f"{name}.data-{k:05d}-of-{total:05d}" for k in range(total) if k not in have]
        files = ([f"{name}.index"] if name in indexed else []) + \
            [f"{name}.data-{k:05d}-of-{n:05d}" for k, n in sorted(present)]
        found.append(Checkpoint(name, step, tuple(files), tuple(missing)))
    return sorted(found, key=lambda c: c.step)


def newest_complete(names: Iterable[str]) -> Checkpoint | None:
    done = [c for c in checkpoints(names) if c.complete]
    return done[-1] if done else None


def state_file_text(complete: list[Checkpoint]) -> str:
    """TensorFlow's ``checkpoint`` state file naming the newest of ``complete`` as the latest."""
    lines = [f'model_checkpoint_path: "{complete[-1].name}"']
    lines += [f'all_model_checkpoint_paths: "{c.name}"' for c in complete]
    return "\n".join(lines) + "\n"


def local_checkpoints(training_dir: Path) -> list[Checkpoint]:
    if not training_dir.is_dir():
        return []
    return checkpoints(p.name for p in training_dir.iterdir() if p.is_file())


# --- the run in S3 -------------------------------------------------------------------------------

def exported(lay: Layout, client=None) -> bool:
    """Has this run's export been uploaded (its export.json is there)?"""
    return s3.exists(lay.export_json, client)


def s3_checkpoints(lay: Layout, client=None) -> list[Checkpoint]:
    return checkpoints(rel for rel, _size in s3.list_prefix(lay.training, client))


def restore(lay: Layout, training_dir: Path, client=None, log: Callable[[str], None] = print) -> Checkpoint | None:
    """Copy the run's training/ folder from S3 into an empty training dir; the checkpoint it resumes from.

    The ``checkpoint`` state file is rewritten to name the newest complete
    checkpoint, and the files of newer incomplete ones are removed, so that
    TensorFlow resumes from one it can read. None when S3 has no complete
    checkpoint (training then starts at step 0).
    """
    where = uri_text(lay.training)
    count = len(s3.download_prefix(lay.training, training_dir, client,
                                   skip=lambda rel: rel.startswith(RESTORE_SKIP)))
    if not count:
        log(f"restore: nothing under {where} yet: run {lay.name} starts at step 0")
        return None
    found = local_checkpoints(training_dir)
    complete = [c for c in found if c.complete]
    newest = complete[-1] if complete else None
    for c in found:
        if not c.complete and (newest is None or c.step > newest.step):
            log(f"restore: {c.name} is incomplete (no {', '.join(c.missing)}): not resuming from it")
            for name in c.files:
                (training_dir / name).unlink()
    state = training_dir / "checkpoint"
    if newest is None:
        state.unlink(missing_ok=True)
        log(f"restore: {count} files from {where}, no complete checkpoint: run {lay.name} starts at step 0")
        return None
    from tfodkit.fsutil import write_text_atomic

    write_text_atomic(state, state_file_text(complete))
    log(f"restore: {count} files from {where}: run {lay.name} resumes from {newest.name} (step {newest.step})")
    return newest
