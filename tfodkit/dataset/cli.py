"""``python -m tfodkit.dataset convert|check``: argparse front end of convert.py and check.py."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from tfodkit.errors import FAILURE, ArgumentParser, UserError, cli


def build_parser() -> ArgumentParser:
    from tfodkit.dataset.readers import FORMATS

    parser = ArgumentParser(prog="python -m tfodkit.dataset",
                     description="Prepare datasets for TFOD: convert annotations to TFRecords, check records, "
                                 "write records back to COCO JSON.")
    sub = parser.add_subparsers(dest="command", metavar="convert|check|to-coco")
    sub.required = True

    conv = sub.add_parser("convert", help="annotations (VOC, COCO, CSV, LISA, YOLO, LabelMe) -> TFRecords + "
                                          "classes.pbtxt",
                          description="Convert annotations and images to training/testing TFRecords, "
                                      "classes.pbtxt and dataset.json (statistics and problems).")
    conv.add_argument("--format", required=True, choices=FORMATS,
                      help="voc: folder of Pascal VOC .xml; coco: instances JSON; csv: "
                           "filename,width,height,class,xmin,ymin,xmax,ymax; lisa: LISA semicolon CSV; yolo: "
                           "folder of class cx cy w h .txt files; labelme: folder of LabelMe .json files")
    conv.add_argument("--images", type=_optional_path,
                      help="folder the annotations' file names are relative to (yolo: the images folder or the "
                           "Ultralytics root with images/ and labels/; labelme: optional, paths are relative to "
                           "the JSON files)")
    conv.add_argument("--annotations", type=_optional_path,
                      help="VOC folder (or .xml), COCO .json, .csv, YOLO labels folder (optional with the "
                           "Ultralytics layout), LabelMe folder")
    conv.add_argument("--classes", type=Path,
                      help="yolo: data.yaml (names: list or {id: name}) or classes.txt; default: the one beside "
                           "the labels or at the root. YOLO id k becomes label map id k+1")
    conv.add_argument("--split_from_folders", action="store_true",
                      help="keep the split of the folders (images/train -> training, val/valid/test -> testing) "
                           "instead of --test_fraction")
    conv.add_argument("--output_dir", required=True, type=Path, help="where the records and classes.pbtxt go")
    conv.add_argument("--test_fraction", type=float, default=0.2, help="share of images for testing (default 0.2)")
    conv.add_argument("--seed", type=int, default=42, help="seed of the split and the shuffle (default 42)")
    conv.add_argument("--shards", type=_shards, default="auto",
                      help="auto (default): one shard per --shard_size_mb of images in each split, at least 1 "
                           "(1: training.record); N: N training shards, testing a proportional number")
    conv.add_argument("--shard_size_mb", type=float, default=None,
                      help="target shard size for --shards auto (default 150, TensorFlow's 100-200 MB)")
    conv.add_argument("--label_map", "--labels", dest="label_map", type=Path,
                      help="use these class ids (TFOD .pbtxt); default: ids from 1 in sorted name order "
                           "(COCO: category id order)")
    conv.add_argument("--strict", action="store_true", help="any problem is an error and nothing is written")
    conv.add_argument("--workers", type=int, default=None, help="processes (default: every available core)")
    conv.add_argument("--no_progress", action="store_true", help="no progress bar")

    coco = sub.add_parser("to-coco", help="records -> COCO instances JSON (and the images)",
                          description="Write each split of the records as COCO instances JSON: "
                                      "--output FILE.json writes FILE-training.json and FILE-testing.json (one "
                                      "file per split, as COCO tools expect; the split comes from the record "
                                      "file's name). Category ids are the label map's.")
    coco.add_argument("records", type=Path, help="records folder (from convert), a .record file or a glob")
    coco.add_argument("--output", required=True, type=Path, help="FILE.json: FILE-<split>.json per split")
    coco.add_argument("--images_dir", type=Path, help="also write the images here, under their file names")
    coco.add_argument("--label_map", "--labels", dest="label_map", type=Path,
                      help="label map (default: classes.pbtxt beside the records, else the records' class texts)")

    chk = sub.add_parser("check", help="decode every record with TFOD's decoder and validate it",
                         description="Decode every record through TFOD's TfExampleDecoder, validate against the "
                                     "label map, print statistics and problems, write a PNG of samples. "
                                     "Exit status 1 when there are errors.")
    chk.add_argument("records", type=Path, help="records folder (from convert), a .record file or a glob")
    chk.add_argument("--label_map", "--labels", dest="label_map", type=Path,
                     help="label map (default: classes.pbtxt beside the records)")
    chk.add_argument("--samples", type=Path,
                     help="PNG grid of sample images with boxes (default: samples.png in the records folder)")
    chk.add_argument("--num_samples", type=int, default=16, help="images in the sample grid (default 16, 0: none)")
    return parser


def _optional_path(text: str) -> Path | None:
    """A path, or None for '' (what ``make dataset`` passes for a variable left empty)."""
    return Path(text) if text else None


def _shards(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: use auto or a number of shards") from None


@cli
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "convert":
        from tfodkit.dataset import convert

        if args.workers is not None and args.workers < 1:
            raise UserError(f"--workers {args.workers} is out of range", "use 1 or more")
        if args.shard_size_mb is not None and args.shards != "auto":
            raise UserError(f"--shard_size_mb with --shards {args.shards}", "drop one: --shards N sets the count")
        convert.run(args.format, args.images, args.annotations, args.output_dir, test_fraction=args.test_fraction,
                    seed=args.seed, shards=args.shards, shard_size_mb=args.shard_size_mb or convert.SHARD_SIZE_MB,
                    label_map_path=args.label_map, classes=args.classes, split_from_folders=args.split_from_folders,
                    strict=args.strict, workers=args.workers, progress=not args.no_progress)
        return 0
    if args.command == "to-coco":
        from tfodkit.dataset import to_coco

        to_coco.run(args.records, args.output, images_dir=args.images_dir, label_map=args.label_map)
        return 0
    from tfodkit.dataset import check

    data = check.run(args.records, label_map=args.label_map, samples=args.samples, n_samples=args.num_samples)
    return FAILURE if data["errors"] else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
