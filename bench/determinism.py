#!/usr/bin/env python3
"""bench/determinism: what a seed and deterministic training cost, side by side in one run.

    .venv/bin/python bench/determinism.py [--steps 150] [--batch_size 8] [--rounds 2]
        [--out bench/results/determinism.json]

Trains SSD MobileNet V2 FPNLite 320x320 from scratch with tfodkit.train (the
demo's model and batch) in three modes, alternating their order round by
round: no seed; "seed" only; "seed" and "deterministic". Prints the best
steady-state steps/s of each mode (tfodkit.train leaves its first, tracing,
step out), their ratios to the unseeded runs, and whether the deterministic
runs ended with the same loss bit for bit (they should) and the seeded ones
did not have to.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

from bench.common import ROOT, SSD, make_records, run
from tfodkit.errors import ArgumentParser

MODES = {"unseeded": {}, "seed": {"seed": 1}, "deterministic": {"seed": 1, "deterministic": True}}


def main() -> int:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2, help="runs of each mode, in alternating order (>= 1)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "determinism.json")
    parser.add_argument("--work_dir", type=Path, default=None, help="default: a temporary directory")
    args = parser.parse_args()
    if args.rounds < 1 or args.steps < 10:
        parser.error("--rounds must be at least 1 and --steps at least 10")
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="bench-determinism-"))
    work.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    print(f"bench/determinism: data in {work}", flush=True)
    records = make_records(work, args.images)

    results: dict[str, list[dict]] = {mode: [] for mode in MODES}
    order = list(MODES)
    for r in range(args.rounds):
        for mode in order[r % len(order):] + order[:r % len(order)]:
            name = f"{mode}-{r + 1}"
            hparams = work / f"{name}.json"
            hparams.write_text(json.dumps({"batch_size": args.batch_size, "train_steps": args.steps,
                                           "checkpoint_every_n": args.steps, **MODES[mode]}))
            out = work / name
            run([py, str(ROOT / "readconfig.py"), "--pretrained_model", SSD, "--records_dir", str(records),
                 "--output_dir", str(out), "--hparams", str(hparams), "--from_scratch"], work / f"{name}-config.log")
            run([py, "-m", "tfodkit.train", "--pipeline_config", str(out / "pipeline.config"), "--model_dir",
                 str(out)], work / f"{name}-train.log")
            summary = json.loads((out / "train.json").read_text())
            results[mode].append({"steps_per_sec": summary["steps_per_sec"], "final_loss": summary["final_loss"]})
            print(f"bench/determinism: round {r + 1} {mode:13s} {summary['steps_per_sec']:.3f} steps/s, "
                  f"final loss {summary['final_loss']!r}", flush=True)

    best = {mode: max(run["steps_per_sec"] for run in runs) for mode, runs in results.items()}
    report = {
        "steps": args.steps, "batch_size": args.batch_size, "rounds": args.rounds, "runs": results,
        "best_steps_per_sec": best,
        "ratio_seed_to_unseeded": round(best["seed"] / best["unseeded"], 3),
        "ratio_deterministic_to_unseeded": round(best["deterministic"] / best["unseeded"], 3),
        "deterministic_losses_identical": len({run["final_loss"] for run in results["deterministic"]}) == 1,
        "seed_losses_identical": len({run["final_loss"] for run in results["seed"]}) == 1,
        "cpu_count": os.cpu_count(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"bench/determinism: best steps/s: unseeded {best['unseeded']:.3f}, seed {best['seed']:.3f}, "
          f"deterministic {best['deterministic']:.3f}")
    print(f"bench/determinism: ratio seed/unseeded {report['ratio_seed_to_unseeded']}, "
          f"deterministic/unseeded {report['ratio_deterministic_to_unseeded']}")
    if args.rounds > 1:
        print(f"bench/determinism: deterministic runs identical: {report['deterministic_losses_identical']}; "
              f"seed-only runs identical: {report['seed_losses_identical']}")
    print(f"bench/determinism: wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
