"""Export the latest checkpoint as a SavedModel, TFLite (float32, float16, int8) and ONNX, each verified.

    python -m tfodkit.export --pipeline_config TRAINING_DIR/pipeline.config --model_dir TRAINING_DIR \\
        --output_dir EXPORTED_MODEL [--formats saved_model,tflite,tflite_fp16,tflite_int8,onnx] \\
        [--calibration_images N]

The SavedModel is TFOD's exporter layout (``saved_model/``, ``checkpoint/``,
``pipeline.config``; for a fixed_shape_resizer model its SavedModel also has
the ``serving_batch`` signature: float32 [N, H, W, 3] images already resized,
N at once, which predict.py batches) plus ``label_map.pbtxt`` (a copy of the training label
map, so predict.py needs nothing else) and ``export.json``. The other formats
(``--formats``, a comma list; the SavedModel is always written):

- ``tflite``: ``tflite/model.tflite``, float32, from TFOD's TFLite graph
  (export_tflite_graph_lib_tf2: SSD models only, TFLite_Detection_PostProcess);
- ``tflite_fp16``: ``tflite/model_fp16.tflite``, float16 weights;
- ``tflite_int8``: ``tflite/model_int8.tflite``, full-integer quantized,
  calibrated on the first --calibration_images images of the training records,
  float32 inputs and outputs;
- ``onnx``: ``onnx/model.onnx``, the SavedModel through tf2onnx, opset 17.

Every TFLite file has ``<name>.tflite.json`` beside it: its input size and the
pixel normalisation it expects (measured on the model's own preprocessing).

Each format is then verified: reloaded with predict.py's backend for it, run on
every image of the test records (eval_input_reader), scored with the COCO
metrics of tfodkit.evaluate and timed per image after a warm-up. Its status:
``passed``; ``failed_verification`` when its mAP@0.5 is more than 0.02 from the
SavedModel's (0.05 for int8: quantization moves scores); ``failed_export`` when
the conversion raised; ``unsupported`` when TFOD has no path for this
meta-architecture (TFLite: SSD with a fixed_shape_resizer only). The table is printed and kept in
export.json (``formats``). Only a failing SavedModel fails the export (exit 1).

Everything is written into a staging directory that replaces OUTPUT_DIR's
contents only when complete (also when OUTPUT_DIR is a mount point, such as a
Docker volume); an export already made from the latest checkpoint with the same
formats is reused.
"""

from __future__ import annotations

import tfodkit.compat  # noqa: F401

import contextlib
import io
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from tfodkit.errors import FAILURE, UserError, cli, training_dir_parser
from tfodkit.export_formats import BATCH_SIGNATURE, DEFAULT_FORMATS, FORMATS, PATHS, fixed_shape_resize, parse_formats
from tfodkit.fsutil import replace_dir, staging_dir

# |mAP@0.5 - the SavedModel's| above which a format fails verification. float32, float16 and ONNX compute what
# the SavedModel computes; int8 rounds every activation, which moves scores by a few hundredths (0.031 at most
# on 9 held-out images in the first measurement), so its bound is looser.
MAX_DELTA_MAP50 = {"tflite": 0.02, "tflite_fp16": 0.02, "onnx": 0.02, "tflite_int8": 0.05}
ONNX_OPSET = 17  # tf2onnx 1.17.0 converts TFOD's SSD at 11-18 (19 refused); 17 is the newest both accept
ONNX_TIMEOUT = 1800  # seconds for one tf2onnx conversion (SSD takes 22-32 s on 2 cores)
DEFAULT_CALIBRATION_IMAGES = 100
SSD_ONLY = "TFOD's TFLite path covers SSD only"
FIXED_ONLY = "TFOD's TFLite path needs a fixed_shape_resizer"  # export_tflite_graph_lib_tf2 refuses the others
STATUSES = ("passed", "failed_verification", "failed_export", "unsupported")


def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[-1] if lines else ''}"[:300]


