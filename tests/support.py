"""Helpers that several test files use: decoding records, odd images, checking predictions.

Fixtures live in conftest.py; a test file never imports from another test file.
"""

from __future__ import annotations

import tfodkit.compat  # noqa: F401

import random
from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image, ImageOps

EXIF_ORIENTATION = 274


# ---------------------------------------------------------------------------------------------- records

def records_of(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix == ".record")


def decode_all(paths, label_map: Path | None = None) -> dict[str, dict]:
    """filename -> what TFOD's decoder gives (image, boxes, classes), plus the raw tf.train.Example."""
    from object_detection.core import standard_fields as fields
    from object_detection.data_decoders.tf_example_decoder import TfExampleDecoder

    decoder = TfExampleDecoder(label_map_proto_file=str(label_map) if label_map else None)
    out = {}
    for path in paths:
        for serialized in tf.data.TFRecordDataset(str(path)):
            d = decoder.decode(serialized)
            example = tf.train.Example.FromString(serialized.numpy())
            name = d[fields.InputDataFields.filename].numpy().decode()
            assert name not in out, f"{name} written twice"
            out[name] = {
                "image": d[fields.InputDataFields.image].numpy(),
                "boxes": d[fields.InputDataFields.groundtruth_boxes].numpy(),
                "classes": d[fields.InputDataFields.groundtruth_classes].numpy().tolist(),
                "difficult": d[fields.InputDataFields.groundtruth_difficult].numpy().tolist(),
                "example": example,
                "split": path.name.split(".")[0].split("-")[0],
            }
    return out


# ---------------------------------------------------------------------------------------------- images, predictions

def noise_image(rng: random.Random, size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    """A picture with shapes on noise: the model answers differently for each."""
    from tfodkit.synthetic import draw_image

    image, _ = draw_image(rng, max(size))
    return image.resize(size).convert(mode)


def make_odd_images(folder: Path) -> Path:
    """A corrupt JPEG, a greyscale JPEG, an RGBA PNG and an EXIF-rotated JPEG."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(5)
    noise_image(rng, (300, 220), "L").save(folder / "grey.jpg", quality=92)
    rgba = noise_image(rng, (260, 260), "RGBA")
    alpha = Image.new("L", rgba.size, 255)
    alpha.paste(0, (0, 0, 80, 260))  # a transparent band on the left
    rgba.putalpha(alpha)
    rgba.save(folder / "rgba.png")
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6  # stored 400x240, shown rotated 90 degrees clockwise: 240x400
    noise_image(rng, (400, 240)).save(folder / "rotated.jpg", exif=exif, quality=92)
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg" + bytes(range(256)) * 4)
    return folder


def as_seen(path: Path) -> np.ndarray:
    """What a person sees, built independently of predict.load_image: EXIF applied, alpha over white."""
    image = ImageOps.exif_transpose(Image.open(path))
    if image.mode == "RGBA":
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, image)
    return np.asarray(image.convert("RGB"))


def reference(signature, path: Path) -> dict:
    out = signature(input_tensor=tf.constant(as_seen(path)[np.newaxis]))
    n = int(out["num_detections"][0])
    return {"boxes": out["detection_boxes"][0, :n].numpy(), "scores": out["detection_scores"][0, :n].numpy(),
            "classes": out["detection_classes"][0, :n].numpy().astype(int)}


def assert_agrees_with_saved_model(detections_json: dict, signature) -> None:
    """Every JSON entry's boxes, scores and classes are what the serving signature returns."""
    assert detections_json["images"]
    for entry in detections_json["images"]:
        ref = reference(signature, Path(entry["image"]))
        dets = entry["detections"]
        assert len(dets) == len(ref["scores"]) > 0
        order = np.argsort(-ref["scores"], kind="stable")
        norm = np.array([[d["box_normalized"][k] for k in ("ymin", "xmin", "ymax", "xmax")] for d in dets])
        np.testing.assert_allclose(norm, ref["boxes"][order], atol=2e-6)
        np.testing.assert_allclose([d["score"] for d in dets], ref["scores"][order], atol=2e-6)
        assert [d["class_id"] for d in dets] == ref["classes"][order].tolist()
        scale = np.array([entry["height"], entry["width"]] * 2)
        pixels = np.array([[d["box"][k] for k in ("ymin", "xmin", "ymax", "xmax")] for d in dets])
        np.testing.assert_allclose(pixels, ref["boxes"][order] * scale, atol=0.01)
        assert {d["class_name"] for d in dets} <= {"circle", "square"}
