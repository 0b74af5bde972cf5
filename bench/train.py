#!/usr/bin/env python3
"""bench/train: the toolkit against TFOD's own scripts, side by side in one run.

    .venv/bin/python bench/train.py [--steps 400] [--window 100:400] [--rounds 8] [--batch_size 4]
        [--learning_rate 0.01] [--out bench/results/train.json]

(a) training speed: steps/s of tfodkit.train against TFOD's model_main_tf2.py
    on the same pipeline.config and records, both over the same steps: the
    --window LO:HI (default 100:400), from the wall times of their TensorBoard
    points at steps LO and HI (model_main_tf2 writes them after each chunk of
    100 steps, the toolkit ends a chunk there too). LO >= 100 keeps both sides'
    tracing out; 100-400 times three times the steps of 100-200 (about 60 s a
    run). Runs vary by ~10%, so --rounds (default 8)
    rounds of training only, after the pipelines of (b) have warmed the caches,
    alternate which side goes first; every run has the same environment (TFOD's
    and TensorFlow's logs at the users' default, quiet: TFOD_VERBOSE=1 alone
    slowed the toolkit's loop by 8% in an A/B here). The figure is the median
    of the rounds' ratios, with their spread (min-max). Target: median >= 1.0.
(b) whole pipeline: wall time of train.sh (train, one-shot evaluation, export)
    against the seed-style sequence model_main_tf2.py train, model_main_tf2.py
    eval with --eval_timeout=300, exporter_main_v2.py, for the same steps.
    Target ratio <= 0.5. The seed ran model_main_tf2 with TFOD's default
    --checkpoint_every_n (1000): for runs shorter than that its evaluation sees
    only the step-0 checkpoint, waits the 300 s for another one, and the
    exporter exports step-0 weights. The JSON records which step each side
    exported. --seed_checkpoint_every_n 100 measures a seed tuned by hand to
    checkpoint the last step instead (no wait: the same work on both sides).

Both sides fine-tune SSD MobileNet V2 FPNLite 320x320 from the same zoo-style
checkpoint (real, of random weights: no download here) on the same synthetic
records; --steps must be a multiple of 100 (model_main_tf2.py runs whole
chunks of 100 steps: docs/tfod-on-current-tf.md).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

from bench.common import ROOT, SSD, bench_env, make_records, run, write_zoo
from tfodkit.errors import ArgumentParser

# TFOD's scripts need the compat layer to run at all on the pinned TensorFlow.
TFOD_SCRIPT = "import sys, runpy, tfodkit.compat; sys.argv = [{name!r}] + sys.argv[1:]; " \
              "runpy.run_module({module!r}, run_name='__main__', alter_sys=True)"


def window_rate(model_dir: Path, window: tuple[int, int]) -> float:
    """Steps/s over the window's steps: from the wall times of the TensorBoard points at its two ends."""
    from tfodkit.report.files import wall_times

    lo, hi = window
    times = wall_times(model_dir / "train")
    missing = [s for s in window if s not in times]
    if missing:
        raise SystemExit(f"error: no TensorBoard point at step(s) {missing} in {model_dir / 'train'} "
                         f"(it has {sorted(times)[:12]}...)")
    return (hi - lo) / (times[hi] - times[lo])


