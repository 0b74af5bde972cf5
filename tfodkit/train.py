"""Train a TFOD model for exactly the configured steps, resumably, on CPU or GPUs.

    python -m tfodkit.train --pipeline_config TRAINING_DIR/pipeline.config --model_dir TRAINING_DIR
        [--checkpoint_every_n N] [--num_gpus N] [--cross_device_ops nccl|hierarchical_copy|reduction_to_one_device]
        [--cpu_replicas N] [--seed N] [--deterministic]

What it does that TFOD's ``model_main_tf2.py`` does not (docs/tfod-on-current-tf.md):
runs exactly ``train_config.num_steps`` (TFOD runs whole chunks of 100 steps:
``--num_train_steps=20`` trains 100), always saves a checkpoint at the end
(TFOD's ``train_loop`` saves at step 0 and every ``checkpoint_every_n``, default
1000, and never at the end: a run shorter than that leaves no trained weights),
resumes from the latest checkpoint, saves and exits within one short chunk of
steps on SIGTERM/SIGINT, prints a progress line every few seconds, stops on a
NaN loss, and checks the batch size against the replicas before building the
model. The training step itself is TFOD's
``eager_train_step``, the input pipeline TFOD's ``inputs.train_input``.

Exit status: 0 trained (or already trained), 1 failure, 2 bad input,
143 stopped by SIGTERM (checkpoint saved), 130 stopped by SIGINT.
"""

from __future__ import annotations

import tfodkit.compat  # noqa: F401

import contextlib
import json
import math
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from tfodkit.errors import FAILURE, SIGNAL_STATUS, UserError, cli, on_stop_signals, training_dir_parser
from tfodkit.fsutil import write_json_atomic
from tfodkit.gpu import require_tensorflow_gpus
from tfodkit.progress import speed_text
from tfodkit.settings import CHECKPOINT_EVERY_N, check_batch_size

CROSS_DEVICE_OPS = ("nccl", "hierarchical_copy", "reduction_to_one_device")
# A chunk of steps also ends at every multiple of this, where model_main_tf2 ends its chunks: both tools'
# TensorBoard then has points (wall times, losses) at the same steps, for comparing runs (bench/train.py).
ALIGN_STEPS = 100


def make_strategy(num_gpus: int | None = None, cross_device_ops: str = "nccl", cpu_replicas: int = 0):
    """The distribution strategy for the visible hardware.

    GPUs (all visible, or the first ``num_gpus``): MirroredStrategy when more
    than one, with NCCL all-reduce by default or hierarchical copy (the
    fallback when NCCL fails on a machine). No GPU: the default strategy, or
    with ``cpu_replicas`` > 1 a MirroredStrategy over that many logical CPU
    devices: the same multi-replica code path, testable without a GPU.
    """
    import tensorflow as tf

    if cross_device_ops not in CROSS_DEVICE_OPS:
        raise UserError(f"unknown cross_device_ops {cross_device_ops!r}", f"use one of {', '.join(CROSS_DEVICE_OPS)}")
    gpus = tf.config.list_physical_devices("GPU")
    require_tensorflow_gpus(len(gpus))  # GPUs on the machine but none in TensorFlow: stop, unless TFOD_ALLOW_CPU=1
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised in this process
            pass
    if num_gpus is not None:
        if num_gpus > len(gpus):
            raise UserError(f"{num_gpus} GPUs requested but {len(gpus)} visible",
                            "lower TFOD_NUM_GPUS or check nvidia-smi / the ECS task's GPU reservation")
        gpus = gpus[:num_gpus]
    if len(gpus) > 1:
        ops = {"nccl": tf.distribute.NcclAllReduce, "hierarchical_copy": tf.distribute.HierarchicalCopyAllReduce,
               "reduction_to_one_device": tf.distribute.ReductionToOneDevice}[cross_device_ops]()
        names = [g.name.replace("/physical_device:", "/") for g in gpus]
        return tf.distribute.MirroredStrategy(devices=names, cross_device_ops=ops)
    if len(gpus) == 1:
        return tf.distribute.OneDeviceStrategy("/gpu:0")
    if cpu_replicas and cpu_replicas > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        try:
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * cpu_replicas)
        except RuntimeError as exc:
            raise UserError(f"cannot split the CPU into {cpu_replicas} devices: {exc}",
                            "set cpu_replicas before TensorFlow runs anything") from None
        devices = [d.name for d in tf.config.list_logical_devices("CPU")][:cpu_replicas]
        # NCCL needs GPUs: logical CPU devices reduce through one device.
        return tf.distribute.MirroredStrategy(devices=devices, cross_device_ops=tf.distribute.ReductionToOneDevice())
    return tf.distribute.get_strategy()


