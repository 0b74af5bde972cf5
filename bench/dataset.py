"""images/s of ``tfodkit.dataset convert`` against a plain single-process converter, on the same data.

The data: real JPEGs and VOC files, by default the raccoon subset in
tests/data/raccoon (``--source``: any folder with images/ and annotations/,
e.g. a full copy of the raccoon dataset), copied into a temporary folder until
there are ``--images`` (or ``--copies`` times each), each copy made
byte-unique (and of its own size) by a JPEG comment segment, so nothing is a
duplicate and every image is really read, hashed and written. The page cache
is warmed first; then the reference and ``convert`` run in turn, ``--repeats``
times each, and the best run of each is compared.

The reference is what TFOD's own create_pascal_tf_record.py does, one image at
a time: parse one XML, read the bytes, open them with PIL (format and size),
sha256, build one tf.train.Example with the same features, write it.

Prints the ratio and writes JSON (default bench/results/dataset.json).
"""

from __future__ import annotations

import tfodkit.compat  # noqa: F401

import hashlib
import io
import json
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import tensorflow as tf
from lxml import etree
from PIL import Image

from tfodkit.dataset import convert
from tfodkit.errors import ArgumentParser

ROOT = Path(__file__).resolve().parent.parent
RACCOON = ROOT / "tests" / "data" / "raccoon"
IMAGES = 4000
TARGET = 1.5


def make_dataset(source: Path, dest: Path, copies: int) -> tuple[Path, Path, int, int]:
    """(images dir, annotations dir, images, bytes): ``copies`` byte-unique copies of every annotated image."""
    images, annotations = dest / "images", dest / "annotations"
    images.mkdir(parents=True)
    annotations.mkdir()
    n = size = 0
    for xml in sorted((source / "annotations").glob("*.xml")):
        tree = etree.parse(str(xml))
        name = tree.findtext("filename")
        data = (source / "images" / name).read_bytes()
        for copy in range(copies):
            new_name = f"{Path(name).stem}-copy{copy:03d}.jpg"
            # Each copy one byte longer than the previous: copies of one picture differ in size as
            # distinct pictures do (same-size files cost convert's duplicate scan an extra small read).
            comment = f"bench copy {copy} of {name}".encode() + b"." * copy
            unique = data[:2] + b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment + data[2:]
            (images / new_name).write_bytes(unique)
            tree.find("filename").text = new_name
            tree.write(str(annotations / f"{Path(new_name).stem}.xml"))
            n += 1
            size += len(unique)
    return images, annotations, n, size


