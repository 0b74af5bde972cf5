"""``check``: decode every record the way training will, and say what is wrong with the data.

Every record goes through TFOD's own ``TfExampleDecoder`` (through the compat
layer, with the label map when it is valid, as TFOD's input reader does), so
an image that would stop training stops here. Beside the decoder, the raw
tf.train.Example is read to catch what the decoder lets through and training
trips on later: label ids 0 or outside the label map, text and label lists of
different lengths or meanings, boxes outside the image or without area,
heights and widths that are not the image's, the same image twice.

Works on records written by any tool: a folder (``*.record``, shards, with
``classes.pbtxt`` and ``dataset.json`` when present), one file, or a glob.
"""

from __future__ import annotations

import tfodkit.compat  # noqa: F401

import collections
import hashlib
import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image, ImageDraw

from tfodkit.dataset import labelmap
from tfodkit.dataset.problems import print_problems
from tfodkit.errors import UserError
from tfodkit.fsutil import AtomicFile
from tfodkit.records import LABEL_MAP, REPORT, SAMPLES, missing_shards, record_files, split_of

# kind -> (error?, what it means). Warnings are printed but do not fail the check.
KINDS = {
    "label_map": (True, "the label map is not what TFOD accepts"),
    "missing_shard": (True, "a shard of a sharded split is missing"),
    "corrupt_record": (True, "the record file is damaged (the rest of that file is unreadable)"),
    "not_an_example": (True, "a record is not a tf.train.Example"),
    "decode_error": (True, "TFOD's decoder fails on the record (the image cannot be decoded)"),
    "box_lists_mismatch": (True, "box coordinate, label and text lists of different lengths"),
    "label_zero": (True, "class label 0 or below (0 is the background)"),
    "unknown_label": (True, "class label or text not in the label map"),
    "text_label_mismatch": (True, "class text and label disagree with the label map"),
    "box_outside_image": (True, "box coordinates outside [0, 1]"),
    "zero_area_box": (True, "box without area"),
    "size_mismatch": (True, "image/height or image/width differs from the decoded image"),
    "split_leak": (True, "the same image bytes in two splits: evaluation sees training images"),
    "count_mismatch": (True, "record counts differ from dataset.json"),
    "no_label_map": (False, "no label map to validate against"),
    "unused_class": (False, "a label map class that no box uses"),
    "empty_split": (False, "a split without records"),
    "duplicate_image": (False, "the same image bytes in two records of one split"),
}
TOLERANCE = 1e-4  # normalized coordinates: float32 rounding of x / width


@dataclass
class Issue:
    kind: str
    where: str
    detail: str

    @property
    def error(self) -> bool:
        return KINDS[self.kind][0]


def _feature(example, key: str, kind: str) -> list:
    feature = example.features.feature.get(key)
    if feature is None:
        return []
    return list(getattr(feature, kind).value)


def _pct(values, qs=(0, 5, 50, 95, 100)) -> list[float]:
    return [float(v) for v in np.percentile(np.asarray(values, dtype=np.float64), qs)] if len(values) else []


