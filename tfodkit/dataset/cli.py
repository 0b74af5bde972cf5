"""``python -m tfodkit.dataset convert|check``: argparse front end of convert.py and check.py."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from tfodkit.errors import FAILURE, ArgumentParser, UserError, cli


def build_parser() -> ArgumentParser:
    from tfodkit.dataset.readers import FORMATS

    parser = ArgumentParser(prog="python -m tfodkit.dataset",
                     description="Prepare datasets for TFOD: convert annotations to TFRecords, check records.")
    sub = parser.add_subparsers(dest="command", metavar="convert|check")
    sub.required = True

    conv = sub.add_parser("convert", help="annotations (VOC, COCO, CSV, LISA) -> TFRecords + classes.pbtxt",
                          description="Convert annotations and images to training/testing TFRecords, "
                                      "classes.pbtxt and dataset.json (statistics and problems).")
    conv.add_argument("--format", required=True, choices=FORMATS,
                      help="voc: folder of Pascal VOC .xml; coco: instances JSON; csv: "
                           "filename,width,height,class,xmin,ymin,xmax,ymax; lisa: LISA semicolon CSV")
    conv.add_argument("--images", required=True, type=Path, help="folder the annotations' file names are relative to")
    conv.add_argument("--annotations", required=True, type=Path, help="VOC folder (or .xml), COCO .json, or .csv")
    conv.add_argument("--output_dir", required=True, type=Path, help="where the records and classes.pbtxt go")
    conv.add_argument("--test_fraction", type=float, default=0.2, help="share of images for testing (default 0.2)")
    conv.add_argument("--seed", type=int, default=42, help="seed of the split and the shuffle (default 42)")
    conv.add_argument("--shards", type=int, default=1,
                      help="training shards (default 1: training.record); testing gets a proportional number")
    conv.add_argument("--label_map", "--labels", dest="label_map", type=Path,
                      help="use these class ids (TFOD .pbtxt); default: ids from 1 in sorted name order "
                           "(COCO: category id order)")
    conv.add_argument("--strict", action="store_true", help="any problem is an error and nothing is written")
    conv.add_argument("--workers", type=int, default=None, help="processes (default: every available core)")
    conv.add_argument("--no_progress", action="store_true", help="no progress bar")

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


@cli
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "convert":
        from tfodkit.dataset import convert

        if args.workers is not None and args.workers < 1:
            raise UserError(f"--workers {args.workers} is out of range", "use 1 or more")
        convert.run(args.format, args.images, args.annotations, args.output_dir, test_fraction=args.test_fraction,
                    seed=args.seed, shards=args.shards, label_map_path=args.label_map, strict=args.strict,
                    workers=args.workers, progress=not args.no_progress)
        return 0
    from tfodkit.dataset import check

    data = check.run(args.records, label_map=args.label_map, samples=args.samples, n_samples=args.num_samples)
    return FAILURE if data["errors"] else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
