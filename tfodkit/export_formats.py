"""The export formats (``python -m tfodkit.export --formats``, train.sh's TFOD_EXPORT_FORMATS), without TensorFlow.

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


def parse_formats(text: str, what: str = "--formats") -> tuple[str, ...]:
    """ "saved_model,onnx" -> the formats in FORMATS order, the SavedModel always among them (always written)."""
    wanted = [t.strip() for t in text.split(",") if t.strip()]
    for name in wanted:
        if name not in FORMATS:
            hint = did_you_mean(name, FORMATS) or f"the formats are {','.join(FORMATS)}"
            raise UserError(f"{what}: unknown format {name!r}", hint)
    return tuple(f for f in FORMATS if f in wanted or f == "saved_model")