class Checker:
    def __init__(self, label_map_path: Path | None, n_samples: int = 16, thumb: int = 256):
        self.issues: list[Issue] = []
        self.label_map_path = label_map_path
        self.names: dict[int, str] | None = None  # id -> name, when a label map was read
        self.ids: dict[str, int] = {}  # class text -> id (names and display names), when a label map was read
        self.valid_label_map = False
        self.n_samples, self.thumb = n_samples, thumb
        self.samples: list[Image.Image | None] = []
        self.seen = 0
        self.rng = random.Random(0)
        self.splits: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self.class_boxes: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self.class_images: collections.Counter = collections.Counter()
        self.widths: list[int] = []
        self.heights: list[int] = []
        self.box_w: list[float] = []
        self.box_h: list[float] = []
        self.box_rel: list[float] = []
        self.first_by_sha: dict[str, tuple[str, str]] = {}

    def add(self, kind: str, where: str, detail: str) -> None:
        self.issues.append(Issue(kind, where, detail))

    # ------------------------------------------------------------ label map
    def read_label_map(self) -> None:
        path = self.label_map_path
        if path is None:
            self.add("no_label_map", "-", "no classes.pbtxt beside the records and no --label_map: labels are not "
                                          "validated (pass --label_map FILE)")
            return
        try:
            items = labelmap.parse_items(labelmap.read_text(path), str(path))
        except UserError as exc:
            self.add("label_map", str(path), exc.what)
            return
        problems = labelmap.problems_of(items, str(path))
        for problem in problems:
            self.add("label_map", str(path), problem)
        label_map = labelmap.from_items(items, str(path))
        self.names, self.ids = label_map.names, label_map.ids
        self.valid_label_map = not problems

    def class_name(self, label: int) -> str:
        if self.names and label in self.names:
            return self.names[label]
        return f"id {label}"

    # ------------------------------------------------------------ records
    def check_files(self, files: list[Path]) -> None:
        """One decode pipeline for every file (traced once, decoding in parallel), fed in file order.

        A Python generator reads the raw records (so a damaged file ends that
        file only) and queues what it hands to the pipeline; the pipeline's
        output comes back in the same order, one element per queued record,
        an error for a record that TFOD's decoder cannot decode.
        """
        from object_detection.core import standard_fields as fields
        from object_detection.data_decoders.tf_example_decoder import TfExampleDecoder

        decoder = TfExampleDecoder(label_map_proto_file=str(self.label_map_path) if self.valid_label_map else None)
        keys = (fields.InputDataFields.image, fields.InputDataFields.groundtruth_boxes,
                fields.InputDataFields.groundtruth_classes)
        queued: collections.deque = collections.deque()

        def raw_records():
            for path in files:
                split = split_of(path)
                self.splits[split]["files"] += 1
                records = iter(tf.data.TFRecordDataset(str(path)))
                index = 0
                while True:
                    try:
                        serialized = next(records).numpy()
                    except StopIteration:
                        break
                    except tf.errors.OpError as exc:
                        self.add("corrupt_record", f"{path.name} record {index}",
                                 f"{path.name} is damaged after {index} records: {_first_line(exc)}")
                        break
                    queued.append((split, f"{path.name} record {index}", serialized))
                    index += 1
                    yield serialized

        def decode(serialized):
            decoded = decoder.decode(serialized)
            return tuple(decoded[k] for k in keys)

        dataset = tf.data.Dataset.from_generator(raw_records, output_signature=tf.TensorSpec([], tf.string))
        decoded = iter(dataset.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(2))
        while True:
            try:
                result = next(decoded)
            except StopIteration:
                break
            except tf.errors.OpError as exc:
                result = exc
            split, where, serialized = queued.popleft()
            self.check_record(split, where, serialized, result)

    def check_record(self, split: str, where: str, serialized: bytes, result) -> None:
        stats = self.splits[split]
        stats["records"] += 1
        try:
            ex = tf.train.Example.FromString(serialized)
        except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError and friends
            self.add("not_an_example", where, f"not a tf.train.Example: {exc}")
            return
        name = next((v.decode("utf-8", "replace") for k in ("image/filename", "image/source_id")
                     for v in _feature(ex, k, "bytes_list")[:1] if v), "")
        if name:
            where = f"{where} ({name})"
        if isinstance(result, Exception):
            self.add("decode_error", where, f"TFOD's decoder fails: {_first_line(result)}")
            return
        image, boxes, classes = result
        height, width = int(image.shape[0]), int(image.shape[1])
        self.widths.append(width)
        self.heights.append(height)
        encoded = b"".join(_feature(ex, "image/encoded", "bytes_list"))
        sha = hashlib.sha256(encoded).hexdigest()
        if sha in self.first_by_sha:
            first_split, first_where = self.first_by_sha[sha]
            self.add("duplicate_image" if first_split == split else "split_leak", where,
                     f"same image bytes as {first_where}")
        else:
            self.first_by_sha[sha] = (split, where)
        for key, actual in (("image/height", height), ("image/width", width)):
            stated = _feature(ex, key, "int64_list")
            if stated and stated[0] != actual:
                self.add("size_mismatch", where, f"{key} is {stated[0]}, the decoded image is {width}x{height}")
        coords = {k: _feature(ex, f"image/object/bbox/{k}", "float_list") for k in ("xmin", "ymin", "xmax", "ymax")}
        labels = _feature(ex, "image/object/class/label", "int64_list")
        texts = [t.decode("utf-8", "replace") for t in _feature(ex, "image/object/class/text", "bytes_list")]
        n = len(coords["xmin"])
        lengths = {**{k: len(v) for k, v in coords.items()}, "class/label": len(labels)}
        if texts:
            lengths["class/text"] = len(texts)
        if len(set(lengths.values())) > 1:
            self.add("box_lists_mismatch", where, "list lengths differ: "
                     + ", ".join(f"{k} {v}" for k, v in lengths.items()))
        stats["boxes"] += n
        stats["images_without_boxes"] += n == 0
        for i, label in enumerate(labels):
            if label <= 0:
                self.add("label_zero", where, f"box {i} has class label {label}; ids start at 1 (0 is the background)")
            elif self.names is not None and label not in self.names:
                self.add("unknown_label", where, f"box {i} has class label {label}, which is not in the label map")
        if self.names is not None:
            by_name = self.ids
            for i, text in enumerate(texts):
                if text not in by_name:
                    self.add("unknown_label", where, f"box {i} has class text '{text}', which is not in the label "
                                                     f"map")
                elif i < len(labels) and labels[i] != by_name[text]:
                    self.add("text_label_mismatch", where, f"box {i} is '{text}' (id {by_name[text]} in the label "
                                                           f"map) but has label {labels[i]}")
        for i in range(n):
            try:
                x1, y1, x2, y2 = (coords[k][i] for k in ("xmin", "ymin", "xmax", "ymax"))
            except IndexError:
                break
            box = f"({x1:.4g}, {y1:.4g}, {x2:.4g}, {y2:.4g})"
            if min(x1, y1, x2, y2) < -TOLERANCE or max(x1, y1, x2, y2) > 1 + TOLERANCE:
                self.add("box_outside_image", where, f"box {i} {box} (xmin, ymin, xmax, ymax) is outside [0, 1]")
            if x2 <= x1 or y2 <= y1:
                self.add("zero_area_box", where, f"box {i} {box} (xmin, ymin, xmax, ymax) has no area")
                continue
            bw, bh = (x2 - x1) * width, (y2 - y1) * height
            self.box_w.append(bw)
            self.box_h.append(bh)
            self.box_rel.append(float(np.sqrt(max(x2 - x1, 0) * max(y2 - y1, 0))))
        decoded_classes = [int(c) for c in classes.numpy()]
        for label, count in collections.Counter(decoded_classes).items():
            self.class_boxes[self.class_name(label)][split] += count
            self.class_images[self.class_name(label)] += 1
        self.sample(image, boxes.numpy(), decoded_classes, name or where)

    # ------------------------------------------------------------ samples
    def sample(self, image, boxes, classes, title: str) -> None:
        """Reservoir sampling (seeded): at most n_samples thumbnails in memory, whatever the count."""
        if self.n_samples <= 0:
            return
        slot = self.seen if self.seen < self.n_samples else self.rng.randrange(self.seen + 1)
        self.seen += 1
        if slot >= self.n_samples:
            return
        thumb = self.thumbnail(image.numpy(), boxes, classes, title)
        if slot < len(self.samples):
            self.samples[slot] = thumb
        else:
            self.samples.append(thumb)

    def thumbnail(self, pixels, boxes, classes, title: str) -> Image.Image:
        from object_detection.utils import visualization_utils as vu

        picture = Image.fromarray(pixels).convert("RGB")
        picture.thumbnail((self.thumb, self.thumb))
        for (ymin, xmin, ymax, xmax), label in zip(boxes.tolist(), classes, strict=False):
            colour = vu.STANDARD_COLORS[label % len(vu.STANDARD_COLORS)] if label > 0 else "Red"
            vu.draw_bounding_box_on_image(picture, ymin, xmin, ymax, xmax, color=colour, thickness=2,
                                          display_str_list=[self.class_name(label)])
        cell = Image.new("RGB", (self.thumb, self.thumb + 14), "white")
        cell.paste(picture, ((self.thumb - picture.width) // 2, (self.thumb - picture.height) // 2))
        ImageDraw.Draw(cell).text((2, self.thumb), title[-40:], fill="black")
        return cell

    def write_samples(self, path: Path) -> Path | None:
        cells = [c for c in self.samples if c is not None]
        if not cells:
            return None
        columns = min(4, len(cells))
        rows = -(-len(cells) // columns)
        grid = Image.new("RGB", (columns * (self.thumb + 4), rows * (self.thumb + 18)), "white")
        for i, cell in enumerate(cells):
            grid.paste(cell, ((i % columns) * (self.thumb + 4), (i // columns) * (self.thumb + 18)))
        with AtomicFile(path, "wb") as out:
            grid.save(out, format="PNG")
        return path

    # ------------------------------------------------------------ cross-checks
    def finish(self, files: list[Path], folder: Path | None) -> None:
        by_split: dict[str, list[Path]] = collections.defaultdict(list)
        for path in files:
            by_split[split_of(path)].append(path)
        for split, total, missing in missing_shards(files):
            self.add("missing_shard", split, f"shard(s) {', '.join(map(str, missing))} of {total} missing for {split}")
        for split in by_split:
            if not self.splits[split]["records"]:
                self.add("empty_split", split, f"{split} has no records")
        report = folder / REPORT if folder else None
        if report and report.is_file() and len(files) > 0 and all(p.parent == folder for p in files):
            try:
                written = json.loads(report.read_text(encoding="utf-8")).get("splits", {})
            except ValueError:
                written = {}
            for split, stats in written.items():
                if split in by_split:
                    for what, key in (("images", "records"), ("boxes", "boxes")):
                        if stats.get(what) != self.splits[split][key]:
                            self.add("count_mismatch", split, f"dataset.json says {stats.get(what)} {what} in "
                                     f"{split}, the records hold {self.splits[split][key]}")
        if self.names is not None:
            for label, name in sorted(self.names.items()):
                if label > 0 and name not in self.class_boxes:
                    self.add("unused_class", name, f"class '{name}' (id {label}) has no boxes")

    # ------------------------------------------------------------ report
    def summary(self) -> dict:
        errors = [i for i in self.issues if i.error]
        counts = collections.Counter(i.kind for i in self.issues)
        return {
            "records": sum(s["records"] for s in self.splits.values()),
            "boxes": sum(s["boxes"] for s in self.splits.values()),
            "splits": {k: dict(v) for k, v in self.splits.items()},
            "classes": {k: {"boxes": sum(v.values()), "images": self.class_images[k], **dict(v)}
                        for k, v in self.class_boxes.items()},
            "image_width": _pct(self.widths), "image_height": _pct(self.heights),
            "box_width_px": _pct(self.box_w), "box_height_px": _pct(self.box_h),
            "box_relative_size": _pct(self.box_rel),
            "box_aspect_w_h": _pct([w / h for w, h in zip(self.box_w, self.box_h, strict=True) if h > 0]),
            "problems": {k: counts[k] for k in KINDS if counts[k]},
            "errors": len(errors),
            "issues": [i.__dict__ for i in self.issues],
        }

    def print(self, data: dict, out) -> None:
        print(f"{data['records']} records, {data['boxes']} boxes", file=out)
        print(f"  {'split':<12} {'files':>5} {'records':>8} {'boxes':>8} {'no boxes':>8}", file=out)
        for split, s in sorted(self.splits.items(), key=lambda kv: _split_order(kv[0])):
            print(f"  {split:<12} {s['files']:>5} {s['records']:>8} {s['boxes']:>8} {s['images_without_boxes']:>8}",
                  file=out)
        ids = {v: k for k, v in (self.names or {}).items()}
        splits = sorted(self.splits, key=_split_order)
        width = max([len(c) for c in data["classes"]] + [5])
        print(f"  {'id':>4}  {'class':<{width}} {'images':>7} {'boxes':>7}"
              + "".join(f" {s[:10]:>10}" for s in splits), file=out)
        for name, c in sorted(data["classes"].items(), key=lambda kv: (ids.get(kv[0], 1 << 30), kv[0])):
            print(f"  {ids.get(name, '?'):>4}  {name:<{width}} {c['images']:>7} {c['boxes']:>7}"
                  + "".join(f" {c.get(s, 0):>10}" for s in splits), file=out)
        if self.widths:
            sizes = collections.Counter(zip(self.widths, self.heights, strict=True))
            common = ", ".join(f"{w}x{h} ({n})" for (w, h), n in sizes.most_common(3))
            print(f"image sizes: {len(sizes)} distinct; most common {common}", file=out)
            _row("image width px", data["image_width"], out)
            _row("image height px", data["image_height"], out)
        if self.box_w:
            _row("box width px", data["box_width_px"], out)
            _row("box height px", data["box_height_px"], out)
            _row("box sqrt(area)", data["box_relative_size"], out, "of the image")
            _row("box aspect w/h", data["box_aspect_w_h"], out)
            tiny = sum(1 for w, h in zip(self.box_w, self.box_h, strict=True) if min(w, h) < 16)
            if tiny:
                print(f"  {tiny} box(es) under 16 px on a side (hard for most detectors at their input size)",
                      file=out)
        print_problems(f"problems: {data['errors']} error(s), {len(self.issues) - data['errors']} warning(s)",
                       [(f"{'error' if KINDS[kind][0] else 'warning'} {kind}: {count}  ({KINDS[kind][1]})",
                         [f"{i.where}: {i.detail}" for i in self.issues if i.kind == kind])
                        for kind, count in data["problems"].items()], out)


def _split_order(split: str) -> tuple:
    return ({"training": 0, "train": 0, "testing": 1, "test": 1}.get(split, 2), split)


def _row(title: str, values: list[float], out, unit: str = "") -> None:
    if values:
        shown = "  ".join(f"{q} {_fmt(v)}" for q, v in zip(("min", "p5", "median", "p95", "max"), values, strict=True))
        print(f"  {title:<16} {shown} {unit}".rstrip(), file=out)


def _fmt(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _first_line(exc: BaseException) -> str:
    """The informative line of a TensorFlow error (tf.data wraps the cause in function-node lines)."""
    text = getattr(exc, "message", None) or str(exc)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    useful = [line for line in lines if "{{function_node" not in line and "[[{{node" not in line]
    return ((useful or lines or [type(exc).__name__])[0])[:300]


def run(records: Path, label_map: Path | None = None, samples: Path | None = None, n_samples: int = 16,
        out=None) -> dict:
    """Check records; returns the summary (``errors`` > 0 means the check failed)."""
    out = out or sys.stdout
    files, folder = record_files(Path(records))
    if label_map is not None and not Path(label_map).is_file():
        raise UserError(f"label map {label_map} not found", "check the --label_map path")
    if label_map is None and folder is not None and (folder / LABEL_MAP).is_file():
        label_map = folder / LABEL_MAP
    checker = Checker(Path(label_map) if label_map else None, n_samples=n_samples)
    checker.read_label_map()
    print(f"checking {len(files)} file(s) in {folder}" + (f" against {label_map}" if label_map else ""), file=out)
    checker.check_files(sorted(files, key=lambda p: (_split_order(split_of(p)), p.name)))  # training first
    checker.finish(files, folder)
    data = checker.summary()
    checker.print(data, out)
    if samples is None and folder is not None:
        samples = folder / (SAMPLES if Path(records).is_dir() else f"{files[0].stem}-samples.png")
    written = checker.write_samples(Path(samples)) if samples else None
    if written:
        print(f"samples: {written} ({len(checker.samples)} images with their boxes)", file=out)
    data["samples"] = str(written) if written else None
    print(f"check: {data['errors']} error(s)" if data["errors"] else "check: ok", file=out)
    return data
