"""images/s of predict.py end to end against two one-image-at-a-time loops, on the same images and model.

1. plain: the SavedModel's serving signature in a loop: decode (PIL, RGB), infer,
   fetch the outputs; nothing drawn or written. The ceiling for a per-image model.
2. seed-style: what the seed's predict.py and the TFOD tutorials do, one image at
   a time: decode, infer, draw with TFOD's visualization_utils, write a JPEG.
3. serial: the same steps with predict.py's own functions (EXIF-aware decode, its
   drawing, atomic write) but no overlap: how much the overlap alone brings.
4. predict: predict.py's streaming pipeline (``tfodkit.predict.run``: decode
   ahead, infer, draw and write behind, JSON streamed) with the model loaded
   once, exactly what ``predict.py`` runs after loading and warming up the model;
   the loops above are warmed up too, so all four stand on the same footing.

5. predict_batch8: the same at --batch_size 8, when the model has the
   serving_batch signature that tfodkit.export adds to fixed_shape_resizer
   models (images of any size resized by predict.py, 8 per call).

Each round runs every mode once, back to back, in a rotating order. Two sets of
ratios: from the best round of each mode (the least disturbed: what the code
can do), and the median of the per-round ratios (modes of one round ran under
about the same load from other work). Targets: predict >= 0.9x plain, >= 1.3x
seed-style.
Once more at the end, ``predict.py`` itself (``tfodkit.predict.main``) runs on
the same images: its own images/s and its wall time with model loading.

The images: real JPEGs, by default the raccoon subset in tests/data/raccoon
(14 photos from 259x194 to 800x573, taken in turn until there are --count), or
the first --count of --images. The model: --model/--labels, or an
untrained SSD MobileNet V2 FPNLite 320x320 exported with TFOD's exporter and
cached in bench/results/untrained_ssd (about 40 s the first time). Detections
drawn: --min_confidence 0 and --max_detections 10 by default, so an untrained
model has boxes to draw, as a trained one would.

With --backends (a comma list of .tflite and .onnx files that
``python -m tfodkit.export --formats`` wrote from the same model), each backend
(and the SavedModel, through the same code) is also timed on the same images,
best of the rounds: a plain loop (decode, the backend's call, which for TFLite
includes its resize) and predict.py's pipeline with that backend.

Prints the ratios and writes JSON (default bench/results/predict.json).
"""

from __future__ import annotations

import tfodkit.compat  # noqa: F401

import contextlib
import functools
import io
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image

from tfodkit import predict
from tfodkit.errors import ArgumentParser
from tfodkit.fsutil import write_json_atomic

ROOT = Path(__file__).resolve().parent.parent
RACCOON = ROOT / "tests" / "data" / "raccoon" / "images"
RESULTS = ROOT / "bench" / "results"
TARGET_PLAIN, TARGET_SEED = 0.9, 1.3
TARGET_BATCH = 1.5  # predict.py at batch 8 (serving_batch) against the plain one-image loop


def default_model() -> tuple[Path, Path]:
    model = RESULTS / "untrained_ssd"
    labels = RESULTS / "untrained_ssd.pbtxt"
    if not (model / "saved_model" / "saved_model.pb").is_file():
        sys.path.insert(0, str(ROOT))
        from tests.untrained_model import LABELS, export_untrained_ssd

        print("bench: exporting an untrained SSD MobileNet V2 FPNLite 320x320 (about 40 s, once)", flush=True)
        tmp = Path(tempfile.mkdtemp(prefix=".untrained_ssd.", dir=RESULTS))
        export_untrained_ssd(tmp / "export")
        shutil.rmtree(model, ignore_errors=True)
        os.replace(tmp / "export", model)
        shutil.rmtree(tmp, ignore_errors=True)
        labels.write_text(LABELS)
    return model, labels


