"""Time the run report (python -m tfodkit.report) on a synthetic evaluation of --images test images.

    .venv/bin/python bench/report.py [--images 1000] [--classes 5] [--runs 3] [--work DIR]

Makes a training dir as the evaluation leaves it: a test record of real 320x320 JPEGs,
eval_detections.json (per image 1-6 boxes; each found by a jittered detection, sometimes
of the wrong class, plus low-score and duplicate detections, up to 100 an image),
metrics.json, train.json and TensorBoard events of 1,000 training steps. Then runs the
report --runs times as a user would (each a new process, imports included, on a dir without a
report) and prints the median wall time, the fastest and the slowest, the CPU time and the load
average before each run (the machine may be shared); JSON in bench/results/report.json. The
target: under 30 s for 1,000 images on 2 cores.
"""

from __future__ import annotations

import io
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, ROOT  # noqa: E402

from tfodkit.errors import ArgumentParser
from tfodkit.report import DETECTIONS, detections_doc


def make_training_dir(training: Path, n_images: int, n_classes: int, seed: int = 0) -> None:
    import tensorflow as tf
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    training.mkdir(parents=True, exist_ok=True)
    record = training / "testing.record"
    images = []
    with tf.io.TFRecordWriter(str(record)) as writer:
        for i in range(n_images):
            picture = Image.new("RGB", (320, 320), tuple(int(v) for v in rng.integers(0, 255, 3)))
            draw = ImageDraw.Draw(picture)
            gt, gt_classes = [], []
            for _ in range(int(rng.integers(1, 7))):
                y0, x0 = rng.uniform(0, 0.7, 2)
                h, w = rng.uniform(0.05, 0.3, 2)
                gt.append([round(y0, 4), round(x0, 4), round(y0 + h, 4), round(x0 + w, 4)])
                gt_classes.append(int(rng.integers(1, n_classes + 1)))
                draw.rectangle([x0 * 320, y0 * 320, (x0 + w) * 320, (y0 + h) * 320], fill=(255, 255, 255))
            boxes, scores, classes = [], [], []
            for box, c in zip(gt, gt_classes, strict=True):
                if rng.random() < 0.85:  # found, jittered, now and then as another class or twice
                    boxes.append([v + rng.normal(0, 0.01) for v in box])
                    scores.append(rng.uniform(0.4, 1.0))
                    classes.append(c if rng.random() < 0.9 else int(rng.integers(1, n_classes + 1)))
                    if rng.random() < 0.1:
                        boxes.append([v + rng.normal(0, 0.02) for v in box])
                        scores.append(rng.uniform(0.3, 0.8))
                        classes.append(c)
            while len(boxes) < 100 and rng.random() < 0.97:  # the low-score tail
                y0, x0 = rng.uniform(0, 0.8, 2)
                boxes.append([y0, x0, y0 + rng.uniform(0.02, 0.2), x0 + rng.uniform(0.02, 0.2)])
                scores.append(rng.uniform(0.01, 0.6) ** 2 + 0.01)
                classes.append(int(rng.integers(1, n_classes + 1)))
            encoded = io.BytesIO()
            picture.save(encoded, format="JPEG", quality=90)
            name = f"bench-{i:05d}.jpg"
            writer.write(
                tf.train.Example(
                    features=tf.train.Features(
                        feature={
                            "image/encoded": tf.train.Feature(
                                bytes_list=tf.train.BytesList(value=[encoded.getvalue()])
                            ),
                            "image/source_id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[name.encode()])),
                        }
                    )
                ).SerializeToString()
            )
            images.append(
                {
                    "record": str(record),
                    "index": i,
                    "source_id": name,
                    "filename": name,
                    "height": 320,
                    "width": 320,
                    "key": i,
                    "gt_boxes": gt,
                    "gt_classes": gt_classes,
                    "boxes": [[round(float(v), 5) for v in b] for b in boxes],
                    "scores": [round(float(s), 5) for s in scores],
                    "classes": classes,
                }
            )
    names = {str(c): f"class{c}" for c in range(1, n_classes + 1)}
    (training / DETECTIONS).write_text(
        json.dumps(
            detections_doc(checkpoint=training / "ckpt-1", step=1000, categories=names, images=images, records=[record])
        )
    )
    (training / "metrics.json").write_text(
        json.dumps(
            {
                "mAP": 0.5,
                "mAP@0.5": 0.7,
                "mAP@0.75": 0.5,
                "num_images": n_images,
                "per_class_AP": {n: 0.5 for n in names.values()},
                "all": {},
            }
        )
    )
    (training / "train.json").write_text(
        json.dumps({"step": 1000, "num_steps": 1000, "seconds": 600.0, "steps_per_sec": 1.7})
    )
    writer = tf.summary.create_file_writer(str(training / "train"))
    with writer.as_default():
        for step in range(1, 1001):
            for tag in (
                "Loss/classification_loss",
                "Loss/localization_loss",
                "Loss/regularization_loss",
                "Loss/total_loss",
                "learning_rate",
                "steps_per_sec",
            ):
                tf.summary.scalar(tag, float(np.exp(-step / 300) + rng.normal(0, 0.01)), step=step)
    writer.close()


def main() -> int:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--classes", type=int, default=5)
    parser.add_argument("--runs", type=int, default=3, help="report runs timed (default 3)")
    parser.add_argument("--work", type=Path, default=None, help="where the synthetic training dir goes (a temp dir)")
    parser.add_argument("--output", type=Path, default=RESULTS / "report.json")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error(f"--runs {args.runs} is below 1 (time at least one run)")
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        training = (args.work or Path(tmp)) / "training"
        make_training_dir(training, args.images, args.classes)
        for _ in range(args.runs):
            shutil.rmtree(training / "report", ignore_errors=True)
            load = round(os.getloadavg()[0], 2)
            before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()
            subprocess.run(
                [sys.executable, "-m", "tfodkit.report", str(training)], cwd=ROOT, check=True, stdout=subprocess.DEVNULL
            )
            seconds = round(time.monotonic() - start, 2)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = round(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, 2)
            runs.append({"seconds": seconds, "cpu_seconds": cpu, "load_average_1min": load})
            print(f"run {len(runs)}: {seconds} s ({cpu} s CPU), load average {load}", flush=True)
        pictures = len(list((training / "report" / "pictures").iterdir()))
    walls = [r["seconds"] for r in runs]
    result = {
        "images": args.images,
        "classes": args.classes,
        "pictures_drawn": pictures,
        "cores": os.cpu_count(),
        "seconds": statistics.median(walls),
        "fastest": min(walls),
        "slowest": max(walls),
        "cpu_seconds": statistics.median(r["cpu_seconds"] for r in runs),
        "runs": runs,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"report for {args.images} test images ({pictures} pictures drawn): median {result['seconds']} s "
        f"({min(walls)}-{max(walls)} s over {len(runs)} runs, {result['cpu_seconds']} s CPU), load average "
        f"{', '.join(str(r['load_average_1min']) for r in runs)} -> {args.output}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
