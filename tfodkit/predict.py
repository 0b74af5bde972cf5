"""predict.py: draw labelled boxes on images with an exported TFOD model, and write JSON.

    python predict.py --model EXPORT_DIR|model.tflite|model.onnx [--labels|--label_map classes.pbtxt] \
        --images "a.jpg, photos/, shots/*.png" [--output_dir results] [--output_file_prefix result] \
        [--min_confidence 0.5] [--format jpg|png] \
        [--json [FILE]] [--max_detections N] [--classes "cat, dog"] [--batch_size N] [--workers N] [--inflight N]

The model is loaded once and warmed up; images are decoded (EXIF orientation
applied, any mode converted to RGB) by worker threads ahead of the model, and
drawn and written by other threads behind it, so the model is never idle
waiting for files; two model calls run at once by default. Only a bounded window of images is in memory at any time.
Every output (pictures and the JSON file) is written to a temporary name and
renamed into place. An image that cannot be read is named on stderr and
skipped; the exit status is then 1.
"""

from __future__ import annotations

import argparse
import colorsys
import json
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tfodkit.errors import FAILURE, ArgumentParser, UserError, cli, did_you_mean
from tfodkit.export_formats import BATCH_SIGNATURE, fixed_shape_resize
from tfodkit.fsutil import AtomicFile

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
PROGRESS_ABOVE = 3  # show a progress bar for more images than this
MODEL_FIX = "give the exporter's output directory (it holds saved_model/), its saved_model/ directory, " \
    "or a .tflite or .onnx file it wrote"
LABELS_FIX = "give the label map the model was trained with, e.g. records/classes.pbtxt"
FORMATS = {"jpg": ("JPEG", {"quality": 90}), "png": ("PNG", {"compress_level": 1})}

# (boxes [N, 4] normalised ymin, xmin, ymax, xmax; class ids [N]; scores [N]) for one image
Detections = tuple[np.ndarray, np.ndarray, np.ndarray]
DetectFn = Callable[[np.ndarray], list[Detections]]


# ---------------------------------------------------------------------------------------------- labels


def load_label_map(path: Path) -> dict[int, str]:
    """{class id: the name shown} of a TFOD label map, by the toolkit's one rule set (tfodkit.dataset.labelmap)."""
    from tfodkit.dataset import labelmap

    return labelmap.load(path, LABELS_FIX).shown


def class_name(class_id: int, labels: dict[int, str]) -> str:
    """The label map's name for a class id, or "class N" when the label map lacks it."""
    return labels.get(class_id, f"class {class_id}")


def class_colour(class_id: int) -> tuple[int, int, int]:
    """One bright colour per class id; neighbouring ids get far-apart hues (golden-ratio steps)."""
    hue = (0.13 + class_id * 0.6180339887) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.8, 1.0)
    return round(r * 255), round(g * 255), round(b * 255)


