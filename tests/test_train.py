"""train.sh end to end on CPU: real tiny training runs, S3 inputs from moto, kill and resume.

The tests marked slow train a real SSD MobileNet V2 FPNLite 320x320 from
scratch for a few steps on synthetic shapes (minutes on 2 cores in all); the
others check usage, signals and helpers without training.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT, Followed, run_python, synthetic_records

SSD = "SSD MobileNet V2 FPNLite 320x320"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra) -> dict[str, str]:
    env = {**os.environ, "TENSORBOARD": "0", "TFOD_FROM_SCRATCH": "1", "TFODKIT_PYTHON": sys.executable,
           "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    env.pop("AWS_PROFILE", None)
    env.update(extra)
    return env


def train_sh(*args, env=None, timeout=900) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(ROOT / "train.sh"), *map(str, args)], cwd=ROOT, env=env or _env(),
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def shapes(tmp_path_factory):
    """24 synthetic images converted to records by the dataset tool, 4 held out."""
    root = synthetic_records(tmp_path_factory.mktemp("shapes"), images=24, holdout=4, seed=1)
    hparams = root / "hparams.json"
    hparams.write_text(json.dumps({"batch_size": 2, "train_steps": 6, "checkpoint_every_n": 3}))
    return root


@pytest.fixture(scope="session")
def trained(shapes, moto_endpoint, tmp_path_factory):
    """One full train.sh run, all seven arguments, every input from S3, TensorBoard on."""
    import boto3

    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    s3.create_bucket(Bucket="inputs")
    for f in (shapes / "records").iterdir():
        if f.is_file():
            s3.upload_file(str(f), "inputs", f"records/{f.name}")
    s3.upload_file(str(ROOT / "configs" / "training.config"), "inputs", "configs/training.config")
    s3.upload_file(str(shapes / "hparams.json"), "inputs", "configs/hparams.json")

    work = tmp_path_factory.mktemp("run")
    port = _free_port()
    answers: list[int] = []
    done = threading.Event()

    def poll_tensorboard():
        while not done.is_set():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                    answers.append(r.status)
            except OSError:
                pass
            done.wait(2)

    poller = threading.Thread(target=poll_tensorboard, daemon=True)
    poller.start()
    args = (work / "models", work / "training", work / "exported", "s3://inputs/records", SSD,
            "s3://inputs/configs/training.config", "s3://inputs/configs/hparams.json")
    env = _env(AWS_ENDPOINT_URL=moto_endpoint, TENSORBOARD="1", TENSORBOARD_PORT=str(port))
    result = train_sh(*args, env=env)
    done.set()
    poller.join()
    return {"result": result, "work": work, "args": args, "env": env, "port": port, "tensorboard": answers}


@pytest.mark.slow
def test_train_sh_with_s3_inputs_trains_evaluates_and_exports(trained):
    result, work = trained["result"], trained["work"]
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    training = work / "training"
    # inputs came from S3
    assert (training / "inputs" / "records" / "training.record").stat().st_size > 0
    assert (training / "inputs" / "hparams.json").is_file()
    # exactly the requested steps, a checkpoint every 3 and one at the end
    train = json.loads((training / "train.json").read_text())
    assert train["status"] == "trained" and train["step"] == 6 == train["num_steps"]
    assert {p.name for p in training.glob("ckpt-*.index")} == {"ckpt-3.index", "ckpt-6.index"}
    assert "train: step 6/6 (100.0%)" in result.stdout
    # no rate from the traced first step, no ETA before a few steps after it are timed
    from tfodkit.progress import ETA_AFTER

    progress = [line for line in result.stdout.splitlines() if line.startswith("train: step ")]
    for line in progress:
        step = int(line.split()[2].split("/")[0])
        assert ("no speed yet" in line) == (step == 1), line
        assert ("ETA" in line) == (step - 1 >= ETA_AFTER), line
    # one-shot evaluation on the final checkpoint
    metrics = json.loads((training / "metrics.json").read_text())
    assert metrics["checkpoint"].endswith("ckpt-6") and metrics["step"] == 6
    assert set(metrics["per_class_AP"]) == {"circle", "square"}
    testing = json.loads((training / "inputs" / "records" / "dataset.json").read_text())["splits"]["testing"]
    assert metrics["num_images"] == testing["images"] > 0  # counted by the evaluation pass itself
    assert f"evaluate: checkpoint ckpt-6, {testing['images']} images (dataset.json)" in result.stdout
    for key in ("mAP", "mAP@0.5", "mAP@0.75"):
        assert 0.0 <= metrics[key] <= 1.0
    assert (training / "metrics_per_class.png").stat().st_size > 1000
    # the export, atomically in place
    exported = work / "exported"
    assert (exported / "saved_model" / "saved_model.pb").is_file()
    assert (exported / "label_map.pbtxt").read_text() == (training / "inputs" / "records" / "classes.pbtxt").read_text()
    assert not [p for p in exported.parent.iterdir() if p.name.startswith(".exported")]
    # run.json records every step and the outcome
    run = json.loads((training / "run.json").read_text())
    assert [s["name"] for s in run["steps"]] == ["fetch", "readconfig", "train", "evaluate", "export", "report"]
    assert all(s["status"] == 0 for s in run["steps"]) and run["status"] == 0
    # the run report, from the detections the evaluation kept (one per test image)
    kept = json.loads((training / "eval_detections.json").read_text())
    assert len(kept["images"]) == metrics["num_images"] and all(i["filename"] for i in kept["images"])
    page = (training / "report" / "index.html").read_text()
    for name, ap in metrics["per_class_AP"].items():
        assert f"<td class=l>{name}</td><td>{ap:.3f}</td>" in page
    assert run["versions"]["tensorflow"] and len(run["pipeline_config_sha256"]) == 64
    assert run["metrics"]["mAP@0.5"] == metrics["mAP@0.5"] and run["training"]["step"] == 6
    # TensorBoard answered during the run and is gone after it
    assert 200 in trained["tensorboard"]
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{trained['port']}/", timeout=2)
    # the override and hparams reached the config
    config = (training / "pipeline.config").read_text()
    assert "random_adjust_brightness" in config and "batch_size: 2" in config


@pytest.mark.slow
def test_rerun_of_a_finished_training_dir_does_not_retrain(trained):
    training = trained["work"] / "training"
    ckpt = training / "ckpt-6.index"
    before = ckpt.stat().st_mtime_ns
    start = time.monotonic()
    result = train_sh(*trained["args"], env={**trained["env"], "TENSORBOARD": "0"})
    seconds = time.monotonic() - start
    assert result.returncode == 0, result.stderr[-3000:]
    # decided from run.json, train.json, the checkpoint state, metrics.json and export.json: no TensorFlow
    assert "nothing to do: trained to step 6/6, evaluated (ckpt-6" in result.stdout, result.stdout
    assert "step readconfig" not in result.stdout and "step train" not in result.stdout
    assert seconds < 3, f"a rerun with nothing to do took {seconds:.1f} s"
    assert ckpt.stat().st_mtime_ns == before
    assert not (training / "ckpt-7.index").exists()
    run = json.loads((training / "run.json").read_text())
    assert len(run["previous_runs"]) == 1 and run["status"] == 0
    assert [(s["name"], s.get("skipped")) for s in run["steps"]] == [
        ("fetch", None), ("readconfig", "up to date"), ("train", "up to date"), ("evaluate", "up to date"),
        ("export", "up to date")]


@pytest.mark.slow
def test_evaluate_rejects_empty_eval_records_in_one_line(trained, tmp_path):
    training = trained["work"] / "training"
    (tmp_path / "testing.record").write_bytes(b"")
    config = (training / "pipeline.config").read_text()
    eval_path = str(training / "inputs" / "records" / "testing.record")
    assert eval_path in config
    (tmp_path / "pipeline.config").write_text(config.replace(eval_path, str(tmp_path / "testing.record")))
    out = subprocess.run([sys.executable, "-m", "tfodkit.evaluate", "--pipeline_config", str(tmp_path /
                          "pipeline.config"), "--model_dir", str(training), "--force"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1] == (
        f"error: the eval records {tmp_path / 'testing.record'} hold no example (check testing.record)")
    assert json.loads((training / "metrics.json").read_text())["step"] == 6  # the previous metrics stay


def test_expected_images_reads_the_dataset_tools_report(tmp_path):
    from tfodkit.evaluate import expected_images

    assert expected_images([str(tmp_path / "testing.record")]) is None  # no dataset.json
    (tmp_path / "dataset.json").write_text(json.dumps({"splits": {"testing": {"images": 7}}}))
    assert expected_images([str(tmp_path / "testing.record")]) == 7
    assert expected_images([str(tmp_path / f"testing-0000{i}-of-00004.record") for i in range(4)]) == 7
    assert expected_images([str(tmp_path / "validation.record")]) is None
    assert expected_images([str(tmp_path / "testing.record"), "/elsewhere/testing.record"]) is None


def test_progress_speed_is_not_measured_from_the_traced_first_step():
    from tqdm import tqdm

    from tfodkit.progress import ETA_AFTER, EVAL_BAR_FORMAT, speed_text

    # the first progress line came after step 1 alone (30 s of tracing), 799 steps to go: it said 0.03 steps/s,
    # ETA 7h49m
    assert speed_text(0, 0.0, 799) == "no speed yet (the first step included tracing)"
    assert speed_text(1, 0.4, 798) == "2.50 steps/s"  # a rate from one step, but no ETA yet
    assert "ETA" not in speed_text(ETA_AFTER - 1, 2.0, 795)
    assert speed_text(10, 4.0, 790) == "2.50 steps/s  ETA 5m16s"
    assert speed_text(10, 4.0, None, ("batch", "batches")) == "2.50 batches/s"  # unknown total: no ETA
    # evaluation's bar after its first batch (60 s with tracing) of 24: tqdm itself would say 23:00 remaining
    assert "<23:00" in tqdm.format_meter(1, 24, 60.0, prefix="evaluate", unit="batch")
    line = tqdm.format_meter(1, 24, 60.0, prefix="evaluate", unit="batch", bar_format=EVAL_BAR_FORMAT,
                             postfix=speed_text(0, 0.0, 23, ("batch", "batches")))
    assert "1/24 [01:00, no speed yet (the first batch included tracing)]" in line and "<" not in line
    line = tqdm.format_meter(8, 24, 62.0, prefix="evaluate", unit="batch", bar_format=EVAL_BAR_FORMAT,
                             postfix=speed_text(7, 2.0, 16, ("batch", "batches")))
    assert line.endswith("8/24 [01:02, 3.50 batches/s  ETA 5s]")


LOAD = """
import sys, json
import tfodkit.compat
import numpy as np, tensorflow as tf
from PIL import Image
model = tf.saved_model.load(sys.argv[1])
out = {}
for path in sys.argv[2:]:
    image = np.asarray(Image.open(path).convert("RGB"))[None]
    det = model(tf.constant(image))
    out[path] = {"boxes": det["detection_boxes"].shape.as_list(), "num": int(det["num_detections"][0]),
                 "classes": sorted(set(det["detection_classes"][0].numpy().astype(int).tolist()))}