def _size_mb(path: Path) -> float:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return round(sum(p.stat().st_size for p in files) / 1e6, 2)


# ---------------------------------------------------------------------------------------------- the data


def decoded_examples(input_paths: Sequence[str], limit: int | None = None):
    """(uint8 image [H, W, 3], ground-truth boxes normalised [N, 4], 1-based classes [N]) of each record,
    in order, decoded by TFOD's own TfExampleDecoder (what its input pipelines use)."""
    import tensorflow as tf
    from object_detection.core import standard_fields as fields
    from object_detection.data_decoders import tf_example_decoder

    decoder = tf_example_decoder.TfExampleDecoder()
    files = [f for p in input_paths for f in sorted(tf.io.gfile.glob(p))]
    done = 0
    for name in files:
        for raw in tf.data.TFRecordDataset(name):
            if limit is not None and done >= limit:
                return
            example = decoder.decode(raw)
            yield (example[fields.InputDataFields.image].numpy(),
                   example[fields.InputDataFields.groundtruth_boxes].numpy(),
                   example[fields.InputDataFields.groundtruth_classes].numpy().astype(int))
            done += 1


def fixed_shape(pipeline) -> tuple[int, int] | None:
    """(height, width) of the model's fixed_shape_resizer, or None when it has another resizer."""
    arch = pipeline.model.WhichOneof("model")
    resizer = getattr(getattr(pipeline.model, arch), "image_resizer", None)
    if resizer is None or resizer.WhichOneof("image_resizer_oneof") != "fixed_shape_resizer":
        return None
    return resizer.fixed_shape_resizer.height, resizer.fixed_shape_resizer.width


def _add_batch_signature(pipeline, checkpoint_dir: Path, saved_model: Path, height: int, width: int) -> None:
    """Save ``saved_model`` again with TFOD's serving_default and BATCH_SIGNATURE, which takes N images at once.

    TFOD's image_tensor signature maps its preprocessing over a [1, None, None, 3]
    input, one image per call. For a fixed_shape_resizer model every image
    becomes H x W anyway, so the caller may resize (as the resizer does:
    bilinear) and hand over a whole batch; the model's own preprocess of an
    H x W image resizes it to H x W, i.e. leaves it as it is.
    """
    import tensorflow as tf
    from object_detection import exporter_lib_v2
    from object_detection.builders import model_builder

    model = model_builder.build(model_config=pipeline.model, is_training=False)
    tf.train.Checkpoint(model=model).restore(tf.train.latest_checkpoint(str(checkpoint_dir))).expect_partial()
    module = exporter_lib_v2.DetectionFromImageModule(model)

    @tf.function(input_signature=[tf.TensorSpec([None, height, width, 3], tf.float32, name="images")])
    def batched(images):
        prepped, shapes = model.preprocess(images)
        return module._run_inference_on_images(prepped, shapes)  # TFOD's own: postprocess, 1-based classes

    module.batched = batched
    signatures = {"serving_default": module.__call__.get_concrete_function(),
                  BATCH_SIGNATURE: batched.get_concrete_function()}
    shutil.rmtree(saved_model)
    tf.saved_model.save(module, str(saved_model), signatures=signatures)


# ---------------------------------------------------------------------------------------------- TFLite


