"""The artifacts sidecar (python -m tfodkit.artifacts sync) against moto's S3 on 127.0.0.1."""

from __future__ import annotations

import http.server
import json
import os
import re
import signal
import sys
import threading
from collections import Counter
from pathlib import Path

import boto3
import pytest
from moto.s3.models import S3Backend

from tests.conftest import Followed, reset_moto
from tfodkit import artifacts

ROOT = Path(__file__).resolve().parent.parent
REGION = "eu-west-1"
BUCKET = "tfod-artifacts"
TASK_ID = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"


@pytest.fixture(scope="module")
def metadata():
    """The ECS task metadata endpoint v4: GET $ECS_CONTAINER_METADATA_URI_V4/task."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path != "/v4/container-1/task":
                self.send_error(404)
                return
            body = json.dumps({"Cluster": "tfod-cluster",
                               "TaskARN": f"arn:aws:ecs:{REGION}:123456789012:task/tfod-cluster/{TASK_ID}"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v4/container-1"
    server.shutdown()


@pytest.fixture
def s3world(moto_endpoint, metadata, tmp_path, monkeypatch):
    endpoint = moto_endpoint
    reset_moto(endpoint)
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name=REGION,
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    puts: Counter[str] = Counter()  # PutObject calls per key, counted inside moto
    original = S3Backend.put_object

    def put_object(self, bucket_name, key_name, *args, **kwargs):
        puts[key_name] += 1
        return original(self, bucket_name, key_name, *args, **kwargs)

    monkeypatch.setattr(S3Backend, "put_object", put_object)
    training, export = tmp_path / "experiments" / "training", tmp_path / "experiments" / "exported_model"
    training.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ARTIFACTS_"))}
    env.pop("RUN_ID", None)
    env.pop("RUN_NAME", None)
    env.update(PYTHONPATH=str(ROOT), AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="testing",
               AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION=REGION, AWS_EC2_METADATA_DISABLED="true",
               ECS_CONTAINER_METADATA_URI_V4=metadata, ARTIFACTS_TARGET=f"s3://{BUCKET}",
               ARTIFACTS_DIRS=f"{training}:{export}", ARTIFACTS_INTERVAL="0.2",
               ARTIFACTS_MANIFEST=str(tmp_path / "manifest.json"), ARTIFACTS_RETRY_DELAY="0.05")
    return {"s3": s3, "puts": puts, "training": training, "export": export, "env": env}


class Sidecar(Followed):
    """``python -m tfodkit.artifacts sync`` running, its log (stderr) collected."""

    def __init__(self, env: dict[str, str]):
        super().__init__([sys.executable, "-m", "tfodkit.artifacts", "sync"], env=env, cwd=ROOT)

    def until(self, what: str, predicate, timeout: float = 20) -> None:
        super().until(what, predicate, timeout)

    def rounds(self) -> int:
        return sum(bool(re.match(r"artifacts: round \d+:", line)) for line in self.err)

    def terminate(self, timeout: float = 20) -> int:
        self.signal(signal.SIGTERM)  # what ECS sends when the training container exits
        return self.finish(timeout)


def keys(s3) -> dict[str, bytes]:
    out = {}
    for obj in s3.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        out[obj["Key"]] = s3.get_object(Bucket=BUCKET, Key=obj["Key"])["Body"].read()
    return out


def test_files_appear_under_the_run_folder_and_only_changed_files_are_uploaded_again(s3world):
    s3, puts, training = s3world["s3"], s3world["puts"], s3world["training"]
    files = {"pipeline.config": b"model { ssd {} }", "ckpt-1.index": b"index", "checkpoint": b'path: "ckpt-1"',
             "train/events.out.tfevents.1": b"events"}
    for name, data in files.items():
        (training / name).parent.mkdir(parents=True, exist_ok=True)
        (training / name).write_bytes(data)
    prefix = f"runs/{TASK_ID}/training/"
    sidecar = Sidecar(s3world["env"])
    try:
        sidecar.until("the first upload", lambda: len(keys(s3)) == len(files))
        assert keys(s3) == {prefix + name: data for name, data in files.items()}
        start = sidecar.rounds()
        sidecar.until("two more rounds", lambda: sidecar.rounds() >= start + 2)
        assert all(puts[prefix + name] == 1 for name in files), puts  # unchanged: not sent again

        (training / "pipeline.config").write_bytes(b"model { ssd { num_classes: 2 } }")
        sidecar.until("the changed file", lambda: keys(s3)[prefix + "pipeline.config"].endswith(b"2 } }"))
        start = sidecar.rounds()
        sidecar.until("two more rounds", lambda: sidecar.rounds() >= start + 2)
        assert puts[prefix + "pipeline.config"] == 2
        assert all(puts[prefix + name] == 1 for name in files if name != "pipeline.config"), puts
        assert sidecar.terminate() == 0
    finally:
        sidecar.kill()
    assert any(line.startswith("artifacts: final sync: 0 uploaded") for line in sidecar.err), sidecar.err


def test_sigterm_syncs_once_more_with_a_file_written_just_before(s3world):
    s3, training, export = s3world["s3"], s3world["training"], s3world["export"]
    (training / "ckpt-1.index").write_bytes(b"one")
    sidecar = Sidecar({**s3world["env"], "ARTIFACTS_INTERVAL": "600"})  # no regular round after the first
    try:
        sidecar.until("the first round", lambda: sidecar.rounds() == 1)
        (export / "saved_model" / "variables").mkdir(parents=True)
        (export / "saved_model" / "saved_model.pb").write_bytes(b"graph")
        (training / "ckpt-2.index").write_bytes(b"two")
        assert sidecar.terminate() == 0
    finally:
        sidecar.kill()
    assert keys(s3) == {f"runs/{TASK_ID}/training/ckpt-1.index": b"one",
                        f"runs/{TASK_ID}/training/ckpt-2.index": b"two",
                        f"runs/{TASK_ID}/exported_model/saved_model/saved_model.pb": b"graph"}
    assert "artifacts: SIGTERM: final sync" in sidecar.err
    assert any(line.startswith("artifacts: final sync: 2 uploaded") for line in sidecar.err), sidecar.err


def test_upload_failures_are_retried_and_reported_never_fatal(s3world):
    s3, training = s3world["s3"], s3world["training"]
    (training / "ckpt-1.index").write_bytes(b"one")
    env = {**s3world["env"], "ARTIFACTS_TARGET": "s3://tfod-late", "ARTIFACTS_RETRIES": "1"}
    sidecar = Sidecar(env)  # its bucket does not exist yet
    try:
        sidecar.until("a reported failure", lambda: any("upload failed" in line for line in sidecar.err))
        sidecar.until("another round", lambda: sidecar.rounds() >= 2)
        assert sidecar.proc.poll() is None  # still running
        failed = next(line for line in sidecar.err if "upload failed" in line)
        assert f"s3://tfod-late/runs/{TASK_ID}/training/ckpt-1.index" in failed and "NoSuchBucket" in failed
        assert any("1 failed" in line for line in sidecar.err)

        s3.create_bucket(Bucket="tfod-late", CreateBucketConfiguration={"LocationConstraint": REGION})
        sidecar.until("the retried upload", lambda: s3.list_objects_v2(Bucket="tfod-late").get("KeyCount", 0) == 1)
        assert sidecar.terminate() == 0
    finally:
        sidecar.kill()


def test_manifest_survives_a_restart(s3world, monkeypatch, capsys):
    s3, puts, training = s3world["s3"], s3world["puts"], s3world["training"]
    for name, value in s3world["env"].items():
        monkeypatch.setenv(name, value)
    (training / "a.txt").write_text("a")
    assert artifacts.main(["sync", "--once", "--run_name", "r1"]) == 0
    assert artifacts.main(["sync", "--once", "--run-id", "r1"]) == 0  # the old flag still works, with a warning
    assert puts["runs/r1/training/a.txt"] == 1
    err = capsys.readouterr().err
    assert "final sync: 0 uploaded (0 B), 1 unchanged" in err
    assert "warning: --run_id is the old name of --run_name" in err
    assert set(keys(s3)) == {"runs/r1/training/a.txt"}


def test_a_new_sidecar_of_a_relaunched_run_does_not_send_the_restored_files_again(s3world, monkeypatch, capsys):
    s3, puts, training = s3world["s3"], s3world["puts"], s3world["training"]
    for name, value in s3world["env"].items():
        monkeypatch.setenv(name, value)
    s3.put_object(Bucket=BUCKET, Key="runs/r2/training/ckpt-4.index", Body=b"four")
    modified = s3.head_object(Bucket=BUCKET, Key="runs/r2/training/ckpt-4.index")["LastModified"].timestamp()
    (training / "ckpt-4.index").write_bytes(b"four")  # as train.sh's restore leaves it: the object's time
    os.utime(training / "ckpt-4.index", (modified, modified))
    (training / "ckpt-6.index").write_bytes(b"six")  # trained since
    (training / "train.json").write_bytes(b"{}")
    os.utime(training / "train.json", (modified + 60, modified + 60))  # changed after the upload: sent
    s3.put_object(Bucket=BUCKET, Key="runs/r2/training/train.json", Body=b"{}")
    assert artifacts.main(["sync", "--once", "--run_name", "r2"]) == 0
    err = capsys.readouterr().err
    assert "1 files are in S3 already (restored from there): not sending them again" in err
    assert "final sync: 2 uploaded (5 B), 1 unchanged" in err
    assert puts["runs/r2/training/ckpt-4.index"] == 1 and puts["runs/r2/training/ckpt-6.index"] == 1
    assert puts["runs/r2/training/train.json"] == 2


def test_run_name_from_the_environment_the_metadata_endpoint_then_fallbacks(metadata, monkeypatch, capsys):
    monkeypatch.delenv("RUN_NAME", raising=False)
    monkeypatch.delenv("RUN_ID", raising=False)
    monkeypatch.setenv("ECS_CONTAINER_METADATA_URI_V4", metadata)
    assert artifacts.run_name() == TASK_ID
    assert artifacts.run_name("given") == "given"
    monkeypatch.setenv("RUN_ID", "old-id")
    assert artifacts.run_name() == "old-id"
    assert "warning: RUN_ID is the old name of RUN_NAME" in capsys.readouterr().err
    monkeypatch.setenv("RUN_NAME", "shapes-1")
    assert artifacts.run_name() == "shapes-1"
    monkeypatch.setenv("RUN_NAME", "a/b")
    with pytest.raises(artifacts.UserError, match="RUN_NAME 'a/b' is not a valid run name"):
        artifacts.run_name()
    monkeypatch.delenv("RUN_NAME")
    monkeypatch.delenv("RUN_ID")
    monkeypatch.setenv("ECS_CONTAINER_METADATA_URI_V4", metadata + "/nope")
    assert re.fullmatch(r".+-\d{8}T\d{6}Z", artifacts.run_name(timeout=1))
    assert "no task id from the ECS metadata endpoint" in capsys.readouterr().err
    monkeypatch.delenv("ECS_CONTAINER_METADATA_URI_V4")
    assert re.fullmatch(r".+-\d{8}T\d{6}Z", artifacts.run_name())


def test_the_newest_checkpoint_goes_first_then_its_state_file_then_the_rest(s3world, tmp_path):
    """The order of one round's uploads: what a two-minute notice saves first."""
    training, export = s3world["training"], s3world["export"]
    export.mkdir()
    files = ["ckpt-3.index", "ckpt-3.data-00000-of-00002", "ckpt-3.data-00001-of-00002", "ckpt-6.index",
             "ckpt-6.data-00000-of-00002", "ckpt-6.data-00001-of-00002",
             "ckpt-9.data-00000-of-00002",  # still being written: no .index, not the newest complete one
             "checkpoint", "pipeline.config", "train/events.out.tfevents.1", "aaa.json"]
    for name in files:
        (training / name).parent.mkdir(parents=True, exist_ok=True)
        (training / name).write_bytes(b"x")
    (export / "export.json").write_text("{}")
    syncer = artifacts.Syncer(None, BUCKET, "runs/r", [training, export], tmp_path / "m.json")
    order = [key.removeprefix("runs/r/") for _path, key in syncer.files()]
    assert order[:4] == ["training/ckpt-6.data-00000-of-00002", "training/ckpt-6.data-00001-of-00002",
                         "training/ckpt-6.index", "training/checkpoint"]
    assert sorted(order[4:]) == sorted([f"training/{n}" for n in files if n not in
                                        {"ckpt-6.index", "ckpt-6.data-00000-of-00002", "ckpt-6.data-00001-of-00002",
                                         "checkpoint"}] + ["exported_model/export.json"])


def test_missing_target_is_a_one_line_error(monkeypatch, capsys):
    monkeypatch.delenv("ARTIFACTS_TARGET", raising=False)
    assert artifacts.main(["sync", "--once"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == ["error: no S3 target (set ARTIFACTS_TARGET=s3://<bucket>[/<prefix>] or pass --target)"]
    assert artifacts.main(["sync", "--once", "--target", "bucket/x"]) == 2
    assert capsys.readouterr().err == ("error: target must be an s3:// URI, got 'bucket/x' (set ARTIFACTS_TARGET or "
                                       "--target to s3://<bucket>[/<prefix>], e.g. s3://my-artifacts-bucket)\n")
    assert artifacts.main(["sync", "--once", "--target", "s3://b/x"]) == 2  # S3's bucket naming rules
    assert "bucket name 'b' is 1 character long" in capsys.readouterr().err