class _StopFlag:
    """SIGTERM/SIGINT set a flag; the loop saves a checkpoint at the next chunk boundary."""

    def __init__(self):
        self.signum: int | None = None
        self._restore = None

    def __enter__(self):
        self._restore = on_stop_signals(self._handle)
        return self

    def _handle(self, signum, _frame):
        if self.signum is not None:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt  # a second Ctrl-C: stop now
            return  # train.sh's SIGTERM after the terminal's Ctrl-C: already stopping
        self.signum = signum
        print(f"train: {signal.Signals(signum).name} received: saving a checkpoint after this chunk of steps",
              flush=True)

    def __exit__(self, *exc):
        self._restore()


def seed_everything(seed: int | None, deterministic: bool = False) -> None:
    """Seed Python, NumPy and TensorFlow; with ``deterministic``, also TensorFlow's op determinism.

    A seed fixes the initial weights, the shuffling and the augmentation draws.
    It does not make a run repeatable by itself: TensorFlow's parallel
    scheduling still reorders floating-point work. ``deterministic`` adds op
    determinism and one inter-op thread, which made short CPU runs bit-identical in
    the tests (longer ones drift apart after about 100 steps: see the README), at a cost in
    speed. A resumed run re-seeds at its first step, so it is not
    bit-identical to an uninterrupted one. Safe to call again in the same
    process (the NCCL retry does).
    """
    import tensorflow as tf

    if deterministic:
        if seed is None:
            raise UserError("deterministic training needs a seed", 'add e.g. "seed": 0 to the hparams')
        # Op determinism alone still left CPU runs apart after ~10 steps; one inter-op thread
        # (intra-op threads kept) made them bit-identical. Must precede TensorFlow's start.
        try:
            if tf.config.threading.get_inter_op_parallelism_threads() != 1:
                tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError as exc:
            raise UserError(f"cannot make TensorFlow deterministic: {exc}",
                            "call seed_everything before TensorFlow runs anything") from None
        tf.config.experimental.enable_op_determinism()
    if seed is not None:
        tf.keras.utils.set_random_seed(seed)


@contextlib.contextmanager
def tfod_maps_with_dataset_map(enabled: bool = True):
    """Make TFOD's input pipeline map with ``Dataset.map`` instead of ``map_with_legacy_function``.

    TFOD's dataset builder prefers the legacy method when a dataset has it
    (every ``tf.compat.v1`` dataset does). A legacy function graph does not
    inherit TensorFlow's global seed, so the augmentation ops inside it stay
    unseeded whatever ``tf.random.set_seed`` says, and op determinism refuses
    to run them ("Random ops require a seed to be set"). Without the method
    TFOD takes its own ``dataset.map(fn, AUTOTUNE)`` branch, whose graph does
    inherit the seed.
    """
    from tensorflow.python.data.ops import dataset_ops

    legacy = dataset_ops.DatasetV1.__dict__.get("map_with_legacy_function")
    if not enabled or legacy is None:
        yield
        return
    delattr(dataset_ops.DatasetV1, "map_with_legacy_function")
    try:
        yield
    finally:
        dataset_ops.DatasetV1.map_with_legacy_function = legacy