print(json.dumps(out))
"""


@pytest.mark.slow
def test_exported_model_loads_in_a_fresh_process_and_detects(trained, shapes):
    assert trained["result"].returncode == 0
    images = sorted(str(p) for p in (shapes / "holdout").glob("*.jpg"))
    out = subprocess.run([sys.executable, "-c", LOAD, str(trained["work"] / "exported" / "saved_model"), *images],
                         cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr[-3000:]
    detections = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(detections) == 4
    for det in detections.values():
        assert det["boxes"] == [1, 100, 4] and det["num"] == 100
        assert set(det["classes"]) <= {1, 2}


def _signal_and_wait(run: Followed, sig: int, timeout: float) -> tuple[int, float]:
    """Send sig to train.sh itself; its exit status and the seconds until it exited."""
    sent = time.monotonic()
    run.signal(sig)
    return run.finish(timeout), time.monotonic() - sent


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_a_rerun_resumes_to_the_same_final_step(shapes, tmp_path):
    hparams = tmp_path / "h.json"
    # enough steps that the chunk running when SIGTERM arrives (about 3 s of steps) cannot be the last one
    # (learning rate 0.01: batch 2 at the base config's 0.08 can diverge to NaN, which train stops on)
    hparams.write_text(json.dumps({"batch_size": 2, "train_steps": 120, "checkpoint_every_n": 1000,
                                   "learning_rate": 0.01}))
    args = [str(a) for a in (tmp_path / "m", tmp_path / "training", tmp_path / "exported", shapes / "records", SSD,
                             "", hparams)]
    with Followed(["bash", str(ROOT / "train.sh"), *args], env=_env(), terminal_job=True, merge=True) as run:
        # the first progress line after tracing: training is under way
        run.until("a progress line after step 1", lambda: any(
            ln.startswith("train: step ") and "/120" in ln and not ln.startswith("train: step 1/") for ln in run.out),
            600)
        code, stop_seconds = _signal_and_wait(run, signal.SIGTERM, 120)
    log = run.stdout
    assert code == 143, log[-3000:]
    assert stop_seconds < 60, f"took {stop_seconds:.0f} s to stop"
    assert "stopped by SIGTERM at step" in log and "checkpoint saved" in log
    train = json.loads((tmp_path / "training" / "train.json").read_text())
    assert train["status"] == "interrupted" and 1 < train["step"] < 120, log[-3000:]
    interrupted_at = train["step"]
    assert (tmp_path / "training" / f"ckpt-{interrupted_at}.index").is_file()
    assert not (tmp_path / "exported").exists()
    run = json.loads((tmp_path / "training" / "run.json").read_text())
    assert run["status"] == 143 and run["steps"][-1]["name"] == "train"

    again = train_sh(*args)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert f"train: resuming from ckpt-{interrupted_at} at step {interrupted_at}/120" in again.stdout
    train = json.loads((tmp_path / "training" / "train.json").read_text())
    assert train["step"] == 120 and train["steps_this_run"] == 120 - interrupted_at
    assert (tmp_path / "exported" / "saved_model" / "saved_model.pb").is_file()
    # a chunk ended at step 100 (as model_main_tf2's do), in whichever run it fell: a TensorBoard point there
    from tfodkit.report.files import wall_times

    times = wall_times(tmp_path / "training" / "train")
    assert {interrupted_at, 100, 120} <= set(times), sorted(times)
    assert times[100] < times[120]


@pytest.mark.parametrize("sig,status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_any_step_at_once(shapes, tmp_path, sig, status):
    """Not only training stops: here readconfig, stuck on a zoo server that never answers.

    (Background steps of a script ignore SIGINT, so train.sh must not merely pass SIGINT on.)
    """
    from tests.zoo_server import ZooServer

    with ZooServer({}) as server:
        server.mode = "stall"
        env = _env(TFOD_ZOO_URL=server.url, TFOD_CACHE_DIR=str(tmp_path / "cache"), TFOD_ZOO_TIMEOUT="120")
        env.pop("TFOD_FROM_SCRATCH")
        with Followed(["bash", str(ROOT / "train.sh"), str(tmp_path / "m"), str(tmp_path / "t"), str(tmp_path / "e"),
                       str(shapes / "records"), SSD], env=env, terminal_job=True, merge=True) as run:
            run.saw("step readconfig: start", where="out", timeout=120)
            run.until("the zoo download to start", lambda: bool(server.requests), 30)
            code, stop_seconds = _signal_and_wait(run, sig, 60)
    log = run.stdout
    assert code == status, log[-3000:]
    assert stop_seconds < 15, f"took {stop_seconds:.0f} s to stop"
    assert "step train" not in log
    # the zoo download's partial folder went with it (train.sh passes Ctrl-C on to its step as SIGTERM)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == []
    run = json.loads((tmp_path / "t" / "run.json").read_text())
    assert run["status"] == status and run["steps"][-1] == {"name": "readconfig", "status": status,
                                                            "seconds": run["steps"][-1]["seconds"]}


@pytest.mark.slow
def test_mirrored_strategy_over_two_logical_cpus(shapes, tmp_path):
    hp = tmp_path / "h.json"
    hp.write_text(json.dumps({"batch_size": 2, "train_steps": 3}))
    from tfodkit import config

    assert config.main(["--pretrained_model", SSD, "--records_dir", str(shapes / "records"), "--output_dir",
                        str(tmp_path / "t"), "--hparams", str(hp), "--from_scratch", "--num_gpus", "2"]) == 0
    out = subprocess.run([sys.executable, "-m", "tfodkit.train", "--pipeline_config", str(tmp_path / "t" /
                          "pipeline.config"), "--model_dir", str(tmp_path / "t"), "--cpu_replicas", "2"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "batch 2 over 2 replica(s)" in out.stdout
    assert json.loads((tmp_path / "t" / "train.json").read_text())["step"] == 3
    assert (tmp_path / "t" / "ckpt-3.index").is_file()
    # the loop counts steps itself: the model's global step (one a step over both replicas) agrees
    import tfodkit.compat  # noqa: F401  (before TensorFlow)

    import tensorflow as tf

    assert tf.train.load_checkpoint(str(tmp_path / "t" / "ckpt-3")).get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE") == 3


@pytest.mark.slow
def test_deterministic_runs_with_one_seed_are_identical_and_another_seed_differs(shapes, tmp_path):
    """seed + deterministic: the same weights bit for bit, augmentation (random flips) included."""
    import tfodkit.compat  # noqa: F401  (before TensorFlow)

    import numpy as np
    import tensorflow as tf

    from tfodkit import config

    def run(name: str, seed: int) -> dict:
        hp = tmp_path / f"{name}.json"
        hp.write_text(json.dumps({"batch_size": 2, "train_steps": 4, "seed": seed, "deterministic": True}))
        out_dir = tmp_path / name
        assert config.main(["--pretrained_model", SSD, "--records_dir", str(shapes / "records"), "--output_dir",
                            str(out_dir), "--hparams", str(hp), "--from_scratch"]) == 0
        assert "random_horizontal_flip" in (out_dir / "pipeline.config").read_text()
        out = subprocess.run([sys.executable, "-m", "tfodkit.train", "--pipeline_config",
                              str(out_dir / "pipeline.config"), "--model_dir", str(out_dir)],
                             cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
        assert f"seed {seed} (deterministic ops)" in out.stdout
        reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(out_dir)))
        return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map() if "model/" in k}

    first, again, other = run("a", 5), run("b", 5), run("c", 6)
    assert len(first) > 100 and first.keys() == again.keys() == other.keys()
    assert all(np.array_equal(first[k], again[k]) for k in first)
    assert sum(not np.array_equal(first[k], other[k]) for k in first) > len(first) // 2


def test_seed_everything_twice_in_one_process_after_tensorflow_started():
    """The NCCL retry calls train() again in the same process: re-seeding must work, not fail on TF's threads."""
    code = ("import tfodkit.compat\nimport tensorflow as tf\nfrom tfodkit.train import seed_everything\n"
            "seed_everything(3, True); a = tf.random.uniform([4]).numpy()\n"
            "seed_everything(3, True); b = tf.random.uniform([4]).numpy()\n"
            "print((a == b).all(), tf.config.threading.get_inter_op_parallelism_threads())\n")
    out = run_python(code)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["True", "1"]


