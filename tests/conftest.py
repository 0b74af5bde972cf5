"""Shared fixtures: paths, the third-party raccoon dataset, subprocess helpers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RACCOON = ROOT.parent / "shared" / "datasets" / "raccoon"


@pytest.fixture(scope="session")
def raccoon() -> Path:
    if not RACCOON.is_dir():
        pytest.fail(f"{RACCOON} is missing: run the tests from a clone that has ../shared beside it")
    return RACCOON


def like_a_terminal_job() -> None:
    """Popen preexec_fn: the child takes Ctrl-C (SIGINT) as a terminal job would.

    A job started in the background of a non-interactive shell (``cmd &`` in a
    script, as some CI runners do) ignores SIGINT, every child inherits that,
    and bash cannot trap an ignored signal: the Ctrl-C tests would test nothing.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_python(code: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run a Python snippet in a fresh interpreter of this venv, from the repo root."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def write_records(records_dir: Path, labels: dict[int, str] | str = "circle,square", keypoints: bool = False,
                  shards: int = 0) -> Path:
    """Minimal TFOD-style records (one tiny example per file) and a label map.

    ``labels`` is {id: name} or a comma list (ids from 1). For tests of config
    handling; training tests use the synthetic dataset generator instead.
    """
    import tfodkit.compat  # noqa: F401

    import tensorflow as tf

    if isinstance(labels, str):
        labels = {i + 1: n for i, n in enumerate(labels.split(","))}
    records_dir.mkdir(parents=True, exist_ok=True)
    feature = {"image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"x"]))}
    if keypoints:
        feature["image/object/keypoint/x"] = tf.train.Feature(float_list=tf.train.FloatList(value=[0.5]))
    example = tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()
    names = ["training.record", "testing.record"] if not shards else \
        [f"{s}-{i:05d}-of-{shards:05d}.record" for s in ("training", "testing") for i in range(shards)]
    for name in names:
        with tf.io.TFRecordWriter(str(records_dir / name)) as w:
            w.write(example)
    (records_dir / "classes.pbtxt").write_text(
        "".join(f"item {{\n  id: {i}\n  name: '{n}'\n}}\n" for i, n in labels.items()))
    return records_dir