def train(pipeline_config: Path, model_dir: Path, checkpoint_every_n: int = CHECKPOINT_EVERY_N,
          num_gpus: int | None = None, cross_device_ops: str = "nccl", cpu_replicas: int = 0, max_to_keep: int = 5,
          progress_seconds: float = 5.0, chunk_seconds: float = 3.0, seed: int | None = None,
          deterministic: bool = False) -> dict:
    """Train to ``train_config.num_steps``; returns a summary (also written to model_dir/train.json)."""
    import tensorflow as tf
    from object_detection import inputs, model_lib_v2
    from object_detection.builders import model_builder, optimizer_builder
    from object_detection.utils import config_util

    if not pipeline_config.is_file():
        raise UserError(f"{pipeline_config} not found", "run readconfig.py first")
    seed_everything(seed, deterministic)
    strategy = make_strategy(num_gpus, cross_device_ops, cpu_replicas)
    configs = config_util.get_configs_from_pipeline_file(str(pipeline_config))
    model_config, train_config = configs["model"], configs["train_config"]
    train_input_config = configs["train_input_config"]
    total_steps = train_config.num_steps
    if total_steps <= 0:
        raise UserError(f"{pipeline_config}: train_config.num_steps is {total_steps}", 'set "train_steps" in hparams')
    replicas = strategy.num_replicas_in_sync
    check_batch_size(train_config.batch_size, replicas)
    model_dir.mkdir(parents=True, exist_ok=True)
    clip = train_config.gradient_clipping_by_norm if train_config.gradient_clipping_by_norm > 0 else None
    config_util.update_fine_tune_checkpoint_type(train_config)

    with strategy.scope():
        model = model_builder.build(model_config=model_config, is_training=True, add_summaries=False)

        def dataset_fn(input_context):
            with tfod_maps_with_dataset_map(seed is not None):
                return inputs.train_input(train_config=train_config, train_input_config=train_input_config,
                                          model_config=model_config, model=model,
                                          input_context=input_context).repeat()

        dataset = strategy.distribute_datasets_from_function(dataset_fn)
        global_step = tf.Variable(0, trainable=False, dtype=tf.int64, name="global_step",
                                  aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        optimizer, (learning_rate,) = optimizer_builder.build(train_config.optimizer, global_step=global_step)
        if train_config.optimizer.use_moving_average:
            model_lib_v2._ensure_model_is_built(model, dataset, train_config.unpad_groundtruth_tensors)
            optimizer.shadow_copy(model)
        lr_fn = learning_rate if callable(learning_rate) else (lambda: learning_rate)

    writer = tf.summary.create_file_writer(str(model_dir / "train"))
    with writer.as_default(), strategy.scope():
        ckpt = tf.train.Checkpoint(step=global_step, model=model, optimizer=optimizer)
        manager = tf.train.CheckpointManager(ckpt, str(model_dir), max_to_keep=max_to_keep)
        latest = tf.train.latest_checkpoint(str(model_dir))
        iterator = iter(dataset)
        if latest:
            ckpt.restore(latest)
            start = int(global_step.numpy())
            print(f"train: resuming from {Path(latest).name} at step {start}/{total_steps}", flush=True)
        else:
            if train_config.fine_tune_checkpoint:
                print(f"train: fine-tuning from {train_config.fine_tune_checkpoint} "
                      f"({train_config.fine_tune_checkpoint_type})", flush=True)
                model_lib_v2.load_fine_tune_checkpoint(
                    model, train_config.fine_tune_checkpoint, train_config.fine_tune_checkpoint_type,
                    train_config.fine_tune_checkpoint_version,
                    train_config.run_fine_tune_checkpoint_dummy_computation, dataset,
                    train_config.unpad_groundtruth_tensors)
            else:
                print("train: no fine_tune_checkpoint: training from random weights", flush=True)
            start = 0
        if start >= total_steps:
            print(f"train: already trained to step {start}/{total_steps}: nothing to do", flush=True)
            return _summary(model_dir, "already_trained", start, total_steps, 0, 0.0, None)

        def step_fn(features, labels):
            losses = model_lib_v2.eager_train_step(
                model, features, labels, train_config.unpad_groundtruth_tensors, optimizer,
                training_step=global_step, add_regularization_loss=train_config.add_regularization_loss,
                clip_gradients_value=clip, num_replicas=replicas)
            global_step.assign_add(1)
            return losses

        def sample_and_train(it):
            features, labels = next(it)
            per_replica = strategy.run(step_fn, args=(features, labels))
            return model_lib_v2.reduce_dict(strategy, per_replica, tf.distribute.ReduceOp.SUM)

        @tf.function
        def train_chunk(it, n):
            for _ in tf.range(n - 1):
                with tf.name_scope(""):
                    sample_and_train(it)
            return sample_and_train(it)

        seeded = "" if seed is None else f", seed {seed}" + (" (deterministic ops)" if deterministic else "")
        print(f"train: {total_steps - start} steps to go, batch {train_config.batch_size} over {replicas} "
              f"replica(s), checkpoint every {checkpoint_every_n} steps{seeded}", flush=True)
        step, last_ckpt, chunk = start, start, 1
        t_start = t_print = time.monotonic()
        rate, loss = 0.0, None
        trained_seconds, trained_steps = 0.0, 0
        with _StopFlag() as stop:
            while step < total_steps and stop.signum is None:
                n = max(1, min(chunk, total_steps - step, checkpoint_every_n - (step - last_ckpt),
                               ALIGN_STEPS - step % ALIGN_STEPS))
                t0 = time.monotonic()
                losses = train_chunk(iterator, tf.constant(n, dtype=tf.int32))
                loss = float(losses["Loss/total_loss"])  # the one host sync of a chunk (NaN check, progress)
                elapsed = time.monotonic() - t0
                step += n  # global_step counts one a step (ONLY_FIRST_REPLICA): no need to read it back
                if not math.isfinite(loss):
                    raise UserError(f"the loss became {loss} at step {step}", "lower learning_rate or check the "
                                    "records with python -m tfodkit.dataset check", status=FAILURE)
                if trained_steps:  # the first chunk includes tracing: keep it out of the rate
                    trained_seconds += elapsed
                trained_steps += n
                rate = (trained_steps - 1) / trained_seconds if trained_seconds else n / elapsed
                chunk = max(1, min(100, int(chunk_seconds * rate)))
                lr = lr_fn()
                tf.summary.scalar("steps_per_sec", rate, step=step)
                tf.summary.scalar("learning_rate", lr, step=step)
                for key, value in losses.items():
                    tf.summary.scalar(key, value, step=step)
                if step - last_ckpt >= checkpoint_every_n or step >= total_steps:
                    manager.save(checkpoint_number=step)
                    last_ckpt = step
                now = time.monotonic()
                if now - t_print >= progress_seconds or step >= total_steps:
                    speed = speed_text(trained_steps - 1, trained_seconds, total_steps - step)
                    print(f"train: step {step}/{total_steps} ({100 * step / total_steps:.1f}%)  loss {loss:.4f}  "
                          f"lr {float(lr):.5g}  {speed}", flush=True)
                    t_print = now
            writer.flush()
            if stop.signum is not None:
                if step > start or latest:
                    manager.save(checkpoint_number=step)
                    print(f"train: stopped by {signal.Signals(stop.signum).name} at step {step}/{total_steps}; "
                          f"checkpoint saved, run again to resume", flush=True)
                summary = _summary(model_dir, "interrupted", step, total_steps, trained_steps,
                                   time.monotonic() - t_start, loss, rate)
                summary["exit_status"] = SIGNAL_STATUS[stop.signum]
                return summary
    print(f"train: done: {step} steps, final loss {loss:.4f}, {rate:.2f} steps/s, "
          f"checkpoint {Path(manager.latest_checkpoint).name}", flush=True)
    return _summary(model_dir, "trained", step, total_steps, trained_steps, time.monotonic() - t_start, loss, rate)


def _summary(model_dir: Path, status: str, step: int, total: int, trained: int, seconds: float,
             loss: float | None, rate: float = 0.0) -> dict:
    summary = {"status": status, "step": step, "num_steps": total, "steps_this_run": trained,
               "seconds": round(seconds, 2), "steps_per_sec": round(rate, 4), "final_loss": loss, "exit_status": 0}
    write_json_atomic(model_dir / "train.json", summary)
    return summary


def toolkit_setting(model_dir: Path, key: str, default):
    """``key`` of the run settings readconfig wrote to MODEL_DIR/toolkit.json, else ``default``."""
    path = model_dir / "toolkit.json"
    if path.is_file():
        return json.loads(path.read_text()).get(key, default)
    return default


@cli
def main(argv: Sequence[str] | None = None) -> int:
    parser = training_dir_parser("python -m tfodkit.train", __doc__, "checkpoints and TensorBoard events")
    parser.add_argument("--checkpoint_every_n", type=int, default=None,
                        help="default: checkpoint_every_n of MODEL_DIR/toolkit.json (readconfig), else "
                             f"{CHECKPOINT_EVERY_N}")
    parser.add_argument("--num_gpus", type=int, default=None, help="default: every visible GPU")
    parser.add_argument("--cross_device_ops", choices=CROSS_DEVICE_OPS, default="nccl",
                        help="all-reduce across GPUs (default nccl; hierarchical_copy when NCCL fails)")
    parser.add_argument("--cpu_replicas", type=int, default=0,
                        help="with no GPU: mirror over this many logical CPU devices (tests the multi-GPU path)")
    parser.add_argument("--max_to_keep", type=int, default=5, help="checkpoints kept (default 5)")
    parser.add_argument("--seed", type=int, default=None, help="default: seed of MODEL_DIR/toolkit.json, else none")
    parser.add_argument("--deterministic", action="store_true", default=None,
                        help="TensorFlow op determinism (needs a seed; default: deterministic of toolkit.json)")
    args = parser.parse_args(argv)
    every = args.checkpoint_every_n if args.checkpoint_every_n is not None else \
        toolkit_setting(args.model_dir, "checkpoint_every_n", CHECKPOINT_EVERY_N)
    if every < 1:
        parser.error("--checkpoint_every_n must be at least 1")
    seed = args.seed if args.seed is not None else toolkit_setting(args.model_dir, "seed", None)
    if seed is not None and seed < 0:
        parser.error("--seed must be 0 or more")
    deterministic = args.deterministic or toolkit_setting(args.model_dir, "deterministic", False)
    run = dict(max_to_keep=args.max_to_keep, seed=seed, deterministic=deterministic)
    try:
        summary = train(args.pipeline_config, args.model_dir, every, args.num_gpus, args.cross_device_ops,
                        args.cpu_replicas, **run)
    except Exception as exc:
        if args.cross_device_ops == "nccl" and "nccl" in str(exc).lower():
            print(f"train: NCCL all-reduce failed ({str(exc).splitlines()[0]}); retrying with hierarchical copy",
                  file=sys.stderr, flush=True)
            summary = train(args.pipeline_config, args.model_dir, every, args.num_gpus, "hierarchical_copy",
                            args.cpu_replicas, **run)
        else:
            raise
    return summary["exit_status"]


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    tfodkit.compat.exit_now(main())  # skips TensorFlow's slow teardown
