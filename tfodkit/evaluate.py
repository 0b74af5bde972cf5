"""One-shot evaluation of the latest checkpoint with TFOD's COCO detection metrics.

    python -m tfodkit.evaluate --pipeline_config TRAINING_DIR/pipeline.config --model_dir TRAINING_DIR

TFOD's own evaluation (``model_main_tf2.py --checkpoint_dir``) is a loop: it
evaluates each new checkpoint, then waits for the next one until
``eval_timeout`` (3600 s by default) has passed without one, so a finished run's
evaluation only ends by timing out (docs/tfod-on-current-tf.md). This makes
one pass over the eval records and returns. It writes MODEL_DIR/metrics.json
(mAP, mAP@0.5, mAP@0.75, per-class AP, losses), a bar chart of per-class AP
beside it (metrics_per_class.png), TensorBoard events under MODEL_DIR/eval, and
MODEL_DIR/eval_detections.json: every test image's ground truth and the model's
detections (score >= 0.01, at most 100 an image), which the run report
(python -m tfodkit.report) reads instead of running the model again.
A metrics.json already made for the latest checkpoint is reused.
"""

from __future__ import annotations

import tfodkit.compat  # noqa: F401

import json
import time
from collections.abc import Sequence
from pathlib import Path

from tfodkit.errors import FAILURE, UserError, cli, training_dir_parser
from tfodkit.fsutil import AtomicFile, write_json_atomic
from tfodkit.progress import EVAL_BAR_FORMAT, speed_text
from tfodkit.records import REPORT, split_of
from tfodkit.report import DETECTIONS, MAX_PER_IMAGE, MIN_SCORE, detections_doc

PREFIX = "DetectionBoxes_Precision/"
PER_CLASS = "DetectionBoxes_PerformanceByCategory/mAP/"


def summarize(raw: dict[str, float]) -> dict:
    """The headline numbers of TFOD's COCO metrics dict."""
    return {
        "mAP": raw.get(PREFIX + "mAP"),
        "mAP@0.5": raw.get(PREFIX + "mAP@.50IOU"),
        "mAP@0.75": raw.get(PREFIX + "mAP@.75IOU"),
        "per_class_AP": {k[len(PER_CLASS):]: v for k, v in raw.items() if k.startswith(PER_CLASS)},
        "losses": {k.split("/", 1)[1]: v for k, v in raw.items() if k.startswith("Loss/")},
    }


def coco_metrics(images: Sequence[dict], categories: list[dict]) -> dict:
    """TFOD's COCO detection metrics of ``images`` (:func:`summarize` of them, with ``all``: the raw dict).

    Each image as eval_detections.json holds it (DetectionsKeeper's layout):
    ``height``, ``width``, ``gt_boxes``, ``gt_classes``, ``boxes``, ``scores``,
    ``classes``, boxes normalised (ymin, xmin, ymax, xmax), 1-based classes.
    The evaluator is the one TFOD's eval loop builds (eval_util.get_evaluators
    for coco_detection_metrics, per-category AP on), fed boxes in pixels as the
    loop feeds it, so an export's detections (tfodkit.export) and this
    evaluation's are scored by the same code.
    """
    import numpy as np
    from object_detection import eval_util
    from object_detection.core import standard_fields as fields
    from object_detection.protos import eval_pb2

    config = eval_pb2.EvalConfig(metrics_set=["coco_detection_metrics"], include_metrics_per_category=True)
    (evaluator,) = eval_util.get_evaluators(config, categories)
    inp, det = fields.InputDataFields, fields.DetectionResultFields
    for i, image in enumerate(images):
        scale = np.array([image["height"], image["width"]] * 2, np.float32)

        def pixels(boxes, scale=scale):
            return np.asarray(boxes, np.float32).reshape(-1, 4) * scale

        evaluator.add_single_ground_truth_image_info(i, {
            inp.groundtruth_boxes: pixels(image["gt_boxes"]),
            inp.groundtruth_classes: np.asarray(image["gt_classes"], np.int64)})
        evaluator.add_single_detected_image_info(i, {
            det.detection_boxes: pixels(image["boxes"]),
            det.detection_scores: np.asarray(image["scores"], np.float32),
            det.detection_classes: np.asarray(image["classes"], np.int64)})
    raw = {k: float(v) for k, v in evaluator.evaluate().items()}
    return {**summarize(raw), "all": raw}


def plot_per_class(per_class: dict[str, float], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted(per_class, key=lambda n: per_class[n])
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.35 * max(len(names), 1)))
    values = [max(per_class[n], 0.0) for n in names]  # COCO reports -1 for classes without ground truth
    bars = ax.barh(names, values, color="#3b7dd8")
    for bar, name in zip(bars, names, strict=True):
        ax.text(bar.get_width() + 0.01, bar.get_y() + bar.get_height() / 2,
                "n/a" if per_class[name] < 0 else f"{per_class[name]:.3f}", va="center", fontsize=9)
    ax.set_xlim(0, 1.1)
    ax.set_xlabel("AP (COCO, IoU 0.50:0.95)")
    ax.set_title(title)
    fig.tight_layout()
    try:
        with AtomicFile(path, "wb") as out:
            fig.savefig(out, format="png", dpi=100)
    finally:
        plt.close(fig)