def text_colour(background: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black or white, whichever reads better on ``background``."""
    r, g, b = background
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 150 else (255, 255, 255)


def parse_classes(spec: str, labels: dict[int, str]) -> set[int]:
    """--classes "cat, dog" (names, or ids) to class ids; an unknown name is a one-line error."""
    by_name = {name.lower(): i for i, name in labels.items()}
    ids: set[int] = set()
    for token in (t.strip() for t in spec.split(",")):
        if not token:
            continue
        if token.lower() in by_name:
            ids.add(by_name[token.lower()])
        elif token.isdigit() or (token.lower().startswith("class ") and token[6:].strip().isdigit()):
            ids.add(int(token.split()[-1]))
        else:
            hint = did_you_mean(token, list(labels.values())) or f"the label map has: {', '.join(labels.values())}"
            raise UserError(f"--classes: {token!r} is not in the label map", hint)
    if not ids:
        raise UserError("--classes is empty", 'give class names separated by commas, e.g. --classes "cat, dog"')
    return ids


# ---------------------------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Job:
    src: Path  # image to read
    dst: Path  # picture to write


def _is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def expand_images(specs: Iterable[str]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files, directories (their images, not recursive) and glob patterns, comma-separated.

    Returns (image paths in order without duplicates, [(spec, problem)] for what matched nothing).
    """
    import glob

    found: list[Path] = []
    problems: list[tuple[str, str]] = []
    seen: set[str] = set()
    for spec in specs:
        tokens = [spec] if os.path.exists(spec) else spec.split(",")
        for token in (t.strip() for t in tokens):
            if not token:
                continue
            path = Path(token).expanduser()
            if path.is_dir():
                items = sorted(p for p in path.iterdir() if _is_image_name(p) and p.is_file())
                if not items:
                    problems.append((token, f"no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) in this directory"))
            elif any(c in token for c in "*?["):
                items = sorted(Path(m) for m in glob.glob(str(path), recursive=True)
                               if _is_image_name(Path(m)) and os.path.isfile(m))
                if not items:
                    problems.append((token, "no image files match this pattern"))
            elif path.exists():
                items = [path]
            else:
                problems.append((token, "no such file"))
                continue
            for item in items:
                key = os.path.realpath(item)
                if key not in seen:
                    seen.add(key)
                    found.append(item)
    return found, problems


def plan_outputs(images: Sequence[Path], output_dir: Path, prefix: str, fmt: str) -> list[Job]:
    """One output name per image, ``<prefix>_<stem>.<fmt>``, unique, never an input file."""
    taken = {os.path.realpath(p).lower() for p in images}
    jobs = []
    for src in images:
        base = f"{prefix}_{src.stem}" if prefix else src.stem
        dst, n = output_dir / f"{base}.{fmt}", 1
        while os.path.realpath(dst).lower() in taken:
            n += 1
            dst = output_dir / f"{base}-{n}.{fmt}"
        taken.add(os.path.realpath(dst).lower())
        jobs.append(Job(src, dst))
    return jobs


def load_image(path: Path):
    """An RGB PIL image as a person sees it: EXIF orientation applied, alpha over white, 16-bit scaled."""
    from PIL import Image, ImageOps

    with Image.open(path) as opened:
        opened.load()
        image = ImageOps.exif_transpose(opened)
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image, dtype=np.float32)
        top = 65535.0 if image.mode.startswith("I;16") else max(float(values.max()), 1.0)
        image = Image.fromarray(np.clip(values * (255.0 / top), 0, 255).astype(np.uint8), "L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        image = Image.new("RGB", rgba.size, (255, 255, 255))
        image.paste(rgba, mask=rgba.getchannel("A"))
    elif image.mode != "RGB":
        image = image.convert("RGB")
    return image


def _reason(exc: BaseException) -> str:
    from PIL import UnidentifiedImageError

    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if isinstance(exc, IsADirectoryError):
        return "is a directory"
    if isinstance(exc, UnidentifiedImageError):
        return "not an image (or a format Pillow cannot read)"
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text.replace(f" '{exc.filename}'", "") if isinstance(exc, OSError) and exc.filename else text


# ---------------------------------------------------------------------------------------------- drawing

_fonts = threading.local()


def _font(size: int):
    """The default FreeType font at ``size`` px (one per thread: FreeType faces are not thread-safe)."""
    from PIL import ImageFont

    cache = _fonts.__dict__.setdefault("cache", {})
    if size not in cache:
        cache[size] = ImageFont.load_default(size=size)
    return cache[size]


def draw_detections(image, detections: Sequence[dict]) -> None:
    """Draw boxes and "name: score" labels on a PIL RGB image, in place.

    Each box and label is in its class's colour with a thin black or white rim,
    and the label text in black or white, so it reads on any background.
    """
    from PIL import ImageDraw

    if not detections:
        return
    draw = ImageDraw.Draw(image)
    width, height = image.size
    side = min(width, height)
    line = max(2, round(side / 200))
    font = _font(max(11, min(40, round(side / 24))))
    pad = max(2, line // 2 + 1)
    for det in sorted(detections, key=lambda d: d["score"]):  # best drawn last, on top
        colour = class_colour(det["class_id"])
        rim = text_colour(colour)
        box = det["box"]
        x0, y0, x1, y1 = box["xmin"], box["ymin"], box["xmax"], box["ymax"]
        draw.rectangle((x0 - 1, y0 - 1, x1 + 1, y1 + 1), outline=rim, width=line + 2)
        draw.rectangle((x0, y0, x1, y1), outline=colour, width=line)
        text = f"{det['class_name']}: {round(100 * det['score'])}%"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        tw, th = right - left + 2 * pad, bottom - top + 2 * pad
        tx = min(max(0.0, x0 - 1), max(0.0, width - tw))
        ty = y0 - 1 - th if y0 - 1 - th >= 0 else max(0.0, y0)  # above the box, or inside it at the top edge
        draw.rectangle((tx, ty, tx + tw, ty + th), fill=colour, outline=rim)
        draw.text((tx + pad - left, ty + pad - top), text, fill=rim, font=font)


def save_atomic(image, dst: Path, fmt: str) -> None:
    """Write ``image`` to a temporary name beside ``dst``, then rename it into place."""
    pil_format, options = FORMATS[fmt]
    with AtomicFile(dst, "wb") as out:
        image.save(out, format=pil_format, **options)


def _draw_and_save(image, detections: list[dict], dst: Path, fmt: str) -> None:
    draw_detections(image, detections)
    save_atomic(image, dst, fmt)


# ---------------------------------------------------------------------------------------------- results


@dataclass
class Options:
    labels: dict[int, str]
    min_confidence: float = 0.5
    keep: set[int] | None = None  # class ids to keep, None for all
    max_detections: int | None = None
    fmt: str = "jpg"
    batch_size: int = 1
    workers: int = 2  # decoding threads, and drawing/writing threads
    inflight: int = 2  # model calls running at once
    any_size: bool = False  # the model resizes each image itself: images of different sizes share a call


def to_records(detections: Detections, width: int, height: int, options: Options) -> list[dict]:
    """The JSON records of one image's detections that pass the filters, best first."""
    boxes, classes, scores = detections
    records = []
    for i in np.argsort(-scores, kind="stable"):
        score, class_id = float(scores[i]), int(classes[i])
        if score < options.min_confidence or (options.keep is not None and class_id not in options.keep):
            continue
        ymin, xmin, ymax, xmax = (float(v) for v in boxes[i])
        records.append({
            "class_id": class_id,
            "class_name": class_name(class_id, options.labels),
            "score": round(score, 6),
            "box": {"xmin": round(xmin * width, 2), "ymin": round(ymin * height, 2),
                    "xmax": round(xmax * width, 2), "ymax": round(ymax * height, 2)},
            "box_normalized": {"xmin": round(xmin, 6), "ymin": round(ymin, 6),
                               "xmax": round(xmax, 6), "ymax": round(ymax, 6)},
        })
        if options.max_detections is not None and len(records) >= options.max_detections:
            break
    return records


class JsonStream:
    """One JSON file written entry by entry (never all in memory), renamed into place at the end."""

    def __init__(self, path: Path, header: dict):
        self.path = path
        self.out = AtomicFile(path, "w")
        self.file = self.out.file
        self.file.write(json.dumps(header, indent=1)[:-2] + ',\n "images": [')
        self.count = 0

    def add(self, entry: dict) -> None:
        self.file.write(("\n  " if self.count == 0 else ",\n  ") + json.dumps(entry))
        self.count += 1

    def close(self, errors: list[dict], summary: dict) -> None:
        self.file.write(f'\n ],\n "errors": {json.dumps(errors)},\n "summary": {json.dumps(summary)}\n}}\n')
        self.out.commit()

    def abort(self) -> None:
        self.out.abort()


@dataclass
class Summary:
    images: int = 0  # pictures written
    detections: int = 0
    seconds: float = 0.0
    failed: list[dict] = field(default_factory=list)  # [{"image": ..., "error": ...}]

    @property
    def rate(self) -> float:
        return (self.images + len(self.failed)) / self.seconds if self.seconds > 0 else 0.0


# ---------------------------------------------------------------------------------------------- pipeline


Decoded = tuple[Job, object, Exception | None]  # (job, PIL image or None, error or None)


def _decoded(jobs: Iterable[Job], pool: ThreadPoolExecutor, ahead: int) -> Iterator[Decoded]:
    """(job, image, None) or (job, None, error) in input order, ``ahead`` decodes in flight."""
    it = iter(jobs)
    window: deque[tuple[Job, Future]] = deque()

    def fill() -> None:
        while len(window) < ahead and (job := next(it, None)) is not None:
            window.append((job, pool.submit(load_image, job.src)))

    fill()
    while window:
        job, future = window.popleft()
        fill()
        try:
            yield job, future.result(), None
        except Exception as exc:  # noqa: BLE001 - any unreadable image is reported and skipped
            yield job, None, exc


def _batches(decoded: Iterator[Decoded], size: int, any_size: bool = False) -> Iterator[list[Decoded]]:
    """Consecutive same-size images (any sizes with ``any_size``) grouped up to ``size``; a failure is a group
    of its own."""
    batch: list = []
    for item in decoded:
        job, image, error = item
        if batch and (error is not None or len(batch) >= size or (image.size != batch[0][1].size and not any_size)):
            yield batch
            batch = []
        if error is not None:
            yield [item]
        else:
            batch.append(item)
            if size == 1:
                yield batch
                batch = []
    if batch:
        yield batch


def run(jobs: Sequence[Job], detect: DetectFn, options: Options, json_stream: JsonStream | None = None,
        progress: bool | None = None, report: Callable[[str], None] | None = None) -> Summary:
    """Decode ahead, detect, draw and write behind; stream JSON entries in input order."""
    from tqdm import tqdm

    summary = Summary()
    bar = tqdm(total=len(jobs), unit="img", file=sys.stderr, dynamic_ncols=True, leave=False,
               disable=(len(jobs) <= PROGRESS_ABOVE) if progress is None else not progress)
    say = report or (lambda text: tqdm.write(text, file=sys.stderr))

    def fail(job: Job, what: str) -> None:
        say(f"error: {what} (skipped)")
        summary.failed.append({"image": str(job.src), "error": what})
        bar.update(1)

    def finish(job: Job, size: tuple[int, int], records: list[dict], future: Future) -> None:
        try:
            future.result()
        except Exception as exc:  # noqa: BLE001 - a write failure is reported by name
            fail(job, f"cannot write {job.dst}: {_reason(exc)}")
            return
        summary.images += 1
        summary.detections += len(records)
        if json_stream is not None:
            json_stream.add({"image": str(job.src), "output": str(job.dst), "width": size[0], "height": size[1],
                             "detections": records})
        bar.update(1)

    def infer(group: list[Decoded]) -> Future:
        arrays = [np.asarray(image) for _, image, _ in group]
        same = all(a.shape == arrays[0].shape for a in arrays)
        batch = arrays[0][np.newaxis] if len(arrays) == 1 else np.stack(arrays) if same else arrays
        if infer_pool is not None:
            return infer_pool.submit(detect, batch)
        future: Future = Future()
        try:
            future.set_result(detect(batch))
        except Exception as exc:  # noqa: BLE001 - reported per image by handoff()
            future.set_exception(exc)
        return future

    def handoff(group: list[Decoded], future: Future) -> None:
        """Detections of one model call to the JSON records and the draw-and-write threads."""
        try:
            results = future.result()
        except Exception as exc:  # noqa: BLE001 - the model failing on one image must not lose the others
            for job, _, _ in group:
                fail(job, f"inference failed on {job.src}: {str(exc).splitlines()[0] if str(exc) else exc!r}")
            return
        for (job, image, _), result in zip(group, results, strict=True):
            records = to_records(result, image.width, image.height, options)
            pending.append((job, image.size, records,
                            write_pool.submit(_draw_and_save, image, records, job.dst, options.fmt)))
        while len(pending) > 2 * workers:
            finish(*pending.popleft())

    workers = max(1, options.workers)
    decode_pool = ThreadPoolExecutor(workers, thread_name_prefix="predict-decode")
    write_pool = ThreadPoolExecutor(workers, thread_name_prefix="predict-write")
    infer_pool = ThreadPoolExecutor(options.inflight, thread_name_prefix="predict-infer") \
        if options.inflight > 1 else None
    running: deque = deque()  # (group, future) model calls in flight, oldest first
    pending: deque = deque()  # (job, size, records, future) pictures being drawn and written, oldest first
    start = time.perf_counter()
    try:
        ahead = 2 * workers + options.batch_size * options.inflight
        for group in _batches(_decoded(jobs, decode_pool, ahead), options.batch_size, options.any_size):
            if group[0][2] is not None:
                job, _, error = group[0]
                fail(job, f"cannot read {job.src}: {_reason(error)}")
                continue
            running.append((group, infer(group)))
            del group
            while len(running) >= options.inflight:
                handoff(*running.popleft())
        while running:
            handoff(*running.popleft())
        while pending:
            finish(*pending.popleft())
    finally:
        for pool in (decode_pool, infer_pool, write_pool):
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
    summary.seconds = time.perf_counter() - start
    return summary


# ---------------------------------------------------------------------------------------------- the model


MODEL_SUFFIXES = {".tflite": "TFLite", ".onnx": "ONNX"}
TFLITE_INPUT = ".json"  # beside model.tflite: model.tflite.json, its input size and pixel normalisation


def find_saved_model(path: Path) -> Path:
    """The SavedModel directory: ``path/saved_model`` (the exporter's output) or ``path`` itself."""
    if not path.exists():
        raise UserError(f"model {path} does not exist", MODEL_FIX)
    for candidate in (path / "saved_model", path):
        if (candidate / "saved_model.pb").is_file() or (candidate / "saved_model.pbtxt").is_file():
            return candidate
    raise UserError(f"no SavedModel in {path} (no saved_model.pb there or in saved_model/)", MODEL_FIX)


def find_model(path: Path) -> Path:
    """The model --model names: a .tflite or .onnx file, or the SavedModel directory (:func:`find_saved_model`)."""
    if path.is_file():
        if path.suffix.lower() not in MODEL_SUFFIXES:
            raise UserError(f"model {path} is a file but not a .tflite or .onnx model", MODEL_FIX)
        return path
    return find_saved_model(path)


def default_label_map(model: Path) -> Path | None:
    """label_map.pbtxt beside the model: the folder of saved_model/ or of the .tflite/.onnx file, or (for a
    file) the export directory above that folder, as tfodkit.export lays them out; None when there is none."""
    for folder in (model.parent, model.parent.parent) if model.is_file() else (model.parent,):
        if (folder / "label_map.pbtxt").is_file():
            return folder / "label_map.pbtxt"
    return None


def _load_failed(kind: str, path: Path, exc: BaseException) -> UserError:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return UserError(f"cannot load the {kind} model {path}: {text}", MODEL_FIX)


class Detector:
    """The exported model's serving signature, called on uint8 [N, H, W, 3] batches.

    Every backend (this one, :class:`TFLiteDetector`, :class:`OnnxDetector`) is
    called the same way and answers in one convention: per image, boxes [N, 4]
    normalised (ymin, xmin, ymax, xmax), 1-based label-map class ids, scores.
    """

    OUTPUTS = ("detection_boxes", "detection_classes", "detection_scores", "num_detections")
    kind = "SavedModel"

    def __init__(self, model_path: Path):
        import tfodkit.compat  # noqa: F401

        import tensorflow as tf

        self.tf = tf
        self.path = find_saved_model(model_path)
        try:
            self.model = tf.saved_model.load(str(self.path))
        except Exception as exc:  # noqa: BLE001 - any load failure is one line naming the model
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"cannot load the SavedModel in {self.path}: {text}", MODEL_FIX) from None
        signature = getattr(self.model, "signatures", {}).get("serving_default")
        if signature is None:
            raise UserError(f"the SavedModel in {self.path} has no serving_default signature",
                            "export it with TFOD's exporter (python -m tfodkit export)")
        inputs = signature.structured_input_signature[1]
        outputs = set(signature.structured_outputs)
        if len(inputs) != 1 or not set(self.OUTPUTS) <= outputs:
            raise UserError(f"the SavedModel in {self.path} is not a TFOD detection model (its signature takes "
                            f"{sorted(inputs)} and returns {sorted(outputs)[:6]})",
                            "export the model with TFOD's exporter, input_type image_tensor")
        (self.input_name, spec), = inputs.items()
        if spec.dtype not in (tf.uint8, tf.float32) or spec.shape.rank != 4:
            raise UserError(f"the SavedModel in {self.path} takes {spec.dtype.name} {spec.shape} input, not images",
                            "export the model with input_type image_tensor (or float_image_tensor)")
        self.signature = signature
        self.dtype = spec.dtype
        # TFOD's image_tensor export declares [1, None, None, 3]: fed a batch, it silently answers
        # for the first image only, so a batch dimension of 1 means one image per call.
        self.max_batch = spec.shape[0] if spec.shape[0] is not None else None
        # tfodkit.export adds BATCH_SIGNATURE to fixed_shape_resizer models: N images resized here to its H x W
        self.batched = self.model.signatures.get(BATCH_SIGNATURE)
        if self.batched is not None:
            (self.batch_input, batch_spec), = self.batched.structured_input_signature[1].items()
            self.batch_shape = (int(batch_spec.shape[1]), int(batch_spec.shape[2]))
            self.max_batch = None

    def __call__(self, batch: np.ndarray | Sequence[np.ndarray]) -> list[Detections]:
        """Detections of each image of ``batch`` (uint8 [N, H, W, 3], or a list of [H, W, 3] of any sizes)."""
        if self.batched is not None:
            resized = self.tf.stack([fixed_shape_resize(image, *self.batch_shape) for image in batch])
            return self._unpack(self.batched(**{self.batch_input: resized}))
        if self.max_batch is not None and len(batch) > self.max_batch:
            return [r for i in range(0, len(batch), self.max_batch) for r in self(batch[i:i + self.max_batch])]
        tensor = self.tf.constant(batch) if self.dtype == self.tf.uint8 else self.tf.constant(batch, self.dtype)
        out = self.signature(**{self.input_name: tensor})
        if out["detection_boxes"].shape[0] != len(batch):
            if len(batch) == 1:
                raise RuntimeError(f"the model returned {out['detection_boxes'].shape[0]} results for one image")
            self.max_batch = 1  # the signature does not really take batches: one image per call from now on
            return self(batch)
        return self._unpack(out)

    @staticmethod
    def _unpack(out: dict) -> list[Detections]:
        boxes = out["detection_boxes"].numpy()
        classes = out["detection_classes"].numpy()
        scores = out["detection_scores"].numpy()
        counts = out["num_detections"].numpy().astype(int).reshape(-1)
        return [(boxes[i, :n], classes[i, :n].astype(int), scores[i, :n]) for i, n in enumerate(counts)]

    def warm_up(self) -> float:
        """One call on a blank image (the first call compiles; about a second). Returns its seconds."""
        start = time.perf_counter()
        self(np.full((1, 320, 320, 3), 128, np.uint8))
        return time.perf_counter() - start


class TFLiteDetector(Detector):
    """A TFOD SSD converted to TFLite (tfodkit.export): float input [1, H, W, 3], no resize inside.

    The image is resized here to the model's H x W (exactly as TFOD's
    fixed_shape_resizer) and normalised by the affine map the export measured on
    the model's own preprocessing (model.tflite.json beside it; MobileNet's
    x / 127.5 - 1 without it). TFOD's TFLite outputs by index: 0 count, 1 scores,
    2 classes (0-based), 3 boxes.
    """

    kind = "TFLite"

    def __init__(self, model_path: Path):
        import tfodkit.compat  # noqa: F401

        import tensorflow as tf

        self.tf, self.path, self.max_batch, self.batched = tf, model_path, 1, None
        self.lock = threading.Lock()  # one interpreter runs one call at a time (predict.py runs two at once)
        try:
            self.interpreter = tf.lite.Interpreter(model_path=str(model_path), num_threads=os.cpu_count() or 1)
            self.interpreter.allocate_tensors()
        except Exception as exc:  # noqa: BLE001 - any load failure is one line naming the model
            raise _load_failed("TFLite", model_path, exc) from None
        (self.input,) = self.interpreter.get_input_details()
        outputs = self.interpreter.get_output_details()
        if len(outputs) != 4 or len(self.input["shape"]) != 4:
            raise UserError(f"the TFLite model {model_path} is not a TFOD SSD export (it has {len(outputs)} outputs, "
                            f"input {list(self.input['shape'])})", "export it with python -m tfodkit.export")
        # TFLite_Detection_PostProcess's outputs are named <call>:0 count, :1 scores, :2 classes, :3 boxes;
        # get_output_details() lists them in another order (by tensor, e.g. :1 :3 :0 :2)
        self.outputs = sorted(outputs, key=lambda d: int(d["name"].rsplit(":", 1)[-1])
                              if d["name"].rsplit(":", 1)[-1].isdigit() else d["index"])
        if [len(d["shape"]) for d in self.outputs] != [1, 2, 2, 3]:
            raise UserError(f"the TFLite model {model_path} is not a TFOD SSD export (outputs "
                            f"{[list(d['shape']) for d in self.outputs]})", "export it with python -m tfodkit.export")
        self.height, self.width = (int(v) for v in self.input["shape"][1:3])
        scale, offset = [1 / 127.5] * 3, [-1.0] * 3
        sidecar = model_path.with_name(model_path.name + TFLITE_INPUT)
        if sidecar.is_file():
            info = json.loads(sidecar.read_text())
            scale, offset = info["scale"], info["offset"]
        self.scale, self.offset = np.asarray(scale, np.float32), np.asarray(offset, np.float32)

    def __call__(self, batch: np.ndarray) -> list[Detections]:
        results = []
        for image in batch:
            resized = fixed_shape_resize(image[np.newaxis], self.height, self.width).numpy()
            x = resized * self.scale + self.offset
            if self.input["dtype"] != np.float32:  # a quantized input: TFLite's (x / scale + zero_point)
                q_scale, zero = self.input["quantization"]
                x = np.round(x / q_scale + zero)
            with self.lock:
                self.interpreter.set_tensor(self.input["index"], x.astype(self.input["dtype"]))
                self.interpreter.invoke()
                count, scores, classes, boxes = (self.interpreter.get_tensor(d["index"])[0].copy()
                                                 for d in self.outputs)
            n = int(count)
            # TFLite_Detection_PostProcess decodes boxes without clipping them to the image, where TFOD's
            # SavedModel clips to the window: a box may start at -0.15. Clip as the SavedModel does.
            boxes = np.clip(boxes[:n].astype(np.float32), 0.0, 1.0)
            results.append((boxes, classes[:n].astype(int) + 1, scores[:n].astype(np.float32)))
        return results


class OnnxDetector(Detector):
    """A TFOD SavedModel converted to ONNX by tf2onnx: the same uint8 input and outputs, one image per call."""

    kind = "ONNX"

    def __init__(self, model_path: Path):
        import onnxruntime

        self.path, self.max_batch, self.batched = model_path, 1, None
        try:
            self.session = onnxruntime.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - any load failure is one line naming the model
            raise _load_failed("ONNX", model_path, exc) from None
        inputs, names = self.session.get_inputs(), [o.name for o in self.session.get_outputs()]
        if len(inputs) != 1 or not set(self.OUTPUTS) <= set(names):
            raise UserError(f"the ONNX model {model_path} is not a TFOD detection model (outputs "
                            f"{sorted(names)[:6]})", "export it with python -m tfodkit.export --formats onnx")
        self.input_name = inputs[0].name
        self.dtype = np.uint8 if inputs[0].type == "tensor(uint8)" else np.float32

    def __call__(self, batch: np.ndarray) -> list[Detections]:
        results = []
        for image in batch:
            boxes, classes, scores, counts = self.session.run(
                list(self.OUTPUTS), {self.input_name: image[np.newaxis].astype(self.dtype)})
            n = int(counts.reshape(-1)[0])
            results.append((boxes[0, :n], classes[0, :n].astype(int), scores[0, :n]))
        return results


def load_detector(path: Path) -> Detector:
    """The backend for --model: TFLite for a .tflite file, ONNX for .onnx, else the SavedModel."""
    model = find_model(path)
    if model.is_file():
        return {".tflite": TFLiteDetector, ".onnx": OnnxDetector}[model.suffix.lower()](model)
    return Detector(model)


# ---------------------------------------------------------------------------------------------- CLI


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = ArgumentParser(
        prog="predict.py", description=__doc__.split("\n\n")[0],
        epilog="Exit status: 0 when every image was written, 1 when some could not be read or written "
               "(each is named on stderr), 2 for bad usage (missing model, label map, no images).")
    parser.add_argument("--model", type=Path, required=True,
                        help="the exporter's output directory (holds saved_model/), its saved_model/ directory, "
                             "or a .tflite or .onnx file (python -m tfodkit.export --formats)")
    parser.add_argument("--labels", "--label_map", dest="labels", type=Path, default=None,
                        help="label map (.pbtxt) the model was trained with (default: label_map.pbtxt beside "
                             "saved_model/ or the model file, or in the export directory above it, which "
                             "tfodkit's export writes)")
    parser.add_argument("--images", nargs="+", action="extend", required=True, metavar="IMAGES",
                        help='image files, directories and glob patterns, comma-separated: "a.jpg, photos/, *.png"')
    parser.add_argument("--output_dir", type=Path, default=Path("results"), help="where pictures go (default results)")
    parser.add_argument("--output_file_prefix", default="result",
                        help="pictures are named PREFIX_<image name>.<format> (default result)")
    parser.add_argument("--min_confidence", type=float, default=0.5, help="keep detections scoring at least this "
                        "(0-1, default 0.5)")
    parser.add_argument("--format", choices=sorted(FORMATS), default="jpg", help="picture format (default jpg)")
    parser.add_argument("--json", nargs="?", const="", default=None, metavar="FILE",
                        help="also write every detection to one JSON file (default FILE: "
                             "OUTPUT_DIR/PREFIX_detections.json)")
    parser.add_argument("--max_detections", type=int, default=None, help="keep at most N detections per image")
    parser.add_argument("--classes", default=None, help='keep only these class names, e.g. "cat, dog"')
    parser.add_argument("--batch_size", type=int, default=None,
                        help="images per model call when the model takes batches: default 8 for a SavedModel "
                             "with the serving_batch signature (tfodkit.export adds it to fixed_shape_resizer "
                             "models), else 1 (TFOD's image_tensor signature, TFLite and ONNX take one)")
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 2),
                        help="threads decoding ahead and threads drawing/writing behind (default min(4, CPUs))")
    parser.add_argument("--inflight", type=int, default=2,
                        help="model calls running at once: a second call uses the cores one call leaves idle "
                             "(default 2)")
    return parser.parse_args(argv)


