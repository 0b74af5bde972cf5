"""``make demo``'s verdict: the metrics of the run and predict.py against the held-out truth.

    python -m tfodkit.demo report --demo_dir demo [--min_map50 0.9]

Reads DEMO_DIR/training/metrics.json (COCO mAP on the testing split, never
trained on), DEMO_DIR/predictions/*_detections.json (predict.py --json on the
held-out images) and DEMO_DIR/data/holdout.csv (their true boxes); prints
mAP@0.5, how many held-out shapes were found (IoU >= 0.5, right class) and
where the pictures and metrics are. Exit 1 when mAP@0.5 is below --min_map50.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from tfodkit.errors import FAILURE, ArgumentParser, UserError, cli
from tfodkit.fsutil import write_json_atomic


def iou(a: dict, b: dict) -> float:
    ix = max(0.0, min(a["xmax"], b["xmax"]) - max(a["xmin"], b["xmin"]))
    iy = max(0.0, min(a["ymax"], b["ymax"]) - max(a["ymin"], b["ymin"]))
    inter = ix * iy
    area = (a["xmax"] - a["xmin"]) * (a["ymax"] - a["ymin"]) + (b["xmax"] - b["xmin"]) * (b["ymax"] - b["ymin"])
    return inter / (area - inter) if area > inter else 0.0


def match(truth_csv: Path, detections_json: Path, threshold: float = 0.5) -> dict:
    """Greedy one-to-one matching of detections to true boxes, per image and class."""
    truth: dict[str, list[dict]] = defaultdict(list)
    with open(truth_csv, newline="") as f:
        for row in csv.DictReader(f):
            truth[row["filename"]].append({"class": row["class"], **{k: float(row[k]) for k in
                                                                     ("xmin", "ymin", "xmax", "ymax")}})
    predicted = {Path(e["image"]).name: e["detections"] for e in json.loads(detections_json.read_text())["images"]}
    found = false_positives = 0
    for name, boxes in truth.items():
        unmatched = list(boxes)
        for det in sorted(predicted.get(name, []), key=lambda d: -d["score"]):
            best = max(unmatched, key=lambda t: iou(t, det["box"]) if t["class"] == det["class_name"] else -1,
                       default=None)
            if best is not None and best["class"] == det["class_name"] and iou(best, det["box"]) >= threshold:
                unmatched.remove(best)
                found += 1
            else:
                false_positives += 1
    total = sum(len(b) for b in truth.values())
    return {"images": len(truth), "shapes": total, "found": found, "false_positives": false_positives,
            "recall": found / total if total else 0.0}


@cli
def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m tfodkit.demo", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("report")
    p.add_argument("--demo_dir", type=Path, default=Path("demo"))
    p.add_argument("--min_map50", type=float, default=0.9)
    args = parser.parse_args(argv)
    demo = args.demo_dir
    metrics_path = demo / "training" / "metrics.json"
    detections = sorted((demo / "predictions").glob("*_detections.json"))
    if not metrics_path.is_file() or not detections:
        raise UserError(f"{demo} has no metrics.json or predictions", "run make demo", status=FAILURE)
    metrics = json.loads(metrics_path.read_text())
    held = match(demo / "data" / "holdout.csv", detections[0])
    report = {"mAP@0.5": metrics["mAP@0.5"], "mAP": metrics["mAP"], "test_images": metrics["num_images"],
              "holdout": held}
    write_json_atomic(demo / "report.json", report)
    print(f"demo: mAP@0.5 {metrics['mAP@0.5']:.3f} (mAP {metrics['mAP']:.3f}) on {metrics['num_images']} test images "
          f"never trained on")
    print(f"demo: held-out images: found {held['found']} of {held['shapes']} shapes "
          f"(IoU >= 0.5, right class), {held['false_positives']} false positives")
    print(f"demo: pictures    {demo / 'predictions'}")
    print(f"demo: detections  {detections[0]}")
    print(f"demo: metrics     {metrics_path} and {demo / 'training' / 'metrics_per_class.png'}")
    print(f"demo: model       {demo / 'exported'}")
    page = demo / "training" / "report" / "index.html"  # train.sh's report step wrote it
    print(f"demo: run report  {page}" if page.is_file()
          else f"demo: run report  not written (python -m tfodkit.report {demo / 'training'})")
    if metrics["mAP@0.5"] < args.min_map50:
        print(f"error: mAP@0.5 {metrics['mAP@0.5']:.3f} is below {args.min_map50} (see {demo / 'training'})")
        return FAILURE
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
