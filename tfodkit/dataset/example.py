"""Worker side of ``convert``: read an image, check it, build TFOD's tf.train.Example.

Runs in the worker processes (forked from the parent after TensorFlow is
imported, so the workers pay no import cost). Each call handles a chunk of
images and writes them, framed as TFRecords, to one chunk file; the parent
then copies the records it keeps into the shards with ``copy_file_range``, so
image bytes never travel through a pipe and the parent stays light.
"""

from __future__ import annotations

import tfodkit.compat  # noqa: F401

import hashlib
import io
import os
from dataclasses import dataclass, field

import tensorflow as tf
from PIL import Image

from tfodkit.dataset.readers import Entry, Obj, Problem

# What TFOD's decoder (tf-slim's Image handler) decodes: JPEG with decode_jpeg,
# anything else with decode_image(channels=3), which turns an animated GIF into
# a 4-D tensor that TFOD rejects. JPEG and PNG are what TFOD's own converters
# write, and the only formats accepted here.
EXIF_ORIENTATION = 0x0112


class Unreadable(Exception):
    """The image cannot be decoded by TFOD; the message says why."""


SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # frame headers (not DHT, JPG, DAC)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def jpeg_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the JPEG's frame header, after walking every segment and scan to the end marker.

    A JPEG cut short still opens in PIL (which reads the header only) but makes
    TensorFlow's decode_jpeg fail in the middle of training: Unreadable here.
    Walking the markers costs a fraction of PIL's open and nothing is decoded.
    """
    n, pos, size, scanned = len(data), 2, None, False
    while pos + 2 <= n:
        if data[pos] != 0xFF:  # extraneous bytes before a marker: libjpeg skips them too
            pos = data.find(b"\xff", pos)
            if pos < 0:
                break
            continue
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xD9:  # EOI
            if size is None or not scanned:
                raise Unreadable("corrupt JPEG: no frame header or no image data before the end marker")
            return size
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # RSTn / TEM: no length
            pos += 2
            continue
        if pos + 4 > n:
            break
        end = pos + 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
        if marker in SOF_MARKERS and size is None and pos + 9 <= n:
            size = (int.from_bytes(data[pos + 7:pos + 9], "big"), int.from_bytes(data[pos + 5:pos + 7], "big"))
        if marker != 0xDA:  # not SOS: skip the segment
            pos = end
            continue
        if size is None:
            raise Unreadable("corrupt JPEG: a scan starts before the frame header")
        scanned = True
        if data.endswith(b"\xff\xd9") and n - 2 >= end:
            return size  # 0xFFD9 after a scan can only be the end-of-image marker (0xFF is stuffed in scans)
        pos = end  # entropy-coded data follows SOS: find the next real marker
        while True:
            pos = data.find(b"\xff", pos)
            if pos < 0 or pos + 1 >= n:
                raise Unreadable("truncated JPEG: the data ends inside a scan, before the end-of-image marker")
            nxt = data[pos + 1]
            if nxt == 0x00 or 0xD0 <= nxt <= 0xD7:  # stuffed 0xFF or restart marker
                pos += 2
            elif nxt == 0xFF:
                pos += 1
            else:
                break
    raise Unreadable("truncated JPEG: the data ends before the end-of-image marker")


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from IHDR, after walking the chunks to IEND; Unreadable if cut short."""
    if data[12:16] != b"IHDR" or len(data) < 24:
        raise Unreadable("corrupt PNG: no IHDR chunk")
    n, pos = len(data), 8
    while pos + 8 <= n:
        length = int.from_bytes(data[pos:pos + 4], "big")
        if data[pos + 4:pos + 8] == b"IEND" and pos + 12 <= n:
            return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        pos += 12 + length
    raise Unreadable("truncated PNG: the data ends before the IEND chunk")


