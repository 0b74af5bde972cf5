"""Annotation readers: Pascal VOC XML folders, COCO JSON, TFOD-tutorial CSV, LISA CSV, YOLO, LabelMe.

Each reader turns its format into :class:`Entry` objects (one per annotated
image, boxes in pixel corners, as the annotation gives them) plus the problems
it met. Nothing here opens an image: sizes are read from the files later, in
the workers. No TensorFlow import here.
"""

from __future__ import annotations

import csv
import functools
import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tfodkit.errors import UserError

FORMATS = ("voc", "coco", "csv", "lisa", "yolo", "labelme")

# Problem kinds, in the order they are reported. Boxes or images that a
# problem drops are counted under that kind; clipped boxes and size
# mismatches are kept (and still reported).
KINDS = {
    "missing_image": "annotated image file not found: image and its boxes dropped",
    "unreadable_image": "image file not decodable by TFOD (not JPEG/PNG, corrupt or truncated): dropped",
    "duplicate_file": "image file annotated twice: the later annotation dropped",
    "duplicate_image": "the same image bytes under two names: both kept, in the same split "
                       "(with --split_from_folders: where the folders put them)",
    "bad_annotation": "annotation that cannot be parsed: dropped",
    "unknown_class": "class not in the label map: box dropped",
    "not_normalized": "YOLO value outside [0, 1] (pixel coordinates, or a wrong column): box dropped",
    "unsupported_shape": "LabelMe shape that is not a rectangle or a polygon: dropped",
    "zero_area_box": "box with no area inside the image: dropped",
    "box_outside_image": "box past the image edge: clipped to the image",
    "size_mismatch": "size in the annotation differs from the image file: file's size used",
}


@dataclass(slots=True)
class Obj:
    """One box, in pixel corners as annotated."""

    name: str
    xmin: float
    ymin: float
    xmax: float
    ymax: float
    difficult: int = 0
    truncated: int = 0
    is_crowd: int = 0


@dataclass(slots=True)
class Entry:
    """One annotated image."""

    filename: str  # as the annotation names it, relative to --images
    where: str  # the annotation it came from, for messages
    objects: list[Obj] = field(default_factory=list)
    size: tuple[int, int] | None = None  # (width, height) claimed by the annotation
    source_id: str | None = None  # image/source_id; the filename when None
    data: bytes | None = None  # the image bytes, when the annotation embeds them (LabelMe imageData)
    split: str | None = None  # the split its folder names (YOLO's images/train, images/val), if any


@dataclass(slots=True)
class Problem:
    kind: str
    file: str  # the image concerned
    where: str  # the annotation concerned
    detail: str
    boxes: int = 0  # boxes this problem dropped
    image: bool = False  # whether it dropped the image

    def as_dict(self) -> dict:
        return {"kind": self.kind, "file": self.file, "where": self.where, "detail": self.detail}


@dataclass
class Annotations:
    entries: list[Entry]
    classes: list[str]  # class names in their stable order (ids from 1)
    problems: list[Problem]
    input_images: int  # image entries in the input, including dropped ones
    input_boxes: int  # boxes in the input, including dropped ones
    crowd: bool = False  # write image/object/is_crowd (COCO)
    normalized: bool = False  # boxes are fractions of the image's size (YOLO), not pixels
    without_labels: int | None = None  # YOLO: images without a label file (background images)
    images_dir: Path | None = None  # LabelMe without --images: the folder the file names are relative to


def _num(text: str | None, what: str) -> float:
    if text is None or not str(text).strip():
        raise ValueError(f"{what} is missing")
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{what} is {text}")
    return value


def _flag(text: str | None) -> int:
    try:
        return 1 if int(float(text or 0)) else 0
    except ValueError:
        return 0


def _require(path: Path, kind: str) -> Path:
    if kind == "dir" and not path.is_dir():
        raise UserError(f"annotations folder {path} not found", "pass the folder that holds the VOC .xml files")
    if kind == "file" and not path.is_file():
        raise UserError(f"annotation file {path} not found", "check the --annotations path")
    return path


