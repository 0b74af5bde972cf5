"""A small synthetic detection dataset: circles and squares on noisy backgrounds.

    python -m tfodkit.synthetic --output_dir DIR [--images 240] [--holdout 12] [--size 320] [--seed 0]
        [--records_dir RECORDS]

Writes DIR/images/*.jpg with DIR/annotations.csv in the TFOD-tutorial CSV
format (filename,width,height,class,xmin,ymin,xmax,ymax; pixel corners), and
DIR/holdout/*.jpg: images never trained on, for predict.py, with their true
boxes in DIR/holdout.csv (same format) to check the predictions against.
With --records_dir, also converts them to TFRecords there (the dataset tool's
convert, CSV format; ``make_records``). The demo, gpu-check, the benchmarks
and the end-to-end tests make their data with it: no download.
"""

from __future__ import annotations

import csv
import random
import sys
from collections.abc import Sequence
from pathlib import Path

from tfodkit.errors import ArgumentParser, UserError, cli
from tfodkit.fsutil import AtomicFile

CLASSES = ("circle", "square")


def draw_image(rng: random.Random, size: int) -> tuple[object, list[tuple[str, int, int, int, int]]]:
    """One RGB image with 1-3 non-overlapping shapes and their boxes."""
    from PIL import Image, ImageDraw, ImageFilter

    bg = tuple(rng.randint(0, 255) for _ in range(3))
    image = Image.new("RGB", (size, size), bg)
    noise = Image.effect_noise((size, size), rng.uniform(10, 40)).convert("RGB")
    image = Image.blend(image, noise, 0.25)
    draw = ImageDraw.Draw(image)
    boxes: list[tuple[str, int, int, int, int]] = []
    for _ in range(rng.randint(1, 3)):
        for _attempt in range(20):
            side = rng.randint(size // 8, size // 3)
            x0, y0 = rng.randint(0, size - side - 1), rng.randint(0, size - side - 1)
            box = (x0, y0, x0 + side, y0 + side)
            if all(box[2] < b[1] or box[0] > b[3] or box[3] < b[2] or box[1] > b[4] for b in boxes):
                break
        else:
            continue
        cls = rng.choice(CLASSES)
        colour = tuple((c + rng.randint(96, 160)) % 256 for c in bg)  # contrasts with the background
        (draw.ellipse if cls == "circle" else draw.rectangle)(box, fill=colour)
        boxes.append((cls, *box))
    return image.filter(ImageFilter.GaussianBlur(0.6)), boxes


def generate(output_dir: Path, images: int = 240, holdout: int = 12, size: int = 320, seed: int = 0) -> Path:
    if images < 2 or holdout < 0 or size < 64:
        raise UserError(f"need images >= 2, holdout >= 0, size >= 64 (got {images}, {holdout}, {size})",
                        "use the defaults: --images 240 --holdout 12 --size 320")
    rng = random.Random(seed)
    (output_dir / "images").mkdir(parents=True, exist_ok=True)
    (output_dir / "holdout").mkdir(parents=True, exist_ok=True)
    rows, held = [], []
    for i in range(images):
        image, boxes = draw_image(rng, size)
        name = f"shapes-{i:05d}.jpg"
        image.save(output_dir / "images" / name, quality=92)
        rows += [(name, size, size, *box) for box in boxes]
    for i in range(holdout):
        image, boxes = draw_image(rng, size)
        name = f"holdout-{i:03d}.jpg"
        image.save(output_dir / "holdout" / name, quality=92)
        held += [(name, size, size, *box) for box in boxes]
    _write_csv(output_dir / "annotations.csv", rows)
    _write_csv(output_dir / "holdout.csv", held)
    return output_dir


def _write_csv(path: Path, rows: list) -> None:
    with AtomicFile(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["filename", "width", "height", "class", "xmin", "ymin", "xmax", "ymax"])
        writer.writerows(rows)


def make_records(records_dir: Path, data_dir: Path, images: int = 240, holdout: int = 12, size: int = 320,
                 seed: int = 0, *, test_fraction: float = 0.2, workers: int | None = None, progress: bool = False,
                 out=None) -> Path:
    """The synthetic dataset (``generate``) in ``data_dir``, converted to TFRecords in ``records_dir``.

    The conversion is the dataset tool's (``convert.run``, CSV format, its
    default split seed), so the records are what ``python -m tfodkit.dataset
    convert`` writes. Its summary and this function's one line go to ``out``
    (default stdout); ``progress`` shows convert's bar on stderr. Returns
    ``records_dir``.
    """
    out = out or sys.stdout
    data = generate(data_dir, images, holdout, size, seed)
    print(f"synthetic: {images} images + {holdout} held out in {data}", file=out, flush=True)
    from tfodkit.dataset import convert  # imports TensorFlow: only when records are wanted

    convert.run("csv", data / "images", data / "annotations.csv", records_dir, test_fraction=test_fraction,
                workers=workers, progress=progress, out=out)
    return records_dir


@cli
def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m tfodkit.synthetic", description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", type=Path, required=True)
    parser.add_argument("--images", type=int, default=240, help="annotated images (default 240)")
    parser.add_argument("--holdout", type=int, default=12, help="unannotated images for predict.py (default 12)")
    parser.add_argument("--size", type=int, default=320, help="image side in pixels (default 320)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--records_dir", type=Path,
                        help="also convert the annotated images to TFRecords and classes.pbtxt here")
    args = parser.parse_args(argv)
    if args.records_dir:
        make_records(args.records_dir, args.output_dir, args.images, args.holdout, args.size, args.seed,
                     progress=True)
        return 0
    out = generate(args.output_dir, args.images, args.holdout, args.size, args.seed)
    print(f"synthetic: {args.images} images + {args.holdout} held out in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
