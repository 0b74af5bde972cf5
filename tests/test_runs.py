"""tfodkit/runs.py (a named run's S3 layout, complete checkpoints, the restore) and train.sh's use of it,
against moto's S3 on 127.0.0.1, without training (the reclaim that trains is in test_runtask.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, write_records
from tfodkit import run, runs
from tfodkit.errors import UserError

SSD = "SSD MobileNet V2 FPNLite 320x320"


def test_layout_is_target_runs_name():
    lay = runs.layout("s3://tfod-artifacts/team/", "shapes-1")
    assert str(lay.root) == "s3://tfod-artifacts/team/runs/shapes-1"
    assert str(lay.training) == "s3://tfod-artifacts/team/runs/shapes-1/training"
    assert str(lay.export_json) == "s3://tfod-artifacts/team/runs/shapes-1/exported_model/export.json"
    assert str(runs.layout("s3://tfod-artifacts", "a").training) == "s3://tfod-artifacts/runs/a/training"
    for bad in ("", "a/b", "-x", "x" * 101, "name with space"):
        with pytest.raises(UserError, match="is not a valid run name"):
            runs.layout("s3://tfod-artifacts", bad)


def test_generated_names_are_readable_and_valid():
    import datetime as dt

    when = dt.datetime(2026, 12, 2, 6, 12, 33, tzinfo=dt.timezone.utc)  # noqa: UP017
    name = runs.generate_name(SSD, when)
    assert name == "ssd-mobilenet-v2-fpnlite-320x320-20261202-061233"
    assert runs.check_name(name) == name


def test_a_checkpoint_is_complete_with_its_index_and_every_shard():
    names = ["ckpt-3.index", "ckpt-3.data-00000-of-00002", "ckpt-3.data-00001-of-00002",
             "ckpt-6.index", "ckpt-6.data-00001-of-00002",  # shard 0 missing
             "ckpt-9.data-00000-of-00001",  # no index yet
             "checkpoint", "train/ckpt-12.index"]  # not at the top level: not a checkpoint of this dir
    found = {c.name: c for c in runs.checkpoints(names)}
    assert list(found) == ["ckpt-3", "ckpt-6", "ckpt-9"]
    assert found["ckpt-3"].complete and found["ckpt-3"].step == 3
    assert found["ckpt-6"].missing == ("ckpt-6.data-00000-of-00002",)
    assert found["ckpt-9"].missing == ("ckpt-9.index",)
    assert runs.newest_complete(names).name == "ckpt-3"
    assert runs.newest_complete(["ckpt-3.index"]) is None  # an index with no shard at all: not complete


@pytest.fixture
def bucket(moto_s3, monkeypatch):
    for name in run.VARIABLES:
        monkeypatch.delenv(name, raising=False)
    moto_s3.create_bucket(Bucket="tfod-artifacts")
    return moto_s3


def _put(client, lay, files: dict[str, bytes]) -> None:
    for rel, body in files.items():
        client.put_object(Bucket="tfod-artifacts", Key=lay.training.join(rel).key, Body=body)


def test_restore_resumes_from_the_newest_complete_checkpoint(bucket, tmp_path):
    lay = runs.layout("s3://tfod-artifacts", "r1")
    _put(bucket, lay, {"ckpt-4.index": b"i4", "ckpt-4.data-00000-of-00001": b"d4",
                       "ckpt-8.index": b"i8",  # the reclaim came before its shard was uploaded
                       "checkpoint": b'model_checkpoint_path: "ckpt-8"\nall_model_checkpoint_paths: "ckpt-4"\n'
                                     b'all_model_checkpoint_paths: "ckpt-8"\n',
                       "train.json": b'{"status": "interrupted", "step": 8}', "train/events.out.1": b"e",
                       "inputs/records/training.record": b"r"})
    training = tmp_path / "training"
    logged: list[str] = []
    got = runs.restore(lay, training, log=logged.append)
    assert got.name == "ckpt-4" and got.step == 4
    assert sorted(p.relative_to(training).as_posix() for p in training.rglob("*") if p.is_file()) == [
        "checkpoint", "ckpt-4.data-00000-of-00001", "ckpt-4.index", "train.json", "train/events.out.1"]
    assert (training / "checkpoint").read_text() == ('model_checkpoint_path: "ckpt-4"\n'
                                                     'all_model_checkpoint_paths: "ckpt-4"\n')
    assert logged == ["restore: ckpt-8 is incomplete (no ckpt-8.data-00000-of-00001): not resuming from it",
                      "restore: 6 files from s3://tfod-artifacts/runs/r1/training/: run r1 resumes from ckpt-4 "
                      "(step 4)"]
    assert [c.name for c in runs.s3_checkpoints(lay)] == ["ckpt-4", "ckpt-8"]
    logged.clear()
    assert runs.restore(runs.layout("s3://tfod-artifacts", "new"), tmp_path / "t2", log=logged.append) is None
    assert logged == ["restore: nothing under s3://tfod-artifacts/runs/new/training/ yet: run new starts at step 0"]


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    return write_records(tmp_path_factory.mktemp("r") / "records")


def _train_sh(tmp_path, records, **env_vars) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in run.VARIABLES and k != "AWS_PROFILE"}
    env.update(TFODKIT_PYTHON=sys.executable, TENSORBOARD="0", **env_vars)
    return subprocess.run(["bash", str(ROOT / "train.sh"), "m", str(tmp_path / "t"), str(tmp_path / "e"),
                           str(records), SSD], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)


def test_a_run_exported_in_s3_trains_nothing(bucket, tmp_path, records):
    lay = runs.layout("s3://tfod-artifacts", "done-1")
    bucket.put_object(Bucket="tfod-artifacts", Key=lay.export_json.key, Body=b"{}")
    start = time.monotonic()
    out = _train_sh(tmp_path, records, ARTIFACTS_TARGET="s3://tfod-artifacts", RUN_NAME="done-1")
    assert out.returncode == 0, out.stderr
    assert ("nothing to train: run done-1 is already exported: s3://tfod-artifacts/runs/done-1/exported_model/"
            "export.json (use another RUN_NAME to train again)") in out.stdout
    assert "step readconfig" not in out.stdout and time.monotonic() - start < 10


def test_artifacts_uri_is_an_alias_with_a_warning_and_a_target_needs_a_name(bucket, tmp_path, records, capsys,
                                                                             monkeypatch):
    monkeypatch.setenv("ARTIFACTS_URI", "s3://tfod-artifacts/old")
    monkeypatch.setenv("RUN_NAME", "r2")
    p = run.plan(["m", str(tmp_path / "t"), str(tmp_path / "e"), str(records), SSD])
    assert str(p.artifacts.training) == "s3://tfod-artifacts/old/runs/r2/training"
    assert p.warnings == ["warning: ARTIFACTS_URI is the old name of ARTIFACTS_TARGET; set ARTIFACTS_TARGET "
                          "instead (this run's artifacts go to s3://tfod-artifacts/old/runs/r2/)"]
    monkeypatch.delenv("RUN_NAME")
    monkeypatch.setenv("ARTIFACTS_TARGET", "s3://tfod-artifacts")
    assert run.main(["m", str(tmp_path / "t"), str(tmp_path / "e"), str(records), SSD]) == 2
    assert capsys.readouterr().err == ("error: ARTIFACTS_TARGET is set but RUN_NAME is not (set RUN_NAME=<name>: "
                                       "the run's artifacts go to s3://tfod-artifacts/runs/<name>/)\n")
    monkeypatch.setenv("RUN_NAME", "bad/name")
    assert run.main(["m", str(tmp_path / "t"), str(tmp_path / "e"), str(records), SSD]) == 2
    assert "error: RUN_NAME 'bad/name' is not a valid run name" in capsys.readouterr().err
    assert not (tmp_path / "t").exists()
