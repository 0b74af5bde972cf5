"""The GPU guard: a machine with NVIDIA GPUs that TensorFlow cannot see stops before training.

No machine here has a GPU, so the driver's side is played by a real executable
`nvidia-smi` on PATH that lists GPUs the way the real one does; TensorFlow's side
is the real, GPU-less TensorFlow of the venv.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, fake_nvidia_smi, write_records
from tfodkit import gpu

HAS_NVIDIA_DEVICE = any(Path("/dev").glob("nvidia[0-9]*"))
SSD = "SSD MobileNet V2 FPNLite 320x320"


def _env(bin_dir: Path | None = None, **extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NVIDIA_VISIBLE_DEVICES", "TFOD_ALLOW_CPU")}
    if bin_dir:
        env["PATH"] = f"{bin_dir}:{env['PATH']}"
    env.update(extra)
    return env


@pytest.mark.skipif(HAS_NVIDIA_DEVICE, reason="this machine has /dev/nvidia*: the driver's side is real here")
def test_driver_gpus_reads_nvidia_smi_devices_and_the_container_runtime(tmp_path):
    assert gpu.driver_gpus(_env(tmp_path / "empty")) == gpu.DriverGpus(0, "")
    assert gpu.driver_gpus(_env(fake_nvidia_smi(tmp_path / "bin", gpus=4))) == gpu.DriverGpus(4, "nvidia-smi -L")
    assert gpu.driver_gpus(_env(NVIDIA_VISIBLE_DEVICES="0,1")).count == 2
    assert gpu.driver_gpus(_env(NVIDIA_VISIBLE_DEVICES="all")).count == 1
    for none in ("void", "none", ""):
        assert gpu.driver_gpus(_env(NVIDIA_VISIBLE_DEVICES=none)).count == 0


@pytest.mark.skipif(HAS_NVIDIA_DEVICE, reason="this machine has /dev/nvidia*: the driver's side is real here")
def test_a_hung_or_failing_nvidia_smi_does_not_hang_the_check(tmp_path):
    hung = fake_nvidia_smi(tmp_path / "hung", body="#!/bin/sh\nexec sleep 60\n")
    assert gpu.driver_gpus(_env(hung), timeout=1) == gpu.DriverGpus(0, "")
    broken = fake_nvidia_smi(tmp_path / "broken", body="#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n")
    assert gpu.driver_gpus(_env(broken)) == gpu.DriverGpus(0, "")


def test_mismatch_names_the_build_versions_and_the_fix():
    cuda, cudnn = gpu.build_info()
    what, fix = gpu.mismatch(gpu.DriverGpus(2, "nvidia-smi -L"), tf_gpus=0)
    assert what.startswith("2 NVIDIA GPU(s) on this machine (nvidia-smi -L) but TensorFlow sees none")
    assert (f"CUDA {cuda}, cuDNN {cudnn}" in what) if cuda else ("CPU-only" in what)
    assert "TFOD_ALLOW_CPU=1" in fix and ("lock-gpu.txt" in fix or "--gpus all" in fix)
    assert gpu.mismatch(gpu.DriverGpus(2, "nvidia-smi -L"), tf_gpus=2) is None
    assert gpu.mismatch(gpu.DriverGpus(0, ""), tf_gpus=0) is None


def _doctor(env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tfodkit", "doctor", "--skip_models"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow  # over 10 s alone, so make test-fast leaves it out
@pytest.mark.skipif(HAS_NVIDIA_DEVICE, reason="this machine has /dev/nvidia*: the driver's side is real here")
def test_doctor_shows_both_counts_and_fails_on_the_mismatch(tmp_path):
    bin_dir = fake_nvidia_smi(tmp_path / "bin", gpus=2)
    result = _doctor(_env(bin_dir))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "GPUs seen by the driver    2 (nvidia-smi -L)" in result.stdout
    assert "GPUs seen by TensorFlow    0" in result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "2 NVIDIA GPU(s) on this machine" in errors[0], result.stderr
    allowed = _doctor(_env(bin_dir, TFOD_ALLOW_CPU="1"))
    assert allowed.returncode == 0, allowed.stderr
    assert "warning: 2 NVIDIA GPU(s)" in allowed.stdout + allowed.stderr
    plain = _doctor(_env(tmp_path / "nothing"))
    assert plain.returncode == 0 and "GPUs seen by the driver    0" in plain.stdout, plain.stderr


@pytest.mark.skipif(HAS_NVIDIA_DEVICE, reason="this machine has /dev/nvidia*: the driver's side is real here")
def test_train_sh_stops_before_training_when_tensorflow_misses_the_gpus(tmp_path):
    records = write_records(tmp_path / "records")
    hparams = tmp_path / "hparams.json"
    hparams.write_text(json.dumps({"batch_size": 2, "train_steps": 4}))
    env = _env(fake_nvidia_smi(tmp_path / "bin"), TENSORBOARD="0", TFOD_FROM_SCRATCH="1", PYTHON=sys.executable)
    result = subprocess.run(["bash", str(ROOT / "train.sh"), tmp_path / "m", tmp_path / "t", tmp_path / "e",
                             records, SSD, ROOT / "configs" / "training.config", hparams], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 1, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert "1 NVIDIA GPU(s) on this machine (nvidia-smi -L) but TensorFlow sees none" in errors[0]
    assert "TFOD_ALLOW_CPU=1" in errors[0]
    assert "step train: status 1" in result.stdout
    assert not list((tmp_path / "t").glob("ckpt-*")), "nothing may be trained"
    assert not (tmp_path / "e").exists()