def parse_window(text: str) -> tuple[int, int]:
    try:
        lo, hi = (int(x) for x in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid window {text!r}: use LO:HI, e.g. 100:200") from None
    if lo < 100 or hi <= lo or lo % 100 or hi % 100:
        raise argparse.ArgumentTypeError(f"invalid window {text!r}: LO and HI multiples of 100, 100 <= LO < HI "
                                         "(model_main_tf2 writes its points every 100 steps; step 100 ends its "
                                         "tracing chunk)")
    return lo, hi


def tfod(module: str, *args: str) -> list[str]:
    code = TFOD_SCRIPT.format(name=module.rsplit(".", 1)[-1] + ".py", module=module)
    return [sys.executable, "-c", code, *args]


def tfod_train(config: Path, model_dir: Path, steps: int, *args: str) -> list[str]:
    """TFOD's own training, ``model_main_tf2.py`` on ``config`` for ``steps`` steps."""
    return tfod("object_detection.model_main_tf2", f"--pipeline_config_path={config}", f"--model_dir={model_dir}",
                f"--num_train_steps={steps}", *args, "--alsologtostderr")


def checkpoint_step(prefix: str) -> int:
    """The global step stored in a TFOD training checkpoint."""
    import tfodkit.compat  # noqa: F401  (before TensorFlow)

    import tensorflow as tf

    return int(tf.train.load_checkpoint(prefix).get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE"))


def latest_checkpoint(model_dir: Path) -> str:
    import tfodkit.compat  # noqa: F401  (before TensorFlow)

    import tensorflow as tf

    return tf.train.latest_checkpoint(str(model_dir))


def main() -> int:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--learning_rate", type=float, default=0.01,
                        help="the base learning rate of both sides (default 0.01: the zoo's 0.08 can diverge here)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "train.json")
    parser.add_argument("--work_dir", type=Path, default=None, help="default: a temporary directory")
    parser.add_argument("--seed_checkpoint_every_n", type=int, default=None,
                        help="pass --checkpoint_every_n to model_main_tf2 (default: not passed, as the seed did)")
    parser.add_argument("--rounds", type=int, default=8, help="rounds of the steps/s comparison (a), >= 1")
    parser.add_argument("--window", type=parse_window, default=(100, 400),
                        help="LO:HI, the steps the steps/s of (a) are measured over (default 100:400)")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.steps % 100 or args.steps < 200:
        parser.error("--steps must be a multiple of 100, at least 200 (model_main_tf2 runs chunks of 100)")
    if args.window[1] > args.steps:
        parser.error(f"--window {args.window[0]}:{args.window[1]} ends past --steps {args.steps}")
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="bench-train-"))
    work.mkdir(parents=True, exist_ok=True)
    env = bench_env(TENSORBOARD="0", TFOD_PRETRAINED_DIR=str(work / "zoo"), PYTHON=sys.executable,
                    PYTHONUNBUFFERED="1")
    env.pop("TFOD_FROM_SCRATCH", None)
    env.pop("TFOD_VERBOSE", None)  # one environment for every run: the users' default logging
    py = sys.executable

    print(f"bench/train: data in {work}", flush=True)
    records = make_records(work, args.images)
    write_zoo(work, env)
    hparams = work / "hparams.json"
    # The zoo config's base rate (0.08) from random weights can diverge (one idle run's third round hit a nan
    # loss at step 116, which the toolkit stops on): a speed bench must not depend on that, so both sides
    # train at --learning_rate.
    hparams.write_text(json.dumps({"batch_size": args.batch_size, "train_steps": args.steps,
                                   "learning_rate": args.learning_rate}))

    print(f"bench/train: toolkit: train.sh, {args.steps} steps, batch {args.batch_size} ...", flush=True)
    ours = work / "toolkit"
    ours_seconds = run(["bash", str(ROOT / "train.sh"), str(work / "models"), str(ours / "training"),
                        str(ours / "exported"), str(records), SSD, "", str(hparams)],
                       work / "toolkit.log", env)
    config = ours / "training" / "pipeline.config"  # the same config for TFOD's scripts

    print("bench/train: seed style: model_main_tf2 train, eval (--eval_timeout=300), exporter_main_v2 ...",
          flush=True)
    seed = work / "seed"
    seed.mkdir()
    every = [f"--checkpoint_every_n={args.seed_checkpoint_every_n}"] if args.seed_checkpoint_every_n else []
    train_s = run(tfod_train(config, seed / "training", args.steps, *every), work / "seed-train.log", env)
    eval_s = run(tfod("object_detection.model_main_tf2", f"--pipeline_config_path={config}",
                      f"--model_dir={seed / 'training'}", f"--checkpoint_dir={seed / 'training'}",
                      "--eval_timeout=300", "--alsologtostderr"), work / "seed-eval.log", env)
    export_s = run(tfod("object_detection.exporter_main_v2", "--input_type=image_tensor",
                        f"--pipeline_config_path={config}", f"--trained_checkpoint_dir={seed / 'training'}",
                        f"--output_directory={seed / 'exported'}"), work / "seed-export.log", env)
    seed_seconds = train_s + eval_s + export_s
    # (a) only from runs that do nothing but train: the toolkit's run inside train.sh above is the
    # machine's first TensorFlow start (cold file and page caches; 2.39 steps/s against 2.65-3.05 in
    # the later rounds of one run), so it measures the disk, not the loop.
    rates: dict[str, list[float]] = {"toolkit": [], "model_main_tf2": []}
    for r in range(1, args.rounds + 1):
        print(f"bench/train: (a) round {r}/{args.rounds}: training only, both sides ...", flush=True)
        sides = ["toolkit", "model_main_tf2"] if r % 2 else ["model_main_tf2", "toolkit"]
        for side in sides:
            model_dir, log = work / f"round{r}" / side, work / f"round{r}-{side}.log"
            if side == "toolkit":
                run([py, "-m", "tfodkit.train", "--pipeline_config", str(config), "--model_dir", str(model_dir)],
                    log, env)
            else:
                run(tfod_train(config, model_dir, args.steps), log, env)
            rates[side].append(window_rate(model_dir, args.window))
    ratios = [t / m for t, m in zip(rates["toolkit"], rates["model_main_tf2"], strict=True)]
    ours_step = checkpoint_step(json.loads((ours / "exported" / "export.json").read_text())["checkpoint"])
    seed_step = checkpoint_step(latest_checkpoint(seed / "training"))

    result = {
        "steps": args.steps, "batch_size": args.batch_size, "learning_rate": args.learning_rate,
        "cpu_count": os.cpu_count(),
        "train_steps_per_sec": {"window": list(args.window),
                                "toolkit": round(statistics.median(rates["toolkit"]), 4),
                                "model_main_tf2": round(statistics.median(rates["model_main_tf2"]), 4),
                                "ratio": round(statistics.median(ratios), 3),
                                "ratio_min_max": [round(min(ratios), 3), round(max(ratios), 3)],
                                "target": "median ratio >= 1.0",
                                "rounds": {k: [round(v, 4) for v in vs] for k, vs in rates.items()},
                                "round_ratios": [round(r, 3) for r in ratios]},
        "pipeline_seconds": {"toolkit_train_sh": round(ours_seconds, 1),
                             "seed_style": round(seed_seconds, 1),
                             "seed_style_parts": {"train": round(train_s, 1), "eval": round(eval_s, 1),
                                                  "export": round(export_s, 1)},
                             "ratio": round(ours_seconds / seed_seconds, 3), "target": "<= 0.5",
                             "toolkit_steps": json.loads((ours / "training" / "run.json").read_text())["steps"],
                             "exported_step": {"toolkit": ours_step, "seed_style": seed_step},
                             "seed_checkpoint_every_n": args.seed_checkpoint_every_n or "TFOD default (1000)"},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    a, b = result["train_steps_per_sec"], result["pipeline_seconds"]
    print(f"bench/train: (a) steps/s over steps {args.window[0]}-{args.window[1]}, median of {args.rounds} "
          f"alternating rounds: toolkit {a['toolkit']:.3f} vs model_main_tf2 {a['model_main_tf2']:.3f}; ratio "
          f"{a['ratio']:.3f} (rounds {', '.join(f'{r:.3f}' for r in a['round_ratios'])}; target >= 1.0)")
    print(f"bench/train: (b) pipeline train.sh {b['toolkit_train_sh']:.0f} s vs seed style "
          f"{b['seed_style']:.0f} s (train {train_s:.0f} + eval {eval_s:.0f} + export {export_s:.0f}): "
          f"ratio {b['ratio']:.3f} (target <= 0.5)")
    print(f"bench/train:     exported weights of step {ours_step} (toolkit) and step {seed_step} (seed style)")
    print(f"bench/train: wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
