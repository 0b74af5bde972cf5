"""``python -m tfodkit doctor``: is this a working TFOD stack?

Prints the versions of every piece, the GPUs the NVIDIA driver sees and the GPUs
TensorFlow sees (a mismatch fails: training would run on the CPU), the CUDA and
cuDNN TensorFlow was built for, then builds one
model of each meta-architecture the zoo uses from the toolkit's base configs
and runs a forward pass. Exit 0 when all is well, 1 with a one-line reason
naming the missing piece otherwise.
"""

from __future__ import annotations

import importlib.metadata as md
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from tfodkit import gpu
from tfodkit.errors import FAILURE, ArgumentParser, cli
from tfodkit.paths import BASE_CONFIGS
from tfodkit.zoo import BASE_MODELS

# (label, distribution name) printed in this order.
PACKAGES = [
    ("TensorFlow", "tensorflow"),
    ("tf-keras", "tf-keras"),
    ("protobuf", "protobuf"),
    ("TFOD (object_detection)", "tf-object-detection-api"),
    ("tf-models-official", "tf-models-official"),
    ("tf-slim", "tf-slim"),
    ("numpy", "numpy"),
    ("opencv-python-headless", "opencv-python-headless"),
    ("pycocotools", "pycocotools"),
    ("TensorBoard", "tensorboard"),
    ("tf2onnx", "tf2onnx"),
    ("ONNX", "onnx"),
    ("ONNX Runtime", "onnxruntime"),
    ("Optuna", "optuna"),
]

# One model of each meta-architecture the zoo uses: the zoo's models that have a base config.
MODELS = BASE_MODELS


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def aws_cli_version() -> str | None:
    """``aws --version`` of the CLI next to this Python, else the one on PATH."""
    local = Path(sys.executable).with_name("aws")
    exe = str(local) if local.exists() else shutil.which("aws")
    if not exe:
        return None
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (out.stdout or out.stderr).strip()
    return text.split()[0].split("/", 1)[-1] if out.returncode == 0 and text else None


def forward_pass(config_path: Path, num_classes: int = 3) -> tuple[int, float]:
    """Build the model a pipeline config describes and run one forward pass.

    Returns (number of detections tensor rows, seconds). Raises on any failure.
    """
    import tfodkit.compat  # noqa: F401

    import tensorflow as tf
    from object_detection.builders import model_builder
    from object_detection.utils import config_util

    configs = config_util.get_configs_from_pipeline_file(str(config_path))
    model_config = configs["model"]
    getattr(model_config, model_config.WhichOneof("model")).num_classes = num_classes
    start = time.perf_counter()
    model = model_builder.build(model_config=model_config, is_training=False)
    image = tf.random.uniform([1, 300, 400, 3], maxval=255.0)
    prepped, shapes = model.preprocess(image)
    detections = model.postprocess(model.predict(prepped, shapes), shapes)
    boxes = detections["detection_boxes"]
    if boxes.shape.rank != 3 or boxes.shape[-1] != 4:
        raise RuntimeError(f"unexpected detection_boxes shape {boxes.shape}")
    return int(boxes.shape[1]), time.perf_counter() - start


@cli
def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m tfodkit doctor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--skip_models", action="store_true", help="only print versions, build no model")
    args = parser.parse_args(argv)

    problems: list[str] = []
    print(f"{'Python':<26} {platform.python_version()} ({sys.executable})")
    if sys.version_info[:2] != (3, 11):
        problems.append("Python 3.11 is required (run make install with python3.11)")
    for label, dist in PACKAGES:
        version = _version(dist)
        print(f"{label:<26} {version or 'MISSING'}")
        if version is None:
            problems.append(f"{dist} is not installed (run make install)")
    if _version("opencv-python"):
        problems.append("opencv-python is installed beside opencv-python-headless (pip uninstall opencv-python)")

    aws = aws_cli_version()
    print(f"{'aws CLI':<26} {aws or 'MISSING'}")
    if aws is None:
        problems.append("the aws CLI is not installed (run make install)")

    try:
        import tfodkit.compat  # noqa: F401

        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        cuda, cudnn = gpu.build_info()
        driver = gpu.driver_gpus()
        print(f"{'Keras used by tf.keras':<26} {tf.keras.__name__.split('.')[0]}")
        print(f"{'CUDA (TensorFlow build)':<26} {cuda or 'none (CPU build)'}{', cuDNN ' + cudnn if cudnn else ''}"
              f"{'' if gpu.cuda_wheels_installed() else ' (CUDA wheels not installed: CPU only)'}")
        print(f"{'GPUs seen by the driver':<26} {driver.count}{' (' + driver.evidence + ')' if driver.count else ''}")
        print(f"{'GPUs seen by TensorFlow':<26} {len(gpus)}{': ' + ', '.join(g.name for g in gpus) if gpus else ''}")
        found = gpu.mismatch(driver, len(gpus))
        if found and gpu.allow_cpu():
            print(f"warning: {found[0]}: accepted because TFOD_ALLOW_CPU=1")
        elif found:
            problems.append("{} ({})".format(*found))
        import object_detection.model_lib_v2  # noqa: F401  (the training code path imports)
        import tensorboard.default  # noqa: F401  (what `tensorboard` loads at start-up)
    except Exception as exc:  # noqa: BLE001 - report any import failure as the missing piece
        problems.append(f"TensorFlow/TFOD import failed: {type(exc).__name__}: {exc}")
        args.skip_models = True

    if not args.skip_models:
        for arch, config in MODELS:
            try:
                rows, seconds = forward_pass(BASE_CONFIGS / config)
                print(f"{'model ' + arch:<26} ok: built {config} and ran a forward pass "
                      f"({rows} detections, {seconds:.1f} s)")
            except Exception as exc:  # noqa: BLE001
                print(f"{'model ' + arch:<26} FAILED")
                problems.append(f"{arch} model from {config} failed: {type(exc).__name__}: {exc}".splitlines()[0])

    if problems:
        for p in problems:
            print(f"error: {p}", file=sys.stderr)
        return FAILURE
    print("doctor: all checks passed")
    return 0
