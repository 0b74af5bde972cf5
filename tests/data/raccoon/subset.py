"""Rebuild this folder from a full copy of the raccoon dataset: the images the tests use.

    .venv/bin/python tests/data/raccoon/subset.py UPSTREAM [--out tests/data/raccoon]

UPSTREAM is a copy of https://github.com/datitran/raccoon_dataset (its
images/, annotations/, data/raccoon_labels.csv, data/test.record and
training/object-detection.pbtxt). Images, VOC files, the label map and the
licence are copied byte for byte; data/raccoon_labels.csv keeps the header
and the rows of these images, in the original order; data/test.record keeps
the author's own serialized examples of the images that are both here and in
the author's test split: their records (framing and CRCs included) byte for
byte, in the original order.
"""

from __future__ import annotations

import argparse
import shutil
import struct
from pathlib import Path

# raccoon-1..10: the fault-injection tests; raccoon-65 and raccoon-98: one pair of byte-identical pictures,
# annotated twice; raccoon-150: a greyscale JPEG; raccoon-72: two boxes in one image (in the author's test split).
IMAGES = [f"raccoon-{i}.jpg" for i in (*range(1, 11), 65, 98, 150, 72)]
COPIED = ["LICENSE", "training/object-detection.pbtxt"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("upstream", type=Path, help="a full copy of the raccoon dataset")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args(argv)
    src, out = args.upstream, args.out
    for sub in ("images", "annotations", "data", "training"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    for name in COPIED:
        shutil.copyfile(src / name, out / name)
    for name in IMAGES:
        shutil.copyfile(src / "images" / name, out / "images" / name)
        xml = name.replace(".jpg", ".xml")
        shutil.copyfile(src / "annotations" / xml, out / "annotations" / xml)
    lines = (src / "data" / "raccoon_labels.csv").read_text().splitlines(keepends=True)
    (out / "data" / "raccoon_labels.csv").write_text(
        "".join([lines[0], *(line for line in lines[1:] if line.split(",", 1)[0] in IMAGES)]))

    import tensorflow as tf  # only to parse tf.train.Example; the records are copied as they are

    data = (src / "data" / "test.record").read_bytes()
    kept, at = [], 0
    while at < len(data):  # TFRecord framing: length (8 bytes), its CRC (4), the record, its CRC (4)
        (length,) = struct.unpack("<Q", data[at:at + 8])
        frame = data[at:at + 16 + length]
        example = tf.train.Example.FromString(frame[12:12 + length])
        if example.features.feature["image/filename"].bytes_list.value[0].decode() in IMAGES:
            kept.append(frame)
        at += len(frame)
    (out / "data" / "test.record").write_bytes(b"".join(kept))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
