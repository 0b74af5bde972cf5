"""``to-coco``: records -> COCO instances JSON, one file per split, and optionally the images.

Each record is parsed as a tf.train.Example with TFOD's feature keys (as the
converter writes them and TFOD's decoder reads them). Boxes go back to pixels
with the image's stored size: COCO ``bbox`` is ``[x, y, width, height]``.
Category ids are the label map's ids (TFOD's, from 1); the categories come
from the label map beside the records, else from the records' class texts.
``--output FILE.json`` writes ``FILE-<split>.json`` for each split found
(``training``, ``testing``, or the split named by another tool's file names).
"""

from __future__ import annotations

import tfodkit.compat  # noqa: F401

import collections
import sys
from pathlib import Path, PurePosixPath

from tfodkit import fsutil
from tfodkit.dataset import labelmap
from tfodkit.errors import FAILURE, UserError
from tfodkit.records import LABEL_MAP, record_files, split_of


def _values(example, key: str, kind: str) -> list:
    feature = example.features.feature.get(key)
    return list(getattr(feature, kind).value) if feature is not None else []


def output_path(output: Path, split: str) -> Path:
    """FILE.json -> FILE-<split>.json."""
    return output.with_name(f"{output.stem}-{split}{output.suffix or '.json'}")


def safe_name(filename: str, fallback: str) -> str:
    """A relative path below the images folder: no root, no '..' (records made elsewhere may have them)."""
    parts = [p for p in PurePosixPath(filename.replace("\\", "/")).parts if p not in ("/", "..", ".")]
    return str(PurePosixPath(*parts)) if parts else fallback


def read_splits(files: list[Path]) -> dict[str, list]:
    """{split: [tf.train.Example]} in file order."""
    import tensorflow as tf

    splits: dict[str, list] = collections.defaultdict(list)
    for path in files:
        try:
            for serialized in tf.data.TFRecordDataset(str(path)):
                splits[split_of(path)].append(tf.train.Example.FromString(serialized.numpy()))
        except (tf.errors.OpError, ValueError) as exc:
            raise UserError(f"cannot read {path}: {str(exc).splitlines()[0]}",
                            f"check it with: python -m tfodkit.dataset check {path}", status=FAILURE) from None
    return splits


def to_coco(examples: list, names: dict[int, str], split: str) -> tuple[dict, list[tuple[str, bytes]]]:
    """(COCO instances dict, [(file_name, encoded image)]) of one split's examples."""
    images, annotations, blobs = [], [], []
    seen: set[str] = set()
    for number, ex in enumerate(examples, start=1):
        width = (_values(ex, "image/width", "int64_list") or [0])[0]
        height = (_values(ex, "image/height", "int64_list") or [0])[0]
        raw = next((v.decode("utf-8", "replace") for k in ("image/filename", "image/source_id")
                    for v in _values(ex, k, "bytes_list")[:1] if v), "")
        fmt = (_values(ex, "image/format", "bytes_list") or [b"jpeg"])[0].decode("ascii", "replace").lower()
        name = safe_name(raw, f"{split}-{number:06d}.{'jpg' if fmt in ('jpeg', 'jpg') else fmt}")
        if name in seen:  # two records with one file name: keep both images apart
            name = str(PurePosixPath(name).with_name(f"{number:06d}-{PurePosixPath(name).name}"))
        seen.add(name)
        images.append({"id": number, "file_name": name, "width": width, "height": height})
        blobs.append((name, (_values(ex, "image/encoded", "bytes_list") or [b""])[0]))
        boxes = zip(*(_values(ex, f"image/object/bbox/{k}", "float_list") for k in ("xmin", "ymin", "xmax", "ymax")),
                    strict=False)
        labels = _values(ex, "image/object/class/label", "int64_list")
        texts = [t.decode("utf-8", "replace") for t in _values(ex, "image/object/class/text", "bytes_list")]
        crowd = _values(ex, "image/object/is_crowd", "int64_list")
        for k, (x1, y1, x2, y2) in enumerate(boxes):
            label = labels[k] if k < len(labels) else None
            if label is None or label not in names:
                text = texts[k] if k < len(texts) else ""
                label = next((i for i, n in names.items() if n == text), label)
            if label is None:
                continue
            if label not in names:
                names[label] = texts[k] if k < len(texts) else str(label)
            x, y, w, h = x1 * width, y1 * height, (x2 - x1) * width, (y2 - y1) * height
            annotations.append({"id": len(annotations) + 1, "image_id": number, "category_id": int(label),
                                "bbox": [round(v, 3) for v in (x, y, w, h)], "area": round(w * h, 3),
                                "iscrowd": int(crowd[k]) if k < len(crowd) else 0})
    return {"images": images, "annotations": annotations,
            "categories": [{"id": i, "name": names[i], "supercategory": "none"} for i in sorted(names)]}, blobs


def run(records: Path, output: Path, images_dir: Path | None = None, label_map: Path | None = None,
        out=None) -> dict[str, Path]:
    """Write FILE-<split>.json per split (and the images); returns {split: path}."""
    out = out or sys.stdout
    files, folder = record_files(Path(records))
    output = Path(output)
    beside = folder / LABEL_MAP if folder is not None else None
    if label_map is not None:
        names = dict(labelmap.load(label_map).names)
    elif beside is not None and beside.is_file():
        names = dict(labelmap.load(beside).names)
    else:
        names = {}  # from the records' class texts
    written = {}
    for split, examples in sorted(read_splits(files).items()):
        data, blobs = to_coco(examples, names, split)
        if images_dir is not None:
            for name, blob in blobs:
                with fsutil.AtomicFile(Path(images_dir) / name, "wb") as fh:
                    fh.write(blob)
        path = output_path(output, split)
        fsutil.write_json_atomic(path, data)
        written[split] = path
        print(f"{split}: {len(data['images'])} images, {len(data['annotations'])} boxes, "
              f"{len(data['categories'])} categories -> {path}"
              + (f" (images in {images_dir})" if images_dir is not None else ""), file=out)
    if not written:
        raise UserError(f"no records in {records}", "pass a records folder with training/testing records",
                        status=FAILURE)
    return written