@cli
def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not 0.0 <= args.min_confidence <= 1.0:
        raise UserError(f"--min_confidence {args.min_confidence} is not between 0 and 1", "e.g. --min_confidence 0.5")
    for flag in ("max_detections", "batch_size", "workers", "inflight"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise UserError(f"--{flag} {value} must be at least 1", f"e.g. --{flag} {8 if flag == 'batch_size' else 1}")

    if args.labels is None:
        model = find_model(args.model)
        args.labels = default_label_map(model)
        if args.labels is None:
            raise UserError(f"no --labels given and no label_map.pbtxt beside {model}", LABELS_FIX)
    labels = load_label_map(args.labels)
    keep = parse_classes(args.classes, labels) if args.classes is not None else None
    find_model(args.model)  # fail before listing thousands of images

    images, problems = expand_images(args.images)
    if not images:
        found = "; ".join(f"{spec}: {problem}" for spec, problem in problems) or "empty"
        raise UserError(f"no images to predict on ({found})",
                        "give image files, directories or glob patterns, separated by commas")
    failed = [{"image": spec, "error": problem} for spec, problem in problems]
    for item in failed:
        print(f"error: {item['image']}: {item['error']} (skipped)", file=sys.stderr)
    try:
        args.output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create --output_dir {args.output_dir}: {exc.strerror}",
                        "choose a directory you can write to") from None
    jobs = plan_outputs(images, args.output_dir, args.output_file_prefix, args.format)
    json_path = None
    if args.json is not None:
        default_name = f"{args.output_file_prefix}_detections.json" if args.output_file_prefix else "detections.json"
        json_path = Path(args.json) if args.json else args.output_dir / default_name
        if not json_path.parent.is_dir():
            raise UserError(f"--json {json_path}: directory {json_path.parent} does not exist", "create it first")

    start = time.perf_counter()
    detector = load_detector(args.model)
    batch_size = args.batch_size or (8 if detector.batched is not None else 1)
    if detector.max_batch is not None and batch_size > detector.max_batch:
        print(f"note: this model's serving signature takes {detector.max_batch} image per call; running "
              f"--batch_size {detector.max_batch} (decoding and writing still overlap inference)", file=sys.stderr)
        batch_size = detector.max_batch
    warm = detector.warm_up()
    print(f"predict: {detector.kind} model {detector.path} loaded in {time.perf_counter() - start - warm:.1f} s, "
          f"warmed up in {warm:.1f} s; {len(jobs)} images", file=sys.stderr)

    options = Options(labels=labels, min_confidence=args.min_confidence, keep=keep,
                      max_detections=args.max_detections, fmt=args.format, batch_size=batch_size,
                      workers=args.workers, inflight=args.inflight, any_size=detector.batched is not None)
    stream = None
    if json_path is not None:
        stream = JsonStream(json_path, {"model": str(detector.path), "labels": str(args.labels),
                                        "min_confidence": args.min_confidence,
                                        "classes": sorted(keep) if keep is not None else None,
                                        "max_detections": args.max_detections})
    try:
        summary = run(jobs, detector, options, stream)
    except BaseException:
        if stream is not None:
            stream.abort()
        raise
    summary.failed[:0] = failed
    if stream is not None:
        stream.close(summary.failed, {"images": summary.images, "detections": summary.detections,
                                      "failed": len(summary.failed), "seconds": round(summary.seconds, 3)})

    print(f"predict: {summary.images} images, {summary.detections} detections, "
          f"{summary.rate:.1f} images/s ({summary.seconds:.1f} s); pictures in {args.output_dir}"
          + (f", detections in {json_path}" if json_path else ""))
    if summary.failed:
        print(f"error: {len(summary.failed)} of the inputs could not be read or written: "
              f"{', '.join(item['image'] for item in summary.failed[:5])}"
              f"{' ...' if len(summary.failed) > 5 else ''} (see the messages above)", file=sys.stderr)
        return FAILURE
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