@pytest.mark.slow
def test_fine_tuning_restores_the_zoo_checkpoint(shapes, tmp_path):
    """The users' main path: start from a zoo checkpoint (here a real one of random weights, 90 classes)."""
    import tfodkit.compat  # noqa: F401  (before TensorFlow)

    import numpy as np
    import tensorflow as tf

    from tests.untrained_model import write_pretrained_dir
    from tfodkit import config

    pre = write_pretrained_dir(tmp_path / "pre", seed=3)
    hp = tmp_path / "h.json"
    # a tiny learning rate: two steps leave the restored weights where they were (a big one moves small kernels)
    hp.write_text(json.dumps({"batch_size": 2, "train_steps": 2, "learning_rate": 1e-6}))
    assert config.main(["--pretrained_model", SSD, "--records_dir", str(shapes / "records"), "--output_dir",
                        str(tmp_path / "t"), "--hparams", str(hp), "--pretrained_dir", str(pre)]) == 0
    out = subprocess.run([sys.executable, "-m", "tfodkit.train", "--pipeline_config", str(tmp_path / "t" /
                          "pipeline.config"), "--model_dir", str(tmp_path / "t")],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"fine-tuning from {pre / 'checkpoint' / 'ckpt-0'} (detection)" in out.stdout
    before = tf.train.load_checkpoint(str(pre / "checkpoint" / "ckpt-0"))
    after = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(tmp_path / "t")))
    shapes_before, shapes_after = before.get_variable_to_shape_map(), after.get_variable_to_shape_map()
    backbone = [k for k in shapes_before if "_feature_extractor" in k and "kernel/.ATTRIBUTES" in k]
    assert len(backbone) > 50 and all(k in shapes_after for k in backbone)
    # the zoo weights, two tiny steps on: not a fresh random init (which would correlate ~0)
    corr = {k: np.corrcoef(before.get_tensor(k).ravel(), after.get_tensor(k).ravel())[0, 1] for k in backbone}
    assert min(corr.values()) > 0.99, sorted(corr.items(), key=lambda kv: kv[1])[:3]
    head = [k for k in shapes_before if "class_predictions_with_background" in k and "pointwise_kernel" in k]
    assert head and all(shapes_before[k][-1] != shapes_after[k][-1] for k in head)  # 90 classes -> 2: new head