def plain(paths: list[Path], signature, out_dir: Path, args) -> None:
    for path in paths:
        image = np.asarray(Image.open(path).convert("RGB"))
        out = signature(input_tensor=tf.constant(image[np.newaxis]))
        {k: out[k].numpy() for k in ("detection_boxes", "detection_classes", "detection_scores", "num_detections")}


def seed_style(paths: list[Path], signature, out_dir: Path, args) -> None:
    from object_detection.utils import label_map_util
    from object_detection.utils import visualization_utils as viz

    category_index = label_map_util.create_category_index_from_labelmap(str(args.labels), use_display_name=True)
    for i, path in enumerate(paths):
        image = np.array(Image.open(path).convert("RGB"))
        out = signature(input_tensor=tf.constant(image[np.newaxis]))
        n = int(out["num_detections"][0])
        viz.visualize_boxes_and_labels_on_image_array(
            image, out["detection_boxes"][0].numpy()[:n], out["detection_classes"][0].numpy()[:n].astype(int),
            out["detection_scores"][0].numpy()[:n], category_index, use_normalized_coordinates=True,
            max_boxes_to_draw=args.max_detections, min_score_thresh=args.min_confidence, line_thickness=4)
        Image.fromarray(image).save(out_dir / f"{args.prefix}_{i}.jpg", quality=90)


def serial(paths: list[Path], signature, out_dir: Path, args) -> None:
    options = predict.Options(labels=predict.load_label_map(args.labels), min_confidence=args.min_confidence,
                              max_detections=args.max_detections)
    for i, path in enumerate(paths):
        image = predict.load_image(path)
        out = signature(input_tensor=tf.constant(np.asarray(image)[np.newaxis]))
        n = int(out["num_detections"][0])
        detections = (out["detection_boxes"][0].numpy()[:n], out["detection_classes"][0].numpy()[:n].astype(int),
                      out["detection_scores"][0].numpy()[:n])
        records = predict.to_records(detections, image.width, image.height, options)
        predict.draw_detections(image, records)
        predict.save_atomic(image, out_dir / f"{args.prefix}_{i}.jpg", "jpg")


def plain_backend(paths: list[Path], detector: predict.Detector, out_dir: Path, args) -> None:
    for path in paths:
        detector(np.asarray(Image.open(path).convert("RGB"))[np.newaxis])


def timed(loop, paths, model, out_dir: Path, args) -> float:
    """Seconds ``loop`` takes over ``paths`` writing into a fresh out_dir, which is removed afterwards."""
    out_dir.mkdir()
    start = time.perf_counter()
    loop(paths, model, out_dir, args)
    seconds = time.perf_counter() - start
    shutil.rmtree(out_dir)
    return seconds


def time_backends(paths: list[Path], specs: list[Path], saved_model: predict.Detector, work: Path, args) -> dict:
    """images/s of a plain loop and of predict.py's pipeline over each backend, best of the rounds."""
    result = {}
    for spec in [None, *specs]:
        detector = saved_model if spec is None else predict.load_detector(spec)
        plain_backend(paths[:1], detector, work, args)  # warm-up
        seconds: dict[str, list[float]] = {"plain": [], "predict": []}
        for r in range(args.rounds):
            for name, loop in (("plain", plain_backend), ("predict", pipeline)):
                seconds[name].append(timed(loop, paths, detector, work / f"backend-{name}-{r}", args))
        key = str(spec or args.model)
        result[key] = {"backend": detector.kind,
                       "images_per_s": {m: round(len(paths) / min(s), 2) for m, s in seconds.items()}}
        print(f"bench: {detector.kind:<10} {key}: plain {result[key]['images_per_s']['plain']:.1f}, "
              f"predict {result[key]['images_per_s']['predict']:.1f} images/s", flush=True)
    return result