def expected_images(files: Sequence[str]) -> int | None:
    """The image count the dataset tool recorded for these record files (dataset.json beside them), or None.

    Only sizes the progress bar: the evaluation counts the images it reads.
    """
    folders = {Path(f).parent for f in files}
    splits = {split_of(Path(f)) for f in files}
    if len(folders) != 1 or len(splits) != 1:
        return None
    try:
        stats = json.loads((folders.pop() / REPORT).read_text())["splits"][splits.pop()]
        return int(stats["images"]) or None
    except (OSError, ValueError, KeyError, TypeError):
        return None


class DetectionsKeeper:
    """An extra evaluator for TFOD's eval loop: it keeps each image's ground truth and detections.

    The loop hands every evaluator the same eval_dict (eval_util.result_dict_for_batched_example:
    boxes in pixels of the original image, 1-based classes, the image's source_id hash as key);
    this one stores them, normalized to [0, 1], and computes no metric.
    """

    def __init__(self):
        self.images: list[dict] = []

    def add_eval_dict(self, eval_dict) -> None:
        from object_detection.core import standard_fields as fields

        inp, det = fields.InputDataFields, fields.DetectionResultFields
        arr = {k: v.numpy() for k, v in eval_dict.items() if hasattr(v, "numpy")}
        for i, key in enumerate(arr[inp.key]):
            height, width = (float(x) for x in arr[inp.original_image_spatial_shape][i][:2])
            scale = [height, width, height, width]
            n_gt = int(arr[inp.num_groundtruth_boxes][i])
            scores = arr[det.detection_scores][i][: int(arr[det.num_detections][i])]
            keep = [j for j in scores.argsort()[::-1][:MAX_PER_IMAGE] if scores[j] >= MIN_SCORE]
            self.images.append({
                "key": int(key),
                "gt_boxes": [[round(float(v) / s, 5) for v, s in zip(b, scale, strict=True)]
                             for b in arr[inp.groundtruth_boxes][i][:n_gt]],
                "gt_classes": [int(c) for c in arr[inp.groundtruth_classes][i][:n_gt]],
                "boxes": [[round(float(v) / s, 5) for v, s in zip(arr[det.detection_boxes][i][j], scale, strict=True)]
                          for j in keep],
                "scores": [round(float(scores[j]), 5) for j in keep],
                "classes": [int(arr[det.detection_classes][i][j]) for j in keep],
            })

    def evaluate(self) -> dict:
        return {}

    def clear(self) -> None:
        self.images.clear()


def record_index(files: Sequence[str]) -> dict[int, dict]:
    """source_id hash (the eval loop's image key) -> the record's file, index, source_id, filename and size."""
    import tensorflow as tf
    from object_detection import inputs

    index: dict[int, dict] = {}
    for name in files:
        for n, raw in enumerate(tf.data.TFRecordDataset(name)):
            feature = tf.train.Example.FromString(raw.numpy()).features.feature

            def first(key: str, f=feature):
                value = f[key].bytes_list.value or f[key].int64_list.value if key in f else []
                return value[0] if value else None

            source_id = first("image/source_id") or b""
            key = int(tf.strings.to_hash_bucket_fast(source_id, inputs.HASH_BINS).numpy())
            index[key] = {"record": str(name), "index": n, "source_id": source_id.decode("utf-8", "replace"),
                          "filename": (first("image/filename") or source_id).decode("utf-8", "replace"),
                          "height": first("image/height"), "width": first("image/width")}
    return index


def detections_file(keeper: DetectionsKeeper, files: Sequence[str], categories: list[dict],
                    checkpoint: str, step: int) -> dict:
    index = record_index(files)
    images = [{**index.get(image["key"], {}), **image} for image in keeper.images]
    return detections_doc(checkpoint=checkpoint, step=step, categories={c["id"]: c["name"] for c in categories},
                          images=images, records=list(files))


class keeping_detections:
    """While open, TFOD's get_evaluators (which the eval loop calls) also returns ``keeper``."""

    def __init__(self, keeper: DetectionsKeeper):
        from object_detection import eval_util

        self.module, self.keeper, self.original = eval_util, keeper, eval_util.get_evaluators

    def __enter__(self):
        def get_evaluators(*args, **kwargs):
            return [*self.original(*args, **kwargs), self.keeper]

        self.module.get_evaluators = get_evaluators
        return self.keeper

    def __exit__(self, *exc) -> None:
        self.module.get_evaluators = self.original


