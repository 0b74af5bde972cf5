"""Shared fixtures: paths, the third-party raccoon subset, subprocess helpers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RACCOON = ROOT / "tests" / "data" / "raccoon"  # a subset of a real dataset, with its licence (its README.md)


@pytest.fixture(scope="session")
def raccoon() -> Path:
    """The raccoon subset, read-only: tests copy what they change into tmp_path."""
    return RACCOON


def pytest_ignore_collect(collection_path: Path, config) -> bool | None:
    """tests/image needs a Docker engine and the built image: only `-m image` (make test-image) collects it."""
    if collection_path == ROOT / "tests" / "image" and "image" not in (config.getoption("markexpr") or ""):
        return True
    return None


def pytest_collection_modifyitems(config, items) -> None:
    """Modules with the most slow tests first, each module's tests in their own order.

    make test runs ``--dist loadscope``: pytest-xdist hands each worker one
    whole module at a time, in this order, so a module's fixtures (a trained
    model, a moto world) are built once, and the longest modules start first
    while short ones fill in at the end.
    """
    slow: dict[str, int] = {}
    for item in items:
        slow[item.module.__name__] = slow.get(item.module.__name__, 0) + (item.get_closest_marker("slow") is not None)
    rank = {name: i for i, name in enumerate(sorted(slow, key=lambda name: -slow[name]))}
    items.sort(key=lambda item: rank[item.module.__name__])  # stable: within a module, the file's order


def like_a_terminal_job() -> None:
    """Popen preexec_fn: the child takes Ctrl-C (SIGINT) as a terminal job would.

    A job started in the background of a non-interactive shell (``cmd &`` in a
    script, as some CI runners do) ignores SIGINT, every child inherits that,
    and bash cannot trap an ignored signal: the Ctrl-C tests would test nothing.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture(scope="session")
def moto_endpoint() -> str:
    """The one local AWS of the test session: moto's server on 127.0.0.1, its URL.

    moto keeps its state in this process, so tests that patch moto's backend or
    response classes act on it; tests that need an empty AWS reset it first
    (``reset_moto``).
    """
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def reset_moto(endpoint: str) -> None:
    """Forget every bucket, cluster, task and log of the local AWS."""
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")).read()


@pytest.fixture
def moto_s3(moto_endpoint, monkeypatch):
    """An empty local AWS that boto3 finds through AWS_ENDPOINT_URL, as train.sh does; tfodkit.s3's client."""
    from tfodkit import s3

    reset_moto(moto_endpoint)
    for name, value in {"AWS_ENDPOINT_URL": moto_endpoint, "AWS_ACCESS_KEY_ID": "testing",
                        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return s3.client()


class Followed:
    """A subprocess whose stdout and stderr lines are collected while it runs, by one reader thread each.

    ``terminal_job=True`` starts it in its own process group taking Ctrl-C as a
    terminal job would (``like_a_terminal_job``), so that signals can go to the
    whole group; ``merge=True`` sends stderr to ``out`` too.
    """

    def __init__(self, cmd: list[str], *, env: dict[str, str] | None = None, cwd: Path = ROOT,
                 terminal_job: bool = False, merge: bool = False):
        self.proc = subprocess.Popen(cmd, env=env, cwd=cwd, text=True, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT if merge else subprocess.PIPE,
                                     start_new_session=terminal_job,
                                     preexec_fn=like_a_terminal_job if terminal_job else None)
        self.group = terminal_job
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [threading.Thread(target=self._collect, args=(stream, sink), daemon=True)
                         for stream, sink in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)) if stream]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _collect(stream, sink: list[str]) -> None:
        for line in stream:
            sink.append(line.rstrip("\n"))

    @property
    def stdout(self) -> str:
        return "\n".join(self.out)

    @property
    def stderr(self) -> str:
        return "\n".join(self.err)

    def _drained(self) -> None:
        """Wait for the readers to reach the end of the output (the process has exited or been killed)."""
        for reader in self._readers:
            reader.join(timeout=30)

    def until(self, what: str, predicate, timeout: float = 60) -> None:
        """Poll ``predicate`` until it holds; fail with the output if the process exits first or time runs out."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if self.proc.poll() is not None:
                self._drained()  # the last lines may still be in the pipe
                if predicate():
                    return
                self._fail(f"waited for {what}, but the process exited ({self.proc.returncode})")
            if time.monotonic() > deadline:
                self.kill()
                self._fail(f"waited {timeout:g} s for {what}")
            time.sleep(0.05)

    def saw(self, text: str, where: str = "err", timeout: float = 60) -> None:
        lines = self.err if where == "err" else self.out
        self.until(f"{text!r} on std{where}", lambda: any(text in line for line in lines), timeout)

    def signal(self, sig: int, *, group: bool = False) -> None:
        """Send ``sig`` to the process (as ECS does to a container's first process), or with ``group=True`` to
        its whole process group (as Ctrl-C in a terminal does; needs ``terminal_job``)."""
        if group:
            assert self.group, "group signals need terminal_job=True"
            os.killpg(self.proc.pid, sig)
        else:
            self.proc.send_signal(sig)

    def finish(self, timeout: float = 60) -> int:
        """Wait for the exit and the last output line; the exit status (killed and failed after ``timeout``)."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            self._fail(f"did not exit within {timeout:g} s")
        self._drained()
        return code

    def kill(self) -> None:
        """SIGKILL it (its process group for a terminal job) if it still runs, and reap it."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL) if self.group else self.proc.kill()
            except ProcessLookupError:
                pass
            self.proc.wait()
        self._drained()

    def _fail(self, message: str):
        raise AssertionError(f"{message}\nstdout:\n{self.stdout[-5000:]}\nstderr:\n{self.stderr[-5000:]}")

    def __enter__(self) -> Followed:
        return self

    def __exit__(self, *exc) -> None:
        self.kill()


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


def fake_nvidia_smi(bin_dir: Path, gpus: int = 1, body: str | None = None) -> Path:
    """A real executable `nvidia-smi` in ``bin_dir`` that lists ``gpus`` GPUs as the real `nvidia-smi -L` does.

    It plays the driver's side of a GPU machine (none here has a GPU); put
    ``bin_dir`` first on PATH. ``body`` replaces the script (a hung or broken one).
    """
    bin_dir.mkdir(parents=True, exist_ok=True)
    lines = "\n".join(f"GPU {i}: Tesla T4 (UUID: GPU-0000000{i}-1111-2222-3333-444444444444)" for i in range(gpus))
    script = bin_dir / "nvidia-smi"
    script.write_text(body or f'#!/bin/sh\n[ "$1" = "-L" ] || exit 9\ncat <<EOF\n{lines}\nEOF\n')
    script.chmod(0o755)
    return bin_dir


def synthetic_records(folder: Path, images: int, holdout: int, seed: int) -> Path:
    """The synthetic shapes dataset in ``folder`` (images/, holdout/, annotations.csv), converted to
    ``folder/records`` by the dataset tool with a quarter held out for testing. Returns ``folder``."""
    from tfodkit import synthetic

    # One worker: the conversion runs in the test process, which must not fork (moto's server runs in its threads).
    synthetic.make_records(folder / "records", folder, images=images, holdout=holdout, seed=seed,
                           test_fraction=0.25, workers=1)
    return folder