# ---------------------------------------------------------------- Pascal VOC

def voc_files(annotations: Path) -> list[Path]:
    """The .xml files of a VOC folder (recursive, sorted), or one .xml file."""
    if annotations.is_file():
        return [annotations]
    files = sorted(_require(annotations, "dir").rglob("*.xml"))
    if not files:
        raise UserError(f"no .xml files in {annotations}", "pass the folder that holds the VOC .xml files")
    return files


def parse_voc(xml_path: str, base: str = "") -> tuple[Entry | None, Problem | None]:
    """One VOC XML file: an Entry, or a bad_annotation Problem."""
    from lxml import etree

    prefix = base.rstrip(os.sep) + os.sep
    where = xml_path[len(prefix):] if base and xml_path.startswith(prefix) else os.path.basename(xml_path)
    guess = os.path.splitext(os.path.basename(xml_path))[0] + ".jpg"
    try:
        root = etree.parse(xml_path).getroot()
        filename = (root.findtext("filename") or "").strip() or guess
        size = None
        if root.find("size") is not None:
            try:
                size = (int(_num(root.findtext("size/width"), "width")),
                        int(_num(root.findtext("size/height"), "height")))
            except ValueError:
                size = None  # sizes come from the image file anyway
            if size is not None and (size[0] <= 0 or size[1] <= 0):
                size = None
        objects = []
        for number, obj in enumerate(root.iter("object"), start=1):
            name = (obj.findtext("name") or "").strip()
            if not name:
                raise ValueError(f"object {number} has no <name>")
            box = obj.find("bndbox")
            if box is None:
                raise ValueError(f"object {number} ('{name}') has no <bndbox>")
            objects.append(Obj(name, *(_num(box.findtext(k), f"object {number} <{k}>")
                                       for k in ("xmin", "ymin", "xmax", "ymax")),
                               difficult=_flag(obj.findtext("difficult")),
                               truncated=_flag(obj.findtext("truncated"))))
    except (etree.XMLSyntaxError, ValueError, OSError) as exc:
        return None, Problem("bad_annotation", guess, where, f"cannot read {where}: {exc}", image=True)
    return Entry(filename, where, objects, size), None


def parse_voc_batch(paths: list[str], base: str) -> list[tuple[Entry | None, Problem | None]]:
    return [parse_voc(p, base) for p in paths]


def read_voc(annotations: Path, map_fn=None) -> Annotations:
    """A folder of VOC XML files. ``map_fn(func, batches)`` (like ``map``) may run the parsing in a pool."""
    files = voc_files(annotations)
    base = str(annotations if annotations.is_dir() else annotations.parent)
    batches = [[str(p) for p in files[i:i + 256]] for i in range(0, len(files), 256)]
    results: Iterable = (map_fn or map)(functools.partial(parse_voc_batch, base=base), batches)
    entries, problems = [], []
    for batch in results:
        for entry, problem in batch:
            if problem:
                problems.append(problem)
            else:
                entries.append(entry)
    n_boxes = sum(len(e.objects) for e in entries)
    entries, dups = _drop_duplicate_names(entries)
    return Annotations(entries, sorted({o.name for e in entries for o in e.objects}), problems + dups,
                       input_images=len(files), input_boxes=n_boxes)


def _drop_duplicate_names(entries: list[Entry]) -> tuple[list[Entry], list[Problem]]:
    """Keep the first entry per filename; later ones become duplicate_file problems."""
    first: dict[str, Entry] = {}
    kept, problems = [], []
    for entry in entries:
        if entry.filename in first:
            problems.append(Problem("duplicate_file", entry.filename, entry.where,
                                    f"{entry.filename} is annotated again in {entry.where} (first in "
                                    f"{first[entry.filename].where}); {len(entry.objects)} box(es) dropped",
                                    boxes=len(entry.objects), image=True))
        else:
            first[entry.filename] = entry
            kept.append(entry)
    return kept, problems


