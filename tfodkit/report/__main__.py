"""Write the run report of a training dir: TRAINING_DIR/report/index.html and the PNGs beside it.

    python -m tfodkit.report TRAINING_DIR [--score_threshold 0.5] [--iou 0.5]

It reads what the evaluation kept (eval_detections.json, metrics.json) and never runs the
model, except for a training dir from before the evaluation kept its detections: there it runs
the evaluation first (python -m tfodkit.evaluate).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tfodkit.errors import ArgumentParser, UserError, cli
from tfodkit.report import DETECTIONS


def unit_interval(text: str) -> float:
    import argparse

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
    return value


def report(training_dir: Path, score_threshold: float = 0.5, iou: float = 0.5) -> Path:
    if not training_dir.is_dir():
        raise UserError(f"{training_dir} is not a directory", "give the training dir train.sh wrote")
    if not (training_dir / DETECTIONS).is_file():
        pipeline = training_dir / "pipeline.config"
        if not pipeline.is_file():
            raise UserError(
                f"{training_dir} has no {DETECTIONS} and no pipeline.config", "give the training dir train.sh wrote"
            )
        print(
            f"report: {training_dir / DETECTIONS} is missing (a run from before the report): evaluating first",
            flush=True,
        )
        from tfodkit.evaluate import evaluate

        evaluate(pipeline, training_dir, force=True)
    from tfodkit.report.page import build

    return build(training_dir, score_threshold, iou)


@cli
def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m tfodkit.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("training_dir", type=Path)
    parser.add_argument(
        "--score_threshold",
        type=unit_interval,
        default=0.5,
        help="detections scoring at least this count (confusion matrix, pictures; default 0.5)",
    )
    parser.add_argument("--iou", type=unit_interval, default=0.5, help="IoU for a match (default 0.5)")
    args = parser.parse_args(argv)
    index = report(args.training_dir, args.score_threshold, args.iou)
    print(f"report: {index}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