def reference(images: Path, annotations: Path, output: Path) -> int:
    """The plain converter: one annotation, one image, one example, in turn."""
    class_ids: dict[str, int] = {}
    count = 0

    def feature(kind, values):
        if kind == "bytes":
            return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))
        if kind == "float":
            return tf.train.Feature(float_list=tf.train.FloatList(value=values))
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))

    with tf.io.TFRecordWriter(str(output)) as writer:
        for xml in sorted(annotations.glob("*.xml")):
            root = etree.parse(str(xml)).getroot()
            filename = root.findtext("filename")
            data = (images / filename).read_bytes()
            image = Image.open(io.BytesIO(data))
            if image.format != "JPEG":
                raise ValueError(f"{filename} is not a JPEG")
            width, height = image.size
            key = hashlib.sha256(data).hexdigest()
            objs = root.findall("object")
            boxes = [[float(o.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")] for o in objs]
            names = [o.findtext("name") for o in objs]
            labels = [class_ids.setdefault(name, len(class_ids) + 1) for name in names]
            example = tf.train.Example(features=tf.train.Features(feature={
                "image/height": feature("int", [height]),
                "image/width": feature("int", [width]),
                "image/filename": feature("bytes", [filename.encode()]),
                "image/source_id": feature("bytes", [filename.encode()]),
                "image/key/sha256": feature("bytes", [key.encode()]),
                "image/encoded": feature("bytes", [data]),
                "image/format": feature("bytes", [b"jpeg"]),
                "image/object/bbox/xmin": feature("float", [b[0] / width for b in boxes]),
                "image/object/bbox/xmax": feature("float", [b[2] / width for b in boxes]),
                "image/object/bbox/ymin": feature("float", [b[1] / height for b in boxes]),
                "image/object/bbox/ymax": feature("float", [b[3] / height for b in boxes]),
                "image/object/class/text": feature("bytes", [n.encode() for n in names]),
                "image/object/class/label": feature("int", labels),
                "image/object/difficult": feature("int", [int(o.findtext("difficult") or 0) for o in objs]),
                "image/object/truncated": feature("int", [int(o.findtext("truncated") or 0) for o in objs]),
            }))
            writer.write(example.SerializeToString())
            count += 1
    return count


def cpu_seconds() -> float:
    """User + system CPU time of this process and of its exited children (convert's workers)."""
    self, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return self.ru_utime + self.ru_stime + children.ru_utime + children.ru_stime


def count_records(paths) -> int:
    return sum(1 for p in paths for _ in tf.data.TFRecordDataset(str(p)))


def main(argv=None) -> int:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=RACCOON,
                        help="folder with images/ and annotations/ (default: the raccoon subset of the tests)")
    parser.add_argument("--images", type=int, default=IMAGES, help=f"images to make (default {IMAGES})")
    parser.add_argument("--copies", type=int, help="copies of each source image (default: enough for --images)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each converter; the best counts (default 2)")
    parser.add_argument("--workers", type=int, default=None, help="convert's workers (default: every core)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "dataset.json")
    args = parser.parse_args(argv)
    annotated = sorted((args.source / "annotations").glob("*.xml"))
    if not annotated:
        print(f"error: no VOC files in {args.source / 'annotations'} (pass --source DIR with images/ and "
              "annotations/)", file=sys.stderr)
        return 2
    args.copies = args.copies or -(-args.images // len(annotated))
    workers = args.workers or convert.default_workers()
    with tempfile.TemporaryDirectory(prefix="bench-dataset-") as tmp:
        tmp = Path(tmp)
        images, annotations, n, size = make_dataset(args.source, tmp / "data", args.copies)
        for path in images.iterdir():  # warm the page cache: both converters read from memory
            path.read_bytes()
        print(f"dataset: {n} images, {size / 1e6:.0f} MB ({len(annotated)} from {args.source} x {args.copies}); "
              f"{workers} workers, {os.cpu_count()} cpus, load {os.getloadavg()[0]:.2f}")
        runs: dict[str, list[float]] = {"reference": [], "convert": []}
        cpu: dict[str, list[float]] = {"reference": [], "convert": []}
        for repeat in range(args.repeats):
            out = tmp / f"reference-{repeat}.record"
            start, start_cpu = time.perf_counter(), cpu_seconds()
            written = reference(images, annotations, out)
            runs["reference"].append(time.perf_counter() - start)
            cpu["reference"].append(cpu_seconds() - start_cpu)
            assert written == n, (written, n)
            ref_count = count_records([out]) if repeat == 0 else n
            out.unlink()

            out_dir = tmp / f"convert-{repeat}"
            start, start_cpu = time.perf_counter(), cpu_seconds()
            data = convert.run("voc", images, annotations, out_dir, workers=workers, progress=False,
                               out=io.StringIO())
            runs["convert"].append(time.perf_counter() - start)
            cpu["convert"].append(cpu_seconds() - start_cpu)  # the workers have exited: counted as children
            assert data["totals"]["written"]["images"] == n, data["totals"]
            conv_count = count_records(sorted(out_dir.glob("*.record"))) if repeat == 0 else n
            shutil.rmtree(out_dir)
            print(f"  run {repeat + 1}: reference {n / runs['reference'][-1]:.0f} images/s "
                  f"({cpu['reference'][-1]:.2f} CPU s), convert {n / runs['convert'][-1]:.0f} images/s "
                  f"({cpu['convert'][-1]:.2f} CPU s), load {os.getloadavg()[0]:.2f}")
        assert ref_count == conv_count == n, (ref_count, conv_count, n)
    best = {k: min(v) for k, v in runs.items()}
    rate = {k: n / v for k, v in best.items()}
    ratio = rate["convert"] / rate["reference"]
    result = {
        "benchmark": "dataset convert vs plain single-process converter",
        "images": n, "megabytes": round(size / 1e6, 1), "source": str(args.source), "source_images": len(annotated),
        "copies": args.copies, "repeats": args.repeats,
        "workers": workers, "cpus": os.cpu_count(), "load_average_1m": os.getloadavg()[0],
        "python": platform.python_version(), "tensorflow": tf.__version__,
        "seconds": {k: [round(x, 3) for x in v] for k, v in runs.items()},
        "median_seconds": {k: round(statistics.median(v), 3) for k, v in runs.items()},
        "cpu_seconds": {k: [round(x, 3) for x in v] for k, v in cpu.items()},
        "median_ratio": round(statistics.median(runs["reference"]) / statistics.median(runs["convert"]), 3),
        "images_per_s": {k: round(v, 1) for k, v in rate.items()},
        "ratio": round(ratio, 3), "target": TARGET, "meets_target": ratio >= TARGET,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"best of {args.repeats}: reference {rate['reference']:.0f} images/s, convert {rate['convert']:.0f} "
          f"images/s: ratio {ratio:.2f}x (target {TARGET}x; median ratio {result['median_ratio']:.2f}x) -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
