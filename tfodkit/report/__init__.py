"""The run report (python -m tfodkit.report): TRAINING_DIR/report/index.html from what the evaluation kept.

This package's top level imports nothing heavy: tfodkit/evaluate.py takes the kept file's name
from here, and train.sh's rerun decision (tfodkit/run.py) asks ``stale`` without TensorFlow or
matplotlib.
"""

from __future__ import annotations

from pathlib import Path

DETECTIONS = "eval_detections.json"  # the evaluation's kept ground truth and detections (tfodkit/evaluate.py)
MIN_SCORE = 0.01  # detections kept in DETECTIONS: the low-score tail only matters for PR curves
MAX_PER_IMAGE = 100


def detections_doc(
    *, checkpoint: object, step: int, categories: dict, images: list[dict], records: list[object]
) -> dict:
    """DETECTIONS' content, in its one layout (the evaluation writes it; the bench and tests build their own).

    ``categories`` maps class ids to names; each image holds its ground truth and kept detections.
    """
    return {
        "checkpoint": str(checkpoint),
        "step": step,
        "min_score": MIN_SCORE,
        "max_per_image": MAX_PER_IMAGE,
        "box_format": "ymin xmin ymax xmax, normalized",
        "records": [str(r) for r in records],
        "categories": {str(k): v for k, v in categories.items()},
        "images": images,
    }


INDEX = Path("report") / "index.html"


def stale(training_dir: Path) -> str | None:
    """Why an evaluated training dir's report needs writing (missing, or older than the evaluation), else None.

    None too when there is no evaluation (no metrics.json) to report on.
    """
    evaluation = [training_dir / name for name in ("metrics.json", DETECTIONS) if (training_dir / name).is_file()]
    if not any(p.name == "metrics.json" for p in evaluation):
        return None
    index = training_dir / INDEX
    if not index.is_file():
        return f"{index} is missing"
    newer = [p.name for p in evaluation if p.stat().st_mtime_ns > index.stat().st_mtime_ns]
    return f"{index} is older than {' and '.join(newer)}" if newer else None
