"""tfodkit/run.py (train.sh) without training: variables to flags, the fetch, and a rerun's decision.

The runs that train are in test_train.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, reset_moto, write_records
from tfodkit import run, runlog
from tfodkit.errors import UserError

SSD = "SSD MobileNet V2 FPNLite 320x320"


@pytest.fixture
def clean_env(monkeypatch):
    for name in run.VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    return write_records(tmp_path_factory.mktemp("r") / "records")


def _plan(tmp_path, records, *extra):
    return run.plan(["m", str(tmp_path / "t"), str(tmp_path / "e"), str(records), SSD, *extra])


def test_variables_become_the_steps_flags(tmp_path, records, clean_env):
    clean_env.setenv("TFOD_CPU_REPLICAS", "2")
    clean_env.setenv("TFOD_FROM_SCRATCH", "1")
    clean_env.setenv("TFOD_EXPORT_TFLITE", "1")
    clean_env.setenv("TFOD_CROSS_DEVICE_OPS", "hierarchical_copy")
    clean_env.setenv("TFOD_PRETRAINED_DIR", str(tmp_path))
    p = _plan(tmp_path, records)
    inputs = run.Inputs(records, None, None)
    commands = run.step_commands(p, inputs)
    assert commands["readconfig"][1:] == [
        str(ROOT / "readconfig.py"), "--pretrained_model", SSD, "--records_dir", str(records), "--output_dir",
        str(tmp_path / "t"), "--num_gpus", "2", "--pretrained_dir", str(tmp_path), "--from_scratch"]
    assert commands["train"][1:] == [
        "-m", "tfodkit.train", "--pipeline_config", str(tmp_path / "t" / "pipeline.config"), "--model_dir",
        str(tmp_path / "t"), "--cross_device_ops", "hierarchical_copy", "--cpu_replicas", "2"]
    assert commands["export"][-2:] == ["--formats", "saved_model,tflite"]
    assert all(c[0] == sys.executable for c in commands.values())
    # TFOD_NUM_GPUS is what the batch must divide by, when both are set
    clean_env.setenv("TFOD_NUM_GPUS", "4")
    p = _plan(tmp_path, records)
    assert run.readconfig_command(p, inputs)[-5:-3] == ["--num_gpus", "4"]
    assert run.train_command(p)[-4:] == ["--num_gpus", "4", "--cpu_replicas", "2"]


def test_paths_are_taken_relative_to_the_working_directory(tmp_path, records, clean_env):
    clean_env.chdir(tmp_path)
    (tmp_path / "h.json").write_text("{}")
    p = run.plan(["m", "train", "out/exported", str(records), SSD, "", "h.json"])
    assert p.training_dir == tmp_path / "train" and p.export_dir == tmp_path / "out" / "exported"
    assert p.hparams == str(tmp_path / "h.json") and p.config is None


@pytest.mark.parametrize("name,value,message", [
    ("TFOD_NUM_GPUS", "two", "TFOD_NUM_GPUS='two' is not a whole number"),
    ("TFOD_CPU_REPLICAS", "0", "TFOD_CPU_REPLICAS='0' must be at least 1"),
    ("TFOD_FROM_SCRATCH", "yes", "TFOD_FROM_SCRATCH='yes' must be 0 or 1"),
    ("TENSORBOARD_PORT", "http", "TENSORBOARD_PORT='http' is not a whole number"),
    ("ARTIFACTS_URI", "s3://x/runs", "ARTIFACTS_URI 's3://x/runs': bucket name 'x' is 1 character long"),
    ("TFOD_PRETRAINED_DIR", "/no/such/dir", "TFOD_PRETRAINED_DIR=/no/such/dir is not a directory"),
    ("TFOD_EXPORT_FORMATS", "saved_model,tflite_fp61", "TFOD_EXPORT_FORMATS: unknown format 'tflite_fp61' "
     "(did you mean: "),
])
def test_a_bad_variable_is_one_line_before_anything_is_written(tmp_path, records, clean_env, capsys, name, value,
                                                               message):
    clean_env.setenv(name, value)
    assert run.main(["m", str(tmp_path / "t"), str(tmp_path / "e"), str(records), SSD]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}") and err.count("\n") == 1, err
    assert not (tmp_path / "t").exists()


def test_variable_refuses_an_undocumented_name():
    with pytest.raises(KeyError):
        run.variable("TFOD_SOMETHING_NEW")


def test_fetch_from_s3_hands_readconfig_the_local_copies(tmp_path, records, clean_env, moto_endpoint):
    """The fetch step is Python: its result goes to readconfig's flags directly (no paths file)."""
    reset_moto(moto_endpoint)
    for name, value in {"AWS_ENDPOINT_URL": moto_endpoint, "AWS_ACCESS_KEY_ID": "testing",
                        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        clean_env.setenv(name, value)
    from tfodkit import s3

    client = s3.client()
    client.create_bucket(Bucket="inputs")
    for f in records.iterdir():
        client.upload_file(str(f), "inputs", f"data/records/{f.name}")
    client.put_object(Bucket="inputs", Key="data/hparams.json", Body=b'{"batch_size": 2}')
    client.put_object(Bucket="inputs", Key="data/empty.config", Body=b"")
    p = run.plan(["m", str(tmp_path / "t"), str(tmp_path / "e"), "s3://inputs/data/records", SSD, "",
                  "s3://inputs/data/hparams.json"])
    inputs = run.fetch(p)
    assert inputs.records_dir == tmp_path / "t" / "inputs" / "records"
    assert sorted(f.name for f in inputs.records_dir.iterdir()) == sorted(f.name for f in records.iterdir())
    assert inputs.hparams == tmp_path / "t" / "inputs" / "hparams.json" and inputs.config is None
    cmd = run.readconfig_command(p, inputs)
    assert cmd[cmd.index("--records_dir") + 1] == str(inputs.records_dir)
    assert cmd[cmd.index("--hparams") + 1] == str(inputs.hparams)
    assert not (tmp_path / "t" / "inputs" / "paths").exists()
    p = run.plan(["m", str(tmp_path / "t"), str(tmp_path / "e"), "s3://inputs/data/records", SSD,
                  "s3://inputs/data/empty.config"])
    with pytest.raises(UserError, match="s3://inputs/data/empty.config is missing or empty"):
        run.fetch(p)


def _finished_run(tmp_path, records) -> dict:
    """A training dir and export exactly as a finished train.sh run leaves them (records only: no weights)."""
    training, export = tmp_path / "t", tmp_path / "e"
    (export / "saved_model").mkdir(parents=True)
    training.mkdir()
    (training / "pipeline.config").write_text("model { ssd {} }\n")
    (training / "ckpt-6.index").write_bytes(b"i")
    (training / "checkpoint").write_text('model_checkpoint_path: "ckpt-6"\nall_model_checkpoint_paths: "ckpt-6"\n')
    (training / "train.json").write_text(json.dumps({"status": "trained", "step": 6, "num_steps": 6}))
    (training / "metrics.json").write_text(json.dumps({"checkpoint": str(training / "ckpt-6"), "step": 6,
                                                       "mAP@0.5": 0.5}))
    box = [0.1, 0.1, 0.5, 0.5]  # the evaluation's kept detections (no records: the report draws grey pictures)
    (training / "eval_detections.json").write_text(json.dumps({
        "checkpoint": str(training / "ckpt-6"), "step": 6, "min_score": 0.01, "max_per_image": 100, "records": [],
        "categories": {"1": "circle"}, "images": [
            {"filename": "hit.jpg", "height": 64, "width": 64, "gt_boxes": [box], "gt_classes": [1],
             "boxes": [box], "scores": [0.9], "classes": [1]},
            {"filename": "missed.jpg", "height": 64, "width": 64, "gt_boxes": [box], "gt_classes": [1],
             "boxes": [], "scores": [], "classes": []}]}))
    (training / "report").mkdir()
    (training / "report" / "index.html").write_text("<!DOCTYPE html><title>report</title>\n")  # after the evaluation
    (export / "saved_model" / "saved_model.pb").write_bytes(b"pb")
    (export / "export.json").write_text(json.dumps({"checkpoint": str(training / "ckpt-6"),
                                                         "requested_formats": ["saved_model"]}))
    p = _plan(tmp_path, records)
    inputs = run.Inputs(Path(p.records), None, None)
    fingerprint = run.inputs_fingerprint(p, inputs, run.step_commands(p, inputs))
    runlog.start(training, SSD, [])
    runlog.record(training, inputs=fingerprint)
    runlog.finish(training, 0, export)
    return {"plan": p, "inputs": fingerprint}


def test_up_to_date_is_decided_from_the_runs_own_records(tmp_path, records, clean_env):
    finished = _finished_run(tmp_path, records)
    training, export, fp = tmp_path / "t", tmp_path / "e", finished["inputs"]

    def check():
        return runlog.up_to_date(runlog.load(training), fp, training, export, ["saved_model"])

    assert check().startswith("trained to step 6/6, evaluated (ckpt-6, mAP@0.5 0.500) and exported")
    assert runlog.up_to_date(runlog.load(training), {**fp, "files": {"hparams": "other"}}, training, export,
                             ["saved_model"]) is None  # other inputs
    assert runlog.up_to_date(runlog.load(training), fp, training, export,
                             ["saved_model", "tflite"]) is None  # TFLite asked now
    for change in (
        lambda: (training / "pipeline.config").write_text("model { ssd { num_classes: 3 } }\n"),  # edited by hand
        lambda: (training / "train.json").write_text(json.dumps({"status": "interrupted", "step": 3,
                                                                "num_steps": 6})),
        lambda: (training / "checkpoint").write_text('model_checkpoint_path: "ckpt-3"\n'),
        lambda: (training / "ckpt-6.index").unlink(),
        lambda: (training / "metrics.json").unlink(),
        lambda: (export / "export.json").write_text(json.dumps({"checkpoint": str(training / "ckpt-3"),
                                                               "requested_formats": ["saved_model"]})),
        lambda: (export / "saved_model" / "saved_model.pb").unlink(),
    ):
        saved = {p: p.read_bytes() for p in (*training.iterdir(), *export.rglob("*")) if p.is_file()}
        change()
        assert check() is None
        for path, data in saved.items():
            path.write_bytes(data)
        assert check() is not None
    runlog.record(training, status=143)
    assert check() is None  # a stopped run is not a finished one


def test_train_sh_rerun_with_nothing_to_do_takes_no_tensorflow(tmp_path, records, clean_env):
    """The whole ./train.sh rerun in a second or two: no step starts, run.json says why."""
    _finished_run(tmp_path, records)
    env = {k: v for k, v in os.environ.items() if k not in run.VARIABLES}
    env.update(TFODKIT_PYTHON=sys.executable, TENSORBOARD="0")
    start = time.monotonic()
    out = subprocess.run(["bash", str(ROOT / "train.sh"), "m", str(tmp_path / "t"), str(tmp_path / "e"),
                          str(records), SSD], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    seconds = time.monotonic() - start
    assert out.returncode == 0, out.stderr
    assert "nothing to do: trained to step 6/6" in out.stdout and "step readconfig" not in out.stdout
    assert seconds < 3, f"{seconds:.1f} s"
    data = runlog.load(tmp_path / "t")
    assert data["status"] == 0 and [s["name"] for s in data["steps"]] == [
        "fetch", "readconfig", "train", "evaluate", "export"]
    assert all(s.get("skipped") == "up to date" for s in data["steps"][1:])
    assert "tensorflow" not in out.stderr.lower()


def test_train_sh_rerun_with_nothing_to_do_writes_a_missing_or_outdated_report(tmp_path, records, clean_env):
    """The rerun trains nothing, but writes the report again when it was deleted or is older than the
    evaluation (from the kept detections: no TensorFlow), and leaves an up-to-date one alone."""
    _finished_run(tmp_path, records)
    training = tmp_path / "t"
    index, metrics = training / "report" / "index.html", training / "metrics.json"
    env = {k: v for k, v in os.environ.items() if k not in run.VARIABLES}
    env.update(TFODKIT_PYTHON=sys.executable, TENSORBOARD="0")

    def rerun() -> tuple[str, list]:
        out = subprocess.run(["bash", str(ROOT / "train.sh"), "m", str(training), str(tmp_path / "e"), str(records),
                              SSD], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert "nothing to do: trained to step 6/6" in out.stdout and "step train" not in out.stdout
        assert "tensorflow" not in out.stderr.lower()
        return out.stdout, [(s["name"], s.get("skipped")) for s in runlog.load(training)["steps"]]

    (training / "report" / "index.html").unlink()
    stdout, steps = rerun()
    assert f"report: {index} is missing" in stdout and "step report: status 0" in stdout
    assert steps[-1] == ("report", None)
    assert "1 of 2 test images have an error" in index.read_text()  # the real report, from eval_detections.json

    before = metrics.stat().st_mtime_ns - 10**9
    os.utime(index, ns=(before, before))  # as if the evaluation ran again after the report
    stdout, steps = rerun()
    assert f"report: {index} is older than metrics.json" in stdout and steps[-1] == ("report", None)
    assert index.stat().st_mtime_ns > metrics.stat().st_mtime_ns

    written = index.stat().st_mtime_ns
    stdout, steps = rerun()
    assert "step report" not in stdout and "report" not in [name for name, _ in steps]
    assert index.stat().st_mtime_ns == written
