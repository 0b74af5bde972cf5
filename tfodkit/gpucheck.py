"""``python -m tfodkit.gpucheck``: does this machine really train on its GPUs, and how fast?

    python -m tfodkit.gpucheck [--out DIR] [--steps 200] [--batch_size 32] [--images 64] [--skip_models]

For whoever has a GPU (``make gpu-check`` runs it in the image or a GPU venv).
It runs ``doctor``, makes a synthetic shapes dataset, then trains SSD MobileNet
V2 FPNLite 320x320 from scratch for ``--steps`` steps at ``--batch_size``: on
one GPU, then on every GPU (MirroredStrategy) when there is more than one. It
prints steps/s, images/s, peak GPU memory and the GPU count TensorFlow used,
and writes ``DIR/gpu-check.json``. Exit 1 when TensorFlow sees no GPU, unless
``TFOD_ALLOW_CPU=1``: then the same runs go on the CPU (the dry run that keeps
this script tested on machines without a GPU).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from tfodkit.errors import FAILURE, ArgumentParser, UserError, cli
from tfodkit.fsutil import write_json_atomic
from tfodkit.paths import ROOT
from tfodkit.records import LABEL_MAP
from tfodkit.settings import CHECKPOINT_EVERY_N

MODEL = "SSD MobileNet V2 FPNLite 320x320"


def _run(cmd: list[str], what: str, log: Path, env: dict[str, str] | None = None) -> None:
    """Run a step with its output in ``log``; a failure names the step and shows the log's tail."""
    print(f"gpu-check: {what} ...", flush=True)
    with log.open("w") as out:
        status = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env).returncode
    if status != 0:
        tail = "\n".join(log.read_text().splitlines()[-15:])
        print(tail, file=sys.stderr)
        raise UserError(f"{what} failed with status {status}", f"full log: {log}", status=FAILURE)


def tensorflow_gpus() -> int:
    import tfodkit.compat  # noqa: F401

    import tensorflow as tf

    return len(tf.config.list_physical_devices("GPU"))


def train_one(pipeline_config: Path, model_dir: Path, num_gpus: int | None) -> dict:
    """Train in this process (the ``_train`` subcommand) and add what TensorFlow measured on the GPUs."""
    import tfodkit.compat  # noqa: F401

    import tensorflow as tf

    from tfodkit.train import toolkit_setting, train

    start = time.monotonic()
    every = toolkit_setting(model_dir, "checkpoint_every_n", CHECKPOINT_EVERY_N)  # from check()'s hparams
    summary = train(pipeline_config, model_dir, checkpoint_every_n=every, num_gpus=num_gpus)
    gpus = tf.config.list_physical_devices("GPU")[: num_gpus or None]
    peak = 0
    for i, _ in enumerate(gpus):
        peak = max(peak, tf.config.experimental.get_memory_info(f"GPU:{i}")["peak"])
    return {**summary, "gpus_used": len(gpus), "peak_gpu_memory_mb": round(peak / 2**20, 1),
            "wall_s": round(time.monotonic() - start, 1)}


def check(out: Path, steps: int, batch_size: int, images: int, skip_models: bool) -> dict:
    from tfodkit import gpu, synthetic

    out.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    _run([py, "-m", "tfodkit", "doctor", *(["--skip_models"] if skip_models else [])], "doctor", out / "doctor.log")
    visible = tensorflow_gpus()
    cuda, cudnn = gpu.build_info()
    driver = gpu.driver_gpus()
    print(f"gpu-check: GPUs seen by the driver {driver.count}, by TensorFlow {visible} "
          f"(TensorFlow built for CUDA {cuda}, cuDNN {cudnn})", flush=True)
    if visible == 0 and not gpu.allow_cpu():
        raise UserError("TensorFlow sees no GPU: this machine would train on its CPU",
                        "see doctor's output above and in " + str(out / "doctor.log") +
                        "; TFOD_ALLOW_CPU=1 runs the same check on the CPU", status=FAILURE)

    records = out / "records"
    if not (records / LABEL_MAP).is_file():
        print("gpu-check: synthetic records ...", flush=True)
        with (out / "dataset.log").open("w") as log:
            synthetic.make_records(records, out / "data", images=images, holdout=0, seed=0, out=log)

    layouts = [1] if visible <= 1 else [1, visible]
    runs = []
    for n in layouts:
        name = f"{n}gpu" if visible else "cpu"
        model_dir = out / name
        hparams = out / f"hparams-{name}.json"
        # No checkpoint but the last one (train always saves at the end): saving is not what is measured.
        write_json_atomic(hparams, {"batch_size": batch_size * n, "train_steps": steps,
                                    "checkpoint_every_n": 100_000})
        gpus_flag = ["--num_gpus", str(n)] if visible else []
        _run([py, str(ROOT / "readconfig.py"), "--pretrained_model", MODEL, "--records_dir", str(records),
              "--output_dir", str(model_dir), "--hparams", str(hparams), "--from_scratch", *gpus_flag],
             f"readconfig ({name})", out / f"readconfig-{name}.log")
        result = out / f"train-{name}.json"
        _run([py, "-m", "tfodkit.gpucheck", "_train", str(model_dir / "pipeline.config"), str(model_dir),
              str(n if visible else 0), str(result)], f"train {steps} steps at batch {batch_size * n} ({name})",
             out / f"train-{name}.log", env={**os.environ, "PYTHONUNBUFFERED": "1"})
        r = json.loads(result.read_text())
        runs.append({"name": name, "gpus_used": r["gpus_used"], "batch_size": batch_size * n, "steps": steps,
                     "steps_per_sec": r["steps_per_sec"],
                     "images_per_sec": round(r["steps_per_sec"] * batch_size * n, 2),
                     "peak_gpu_memory_mb": r["peak_gpu_memory_mb"], "wall_s": r["wall_s"]})

    report = {"model": MODEL, "driver_gpus": driver.count, "tensorflow_gpus": visible, "cuda": cuda,
              "cudnn": cudnn, "runs": runs}
    write_json_atomic(out / "gpu-check.json", report)
    print(f"\n{'run':<6} {'GPUs':>4} {'batch':>5} {'steps/s':>8} {'images/s':>9} {'peak GPU MB':>11} {'wall s':>7}")
    for r in runs:
        print(f"{r['name']:<6} {r['gpus_used']:>4} {r['batch_size']:>5} {r['steps_per_sec']:>8.2f} "
              f"{r['images_per_sec']:>9.1f} {r['peak_gpu_memory_mb']:>11.1f} {r['wall_s']:>7.1f}")
    print(f"\ngpu-check: wrote {out / 'gpu-check.json'}")
    return report


@cli
def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_train"]:  # internal: one training run in a fresh process
        config, model_dir, num_gpus, result = argv[1:5]
        summary = train_one(Path(config), Path(model_dir), int(num_gpus) or None)
        write_json_atomic(Path(result), summary)
        return 0
    parser = ArgumentParser(prog="python -m tfodkit.gpucheck", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("gpu-check"), help="work folder (default ./gpu-check)")
    parser.add_argument("--steps", type=int, default=200, help="training steps per run (default 200)")
    parser.add_argument("--batch_size", type=int, default=32, help="batch per GPU (default 32)")
    parser.add_argument("--images", type=int, default=64, help="synthetic images to train on (default 64)")
    parser.add_argument("--skip_models", action="store_true", help="doctor without its four forward passes")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.batch_size < 1 or args.images < 2:
        parser.error("--steps and --batch_size must be at least 1, --images at least 2")
    check(args.out.resolve(), args.steps, args.batch_size, args.images, args.skip_models)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
