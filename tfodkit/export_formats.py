"""The export formats (``python -m tfodkit.export --formats``, train.sh's TFOD_EXPORT_FORMATS) and the resize of
the inputs that skip the model's resizer (TensorFlow is imported there only).

train.sh's planner checks the list before anything runs; tfodkit.export writes them.
"""

from __future__ import annotations

from tfodkit.errors import UserError, did_you_mean

FORMATS = ("saved_model", "tflite", "tflite_fp16", "tflite_int8", "onnx")
DEFAULT_FORMATS = ("saved_model",)
# where each format is written, under the export directory
PATHS = {"saved_model": "saved_model", "tflite": "tflite/model.tflite", "tflite_fp16": "tflite/model_fp16.tflite",
         "tflite_int8": "tflite/model_int8.tflite", "onnx": "onnx/model.onnx"}

# The SavedModel's second signature, for fixed_shape_resizer models: float32 [N, H, W, 3] images already resized
# to the model's H x W (pixel values 0-255), N at once; TFOD's serving_default takes one uint8 image per call.
BATCH_SIGNATURE = "serving_batch"


def fixed_shape_resize(images, height: int, width: int):
    """[N, h, w, 3] or [h, w, 3] images (any dtype) -> float32 at height x width, as TFOD's fixed_shape_resizer.

    For the inputs that skip the model's own resizer (the batch signature, TFLite, int8 calibration). TFOD's
    resizer is TensorFlow 1's ``resize_images`` (bilinear, align_corners=False), which samples without
    half-pixel centres; TensorFlow 2's ``tf.image.resize`` samples with them, half a pixel away, which moved
    a weak box of a trained model by 0.023 of the image side and its score by 0.025. The model normalises
    before it resizes, this resizes raw pixels: a per-channel affine map commutes with bilinear weights.
    """
    import tensorflow as tf

    return tf.compat.v1.image.resize_images(tf.cast(images, tf.float32), (height, width),
                                            method=tf.image.ResizeMethod.BILINEAR, align_corners=False)


def parse_formats(text: str, what: str = "--formats") -> tuple[str, ...]:
    """ "saved_model,onnx" -> the formats in FORMATS order, the SavedModel always among them (always written)."""
    wanted = [t.strip() for t in text.split(",") if t.strip()]
    for name in wanted:
        if name not in FORMATS:
            hint = did_you_mean(name, FORMATS) or f"the formats are {','.join(FORMATS)}"
            raise UserError(f"{what}: unknown format {name!r}", hint)
    return tuple(f for f in FORMATS if f in wanted or f == "saved_model")
