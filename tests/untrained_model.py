"""An untrained but real exported TFOD SavedModel, for predict tests and bench/predict.

Builds SSD MobileNet V2 FPNLite 320x320 from configs/base with random weights,
runs one forward pass so every variable exists, saves a checkpoint and exports
it with TFOD's own exporter (``image_tensor`` input), exactly as a trained model
is exported. About 40 s on 2 CPU cores.

The zoo config's initialisers make an untrained model's activations vanish, so
every box would score sigmoid(-4.6) ~ 0.01 whatever the image. Variance-keeping
(He) initialisation of the convolutions and a class head scaled to logits of
standard deviation 1.5 give scores that spread over about 0.4-0.9, differ from
image to image and between the two classes: enough for score and class
filters to have something to filter.
"""

from __future__ import annotations

from pathlib import Path

from tfodkit.paths import BASE_CONFIGS

CONFIG = BASE_CONFIGS / "ssd_mobilenet_v2_fpnlite_320x320.config"
LABELS = "item {\n  id: 1\n  name: 'circle'\n}\nitem {\n  id: 2\n  name: 'square'\n}\n"


def _built_ssd(seed: int, image_seed: int, is_training: bool, num_classes: int | None = None):
    """The base-config SSD built with ``seed`` and run once on a random image, so every variable exists.

    Returns (configs, model, preprocessed image, true shapes, predictions).
    """
    import tfodkit.compat  # noqa: F401

    import tensorflow as tf
    from object_detection.builders import model_builder
    from object_detection.utils import config_util

    tf.random.set_seed(seed)
    configs = config_util.get_configs_from_pipeline_file(str(CONFIG))
    if num_classes is not None:
        configs["model"].ssd.num_classes = num_classes
    model = model_builder.build(model_config=configs["model"], is_training=is_training)
    image = tf.random.stateless_uniform([1, 320, 320, 3], seed=[seed, image_seed], maxval=255.0)
    prepped, shapes = model.preprocess(image)
    return configs, model, prepped, shapes, model.predict(prepped, shapes)


def export_untrained_ssd(out_dir: Path, num_classes: int = 2, seed: int = 0) -> Path:
    """Export an untrained SSD to ``out_dir`` (saved_model/, checkpoint/, pipeline.config)."""
    configs, model, prepped, shapes, predictions = _built_ssd(seed, 1, is_training=False, num_classes=num_classes)

    import numpy as np
    import tensorflow as tf
    from object_detection import exporter_lib_v2
    from object_detection.utils import config_util

    pipeline = config_util.create_pipeline_proto_from_configs(configs)
    model.postprocess(predictions, shapes)

    rng = tf.random.Generator.from_seed(seed)
    for var in model.variables:
        if "kernel" in var.name and "ClassPredictor/" not in var.name and "BoxHead/BoxPredictor/" not in var.name:
            fan_in = int(np.prod(var.shape[:2] if "depthwise" in var.name else var.shape[:-1]))
            var.assign(rng.normal(var.shape, stddev=float(np.sqrt(2.0 / fan_in))))
    logits = model.predict(prepped, shapes)["class_predictions_with_background"].numpy()[0]
    scale = 1.5 / np.maximum(logits.std(axis=0), 1e-6)  # per class (background first)
    for var in model.variables:
        if "ClassPredictor/pointwise_kernel" in var.name:
            var.assign(var * np.tile(scale, var.shape[-1] // len(scale)).astype(np.float32))
        elif "ClassPredictor/bias" in var.name:
            var.assign(tf.fill(var.shape, -4.5))

    ckpt_dir = Path(out_dir).parent / (Path(out_dir).name + ".ckpt")
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    tf.train.Checkpoint(model=model).save(str(ckpt_dir / "ckpt"))
    exporter_lib_v2.export_inference_graph("image_tensor", pipeline, str(ckpt_dir), str(out_dir))
    return Path(out_dir)


def write_pretrained_dir(out_dir: Path, seed: int = 0) -> Path:
    """A zoo-style pretrained directory with a real checkpoint: what readconfig --pretrained_dir takes.

    ``out_dir/pipeline.config`` is the zoo config of SSD MobileNet V2 FPNLite
    320x320 (90 COCO classes) and ``out_dir/checkpoint/ckpt-0`` holds every
    variable of that model, randomly initialised with ``seed``: the same layout
    and object graph as a downloaded zoo checkpoint, so fine-tuning restores from
    it exactly as it would from the zoo's.
    """
    _, model, *_ = _built_ssd(seed, 2, is_training=True)

    import tensorflow as tf

    out_dir = Path(out_dir)
    (out_dir / "checkpoint").mkdir(parents=True, exist_ok=True)
    (out_dir / "pipeline.config").write_text(CONFIG.read_text())
    ckpt = tf.train.Checkpoint(model=model)
    ckpt.save_counter  # noqa: B018 - zoo checkpoints hold it (saved by a CheckpointManager); TFOD's restore checks
    ckpt.write(str(out_dir / "checkpoint" / "ckpt-0"))
    return out_dir
