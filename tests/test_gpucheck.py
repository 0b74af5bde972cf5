"""make gpu-check's CPU dry run: the same script, in this venv, a handful of steps, so that it cannot rot.

No machine here has a GPU. With TFOD_ALLOW_CPU=1 the check runs doctor, makes
its data, trains and writes its JSON exactly as on a GPU machine; without it,
it must fail loudly. A fake nvidia-smi on PATH plays a GPU machine whose
TensorFlow sees no GPU: TFOD_ALLOW_CPU=1 is what lets the training go on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, fake_nvidia_smi


def gpu_check(out: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    full = {**{k: v for k, v in os.environ.items() if k != "TFOD_ALLOW_CPU"}, "GPU_CHECK_MODE": "venv",
            "VENV": sys.prefix, "GPU_CHECK_OUT": str(out), **env}
    return subprocess.run(["bash", str(ROOT / "scripts" / "gpu-check.sh"), *args], cwd=out.parent, env=full,
                          capture_output=True, text=True, timeout=900)


def test_gpu_check_fails_loudly_when_tensorflow_sees_no_gpu(tmp_path):
    result = gpu_check(tmp_path / "out", "--skip_models")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "error: TensorFlow sees no GPU: this machine would train on its CPU" in result.stderr
    assert not (tmp_path / "out" / "gpu-check.json").exists()


@pytest.mark.slow
def test_gpu_check_dry_run_on_the_cpu_trains_and_writes_its_report(tmp_path):
    bin_dir = fake_nvidia_smi(tmp_path / "bin")
    result = gpu_check(tmp_path / "out", "--steps", "3", "--batch_size", "2", "--images", "8", "--skip_models",
                       TFOD_ALLOW_CPU="1", PATH=f"{bin_dir}:{os.environ['PATH']}")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "gpu-check.json").read_text())
    assert report["driver_gpus"] == 1 and report["tensorflow_gpus"] == 0
    [run] = report["runs"]
    assert run["name"] == "cpu" and run["gpus_used"] == 0 and run["steps"] == 3 and run["batch_size"] == 2
    assert run["steps_per_sec"] > 0 and run["images_per_sec"] == pytest.approx(2 * run["steps_per_sec"], rel=0.01)
    train_log = (tmp_path / "out" / "train-cpu.log").read_text()
    assert "training on the CPU because TFOD_ALLOW_CPU=1" in train_log
    assert "train: done: 3 steps" in train_log
    assert "steps/s" in result.stdout and "gpu-check.json" in result.stdout