def _input_normalisation(pipeline, height: int, width: int) -> dict:
    """The model's preprocessing of a pixel value, as the affine map (x * scale + offset per channel) that
    TFOD's TFLite graph expects done outside it (measured on the built model at 0 and 255, checked at 100)."""
    import tensorflow as tf
    from object_detection.builders import model_builder

    model = model_builder.build(model_config=pipeline.model, is_training=False)

    def prep(value: float) -> np.ndarray:
        return model.preprocess(tf.fill([1, height, width, 3], value))[0].numpy()[0, height // 2, width // 2]

    low, high, mid = prep(0.0), prep(255.0), prep(100.0)
    scale = (high - low) / 255.0
    if not np.allclose(low + 100 * scale, mid, atol=1e-4):
        raise ValueError("the model's preprocessing is not a per-channel affine map of the pixels")
    return {"height": height, "width": width, "scale": [float(v) for v in scale], "offset": [float(v) for v in low]}


def _tflite_graph(pipeline, checkpoint_dir: Path, out: Path) -> Path:
    """TFOD's TFLite-ready SavedModel (SSD with TFLite_Detection_PostProcess) in ``out``."""
    from object_detection import export_tflite_graph_lib_tf2

    export_tflite_graph_lib_tf2.export_tflite_model(pipeline, str(checkpoint_dir), str(out),
                                                   max_detections=100, use_regular_nms=False)
    return out / "saved_model"


def _convert_tflite(graph: Path, fmt: str, path: Path, representative: Callable | None, norm: dict) -> None:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(graph))
    if fmt == "tflite_fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif fmt == "tflite_int8":
        # full-integer: every op int8 (TFLite_Detection_PostProcess, a custom op, stays float), float I/O
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
    # tflite: no optimization at all, i.e. float32 (Optimize.DEFAULT alone would quantize the weights to int8)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(converter.convert())
    path.with_name(path.name + ".json").write_text(json.dumps(norm, indent=2) + "\n")


def _representative(pipeline, norm: dict, count: int) -> Callable:
    """int8 calibration: the first ``count`` training images, resized and normalised as the model's input."""
    paths = list(pipeline.train_input_reader.tf_record_input_reader.input_path)
    scale, offset = np.asarray(norm["scale"], np.float32), np.asarray(norm["offset"], np.float32)

    def dataset():
        for image, _, _ in decoded_examples(paths, count):
            resized = fixed_shape_resize(image[np.newaxis], norm["height"], norm["width"]).numpy()
            yield [(resized * scale + offset).astype(np.float32)]

    return dataset


# ---------------------------------------------------------------------------------------------- ONNX