def inspect(data: bytes) -> tuple[bytes, int, int]:
    """(image/format value, width, height) of the stored pixels; Unreadable if TFOD cannot decode it.

    Stored pixels: TFOD decodes without applying EXIF orientation, so neither do we.
    """
    if not data:
        raise Unreadable("the file is empty")
    if data[:3] == b"\xff\xd8\xff":
        fmt, (width, height) = b"jpeg", jpeg_size(data)
    elif data[:8] == PNG_SIGNATURE:
        fmt, (width, height) = b"png", png_size(data)
    else:
        try:
            with Image.open(io.BytesIO(data)) as image:
                kind = image.format
        except (OSError, ValueError, Image.DecompressionBombError):
            raise Unreadable(f"not an image (starts with {data[:8]!r})") from None
        raise Unreadable(f"{kind} images are not decoded by TFOD (convert it to JPEG or PNG)")
    if width <= 0 or height <= 0:
        raise Unreadable(f"the image header says {width}x{height}")
    return fmt, width, height


def exif_orientation(data: bytes) -> int:
    try:
        with Image.open(io.BytesIO(data)) as image:
            return int(image.getexif().get(EXIF_ORIENTATION, 1))
    except (OSError, ValueError, TypeError):
        return 1


def _n(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _box(*values: float) -> str:
    return "(" + ", ".join(_n(v) for v in values) + ")"


@dataclass(slots=True)
class Result:
    """What the parent needs about one image; the example itself is in the chunk file."""

    index: int
    split: str
    filename: str
    where: str
    input_boxes: int
    problems: list[Problem] = field(default_factory=list)
    length: int = 0  # framed record length in the chunk file; 0 when the image is dropped
    sha256: str = ""
    width: int = 0
    height: int = 0
    labels: list[int] = field(default_factory=list)


def build(entry: Entry, images_dir: str, class_ids: dict[str, int], label_map_path: str, crowd: bool,
          result: Result, normalized: bool = False) -> bytes | None:
    """The serialized tf.train.Example for one entry (problems go to ``result``), or None if dropped.

    ``normalized``: the entry's boxes are fractions of the image's size (YOLO); scaled to pixels here.
    """
    path = os.path.join(images_dir, entry.filename)
    n = len(entry.objects)
    lost = f"; its {n} box(es) dropped" if n else ""
    try:
        if entry.data is not None:
            data = entry.data  # embedded in the annotation (LabelMe imageData)
        else:
            with open(path, "rb") as fh:
                data = fh.read()
    except FileNotFoundError:
        result.problems.append(Problem("missing_image", entry.filename, entry.where,
                                       f"no such file: {path}{lost}", boxes=n, image=True))
        return None
    except OSError as exc:
        result.problems.append(Problem("unreadable_image", entry.filename, entry.where,
                                       f"cannot read {path}: {exc.strerror or exc}{lost}", boxes=n, image=True))
        return None
    try:
        fmt, width, height = inspect(data)
    except Unreadable as exc:
        result.problems.append(Problem("unreadable_image", entry.filename, entry.where,
                                       f"{path}: {exc}{lost}", boxes=n, image=True))
        return None
    if entry.size is not None and entry.size != (width, height):
        detail = f"the annotation says {entry.size[0]}x{entry.size[1]}, the file is {width}x{height}"
        orientation = exif_orientation(data)
        if orientation in (5, 6, 7, 8) and entry.size == (height, width):
            detail += (f"; EXIF orientation {orientation}: the annotation used the rotated view but TFOD reads "
                       f"the stored pixels, so the boxes are probably rotated (apply the rotation to the pixels, "
                       f"e.g. PIL.ImageOps.exif_transpose, and annotate again)")
        result.problems.append(Problem("size_mismatch", entry.filename, entry.where, detail + "; boxes kept"))
    xmin, ymin, xmax, ymax, text, label, difficult, truncated, is_crowd = ([] for _ in range(9))
    for obj in entry.objects:
        if normalized:
            obj = Obj(obj.name, obj.xmin * width, obj.ymin * height, obj.xmax * width, obj.ymax * height,
                      obj.difficult, obj.truncated, obj.is_crowd)
        class_id = class_ids.get(obj.name)
        if class_id is None:
            result.problems.append(Problem("unknown_class", entry.filename, entry.where,
                                           f"class '{obj.name}' is not in the label map {label_map_path}; "
                                           f"box {_box(obj.xmin, obj.ymin, obj.xmax, obj.ymax)} dropped", boxes=1))
            continue
        x1, y1 = min(max(obj.xmin, 0.0), width), min(max(obj.ymin, 0.0), height)
        x2, y2 = min(max(obj.xmax, 0.0), width), min(max(obj.ymax, 0.0), height)
        if x2 <= x1 or y2 <= y1:
            why = ("has no area (xmax <= xmin or ymax <= ymin)" if obj.xmax <= obj.xmin or obj.ymax <= obj.ymin
                   else f"lies outside the {width}x{height} image")
            result.problems.append(Problem("zero_area_box", entry.filename, entry.where,
                                           f"box '{obj.name}' {_box(obj.xmin, obj.ymin, obj.xmax, obj.ymax)} {why}; "
                                           f"dropped", boxes=1))
            continue
        if x1 != obj.xmin or y1 != obj.ymin or x2 != obj.xmax or y2 != obj.ymax:
            result.problems.append(Problem("box_outside_image", entry.filename, entry.where,
                                           f"box '{obj.name}' {_box(obj.xmin, obj.ymin, obj.xmax, obj.ymax)} is past "
                                           f"the edge of the {width}x{height} image; clipped to "
                                           f"{_box(x1, y1, x2, y2)}"))
        xmin.append(x1 / width)
        ymin.append(y1 / height)
        xmax.append(x2 / width)
        ymax.append(y2 / height)
        text.append(obj.name.encode("utf-8"))
        label.append(class_id)
        difficult.append(obj.difficult)
        truncated.append(obj.truncated)
        is_crowd.append(obj.is_crowd)
    sha256 = hashlib.sha256(data).hexdigest()
    name = entry.filename.encode("utf-8")
    # Filling the map in place: building Feature objects first copies the image bytes 3 more times (4x slower).
    example = tf.train.Example()
    feature = example.features.feature
    feature["image/height"].int64_list.value.append(height)
    feature["image/width"].int64_list.value.append(width)
    feature["image/filename"].bytes_list.value.append(name)
    feature["image/source_id"].bytes_list.value.append(entry.source_id.encode("utf-8") if entry.source_id else name)
    feature["image/key/sha256"].bytes_list.value.append(sha256.encode("ascii"))
    feature["image/encoded"].bytes_list.value.append(data)
    feature["image/format"].bytes_list.value.append(fmt)
    for key, values in (("xmin", xmin), ("xmax", xmax), ("ymin", ymin), ("ymax", ymax)):
        feature[f"image/object/bbox/{key}"].float_list.value.extend(values)
    feature["image/object/class/text"].bytes_list.value.extend(text)
    feature["image/object/class/label"].int64_list.value.extend(label)
    feature["image/object/difficult"].int64_list.value.extend(difficult)
    feature["image/object/truncated"].int64_list.value.extend(truncated)
    if crowd:
        feature["image/object/is_crowd"].int64_list.value.extend(is_crowd)
    result.sha256, result.width, result.height, result.labels = sha256, width, height, label
    # deterministic: the feature map in key order. Unpinned, protobuf writes it in an order that differs from
    # process to process, so one dataset converted twice gave records that differ in bytes.
    return example.SerializeToString(deterministic=True)


# What the workers work on: set in the parent before the pool forks, so the
# workers inherit it instead of receiving it through a pipe with every chunk.
# entries: list[Entry]; config: images_dir, class_ids, label_map_path (for
# messages), crowd, normalized (YOLO boxes), chunk_dir.
STATE: dict = {}


def convert_chunk(chunk_id: int, split: str, indices: list[int]) -> tuple[str, list[Result]]:
    """Write the examples of ``STATE["entries"][indices]`` to one chunk file; return its path and results."""
    entries, config = STATE["entries"], STATE["config"]
    images_dir, class_ids, label_map_path, crowd = (config[k] for k in ("images_dir", "class_ids", "label_map_path",
                                                                         "crowd"))
    path = os.path.join(config["chunk_dir"], f"chunk-{chunk_id:08d}.tfrecord")
    results = []
    with tf.io.TFRecordWriter(path) as writer:
        for index in indices:
            entry = entries[index]
            result = Result(index, split, entry.filename, entry.where, len(entry.objects))
            serialized = build(entry, images_dir, class_ids, label_map_path, crowd, result,
                               config.get("normalized", False))
            if serialized is not None:
                writer.write(serialized)
                result.length = len(serialized) + 16  # TFRecord framing: length, its CRC, data, its CRC
            results.append(result)
    return path, results
