#!/usr/bin/env python3
"""bench/loop: the toolkit's training loop against variants of itself, side by side in one run.

    .venv/bin/python bench/loop.py [--variant chunk100|mirrored|cli] [--rounds 5] [--steps 200]
        [--batch_size 4] [--out bench/results/loop.json]

Where bench/train finds the toolkit slower or faster than model_main_tf2.py,
this says whether one of the loop's own choices is why. tfodkit.train as it
is ("toolkit") runs against one variant, on the same config and records as
bench/train (SSD MobileNet V2 FPNLite 320x320 from a zoo-style checkpoint of
random weights, batch 4, learning rate 0.01), in rounds that alternate which
side goes first:

  chunk100  chunks of 100 steps, as model_main_tf2's loop (the toolkit's are
            about 3 seconds of steps: one host sync and its summaries each)
  mirrored  MirroredStrategy() over the one device, the strategy
            model_main_tf2.py builds (the toolkit: TensorFlow's default
            strategy on a CPU, OneDeviceStrategy on one GPU)
  cli       the same train() through its command line, python -m
            tfodkit.train, as bench/train runs it (argument parsing,
            toolkit.json, the SIGTERM handler, exit_now)

Both sides' steps/s come from the wall times of their TensorBoard points at
steps 100 and 200, as bench/train's (a). The figure is the median of the
rounds' ratios (toolkit over variant), with their spread.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
from pathlib import Path

from bench.common import ROOT, SSD, bench_env, make_records, run, write_zoo
from bench.train import window_rate
from tfodkit.errors import ArgumentParser

# One training in a fresh interpreter: argv = pipeline.config, model_dir, side.
TRAIN = """
import sys
from pathlib import Path
import tfodkit.compat
import tensorflow as tf
import tfodkit.train as t
side = sys.argv[3]
if side == "mirrored":
    t.make_strategy = lambda *args, **kwargs: tf.distribute.MirroredStrategy()
t.train(Path(sys.argv[1]), Path(sys.argv[2]), chunk_seconds=1e6 if side == "chunk100" else 3.0)
"""
VARIANTS = ("chunk100", "mirrored", "cli")


def main() -> int:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", choices=VARIANTS, default="mirrored")
    parser.add_argument("--rounds", type=int, default=5, help="rounds, alternating which side goes first (>= 1)")
    parser.add_argument("--steps", type=int, default=200, help="steps a run (>= 200: the window is 100-200)")
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "loop.json")
    parser.add_argument("--work_dir", type=Path, default=None, help="default: a temporary directory")
    args = parser.parse_args()
    if args.rounds < 1 or args.steps < 200:
        parser.error("--rounds must be at least 1 and --steps at least 200")
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="bench-loop-"))
    work.mkdir(parents=True, exist_ok=True)
    env = bench_env(TENSORBOARD="0", PYTHONUNBUFFERED="1")
    env.pop("TFOD_VERBOSE", None)  # the users' default logging on both sides, as bench/train
    py = sys.executable
    print(f"bench/loop: data in {work}", flush=True)
    records = make_records(work, args.images)
    write_zoo(work, env)
    hparams = work / "hparams.json"
    hparams.write_text(json.dumps({"batch_size": args.batch_size, "train_steps": args.steps, "learning_rate": 0.01}))
    config = work / "config" / "pipeline.config"
    run([py, str(ROOT / "readconfig.py"), "--pretrained_model", SSD, "--records_dir", str(records), "--output_dir",
         str(config.parent), "--hparams", str(hparams), "--pretrained_dir", str(work / "zoo")],
        work / "readconfig.log", env)

    sides = ["toolkit", args.variant]
    rates: dict[str, list[float]] = {side: [] for side in sides}
    for r in range(1, args.rounds + 1):
        for side in sides if r % 2 else sides[::-1]:
            model_dir = work / f"round{r}" / side
            cmd = ([py, "-m", "tfodkit.train", "--pipeline_config", str(config), "--model_dir", str(model_dir)]
                   if side == "cli" else [py, "-c", TRAIN, str(config), str(model_dir), side])
            run(cmd, work / f"round{r}-{side}.log", env)
            rates[side].append(window_rate(model_dir, (100, 200)))
            print(f"bench/loop: round {r}/{args.rounds} {side:9s} {rates[side][-1]:.3f} steps/s", flush=True)
    ratios = [t / v for t, v in zip(rates["toolkit"], rates[args.variant], strict=True)]
    result = {"variant": args.variant, "steps": args.steps, "batch_size": args.batch_size, "window": [100, 200],
              "rounds": {side: [round(v, 4) for v in vs] for side, vs in rates.items()},
              "round_ratios": [round(x, 3) for x in ratios], "ratio": round(statistics.median(ratios), 3),
              "ratio_min_max": [round(min(ratios), 3), round(max(ratios), 3)]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"bench/loop: toolkit over {args.variant}, median of {args.rounds} alternating rounds: {result['ratio']:.3f} "
          f"(rounds {', '.join(f'{x:.3f}' for x in ratios)})")
    print(f"bench/loop: wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