def test_batch_not_divisible_by_replicas_fails_before_building(shapes, tmp_path):
    hp = tmp_path / "h.json"
    hp.write_text(json.dumps({"batch_size": 3, "train_steps": 3}))
    from tfodkit import config

    assert config.main(["--pretrained_model", SSD, "--records_dir", str(shapes / "records"), "--output_dir",
                        str(tmp_path / "t"), "--hparams", str(hp), "--from_scratch", "--num_gpus", "0"]) == 0
    start = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "tfodkit.train", "--pipeline_config", str(tmp_path / "t" /
                          "pipeline.config"), "--model_dir", str(tmp_path / "t"), "--cpu_replicas", "2"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1] == (
        "error: batch_size 3 is not divisible by the 2 replicas; TFOD would fail at step 0 with: The "
        "`global_batch_size` 3 "
        "is not divisible by `num_replicas_in_sync` 2 (set batch_size to a multiple of 2, e.g. 4)")
    assert time.monotonic() - start < 60
    assert not list((tmp_path / "t").glob("ckpt-*"))


@pytest.mark.parametrize("every", ["0", "-3"])
def test_checkpoint_every_n_below_1_is_a_usage_error(tmp_path, capsys, every):
    from tfodkit import train

    (tmp_path / "toolkit.json").write_text(json.dumps({"checkpoint_every_n": 5}))  # a given 0 must not fall back
    status = train.main(["--pipeline_config", str(tmp_path / "pipeline.config"), "--model_dir", str(tmp_path),
                         "--checkpoint_every_n", every])
    assert status == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(
        "error: --checkpoint_every_n must be at least 1")


