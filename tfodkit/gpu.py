"""Never train on the CPU by accident: NVIDIA GPUs the driver sees versus GPUs TensorFlow sees.

A GPU image whose CUDA libraries do not match its TensorFlow starts fine, logs
"Cannot dlopen some GPU libraries ... Skipping registering GPU devices" among
hundreds of lines, and trains on the CPU at GPU prices. The machine's side is
cheap to ask: ``nvidia-smi -L`` lists the GPUs, ``/dev/nvidia0`` exists when
the driver exposes one to this container, and the NVIDIA container runtime
sets ``NVIDIA_VISIBLE_DEVICES``. When any of these says "GPU" and TensorFlow
lists none, training stops with one line that says why; ``TFOD_ALLOW_CPU=1``
lets it go on.
"""

from __future__ import annotations

import glob
import importlib.metadata as md
import os
import shutil
import subprocess
from dataclasses import dataclass

from tfodkit.errors import FAILURE, UserError

# NVIDIA_VISIBLE_DEVICES values that expose no GPU (the NVIDIA container runtime's own words).
NO_DEVICES = {"", "void", "none"}


@dataclass(frozen=True)
class DriverGpus:
    """What the machine says about NVIDIA GPUs, whatever TensorFlow thinks."""

    count: int  # GPUs listed by nvidia-smi, else /dev/nvidiaN devices, else NVIDIA_VISIBLE_DEVICES entries
    evidence: str  # where the count comes from, for the message ("" when there is no sign of a GPU)


def driver_gpus(env: dict[str, str] | None = None, timeout: float = 15.0) -> DriverGpus:
    env = os.environ if env is None else env
    smi = shutil.which("nvidia-smi", path=env.get("PATH"))
    if smi:
        try:
            out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=timeout)
            listed = [line for line in out.stdout.splitlines() if line.startswith("GPU ")]
            if listed:
                return DriverGpus(len(listed), "nvidia-smi -L")
        except (OSError, subprocess.TimeoutExpired):
            pass  # a hung or broken nvidia-smi is no evidence either way; look at the devices
    devices = [d for d in glob.glob("/dev/nvidia[0-9]*") if d[len("/dev/nvidia"):].isdigit()]
    if devices:
        return DriverGpus(len(devices), "/dev/nvidia*")
    visible = env.get("NVIDIA_VISIBLE_DEVICES", "").strip()
    if visible.lower() not in NO_DEVICES:
        count = 1 if visible.lower() == "all" else len([v for v in visible.split(",") if v.strip()])
        return DriverGpus(count, f"NVIDIA_VISIBLE_DEVICES={visible}")
    return DriverGpus(0, "")


def build_info() -> tuple[str | None, str | None]:
    """(CUDA, cuDNN) versions the installed TensorFlow was built for; (None, None) for a CPU-only build."""
    import tfodkit.compat  # noqa: F401  (before TensorFlow, always)

    import tensorflow as tf

    info = tf.sysconfig.get_build_info()
    return info.get("cuda_version") or None, info.get("cudnn_version") or None


def cuda_wheels_installed() -> bool:
    """NVIDIA's cuDNN pip wheel is what ``tensorflow[and-cuda]`` (requirements/lock-gpu.txt) adds."""
    try:
        md.version("nvidia-cudnn-cu12")
        return True
    except md.PackageNotFoundError:
        return False


def mismatch(driver: DriverGpus, tf_gpus: int) -> tuple[str, str] | None:
    """(what is wrong, how to fix it) when the machine has GPUs that TensorFlow cannot see, else None."""
    if driver.count == 0 or tf_gpus > 0:
        return None
    cuda, cudnn = build_info()
    built = f"TensorFlow is built for CUDA {cuda}, cuDNN {cudnn}" if cuda else "TensorFlow is a CPU-only build"
    if not cuda_wheels_installed():
        fix = ("install TensorFlow's CUDA wheels: the image's gpu variant (docker build --build-arg TF_VARIANT=gpu), "
               "or pip install -r requirements/lock-gpu.txt")
    else:
        fix = (f"the CUDA wheels are installed: check that the driver supports CUDA {cuda or '12'} (nvidia-smi) "
               "and that the container runs with --gpus all or the ECS GPU reservation")
    return (f"{driver.count} NVIDIA GPU(s) on this machine ({driver.evidence}) but TensorFlow sees none; {built}",
            f"{fix}; TFOD_ALLOW_CPU=1 trains on the CPU anyway")


def allow_cpu(env: dict[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    return env.get("TFOD_ALLOW_CPU", "0").strip().lower() in {"1", "true", "yes"}


def require_tensorflow_gpus(tf_gpus: int) -> None:
    """Stop (UserError, exit 1) when the machine has GPUs that TensorFlow cannot use, unless TFOD_ALLOW_CPU=1."""
    found = mismatch(driver_gpus(), tf_gpus)
    if found is None:
        return
    if allow_cpu():
        print(f"warning: {found[0]}: training on the CPU because TFOD_ALLOW_CPU=1", flush=True)
        return
    raise UserError(*found, status=FAILURE)