def _convert_onnx(saved_model: Path, path: Path) -> None:
    """tf2onnx on the SavedModel (not on the TFLite graph: converted, that one has no outputs)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "tf2onnx.convert", "--saved-model", str(saved_model), "--output", str(path),
           "--opset", str(ONNX_OPSET), "--signature_def", "serving_default"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=ONNX_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"tf2onnx took more than {ONNX_TIMEOUT} s") from None
    if proc.returncode != 0 or not path.is_file():
        errors = [line.strip() for line in proc.stderr.splitlines() if "Error" in line or "error" in line]
        tail = errors[-1] if errors else (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        raise RuntimeError(f"tf2onnx failed: {tail[:240]}")
    import onnx

    outputs = [o.name for o in onnx.load(str(path), load_external_data=False).graph.output]
    if not outputs:
        raise RuntimeError("tf2onnx wrote a graph with no outputs")


# ---------------------------------------------------------------------------------------------- verification


def verify(detector, examples: list, categories: list[dict]) -> dict:
    """The detector on every test example: COCO metrics (tfodkit.evaluate) and ms per image after a warm-up."""
    from tfodkit.evaluate import coco_metrics
    from tfodkit.report import MAX_PER_IMAGE, MIN_SCORE

    detector(examples[0][0][np.newaxis])  # warm-up: the first call traces or allocates
    images, seconds = [], 0.0
    for image, gt_boxes, gt_classes in examples:
        start = time.perf_counter()
        ((boxes, classes, scores),) = detector(image[np.newaxis])
        seconds += time.perf_counter() - start
        keep = [j for j in np.argsort(-scores, kind="stable")[:MAX_PER_IMAGE] if scores[j] >= MIN_SCORE]
        images.append({"height": image.shape[0], "width": image.shape[1], "gt_boxes": gt_boxes.tolist(),
                       "gt_classes": gt_classes.tolist(), "boxes": np.asarray(boxes)[keep].tolist(),
                       "scores": np.asarray(scores)[keep].tolist(), "classes": np.asarray(classes)[keep].tolist()})
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its summary: the table has it
        metrics = coco_metrics(images, categories)
    return {"map": round(metrics["mAP"], 4), "map50": round(metrics["mAP@0.5"], 4),
            "ms_per_image": round(1000 * seconds / len(examples), 1)}


def _verified(entry: dict, path: Path, examples: list, categories: list[dict], reference: dict | None) -> None:
    from tfodkit.predict import load_detector

    try:
        entry.update(verify(load_detector(path), examples, categories))
    except Exception as exc:  # noqa: BLE001 - a format that cannot be run fails its row, not the export
        entry.update(status="failed_verification", reason=f"could not run it: {_one_line(exc)}")
        return
    if reference is None or reference.get("map50") is None:
        return
    entry["delta_map50"] = round(entry["map50"] - reference["map50"], 4)
    bound = MAX_DELTA_MAP50.get(entry["format"])
    if bound is not None and abs(entry["delta_map50"]) > bound:
        entry.update(status="failed_verification",
                     reason=f"mAP@0.5 {entry['map50']:.3f} is {abs(entry['delta_map50']):.3f} from the "
                            f"SavedModel's {reference['map50']:.3f} (at most {bound} allowed)")


def table(entries: Sequence[dict]) -> str:
    """The verification table, one row per format."""

    def num(value, spec: str) -> str:
        return format(value, spec) if isinstance(value, int | float) else "-"

    rows = [f"{'format':<12} {'status':<20} {'size MB':>8} {'mAP':>6} {'mAP@0.5':>8} {'delta':>7} {'ms/img':>7}"]
    for e in entries:
        rows.append(f"{e['format']:<12} {e['status']:<20} {num(e['size_mb'], '.1f'):>8} {num(e['map'], '.3f'):>6} "
                    f"{num(e['map50'], '.3f'):>8} {num(e['delta_map50'], '+.3f'):>7} "
                    f"{num(e['ms_per_image'], '.1f'):>7}" + (f"  {e['reason']}" if e["reason"] else ""))
    return "\n".join(rows)


def _entry(fmt: str, output_dir: Path) -> dict:
    return {"format": fmt, "status": "passed", "reason": None, "path": str(output_dir / PATHS[fmt]),
            "size_mb": None, "map": None, "map50": None, "delta_map50": None, "ms_per_image": None}


# ---------------------------------------------------------------------------------------------- export


def export(pipeline_config: Path, model_dir: Path, output_dir: Path, formats: Sequence[str] = DEFAULT_FORMATS,
           calibration_images: int = DEFAULT_CALIBRATION_IMAGES, force: bool = False) -> dict:
    import tensorflow as tf
    from google.protobuf import text_format
    from object_detection import exporter_lib_v2
    from object_detection.protos import pipeline_pb2
    from object_detection.utils import label_map_util

    formats = parse_formats(",".join(formats))
    if calibration_images < 1:
        raise UserError(f"--calibration_images {calibration_images} must be at least 1", "e.g. 100")
    if not pipeline_config.is_file():
        raise UserError(f"{pipeline_config} not found", "run readconfig.py first")
    checkpoint = tf.train.latest_checkpoint(str(model_dir))
    if not checkpoint:
        raise UserError(f"no checkpoint in {model_dir}", "train first (python -m tfodkit.train)")
    marker = output_dir / "export.json"
    if marker.is_file() and not force:
        previous = json.loads(marker.read_text())
        if previous.get("checkpoint") == checkpoint and previous.get("requested_formats") == list(formats):
            print(f"export: {output_dir} is already from {Path(checkpoint).name} with {','.join(formats)}: "
                  "reusing it", flush=True)
            return previous
    pipeline = text_format.Parse(pipeline_config.read_text(), pipeline_pb2.TrainEvalPipelineConfig())
    arch = pipeline.model.WhichOneof("model")
    eval_paths = [p for r in pipeline.eval_input_reader for p in r.tf_record_input_reader.input_path]

    start = time.monotonic()
    entries = {f: _entry(f, output_dir) for f in formats}
    try:
        with staging_dir(output_dir) as tmp:
            print(f"export: SavedModel from {Path(checkpoint).name} ...", flush=True)
            # TFOD's exporter reads the latest checkpoint of a directory: give it exactly ours.
            ckpt_dir = tmp / ".ckpt"
            ckpt_dir.mkdir()
            for f in Path(model_dir).glob(Path(checkpoint).name + ".*"):
                (ckpt_dir / f.name).symlink_to(f.resolve())
            (ckpt_dir / "checkpoint").write_text(f'model_checkpoint_path: "{Path(checkpoint).name}"\n')
            exporter_lib_v2.export_inference_graph("image_tensor", pipeline, str(ckpt_dir), str(tmp))
            shape = fixed_shape(pipeline)
            if shape is not None:
                print(f"export: adding the batch signature {BATCH_SIGNATURE} ({shape[0]}x{shape[1]}) ...", flush=True)
                _add_batch_signature(pipeline, ckpt_dir, tmp / "saved_model", *shape)
            label_maps = {r.label_map_path for r in [pipeline.train_input_reader, *pipeline.eval_input_reader]}
            label_maps.discard("")
            if label_maps:
                shutil.copyfile(sorted(label_maps)[0], tmp / "label_map.pbtxt")
            entries["saved_model"]["size_mb"] = _size_mb(tmp / "saved_model")
            _export_others(pipeline, arch, formats, entries, ckpt_dir, tmp, calibration_images)
            shutil.rmtree(ckpt_dir)

            examples = list(decoded_examples(eval_paths))
            categories = label_map_util.create_categories_from_labelmap(sorted(label_maps)[0]) if label_maps else \
                [{"id": i, "name": f"class {i}"} for i in range(1, _num_classes(pipeline) + 1)]
            if not examples:
                print(f"export: no test records ({', '.join(eval_paths) or 'no eval_input_reader'}): "
                      "nothing verified", flush=True)
                for entry in entries.values():
                    if entry["status"] == "passed":
                        entry["reason"] = "not verified: the test records hold no image"
            for fmt in formats:
                entry = entries[fmt]
                if entry["status"] != "passed" or not examples:
                    continue
                print(f"export: verifying {fmt} on {len(examples)} test images ...", flush=True)
                _verified(entry, tmp / PATHS[fmt], examples, categories,
                          None if fmt == "saved_model" else entries["saved_model"])
            if entries["saved_model"]["status"] != "passed":
                raise RuntimeError(f"the SavedModel does not run: {entries['saved_model']['reason']}")
            info = {"checkpoint": checkpoint, "meta_arch": arch, "requested_formats": list(formats),
                    "tflite": "tflite" in formats,
                    "saved_model": str(output_dir / "saved_model"),
                    "batch_signature": BATCH_SIGNATURE if shape is not None else None,
                    "label_map": str(output_dir / "label_map.pbtxt") if label_maps else None,
                    "tflite_model": entries["tflite"]["path"] if entries.get("tflite", {}).get("size_mb") else None,
                    "onnx_opset": ONNX_OPSET if "onnx" in formats else None,
                    "calibration_images": calibration_images if "tflite_int8" in formats else None,
                    "test_images": len(examples),
                    "max_delta_map50": {f: MAX_DELTA_MAP50[f] for f in formats if f in MAX_DELTA_MAP50},
                    "formats": list(entries.values()),
                    "seconds": round(time.monotonic() - start, 1)}
            (tmp / "export.json").write_text(json.dumps(info, indent=2) + "\n")
            # The old export stays whole until the new one is complete, and is never mixed with it.
            replace_dir(tmp, output_dir)
    except Exception as exc:
        if isinstance(exc, UserError):
            raise
        raise UserError(f"export failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                        "see the log above; nothing was written", status=FAILURE) from exc
    print(table(info["formats"]), flush=True)
    print(f"export: wrote {output_dir} ({info['seconds']} s)", flush=True)
    return info


def _num_classes(pipeline) -> int:
    arch = pipeline.model.WhichOneof("model")
    return int(getattr(getattr(pipeline.model, arch), "num_classes", 1) or 1)


def _export_others(pipeline, arch: str, formats: Sequence[str], entries: dict, ckpt_dir: Path, tmp: Path,
                   calibration_images: int) -> None:
    """Every format but the SavedModel into ``tmp``; a failure is its entry's status, never an exception."""

    def failed(fmt: str, exc: BaseException) -> None:
        entries[fmt].update(status="failed_export", reason=_one_line(exc))
        print(f"export: {fmt} failed: {entries[fmt]['reason']}", flush=True)

    tflites = [f for f in formats if f.startswith("tflite")]
    resizer = pipeline.model.ssd.image_resizer.WhichOneof("image_resizer_oneof") if arch == "ssd" else None
    if tflites and arch != "ssd":
        for fmt in tflites:
            entries[fmt].update(status="unsupported", reason=f"{SSD_ONLY} (this model is {arch})")
    elif tflites and resizer != "fixed_shape_resizer":
        for fmt in tflites:
            entries[fmt].update(status="unsupported", reason=f"{FIXED_ONLY} (this model has {resizer})")
    elif tflites:
        graph = None
        try:
            print("export: TFLite graph (TFOD's export_tflite_graph) ...", flush=True)
            graph = _tflite_graph(pipeline, ckpt_dir, tmp / "tflite" / ".graph")
            resizer = pipeline.model.ssd.image_resizer.fixed_shape_resizer
            norm = _input_normalisation(pipeline, resizer.height, resizer.width)
        except Exception as exc:  # noqa: BLE001 - reported in every TFLite row
            for fmt in tflites:
                failed(fmt, exc)
        if graph is not None and entries[tflites[0]]["status"] == "passed":
            for fmt in tflites:
                print(f"export: {fmt} ...", flush=True)
                try:
                    representative = _representative(pipeline, norm, calibration_images) \
                        if fmt == "tflite_int8" else None
                    _convert_tflite(graph, fmt, tmp / PATHS[fmt], representative, norm)
                    entries[fmt]["size_mb"] = _size_mb(tmp / PATHS[fmt])
                except Exception as exc:  # noqa: BLE001 - this format fails, the others go on
                    failed(fmt, exc)
        shutil.rmtree(tmp / "tflite" / ".graph", ignore_errors=True)
    if "onnx" in formats:
        print(f"export: onnx (tf2onnx, opset {ONNX_OPSET}) ...", flush=True)
        try:
            _convert_onnx(tmp / "saved_model", tmp / PATHS["onnx"])
            entries["onnx"]["size_mb"] = _size_mb(tmp / PATHS["onnx"])
        except Exception as exc:  # noqa: BLE001 - this format fails, the others go on
            failed("onnx", exc)


@cli
def main(argv: Sequence[str] | None = None) -> int:
    parser = training_dir_parser("python -m tfodkit.export", __doc__, "where the checkpoints are")
    parser.add_argument("--output_dir", type=Path, required=True, help="the exported model directory")
    parser.add_argument("--formats", default=",".join(DEFAULT_FORMATS),
                        help=f"comma list of {','.join(FORMATS)} (default saved_model; it is always written)")
    parser.add_argument("--tflite", action="store_true", help="the old flag: adds tflite to --formats")
    parser.add_argument("--calibration_images", type=int, default=DEFAULT_CALIBRATION_IMAGES,
                        help=f"training images that calibrate tflite_int8 (default {DEFAULT_CALIBRATION_IMAGES})")
    parser.add_argument("--force", action="store_true",
                        help="export even if OUTPUT_DIR is from this checkpoint with these formats")
    args = parser.parse_args(argv)
    formats = parse_formats(args.formats + (",tflite" if args.tflite else ""))
    export(args.pipeline_config, args.model_dir, args.output_dir, formats, args.calibration_images, args.force)
    return 0


if __name__ == "__main__":
    tfodkit.compat.exit_now(main())  # skips TensorFlow's slow teardown
