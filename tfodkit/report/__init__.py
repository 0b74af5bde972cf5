"""The run report (python -m tfodkit.report): TRAINING_DIR/report/index.html from what the evaluation kept.

This package's top level imports nothing heavy: tfodkit/evaluate.py takes the name of the file it
keeps from here.
"""

from __future__ import annotations

DETECTIONS = "eval_detections.json"  # the evaluation's kept ground truth and detections (tfodkit/evaluate.py)
