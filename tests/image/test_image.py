"""The image, for real: the seed's own `docker run`, resume after `docker stop`, a non-root user, the sidecar.

Run by `make test-image` (scripts/test-image.sh builds the cpu variant on a local
Debian base and sets TFODKIT_IMAGE); `make test` does not collect this folder.
Every check runs a real container on a real Docker engine: the seed's command as
the README gives it, with the configs, records and exported_model volumes under
/opt/tfod, positional arguments as written there. Only `-e TFOD_FROM_SCRATCH=1`
is added (no zoo download here); the mounted traininghparams.json keeps it to a
few steps.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.conftest import ROOT, Followed, run_python, synthetic_records

pytestmark = pytest.mark.image

SSD = "SSD MobileNet V2 FPNLite 320x320"
SEED_ARGS = ["models", "experiments/training", "experiments/exported_model", "records", SSD,
             "configs/training.config", "configs/traininghparams.json"]
UID = GID = 4321  # a user the image does not know
# docker stop's grace period before SIGKILL: ECS's default stopTimeout (terraform sets 120 s for spot
# draining). The toolkit stops within one short chunk of steps plus a checkpoint save.
STOP_TIMEOUT = 30


@pytest.fixture(scope="module")
def image() -> str:
    name = os.environ.get("TFODKIT_IMAGE")
    if not name:
        pytest.fail("TFODKIT_IMAGE is not set: run these tests with make test-image")
    if subprocess.run(["docker", "image", "inspect", name], capture_output=True).returncode != 0:
        pytest.fail(f"image {name} not found: run make test-image")
    return name


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> Path:
    """A small synthetic records dir made by the dataset tool on the host."""
    return synthetic_records(tmp_path_factory.mktemp("shapes"), images=16, holdout=2, seed=3) / "records"


def seed_layout(base: Path, records: Path, hparams: dict) -> Path:
    """The folders a seed user has: configs/ (override + hparams), records/, exported_model/."""
    (base / "configs").mkdir(parents=True)
    shutil.copy(ROOT / "configs" / "training.config", base / "configs" / "training.config")
    (base / "configs" / "traininghparams.json").write_text(json.dumps(hparams))
    shutil.copytree(records, base / "records")
    (base / "exported_model").mkdir()
    return base


def volumes(base: Path, training: bool = False) -> list[str]:
    v = ["-v", f"{base}/configs:/opt/tfod/configs", "-v", f"{base}/records:/opt/tfod/records",
         "-v", f"{base}/exported_model:/opt/tfod/experiments/exported_model"]
    if training:
        v += ["-v", f"{base}/training:/opt/tfod/experiments/training"]
    return v


def docker_run(args: list[str]) -> tuple[str, Followed]:
    """`docker run --name <fresh> ARGS` in the foreground, its output followed line by line (one stream)."""
    name = f"tfodkit-test-{uuid.uuid4().hex[:8]}"
    return name, Followed(["docker", "run", "--name", name, *args], merge=True)


def finish(name: str, run: Followed, timeout: float) -> int:
    try:
        return run.finish(timeout)
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)  # gone already with --rm


def line_with(run: Followed, text: str) -> str:
    return next(line for line in run.out if text in line)


def owners(folder: Path) -> set[tuple[int, int]]:
    return {(p.stat().st_uid, p.stat().st_gid) for p in folder.rglob("*")}


def assert_saved_model_loads(export: Path) -> None:
    code = ("import tfodkit.compat, numpy as np, tensorflow as tf\n"
            f"m = tf.saved_model.load({str(export / 'saved_model')!r})\n"
            "out = m(tf.constant(np.zeros((1, 320, 320, 3), np.uint8)))\n"
            "print(sorted(out)[:3], out['detection_boxes'].shape)\n")
    result = run_python(code)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "detection_boxes" in result.stdout


def test_the_seeds_docker_run_trains_evaluates_exports_and_serves_tensorboard(image, records, tmp_path):
    base = seed_layout(tmp_path, records, {"batch_size": 2, "train_steps": 4, "checkpoint_every_n": 2})
    # A previous export in the folder: it must be replaced whole, never mixed with the new one.
    (base / "exported_model" / "saved_model").mkdir()
    (base / "exported_model" / "saved_model" / "saved_model.pb").write_bytes(b"an old export")
    (base / "exported_model" / "from_the_old_export.txt").write_text("old")

    tensorboard: list[int] = []
    stop = threading.Event()

    def poll_tensorboard() -> None:
        while not stop.is_set() and not tensorboard:
            try:
                with urllib.request.urlopen("http://127.0.0.1:6006/", timeout=2) as r:
                    tensorboard.append(r.status)
            except OSError:
                stop.wait(0.5)

    poller = threading.Thread(target=poll_tensorboard, daemon=True)
    poller.start()
    name, run = docker_run(["--rm", "-p", "6006:6006", *volumes(base), "-e", "TFOD_FROM_SCRATCH=1", image,
                            *SEED_ARGS])
    rc = finish(name, run, timeout=900)
    stop.set()
    poller.join(timeout=5)
    assert rc == 0, run.stdout[-5000:]
    assert tensorboard == [200], "TensorBoard did not answer on the host's localhost:6006 during the run"
    export = base / "exported_model"
    assert not (export / "from_the_old_export.txt").exists(), "the old export was mixed with the new one"
    assert sorted(p.name for p in export.iterdir() if p.name.startswith(".")) == [], "staging left behind"
    info = json.loads((export / "export.json").read_text())
    assert info["checkpoint"].endswith("ckpt-4") or "ckpt-" in info["checkpoint"]
    assert (export / "label_map.pbtxt").is_file()
    assert_saved_model_loads(export)


def test_docker_stop_saves_a_checkpoint_and_the_same_run_resumes_as_a_non_root_user(image, records, tmp_path):
    base = seed_layout(tmp_path, records, {"batch_size": 2, "train_steps": 40, "checkpoint_every_n": 1000})
    (base / "training").mkdir()
    for p in [base, *base.rglob("*")]:
        os.chown(p, UID, GID)  # the user's own folders, as on a workstation
    args = ["--rm", "--user", f"{UID}:{GID}", "-p", "6006:6006", *volumes(base, training=True),
            "-e", "TFOD_FROM_SCRATCH=1", image, *SEED_ARGS]

    name, first = docker_run(args)
    first.saw("train: step ", where="out", timeout=600)  # past tracing: real steps are running
    t0 = time.monotonic()
    stop = subprocess.run(["docker", "stop", "--time", str(STOP_TIMEOUT), name], capture_output=True, text=True,
                          timeout=STOP_TIMEOUT + 30)
    stopped_in = time.monotonic() - t0
    rc = finish(name, first, timeout=STOP_TIMEOUT + 30)
    assert stop.returncode == 0, stop.stderr
    assert rc == 143, f"exit {rc} after docker stop (137: SIGKILL after {STOP_TIMEOUT} s)\n{first.stdout[-5000:]}"
    print(f"docker stop: container exited 143 after {stopped_in:.1f} s")
    assert stopped_in < STOP_TIMEOUT
    saved = line_with(first, "train: stopped by SIGTERM at step")
    step = int(saved.split("at step ")[1].split("/")[0])
    assert 0 < step < 40
    assert list((base / "training").glob("ckpt-*.index")), "no checkpoint in the mounted training folder"

    name, second = docker_run(args)
    rc = finish(name, second, timeout=900)
    assert rc == 0, second.stdout[-5000:]
    resumed = line_with(second, "train: resuming from")
    assert f"at step {step}/40" in resumed, resumed
    assert json.loads((base / "training" / "train.json").read_text())["step"] == 40
    # Everything written on the host belongs to the user the container ran as.
    assert owners(base / "training") == {(UID, GID)}
    assert owners(base / "exported_model") == {(UID, GID)}
    assert_saved_model_loads(base / "exported_model")


def test_the_sidecar_uploads_every_file_of_the_training_volume_on_docker_stop(image, moto_endpoint, tmp_path):
    import boto3

    endpoint = moto_endpoint
    creds = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    s3.create_bucket(Bucket="artifacts")
    training = tmp_path / "training"
    (training / "eval").mkdir(parents=True)
    files = {"ckpt-3.index": b"i" * 10, "ckpt-3.data-00000-of-00001": os.urandom(300_000),
             "checkpoint": b'model_checkpoint_path: "ckpt-3"\n', "eval/events.out": b"e" * 50}
    for rel, data in files.items():
        (training / rel).write_bytes(data)
    env = [x for k, v in creds.items() for x in ("-e", f"{k}={v}")]
    # --network host: the container reaches the moto server on the host's 127.0.0.1.
    name, sidecar = docker_run(["--rm", "--network", "host", "-v", f"{training}:/opt/tfod/experiments/training",
                                *env, "-e", f"AWS_ENDPOINT_URL={endpoint}", "-e", "ARTIFACTS_TARGET=s3://artifacts/r",
                                "-e", "RUN_NAME=run1", "-e", "ARTIFACTS_DIRS=experiments/training",
                                "-e", "ARTIFACTS_INTERVAL=3600", "--entrypoint", "python", image,
                                "-m", "tfodkit.artifacts", "sync"])
    sidecar.saw("round 1:", where="out", timeout=120)
    # Written after the first round: only the final sync on docker stop can upload it.
    (training / "ckpt-4.index").write_bytes(b"late")
    assert subprocess.run(["docker", "stop", name], capture_output=True).returncode == 0
    rc = finish(name, sidecar, timeout=60)
    assert rc == 0, sidecar.stdout
    listed = s3.list_objects_v2(Bucket="artifacts", Prefix="r/runs/run1/training/").get("Contents", [])
    uploaded = {o["Key"].removeprefix("r/runs/run1/training/") for o in listed}
    assert uploaded == {*files, "ckpt-4.index"}, sidecar.stdout