@pytest.mark.parametrize("args,message", [
    (["a", "b"], "error: expected 5 to 7 arguments, got 2"),
    (["m", "t", "e", "r", "SSD MobileNet V9"], "error: unknown zoo model 'SSD MobileNet V9' (did you mean: "),
    (["m", "t", "e", ".", SSD, "", "/no/such/hparams.json"], "error: hparams file /no/such/hparams.json not found"),
    (["m", "t", "e", "r", SSD], "error: records dir r does not exist"),
    (["m", "t", "e", "s3://b/records", SSD], "is 1 character long; S3 bucket names are 3-63 characters"),
])
def test_train_sh_bad_usage(tmp_path, args, message):
    result = subprocess.run(["bash", str(ROOT / "train.sh"), *args], cwd=tmp_path, env=_env(),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert message in result.stderr
    assert not (tmp_path / "t").exists()


def test_usage_text_lists_every_variable_train_sh_reads():
    """train.sh reads TFODKIT_PYTHON and PYTHON; tfodkit/run.py reads its variables through variable() only."""
    import re

    from tfodkit import run

    source = (ROOT / "tfodkit" / "run.py").read_text()
    assert "os.environ.get(" not in source.replace('os.environ.get("PYTHONPATH"', "").replace(
        "os.environ.get(name, default)", ""), "read the environment through variable()"
    read = set(re.findall(r'(?:variable|_switch|env_number)\("(\w+)"', source))
    assert read == set(run.VARIABLES)
    shell = set(re.findall(r"\$\{(\w*PYTHON\w*)", (ROOT / "train.sh").read_text())) - {"PYTHONPATH"}
    assert shell == {"TFODKIT_PYTHON", "PYTHON"}
    environment = run.USAGE_TEXT.split("\nenvironment:\n")[1].split("\n\n")[0]
    for name in read | shell:
        assert re.search(rf"(?<![\w$]){name}\b", environment), f"{name} is not in ./train.sh --help"
    out = subprocess.run(["bash", str(ROOT / "train.sh"), "--help"], env=_env(), capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and out.stdout == run.USAGE_TEXT


def test_train_sh_runs_the_python_of_tfodkit_python_or_of_its_old_name_python(tmp_path):
    fake = tmp_path / "fake-python"
    fake.write_text(f'#!/bin/sh\necho "$0 $*" > {tmp_path}/called\n')
    fake.chmod(0o755)
    other = tmp_path / "other-python"
    other.write_text(fake.read_text().replace("called", "other"))
    other.chmod(0o755)
    env = _env(TFODKIT_PYTHON=str(fake), PYTHON=str(other))
    assert subprocess.run(["bash", str(ROOT / "train.sh"), "a"], env=env, timeout=60).returncode == 0
    assert (tmp_path / "called").read_text().split() == [str(fake), "-m", "tfodkit.run", "a"]
    env.pop("TFODKIT_PYTHON")
    assert subprocess.run(["bash", str(ROOT / "train.sh"), "a"], env=env, timeout=60).returncode == 0
    assert (tmp_path / "other").is_file()
    env["PYTHON"] = str(tmp_path / "missing-python")
    out = subprocess.run(["bash", str(ROOT / "train.sh"), "a"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr.startswith(f"error: {tmp_path / 'missing-python'} not found (run make install, or set "
                                 "TFODKIT_PYTHON")


def test_models_dir_with_a_tfod_checkout_goes_on_pythonpath(shapes, tmp_path):
    """The seed's manual setup: <models_dir>/research/object_detection is imported from there."""
    fake = tmp_path / "models" / "research" / "object_detection"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise SystemExit('imported the checkout')\n")
    result = subprocess.run(["bash", str(ROOT / "train.sh"), str(tmp_path / "models"), str(tmp_path / "t"),
                             str(tmp_path / "e"), str(shapes / "records"), SSD], cwd=tmp_path, env=_env(),
                            capture_output=True, text=True, timeout=300)
    assert f"using TFOD from {tmp_path / 'models' / 'research'}" in result.stdout
    assert "imported the checkout" in result.stderr  # readconfig imported TFOD from the checkout
    assert result.returncode != 0
    run = json.loads((tmp_path / "t" / "run.json").read_text())
    assert run["steps"][-1]["name"] == "readconfig" and run["status"] != 0


@pytest.mark.slow
def test_train_sh_on_the_converted_raccoon_records(raccoon, tmp_path):
    """Real third-party data: the dataset tool's records of raccoon train through train.sh."""
    out = subprocess.run([sys.executable, "-m", "tfodkit.dataset", "convert", "--format", "voc", "--images",
                          str(raccoon / "images"), "--annotations", str(raccoon / "annotations"), "--output_dir",
                          str(tmp_path / "records"), "--test_fraction", "0.05", "--no_progress"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    hparams = tmp_path / "h.json"
    hparams.write_text(json.dumps({"batch_size": 2, "train_steps": 3}))
    # all seven arguments, every input local (the S3 run above is the remote twin)
    result = train_sh(tmp_path / "m", tmp_path / "training", tmp_path / "exported", tmp_path / "records", SSD,
                      ROOT / "configs" / "training.config", hparams)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "random_adjust_brightness" in (tmp_path / "training" / "pipeline.config").read_text()
    metrics = json.loads((tmp_path / "training" / "metrics.json").read_text())
    splits = json.loads((tmp_path / "records" / "dataset.json").read_text())["splits"]
    assert splits["training"]["images"] + splits["testing"]["images"] == len(list((raccoon / "images").iterdir()))
    assert metrics["step"] == 3 and metrics["num_images"] == splits["testing"]["images"]
    assert set(metrics["per_class_AP"]) == {"raccoon"}
    assert (tmp_path / "exported" / "saved_model" / "saved_model.pb").is_file()


@pytest.mark.slow
def test_predict_on_the_model_of_a_real_training_run(trained, tmp_path):
    """predict.py (the CLI, in a fresh process) on the export of the training run above."""
    import tfodkit.compat  # noqa: F401

    import tensorflow as tf

    from tests.support import assert_agrees_with_saved_model, make_odd_images

    assert trained["result"].returncode == 0
    exported = trained["work"] / "exported"
    folder = make_odd_images(tmp_path / "images")
    out = subprocess.run([sys.executable, str(ROOT / "predict.py"), "--model", str(exported), "--images",
                          str(folder), "--output_dir", str(tmp_path / "out"), "--min_confidence", "0", "--json"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 1, out.stderr[-2000:]
    assert "corrupt.jpg" in out.stderr
    detections = json.loads((tmp_path / "out" / "result_detections.json").read_text())
    assert sorted(Path(e["image"]).name for e in detections["images"]) == ["grey.jpg", "rgba.png", "rotated.jpg"]
    for entry in detections["images"]:
        assert Path(entry["output"]).is_file()
        assert {d["class_name"] for d in entry["detections"]} <= {"circle", "square"}
    signature = tf.saved_model.load(str(exported / "saved_model")).signatures["serving_default"]
    assert_agrees_with_saved_model(detections, signature)