def pipeline(paths: list[Path], detector: predict.Detector, out_dir: Path, args, batch_size: int = 1) -> None:
    options = predict.Options(labels=predict.load_label_map(args.labels), min_confidence=args.min_confidence,
                              max_detections=args.max_detections, workers=args.workers, inflight=args.inflight,
                              batch_size=batch_size, any_size=detector.batched is not None)
    jobs = predict.plan_outputs(paths, out_dir, args.prefix, "jpg")
    stream = predict.JsonStream(out_dir / "detections.json", {"model": str(args.model)})
    summary = predict.run(jobs, detector, options, stream, progress=False)
    stream.close(summary.failed, {})
    if summary.images != len(paths):
        raise SystemExit(f"bench: predict wrote {summary.images} of {len(paths)} images: {summary.failed[:3]}")


def run_cli(paths: list[Path], model: Path, out_dir: Path, args) -> dict:
    argv = ["--model", str(model), "--labels", str(args.labels), "--images", str(args.image_dir),
            "--output_dir", str(out_dir), "--min_confidence", str(args.min_confidence),
            "--max_detections", str(args.max_detections), "--workers", str(args.workers),
            "--inflight", str(args.inflight), "--json"]
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
        status = predict.main(argv)
    wall = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"bench: predict.py failed ({status}): {err.getvalue().strip()[-500:]}")
    summary = json.loads((out_dir / "result_detections.json").read_text())["summary"]
    if summary["images"] != len(paths):
        raise SystemExit(f"bench: predict.py wrote {summary['images']} of {len(paths)} images")
    return {"seconds": summary["seconds"], "wall_seconds_with_load": round(wall, 3)}


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="bench/predict", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="exported model (default: a cached untrained SSD)")
    parser.add_argument("--labels", "--label_map", dest="labels", type=Path, help="its label map (needed with --model)")
    parser.add_argument("--images", type=Path, default=RACCOON,
                        help="folder of images (default: the raccoon subset of the tests)")
    parser.add_argument("--count", type=int, default=40,
                        help="images used (default 40; a smaller folder is taken in turn until there are as many)")
    parser.add_argument("--rounds", type=int, default=5, help="runs of each mode; the best counts (default 5)")
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 2), help="predict's --workers")
    parser.add_argument("--inflight", type=int, default=2, help="predict's --inflight (default 2)")
    parser.add_argument("--min_confidence", type=float, default=0.0)
    parser.add_argument("--max_detections", type=int, default=10)
    parser.add_argument("--backends", default="",
                        help="comma list of .tflite/.onnx files exported from --model, also timed (see above)")
    parser.add_argument("--out", type=Path, default=RESULTS / "predict.json", help="JSON results")
    args = parser.parse_args(argv)
    args.prefix = "result"

    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.model is None:
        args.model, args.labels = default_model()
    elif args.labels is None:
        parser.error("--labels is needed with --model")
    paths = sorted(p for p in args.images.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:args.count]
    if not paths:
        parser.error(f"no images in {args.images}")
    work = Path(tempfile.mkdtemp(prefix="bench-predict-"))
    try:
        args.image_dir = work / "images"
        args.image_dir.mkdir()
        for i in range(args.count):  # the same files for every mode, in a folder of their own
            p = paths[i % len(paths)]
            shutil.copyfile(p, args.image_dir / (p.name if i < len(paths) else f"{p.stem}-{i}{p.suffix}"))
        paths = sorted(args.image_dir.iterdir())
        for p in paths:  # page cache
            p.read_bytes()

        detector = predict.Detector(args.model)
        detector.warm_up()
        signature = detector.signature
        modes = {"plain": (plain, signature), "seed_style": (seed_style, signature), "serial": (serial, signature),
                 "predict": (pipeline, detector)}
        if detector.batched is not None:  # tfodkit.export's serving_batch: predict.py at batch 8 too
            modes["predict_batch8"] = (functools.partial(pipeline, batch_size=8), detector)
        names = list(modes)
        seconds: dict[str, list[float]] = {m: [] for m in names}
        for r in range(args.rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                loop, model = modes[name]
                seconds[name].append(timed(loop, paths, model, work / f"{name}-{r}", args))
            print(f"bench: round {r + 1}/{args.rounds}: "
                  + ", ".join(f"{m} {len(paths) / s[-1]:.1f}" for m, s in seconds.items()) + " images/s", flush=True)
        cli = run_cli(paths, args.model, work / "cli", args)
        backends = time_backends(paths, [Path(b.strip()) for b in args.backends.split(",") if b.strip()],
                                 detector, work, args) if args.backends else None
    finally:
        shutil.rmtree(work, ignore_errors=True)

    rate = {m: len(paths) / min(s) for m, s in seconds.items()}
    # Each round ran the four modes back to back: the median of the per-round ratios is the
    # fairer figure when the machine's load changes during the run; the best rounds show the capability.
    per_round = {f"predict_vs_{m}": [seconds[m][r] / seconds["predict"][r] for r in range(args.rounds)]
                 for m in ("plain", "seed_style", "serial")}
    if "predict_batch8" in seconds:
        per_round["predict_batch8_vs_plain"] = [seconds["plain"][r] / seconds["predict_batch8"][r]
                                                for r in range(args.rounds)]
    medians = {k: statistics.median(v) for k, v in per_round.items()}
    ratios = {"predict_vs_plain": rate["predict"] / rate["plain"],
              "predict_vs_seed_style": rate["predict"] / rate["seed_style"],
              "predict_vs_serial": rate["predict"] / rate["serial"]}
    if "predict_batch8" in rate:
        ratios["predict_batch8_vs_plain"] = rate["predict_batch8"] / rate["plain"]
    result = {
        "images": len(paths),
        "source": str(args.images),
        "model": str(args.model),
        "rounds": args.rounds,
        "min_confidence": args.min_confidence,
        "max_detections": args.max_detections,
        "images_per_s": {m: round(v, 2) for m, v in rate.items()},
        "seconds_per_round": {m: [round(x, 3) for x in s] for m, s in seconds.items()},
        "predict_py": {"images_per_s": round(len(paths) / cli["seconds"], 2),
                       "wall_seconds_with_model_load": cli["wall_seconds_with_load"]},
        "workers": args.workers,
        "inflight": args.inflight,
        "backends": backends,
        "ratios": {k: round(v, 3) for k, v in ratios.items()},
        "ratios_median_of_rounds": {k: round(v, 3) for k, v in medians.items()},
        "targets": {"predict_vs_plain": TARGET_PLAIN, "predict_vs_seed_style": TARGET_SEED},
        "met_best": ratios["predict_vs_plain"] >= TARGET_PLAIN and ratios["predict_vs_seed_style"] >= TARGET_SEED,
        "met_median": medians["predict_vs_plain"] >= TARGET_PLAIN and medians["predict_vs_seed_style"] >= TARGET_SEED,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "tensorflow": tf.__version__,
                    "load_average": os.getloadavg()},
    }
    print(f"bench: {len(paths)} images, best of {args.rounds} rounds (images/s): "
          + ", ".join(f"{m} {v:.1f}" for m, v in rate.items()))
    print("bench: ratios           best rounds   median of rounds")
    for key, label, note in (("predict_vs_plain", "predict / plain     ", f"target >= {TARGET_PLAIN}"),
                             ("predict_vs_seed_style", "predict / seed-style", f"target >= {TARGET_SEED}"),
                             ("predict_vs_serial", "predict / serial    ", "own drawing, no overlap"),
                             ("predict_batch8_vs_plain", "predict b8 / plain  ", f"target >= {TARGET_BATCH}")):
        if key not in ratios:
            continue
        print(f"bench: {label}   {ratios[key]:5.2f}         {medians[key]:5.2f}       ({note})")
    print(f"bench: predict.py itself: {len(paths) / cli['seconds']:.1f} images/s once loaded, "
          f"{cli['wall_seconds_with_load']:.1f} s with model loading")
    write_json_atomic(args.out, result)
    print(f"bench: wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