# ---------------------------------------------------------------- COCO

def read_coco(annotations: Path) -> Annotations:
    """COCO object-detection JSON: images, annotations (bbox [x, y, w, h]), categories."""
    path = _require(annotations, "file")
    try:
        with path.open(encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read COCO JSON {path}: {exc}", "pass a COCO instances_*.json file") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "categories")):
        raise UserError(f"{path} is not COCO detection JSON (no 'images'/'categories' lists)",
                        "pass a COCO instances_*.json file")
    where = path.name
    categories: dict[int, str] = {}
    for cat in sorted(data["categories"], key=lambda c: c.get("id", 0)):
        try:
            categories[int(cat["id"])] = str(cat["name"]).strip()
        except (KeyError, TypeError, ValueError):
            raise UserError(f"{path}: category {cat!r} has no id/name", "fix the categories list") from None
    problems: list[Problem] = []
    entries: list[Entry] = []
    by_id: dict = {}
    for image in data["images"]:
        try:
            entry = Entry(str(image["file_name"]), f"{where} image id {image['id']}",
                          source_id=str(image["id"]))
        except (KeyError, TypeError):
            problems.append(Problem("bad_annotation", str(image)[:60], where,
                                    f"image entry without file_name/id: {str(image)[:80]}", image=True))
            continue
        try:
            entry.size = (int(image["width"]), int(image["height"]))
        except (KeyError, TypeError, ValueError):
            entry.size = None
        if image["id"] in by_id:
            problems.append(Problem("duplicate_file", entry.filename, entry.where,
                                    f"image id {image['id']} appears twice in {where}", image=True))
            continue
        by_id[image["id"]] = entry
        entries.append(entry)
    n_boxes = 0
    for ann in data.get("annotations") or []:
        n_boxes += 1
        ann_where = f"{where} annotation id {ann.get('id', '?')}"
        entry = by_id.get(ann.get("image_id"))
        if entry is None:
            problems.append(Problem("bad_annotation", "?", ann_where,
                                    f"annotation {ann.get('id', '?')} refers to image id {ann.get('image_id')!r}, "
                                    f"which is not in 'images'", boxes=1))
            continue
        try:
            x, y, w, h = (_num(v, "bbox") for v in ann["bbox"])
        except (KeyError, TypeError, ValueError):
            problems.append(Problem("bad_annotation", entry.filename, ann_where,
                                    f"annotation {ann.get('id', '?')} has no valid bbox [x, y, w, h]", boxes=1))
            continue
        cat = ann.get("category_id")
        name = categories.get(cat)
        if name is None:
            problems.append(Problem("unknown_class", entry.filename, ann_where,
                                    f"category id {cat!r} is not in 'categories'", boxes=1))
            continue
        entry.objects.append(Obj(name, x, y, x + w, y + h, is_crowd=_flag(ann.get("iscrowd"))))
    entries, dups = _drop_duplicate_names(entries)
    return Annotations(entries, list(dict.fromkeys(categories.values())), problems + dups,
                       input_images=len(data["images"]), input_boxes=n_boxes, crowd=True)


# ---------------------------------------------------------------- CSV (TFOD tutorial) and LISA

CSV_COLUMNS = ("filename", "class", "xmin", "ymin", "xmax", "ymax")
LISA_COLUMNS = ("Filename", "Annotation tag", "Upper left corner X", "Upper left corner Y",
                "Lower right corner X", "Lower right corner Y")


def _read_rows(path: Path, delimiter: str, columns: tuple[str, ...], hint: str) -> tuple[list[str], Iterable]:
    fh = _require(path, "file").open(newline="", encoding="utf-8-sig")
    reader = csv.reader(fh, delimiter=delimiter)
    header = [h.strip() for h in next(reader, [])]
    missing = [c for c in columns if c not in header]
    if missing:
        fh.close()
        raise UserError(f"{path} lacks the column(s) {', '.join(missing)} (header: {delimiter.join(header)})", hint)
    return header, _closing_rows(fh, reader)


def _closing_rows(fh, reader):
    with fh:
        yield from reader


def _read_table(path: Path, delimiter: str, columns: tuple[str, ...], hint: str, crowd=False) -> Annotations:
    """Rows of (filename, class, x1, y1, x2, y2[, width, height]) grouped by filename, in file order."""
    header, rows = _read_rows(path, delimiter, columns, hint)
    col = {name: header.index(name) for name in header}
    fname, cls, x1, y1, x2, y2 = (col[c] for c in columns)
    wcol, hcol = col.get("width"), col.get("height")
    entries: dict[str, Entry] = {}
    problems: list[Problem] = []
    n_boxes = n_rows = 0
    for line, row in enumerate(rows, start=2):
        if not any(cell.strip() for cell in row):
            continue
        n_rows += 1
        where = f"{path.name} line {line}"
        filename = row[fname].strip() if len(row) > fname else ""
        if not filename:
            n_boxes += 1
            problems.append(Problem("bad_annotation", "?", where, f"row without a filename: {row}", boxes=1))
            continue
        entry = entries.get(filename)
        if entry is None:
            entry = entries[filename] = Entry(filename, where)
            if wcol is not None and hcol is not None:
                try:
                    entry.size = (int(_num(row[wcol], "width")), int(_num(row[hcol], "height")))
                except (ValueError, IndexError):
                    entry.size = None
        values = [row[i].strip() if len(row) > i else "" for i in (cls, x1, y1, x2, y2)]
        if not any(values):
            continue  # an image listed without boxes (a negative example)
        n_boxes += 1
        try:
            if not values[0]:
                raise ValueError("the class is empty")
            coords = [_num(v, c) for v, c in zip(values[1:], columns[2:], strict=True)]
        except ValueError as exc:
            problems.append(Problem("bad_annotation", filename, where, f"bad box {values}: {exc}", boxes=1))
            continue
        entry.objects.append(Obj(values[0], *coords))
    entries_list = list(entries.values())
    return Annotations(entries_list, sorted({o.name for e in entries_list for o in e.objects}), problems,
                       input_images=len(entries_list), input_boxes=n_boxes)


def read_csv(annotations: Path) -> Annotations:
    """TFOD-tutorial CSV: filename,width,height,class,xmin,ymin,xmax,ymax (pixel corners), one row per box."""
    return _read_table(annotations, ",", CSV_COLUMNS,
                       "the CSV needs a header with filename,class,xmin,ymin,xmax,ymax (width,height optional)")


def read_lisa(annotations: Path) -> Annotations:
    """LISA traffic signs: Filename;Annotation tag;Upper left corner X;...;Lower right corner Y;..."""
    return _read_table(annotations, ";", LISA_COLUMNS,
                       "LISA annotations are semicolon separated: Filename;Annotation tag;Upper left corner X;"
                       "Upper left corner Y;Lower right corner X;Lower right corner Y")


# ---------------------------------------------------------------- YOLO (Ultralytics, Roboflow, CVAT)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
CLASS_FILES = ("data.yaml", "data.yml", "dataset.yaml", "classes.txt", "obj.names")
# Ultralytics' split folders (images/train, images/val, ...) -> our splits
SPLIT_FOLDERS = {"train": "training", "training": "training",
                 "val": "testing", "valid": "testing", "validation": "testing", "test": "testing",
                 "testing": "testing"}
CLASSES_FIX = "pass --classes data.yaml or classes.txt (one class name a line, in class-id order)"


def yolo_layout(images: Path, labels: Path | None) -> tuple[Path, Path]:
    """(images root, labels root): Ultralytics' ``images/`` + ``labels/`` under ``images``, or the two folders."""
    if not images.is_dir():
        raise UserError(f"images folder {images} not found", "pass the folder of the images (or the dataset root)")
    if (images / "images").is_dir() and (labels is None or labels.resolve() in (images.resolve(),
                                                                                 (images / "labels").resolve())):
        labels = images / "labels"
        images = images / "images"
    elif labels is None and images.name == "images" and (images.parent / "labels").is_dir():
        labels = images.parent / "labels"  # --images root/images: its labels/ sibling
    if labels is None:
        raise UserError(f"no labels/ folder beside {images / 'images'}",
                        "pass --annotations LABELS_DIR (the folder of the YOLO .txt files)")
    if not labels.is_dir():
        raise UserError(f"labels folder {labels} not found", "pass --annotations LABELS_DIR (YOLO .txt files)")
    return images, labels


def load_class_names(path: Path) -> list[str]:
    """Class names by YOLO id: data.yaml's ``names`` (a list or {id: name}), or a text file, one name a line."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise UserError(f"cannot read the classes file {path}: {exc.strerror or exc}", CLASSES_FIX) from None
    if path.suffix.lower() not in (".yaml", ".yml"):
        return [line.strip() for line in text.splitlines() if line.strip()]
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UserError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}", CLASSES_FIX) from None
    names = data.get("names") if isinstance(data, dict) else None
    if isinstance(names, dict):
        try:
            by_id = {int(k): str(v).strip() for k, v in names.items()}
        except (TypeError, ValueError):
            raise UserError(f"{path}: the keys of 'names' are not class ids", "use {0: name, 1: name, ...}") from None
        if sorted(by_id) != list(range(len(by_id))):
            raise UserError(f"{path}: the class ids of 'names' are not 0..{len(by_id) - 1}: {sorted(by_id)}",
                            "number the classes from 0 without gaps, as YOLO does")
        names = [by_id[i] for i in range(len(by_id))]
    if not isinstance(names, list) or not names:
        raise UserError(f"{path} has no 'names' list or {{id: name}} mapping", CLASSES_FIX)
    return [str(n).strip() for n in names]


def find_classes(images: Path, labels: Path, given: Path | None) -> Path:
    """--classes, else data.yaml or classes.txt beside the labels, in their parent (the root) or beside the images."""
    if given is not None:
        if not given.is_file():
            raise UserError(f"classes file {given} not found", CLASSES_FIX)
        return given
    for folder in dict.fromkeys((labels, labels.parent, images, images.parent)):
        for name in CLASS_FILES:
            if (folder / name).is_file():
                return folder / name
    raise UserError(f"no data.yaml or classes.txt beside {labels} or in {labels.parent}", CLASSES_FIX)


def _on_edge(value: float, tolerance: float = 1e-5) -> float:
    """A normalized coordinate within ``tolerance`` outside [0, 1] put on the edge."""
    return 0.0 if -tolerance < value < 0.0 else 1.0 if 1.0 < value < 1.0 + tolerance else value


def _folder_split(rel: Path) -> str | None:
    return SPLIT_FOLDERS.get(rel.parts[0].lower()) if len(rel.parts) > 1 else None


def read_yolo(images: Path, labels: Path | None, classes: Path | None = None) -> Annotations:
    """YOLO: one ``class cx cy w h`` (normalized) .txt per image, matched by stem, subfolders mirrored.

    ``images`` is the folder the entries' file names are relative to (the
    dataset root in Ultralytics' layout). An image without a label file is a
    background image; a label file without an image is a missing image.
    """
    root = images
    image_dir, label_dir = yolo_layout(images, labels)
    class_file = find_classes(image_dir, label_dir, classes)
    names = load_class_names(class_file)
    if len(set(names)) != len(names) or not all(names):
        raise UserError(f"{class_file}: class names must be distinct and not empty: {names}", CLASSES_FIX)
    found = {p.relative_to(image_dir).with_suffix(""): p for p in sorted(image_dir.rglob("*"))
             if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()}
    label_files = {p.relative_to(label_dir).with_suffix(""): p for p in sorted(label_dir.rglob("*.txt"))
                   if p.name not in CLASS_FILES and p.is_file()}
    if not found and not label_files:
        raise UserError(f"no images in {image_dir} and no .txt labels in {label_dir}",
                        "pass --images (or the Ultralytics root) and --annotations LABELS_DIR")
    entries, problems = [], []
    n_boxes = 0
    for stem in sorted(set(found) | set(label_files), key=str):
        image, label = found.get(stem), label_files.get(stem)
        where = str(label.relative_to(label_dir)) if label else f"{stem} (no label file: background)"
        filename = os.path.relpath(image, root) if image else os.path.relpath(image_dir / stem, root) + ".jpg"
        entry = Entry(filename, where, split=_folder_split(stem))
        if label is not None:
            try:
                lines = label.read_text(encoding="utf-8-sig").splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                problems.append(Problem("bad_annotation", filename, where, f"cannot read {where}: {exc}",
                                        image=True))
                continue
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                n_boxes += 1
                at = f"{where} line {number}"
                fields = line.split()
                try:
                    if len(fields) != 5:
                        raise ValueError(f"{len(fields)} values, not 5 (class cx cy w h)"
                                         + ("; segments and keypoints are not read" if len(fields) > 5 else ""))
                    if not fields[0].isdigit():
                        raise ValueError(f"class id {fields[0]!r} is not a whole number")
                    cx, cy, w, h = (_num(v, k) for v, k in zip(fields[1:], ("cx", "cy", "w", "h"), strict=True))
                except ValueError as exc:
                    problems.append(Problem("bad_annotation", filename, at, f"bad line {line.strip()!r}: {exc}",
                                            boxes=1))
                    continue
                class_id = int(fields[0])
                if class_id >= len(names):
                    problems.append(Problem("unknown_class", filename, at,
                                            f"class id {class_id} is not in {class_file.name} (ids 0.."
                                            f"{len(names) - 1}); box dropped", boxes=1))
                    continue
                off = [f"{k}={v:g}" for k, v in zip(("cx", "cy", "w", "h"), (cx, cy, w, h), strict=True)
                       if not 0.0 <= v <= 1.0]
                if off:
                    problems.append(Problem("not_normalized", filename, at,
                                            f"{', '.join(off)} outside [0, 1] in {line.strip()!r}; box dropped",
                                            boxes=1))
                    continue
                # Normalized corners: scaled to pixels by example.build once the image's size is known. An edge
                # past the image by the rounding of 6-decimal labels is on the edge, not a box to report.
                entry.objects.append(Obj(names[class_id], *(_on_edge(v) for v in (
                    cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))))
        if image is None:
            problems.append(Problem("missing_image", filename, where,
                                    f"no image named {stem}.* ({'/'.join(IMAGE_SUFFIXES)}) in {image_dir}; its "
                                    f"{len(entry.objects)} box(es) dropped", boxes=len(entry.objects), image=True))
            continue
        entries.append(entry)
    entries, dups = _drop_duplicate_names(entries)
    return Annotations(entries, names, problems + dups, input_images=len(set(found) | set(label_files)),
                       input_boxes=n_boxes, normalized=True, without_labels=len(set(found) - set(label_files)))


# ---------------------------------------------------------------- LabelMe

def read_labelme(annotations: Path, images: Path | None) -> Annotations:
    """LabelMe JSON files: rectangles and polygons (their bounding box); the image from imagePath or imageData.

    ``images`` None: the entries' file names are relative to the deepest folder
    that holds the JSON files and their images (``Annotations.images_dir``).
    """
    import base64

    if annotations.is_file():
        files, base = [annotations], annotations.parent
    else:
        files, base = sorted(_require(annotations, "dir").rglob("*.json")), annotations
        if not files:
            raise UserError(f"no .json files in {annotations}", "pass the folder that holds the LabelMe .json files")
    loaded, failed = [], []
    for path in files:
        where = str(path.relative_to(base))
        try:
            with path.open(encoding="utf-8") as fh:
                data = json.load(fh)
            if not isinstance(data, dict) or not isinstance(data.get("shapes"), list):
                raise ValueError("no 'shapes' list: not a LabelMe file")
            image_path = str(data.get("imagePath") or "")
            embedded = base64.b64decode(data["imageData"], validate=True) if data.get("imageData") else None
        except (OSError, ValueError) as exc:
            failed.append((path, where, f"cannot read {where}: {exc}"))
            continue
        if not image_path and embedded is None:
            failed.append((path, where, f"{where} has neither imagePath nor imageData"))
            continue
        # imagePath is relative to the JSON file (LabelMe writes Windows separators on Windows).
        target = Path(os.path.normpath(os.path.abspath(path.parent / image_path.replace("\\", "/")
                                                       if image_path else path.with_suffix(".png"))))
        loaded.append((path, where, data, embedded, target))
    if images is None:
        images = Path(os.path.commonpath([os.path.abspath(base)] + [str(t.parent) for *_, t in loaded]))
    problems = [Problem("bad_annotation", os.path.relpath(path.with_suffix(".jpg"), images), where, detail,
                        image=True) for path, where, detail in failed]
    entries = []
    n_boxes = 0
    for _path, where, data, embedded, target in loaded:
        entry = Entry(os.path.relpath(target, os.path.abspath(images)), where)
        if embedded is not None and not target.is_file():
            entry.data = embedded
        try:
            entry.size = (int(data["imageWidth"]), int(data["imageHeight"]))
        except (KeyError, TypeError, ValueError):
            entry.size = None
        for number, shape in enumerate(data["shapes"], start=1):
            n_boxes += 1
            at = f"{where} shape {number}"
            kind = (shape.get("shape_type") or "polygon") if isinstance(shape, dict) else "?"
            label = str(shape.get("label") or "").strip() if isinstance(shape, dict) else ""
            if kind not in ("rectangle", "polygon"):
                problems.append(Problem("unsupported_shape", entry.filename, at,
                                        f"{kind} shape '{label}' skipped (only rectangle and polygon become boxes)",
                                        boxes=1))
                continue
            try:
                if not label:
                    raise ValueError("no label")
                points = [(_num(p[0], "x"), _num(p[1], "y")) for p in shape.get("points") or []]
                if len(points) < 2 or (kind == "polygon" and len(points) < 3):
                    raise ValueError(f"{len(points)} point(s)")
            except (ValueError, TypeError, IndexError) as exc:
                problems.append(Problem("bad_annotation", entry.filename, at, f"bad {kind} '{label}': {exc}",
                                        boxes=1))
                continue
            xs, ys = [p[0] for p in points], [p[1] for p in points]
            entry.objects.append(Obj(label, min(xs), min(ys), max(xs), max(ys),
                                     difficult=_flag(shape.get("difficult"))))
        entries.append(entry)
    entries, dups = _drop_duplicate_names(entries)
    return Annotations(entries, sorted({o.name for e in entries for o in e.objects}), problems + dups,
                       input_images=len(files), input_boxes=n_boxes, images_dir=Path(images))


def read(fmt: str, annotations: Path | None, map_fn=None, *, images: Path | None = None,
         classes: Path | None = None) -> Annotations:
    if fmt == "yolo":
        return read_yolo(Path(images or "."), annotations, classes)
    if annotations is None:
        raise UserError("--annotations is missing", f"--format {fmt} needs --annotations PATH")
    if fmt == "labelme":
        return read_labelme(annotations, Path(images) if images is not None else None)
    if fmt == "voc":
        return read_voc(annotations, map_fn)
    if fmt == "coco":
        return read_coco(annotations)
    if fmt == "csv":
        return read_csv(annotations)
    if fmt == "lisa":
        return read_lisa(annotations)
    raise UserError(f"unknown format {fmt!r}", f"choose one of: {', '.join(FORMATS)}")