def evaluate(pipeline_config: Path, model_dir: Path, checkpoint: str | None = None, force: bool = False) -> dict:
    import tensorflow as tf
    from object_detection import inputs, model_lib_v2
    from object_detection.builders import model_builder
    from object_detection.core import standard_fields as fields
    from object_detection.utils import config_util
    from tqdm import tqdm

    if not pipeline_config.is_file():
        raise UserError(f"{pipeline_config} not found", "run readconfig.py first")
    checkpoint = checkpoint or tf.train.latest_checkpoint(str(model_dir))
    if not checkpoint:
        raise UserError(f"no checkpoint in {model_dir}", "train first (python -m tfodkit.train)")
    out = model_dir / "metrics.json"
    if out.is_file() and (model_dir / DETECTIONS).is_file() and not force:
        previous = json.loads(out.read_text())
        if previous.get("checkpoint") == str(checkpoint):
            print(f"evaluate: {out} is already for {Path(checkpoint).name}: reusing it", flush=True)
            return previous

    configs = config_util.get_configs_from_pipeline_file(str(pipeline_config))
    eval_config = configs["eval_config"]
    if "coco_detection_metrics" not in eval_config.metrics_set:
        eval_config.metrics_set.append("coco_detection_metrics")
    eval_config.include_metrics_per_category = True
    eval_input_config = configs["eval_input_configs"][0]
    eval_input_config.num_epochs = 1
    configs["eval_input_config"] = eval_input_config
    input_paths = list(eval_input_config.tf_record_input_reader.input_path)
    files = [f for p in input_paths for f in tf.io.gfile.glob(p)]
    if not any(next(iter(tf.data.TFRecordDataset(f).take(1)), None) is not None for f in files):
        raise UserError(f"the eval records {', '.join(input_paths)} hold no example", "check testing.record",
                        status=FAILURE)

    model = model_builder.build(model_config=configs["model"], is_training=True)
    dataset = inputs.eval_input(eval_config=eval_config, eval_input_config=eval_input_config,
                                model_config=configs["model"], model=model)
    step = tf.Variable(0, dtype=tf.int64)
    tf.train.Checkpoint(step=step, model=model).restore(checkpoint).expect_partial()
    expected = expected_images(files)
    print(f"evaluate: checkpoint {Path(checkpoint).name}"
          + (f", {expected} images (dataset.json)" if expected else ""), flush=True)
    start = time.monotonic()
    writer = tf.summary.create_file_writer(str(model_dir / "eval"))
    seen = [0]

    total = -(-expected // max(eval_config.batch_size, 1)) if expected else None
    progress = tqdm(dataset, total=total, unit="batch", desc="evaluate", mininterval=5, leave=False,
                    bar_format=EVAL_BAR_FORMAT)

    def counted(batches):  # the one read of the records counts the images as it goes
        first_done = None
        for done, (features, labels) in enumerate(batches, 1):
            seen[0] += int(features[fields.InputDataFields.image].shape[0])
            yield features, labels
            now = time.monotonic()  # batch ``done`` is evaluated; the first one included tracing
            first_done = first_done or now
            progress.set_postfix_str(speed_text(done - 1, now - first_done, total and max(total - done, 0),
                                                ("batch", "batches")), refresh=False)

    keeper = DetectionsKeeper()
    with writer.as_default(), keeping_detections(keeper):
        raw = model_lib_v2.eager_eval_loop(model, configs, counted(progress), global_step=step)
    writer.flush()
    from object_detection.utils import label_map_util

    categories = label_map_util.create_categories_from_labelmap(eval_input_config.label_map_path)
    write_json_atomic(model_dir / DETECTIONS, detections_file(keeper, files, categories, checkpoint,
                                                               int(step.numpy())))
    count = seen[0]
    raw = {k: float(v) for k, v in raw.items()}
    result = {"checkpoint": str(checkpoint), "step": int(step.numpy()), "num_images": count,
              **summarize(raw), "seconds": round(time.monotonic() - start, 1), "all": raw}
    write_json_atomic(out, result)
    if result["per_class_AP"]:
        plot_per_class(result["per_class_AP"], model_dir / "metrics_per_class.png",
                       f"per-class AP at step {result['step']} ({count} images)")
    print(f"evaluate: mAP {result['mAP']:.3f}  mAP@0.5 {result['mAP@0.5']:.3f}  mAP@0.75 {result['mAP@0.75']:.3f}  "
          f"({result['seconds']} s) -> {out}", flush=True)
    for name, ap in sorted(result["per_class_AP"].items()):
        print(f"evaluate:   AP {name:<20} {ap:.3f}", flush=True)
    return result


@cli
def main(argv: Sequence[str] | None = None) -> int:
    parser = training_dir_parser("python -m tfodkit.evaluate", __doc__, "where the checkpoints are; metrics go there")
    parser.add_argument("--checkpoint", default=None, help="a checkpoint prefix (default: the latest in model_dir)")
    parser.add_argument("--force", action="store_true", help="evaluate even if metrics.json is for this checkpoint")
    args = parser.parse_args(argv)
    evaluate(args.pipeline_config, args.model_dir, args.checkpoint, args.force)
    return 0


if __name__ == "__main__":
    tfodkit.compat.exit_now(main())  # skips TensorFlow's slow teardown
