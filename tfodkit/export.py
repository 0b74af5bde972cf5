"""Export the latest checkpoint as a SavedModel (and optionally TFLite), atomically.

    python -m tfodkit.export --pipeline_config TRAINING_DIR/pipeline.config --model_dir TRAINING_DIR \\
        --output_dir EXPORTED_MODEL [--tflite]

The result is TFOD's exporter layout (``saved_model/``, ``checkpoint/``,
``pipeline.config``) plus ``label_map.pbtxt`` (a copy of the training label
map, so predict.py needs nothing else) and ``export.json``. With ``--tflite``
(SSD models only) ``tflite/model.tflite`` is added. Everything is written into
a staging directory that replaces OUTPUT_DIR's contents only when complete
(also when OUTPUT_DIR is a mount point, such as a Docker volume); an export
already made from the latest checkpoint is reused.
"""

from __future__ import annotations

import tfodkit.compat  # noqa: F401

import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from tfodkit.errors import FAILURE, UserError, cli, training_dir_parser
from tfodkit.fsutil import replace_dir, staging_dir


def _export_tflite(pipeline, checkpoint_dir: Path, out: Path) -> Path:
    import tensorflow as tf
    from object_detection import export_tflite_graph_lib_tf2

    graph_dir = out / "tflite" / "graph"
    export_tflite_graph_lib_tf2.export_tflite_model(pipeline, str(checkpoint_dir), str(graph_dir),
                                                   max_detections=100, use_regular_nms=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(graph_dir / "saved_model"))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    path = out / "tflite" / "model.tflite"
    path.write_bytes(converter.convert())
    shutil.rmtree(graph_dir)
    return path


def export(pipeline_config: Path, model_dir: Path, output_dir: Path, tflite: bool = False,
           force: bool = False) -> dict:
    import tensorflow as tf
    from google.protobuf import text_format
    from object_detection import exporter_lib_v2
    from object_detection.protos import pipeline_pb2

    if not pipeline_config.is_file():
        raise UserError(f"{pipeline_config} not found", "run readconfig.py first")
    checkpoint = tf.train.latest_checkpoint(str(model_dir))
    if not checkpoint:
        raise UserError(f"no checkpoint in {model_dir}", "train first (python -m tfodkit.train)")
    marker = output_dir / "export.json"
    if marker.is_file() and not force:
        previous = json.loads(marker.read_text())
        if previous.get("checkpoint") == checkpoint and previous.get("tflite") == tflite:
            print(f"export: {output_dir} is already from {Path(checkpoint).name}: reusing it", flush=True)
            return previous
    pipeline = text_format.Parse(pipeline_config.read_text(), pipeline_pb2.TrainEvalPipelineConfig())
    arch = pipeline.model.WhichOneof("model")
    if tflite and arch != "ssd":
        raise UserError(f"TFLite export supports SSD models only, this is {arch}", "unset TFOD_EXPORT_TFLITE")

    start = time.monotonic()
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
            label_maps = {r.label_map_path for r in [pipeline.train_input_reader, *pipeline.eval_input_reader]}
            label_maps.discard("")
            if label_maps:
                shutil.copyfile(sorted(label_maps)[0], tmp / "label_map.pbtxt")
            tflite_path = _export_tflite(pipeline, ckpt_dir, tmp) if tflite else None
            shutil.rmtree(ckpt_dir)
            info = {"checkpoint": checkpoint, "meta_arch": arch, "tflite": tflite,
                    "saved_model": str(output_dir / "saved_model"),
                    "label_map": str(output_dir / "label_map.pbtxt") if label_maps else None,
                    "tflite_model": str(output_dir / "tflite" / "model.tflite") if tflite_path else None,
                    "seconds": round(time.monotonic() - start, 1)}
            (tmp / "export.json").write_text(json.dumps(info, indent=2) + "\n")
            # The old export stays whole until the new one is complete, and is never mixed with it.
            replace_dir(tmp, output_dir)
    except Exception as exc:
        if isinstance(exc, UserError):
            raise
        raise UserError(f"export failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                        "see the log above; nothing was written", status=FAILURE) from exc
    print(f"export: wrote {output_dir} ({info['seconds']} s)", flush=True)
    return info


@cli
def main(argv: Sequence[str] | None = None) -> int:
    parser = training_dir_parser("python -m tfodkit.export", __doc__, "where the checkpoints are")
    parser.add_argument("--output_dir", type=Path, required=True, help="the exported model directory")
    parser.add_argument("--tflite", action="store_true", help="also write tflite/model.tflite (SSD models)")
    parser.add_argument("--force", action="store_true", help="export even if OUTPUT_DIR is from this checkpoint")
    args = parser.parse_args(argv)
    export(args.pipeline_config, args.model_dir, args.output_dir, args.tflite, args.force)
    return 0


if __name__ == "__main__":
    tfodkit.compat.exit_now(main())  # skips TensorFlow's slow teardown
