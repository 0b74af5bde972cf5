"""The run report's page: PNGs drawn with matplotlib (Agg) and Pillow, one HTML template, no JavaScript.

Everything comes from files the run already wrote: eval_detections.json and metrics.json
(tfodkit/evaluate.py), the TensorBoard events under train/, train.json, toolkit.json, the
dataset's dataset.json and the test records (for the pictures). The model never runs here, and
TensorFlow is not imported (tfodkit/report/files.py reads the records and the events).

The report is built in a staging directory beside TRAINING_DIR/report and then put in its place
(tfodkit/fsutil.py), so a reader sees the old report or the new one, never a mix, and pictures
of an earlier report (another score threshold) do not linger.
"""

from __future__ import annotations

import html
import io
import json
import os
import platform
import string
import threading
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path

import numpy as np

from tfodkit.fsutil import replace_dir, staging_dir
from tfodkit.records import REPORT
from tfodkit.report import DETECTIONS, files
from tfodkit.report import metrics as m

PER_PAGE = 60  # pictures on each pictures page
SIZES = ("small", "medium", "large")
TP_COLOR, FP_COLOR, FN_COLOR = (0, 170, 0), (230, 0, 0), (255, 150, 0)

TEMPLATE = string.Template("""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>$title</title>
<style>
body{font-family:sans-serif;margin:1.5em;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:right}
td{max-width:40em;overflow-wrap:anywhere}th{background:#f0f0f0}td.l,th.l{text-align:left}img{max-width:100%}
.grid{display:flex;flex-wrap:wrap;gap:8px}.grid figure{margin:0;width:280px}
.grid figcaption{font-size:.8em}.tp{color:#00aa00}.fp{color:#e60000}.fn{color:#ff9600}
nav a{margin-right:.6em}
</style></head><body>
<h1>$title</h1>
$body
</body></html>
""")


def esc(value) -> str:
    return html.escape(str(value))


def table(header: list[str], rows: list[list], left: int = 1) -> str:
    def cells(tag, values):
        return "".join(f"<{tag}{' class=l' if i < left else ''}>{esc(v)}</{tag}>" for i, v in enumerate(values))

    return (
        "<table>"
        + (f"<tr>{cells('th', header)}</tr>" if any(header) else "")
        + "".join("<tr>" + cells("td", r) + "</tr>" for r in rows)
        + "</table>"
    )


def fmt(value, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return "n/a" if value < 0 else f"{value:.{digits}f}"
    return str(value)


def figure(**args):
    """A matplotlib Figure drawn by Agg, without pyplot (its import and its figure registry cost time)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**args)
    FigureCanvasAgg(fig)
    return fig


def save(fig, path: Path) -> str:
    fig.savefig(path, format="png", dpi=90)
    return path.name


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def training_scalars(training_dir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every scalar the training wrote to train/ (losses, learning rate, steps/s): tag -> (steps, values)."""
    return files.scalars(training_dir / "train") if (training_dir / "train").is_dir() else {}


def plot_training(scalars: dict, path: Path) -> str:
    tags = sorted(scalars, key=lambda t: (not t.startswith("Loss/"), t))
    cols = 3
    rows = -(-len(tags) // cols)
    fig = figure(figsize=(12, 2.8 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, tag in zip(axes.flat, tags, strict=False):
        steps, values = scalars[tag]
        ax.plot(steps, values, marker="." if len(steps) < 50 else None)
        ax.set_title(tag, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(tags) :]:
        ax.axis("off")
    fig.tight_layout()
    return save(fig, path)


def plot_pr(curves: dict[int, m.Curve], names: dict[int, str], score_threshold: float, path: Path) -> str:
    fig = figure(figsize=(6, 5))
    ax = fig.subplots()
    for c, curve in curves.items():
        (line,) = ax.plot(np.concatenate([[0], curve.recall]), np.concatenate([[1], curve.precision]), label=names[c])
        p, r = curve.at(score_threshold)
        ax.plot([r], [p], "o", color=line.get_color())
    ax.set(
        xlabel="recall",
        ylabel="precision",
        xlim=(0, 1.02),
        ylim=(0, 1.02),
        title=f"precision-recall at IoU 0.5 (dots: score {score_threshold})",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save(fig, path)


def plot_f1(curves: dict[int, m.Curve], names: dict[int, str], path: Path) -> str:
    fig = figure(figsize=(6, 5))
    ax = fig.subplots()
    for c, curve in curves.items():
        t, f1 = curve.best()
        (line,) = ax.plot(m.THRESHOLDS, curve.f1(), label=f"{names[c]} (best {f1:.2f} at {t:.2f})")
        ax.plot([t], [f1], "o", color=line.get_color())
    ax.set(xlabel="score threshold", ylabel="F1", xlim=(0, 1), ylim=(0, 1.02), title="F1 against score threshold")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save(fig, path)


def plot_confusion(matrix: np.ndarray, labels: list[str], path: Path, title: str) -> str:
    share = m.normalized(matrix)
    n = len(labels)
    fig = figure(figsize=(2 * (2.5 + 0.6 * n), 2 + 0.6 * n))
    axes = fig.subplots(1, 2)
    for ax, values, name in ((axes[0], matrix, "counts"), (axes[1], share, "normalized by true class")):
        ax.imshow(values, cmap="Blues")
        ax.set_xticks(range(n), labels, rotation=45, ha="right")
        ax.set_yticks(range(n), labels)
        ax.set_xlabel("detected")
        ax.set_ylabel("true")
        ax.set_title(name, fontsize=10)
        if n <= 30:
            top = values.max() or 1
            for (i, j), v in np.ndenumerate(values):
                ax.text(
                    j,
                    i,
                    f"{v:.2f}" if values is share else str(v),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if v > top / 2 else "black",
                )
    fig.suptitle(title)
    fig.tight_layout()
    return save(fig, path)


def plot_dataset(per_class: dict[str, dict[str, int]], sizes: np.ndarray, path: Path) -> str:
    fig = figure(figsize=(12, 1.5 + 0.3 * max(len(next(iter(per_class.values()), {})), 4)))
    axes = fig.subplots(1, 2)
    names = sorted({n for split in per_class.values() for n in split})
    y = np.arange(len(names))
    for k, (split, counts) in enumerate(per_class.items()):
        axes[0].barh(y + 0.4 * k, [counts.get(n, 0) for n in names], height=0.4, label=split)
    axes[0].set_yticks(y + 0.2, names)
    axes[0].set(xlabel="boxes", title="boxes per class")
    axes[0].legend(fontsize=8)
    if len(sizes):
        axes[1].hist(sizes, bins=30, color="#3b7dd8")
    axes[1].axvline(32, color="gray", ls="--")
    axes[1].axvline(96, color="gray", ls="--")
    axes[1].set(
        xlabel="sqrt(box area) in pixels (COCO small < 32 <= medium < 96 <= large)",
        ylabel="test boxes",
        title="test box sizes",
    )
    fig.tight_layout()
    return save(fig, path)


def record_images(images: list[dict], wanted: set[int]) -> dict[int, bytes]:
    """The encoded images of the wanted entries, read from the test records by (record, index)."""
    by_record: dict[str, dict[int, int]] = {}
    for i in wanted:
        if images[i].get("record") and Path(images[i]["record"]).is_file():
            by_record.setdefault(images[i]["record"], {})[int(images[i]["index"])] = i
    out = {}
    for record, indices in by_record.items():
        for n, encoded in files.encoded_images(Path(record), set(indices)).items():
            out[indices[n]] = encoded
    return out


def dashed(draw, box, color, width, dash=6) -> None:
    x0, y0, x1, y1 = box
    for a, b, horizontal, fixed in ((x0, x1, True, y0), (x0, x1, True, y1), (y0, y1, False, x0), (y0, y1, False, x1)):
        for s in np.arange(a, b, 2 * dash):
            e = min(s + dash, b)
            draw.line([(s, fixed), (e, fixed)] if horizontal else [(fixed, s), (fixed, e)], fill=color, width=width)


SHOWN = 280  # CSS pixels a picture is shown at: .grid figure's width in TEMPLATE
FONTS = threading.local()  # Pillow's default font by size, loaded once per drawing thread


def draw_picture(image: dict, encoded: bytes | None, found, names: dict[int, str], path: Path) -> None:
    """The image with its TP, FP and FN boxes, as a JPEG at most twice SHOWN pixels a side (sharp on a
    high-density screen): a test image that small is not resized, and lines and labels grow with the picture."""
    from PIL import Image, ImageDraw, ImageFont

    size = 2 * SHOWN
    if encoded:
        picture = Image.open(io.BytesIO(encoded))
        picture.draft("RGB", (size, size))  # a large JPEG decodes at 1/2, 1/4 or 1/8 scale: faster
        picture = picture.convert("RGB")
    else:
        picture = Image.new(
            "RGB", (int(image.get("width") or SHOWN), int(image.get("height") or SHOWN)), (200, 200, 200)
        )
    picture.thumbnail((size, size))  # nothing to do for a picture within size
    w, h = picture.size
    scale = max(1.0, max(w, h) / SHOWN)  # picture pixels per CSS pixel
    line, font_size = round(2 * scale), round(10 * scale)
    fonts = FONTS.__dict__
    if font_size not in fonts:
        fonts[font_size] = ImageFont.load_default(size=font_size)
    draw = ImageDraw.Draw(picture)
    draw.font = fonts[font_size]
    tp, fp, fn = found

    def pixels(b):  # Pillow wants x0 <= x1 and y0 <= y1, which a degenerate detection need not keep
        return [min(b[1], b[3]) * w, min(b[0], b[2]) * h, max(b[1], b[3]) * w, max(b[0], b[2]) * h]

    for g in fn:
        dashed(draw, pixels(image["gt_boxes"][g]), FN_COLOR, line, dash=round(6 * scale))
        draw.text(pixels(image["gt_boxes"][g])[:2], names.get(image["gt_classes"][g], "?"), fill=FN_COLOR)
    for indices, color in ((tp, TP_COLOR), (fp, FP_COLOR)):
        for d in indices:
            box = pixels(image["boxes"][d])
            draw.rectangle(box, outline=color, width=line)
            label = f"{names.get(image['classes'][d], '?')} {image['scores'][d]:.2f}"
            draw.text((box[0] + line, box[1] + line / 2), label, fill=color)
    picture.save(path, format="JPEG", quality=85)


def versions() -> list[list[str]]:
    rows = [["python", platform.python_version()]]
    for package in ("tensorflow", "tf-models-official", "tf-keras", "numpy", "pycocotools", "matplotlib"):
        try:
            rows.append([package, metadata.version(package)])
        except metadata.PackageNotFoundError:
            pass
    return rows


def build(training_dir: Path, score_threshold: float = 0.5, iou_threshold: float = 0.5) -> Path:
    kept = json.loads((training_dir / DETECTIONS).read_text())
    target = training_dir / "report"
    with staging_dir(target) as out:
        write_report(training_dir, kept, out, score_threshold, iou_threshold)
        replace_dir(out, target)
    return target / "index.html"


def write_report(training_dir: Path, kept: dict, out: Path, score_threshold: float, iou_threshold: float) -> None:
    """index.html, its PNGs and the pictures pages of the evaluation kept in training_dir, into the empty dir out."""
    result = read_json(training_dir / "metrics.json")
    toolkit, train = read_json(training_dir / "toolkit.json"), read_json(training_dir / "train.json")
    names = {int(k): v for k, v in kept["categories"].items()}
    class_ids = sorted(names)
    images = kept["images"]
    (out / "pictures").mkdir()
    body: list[str] = []
    title = f"Run report: {toolkit.get('model', training_dir.name)}, step {kept.get('step')}"

    # the pictures, worst first, drawn on a thread per core while the plots are made below (Pillow's
    # decode, resize and encode drop the GIL)
    found = [m.errors(image, iou_threshold, score_threshold) for image in images]
    wrong = [len(f[1]) + len(f[2]) for f in found]
    order = sorted(range(len(images)), key=lambda i: (-wrong[i], images[i].get("filename", "")))
    with_errors = sum(w > 0 for w in wrong)
    shown = order[: max(with_errors, min(len(order), PER_PAGE))]
    encoded = record_images(images, set(shown))
    pool = ThreadPoolExecutor(max(os.cpu_count() or 1, 1))
    drawn = [
        pool.submit(draw_picture, images[i], encoded.pop(i, None), found[i], names, out / f"pictures/{i:05d}.jpg")
        for i in shown
    ]
    try:
        # the run
        rate = train.get("steps_per_sec")  # the training's own rate: start-up and checkpoints left out
        run_rows = [
            ["training dir", str(training_dir)],
            ["model", toolkit.get("model", "n/a")],
            ["steps", f"{train.get('step', 'n/a')}/{train.get('num_steps', 'n/a')}"],
            ["time per step", f"{1 / rate:.3f} s" if rate else "n/a"],
            ["training time", f"{train['seconds']:.0f} s" if train.get("seconds") else "n/a"],
            ["evaluated checkpoint", Path(kept.get("checkpoint", "")).name],
            ["score threshold / IoU", f"{score_threshold} / {iou_threshold}"],
        ]
        body.append(
            "<h2 id=run>The run</h2>"
            + table(["", ""], run_rows, left=2)
            + "<h3>Versions</h3>"
            + table(["package", "version"], versions(), left=2)
        )
        changes = toolkit.get("changes") or []
        if changes:
            body.append(
                "<h3>Changed config fields</h3>"
                + table(
                    ["field", "base", "now", "from"],
                    [
                        [c.get("field"), json.dumps(c.get("old")), json.dumps(c.get("new")), c.get("source", "")]
                        for c in changes
                    ],
                    left=4,
                )
            )

        # metrics
        raw = result.get("all", {})
        boxes = {c: sum(g == c for image in images for g in image["gt_classes"]) for c in class_ids}
        head = [
            ["mAP (IoU 0.50:0.95)", fmt(result.get("mAP"))],
            ["mAP@0.5", fmt(result.get("mAP@0.5"))],
            ["mAP@0.75", fmt(result.get("mAP@0.75"))],
        ]
        head += [[f"mAP ({s})", fmt(raw.get(f"DetectionBoxes_Precision/mAP ({s})"))] for s in SIZES]
        head += [["test images", len(images)], ["test boxes", sum(boxes.values())]]
        ap50 = m.coco_ap(images, class_ids, 0.5)
        per_class_ap = result.get("per_class_AP", {})
        body.append(
            "<h2 id=metrics>Metrics</h2>"
            + table(["", ""], head, left=2)
            + table(
                ["class", "AP", "AP@0.5", "test boxes"],
                [[names[c], fmt(per_class_ap.get(names[c])), fmt(ap50.get(c)), boxes[c]] for c in class_ids],
            )
            + "<p>AP from metrics.json (TFOD's COCO evaluation); AP@0.5 computed as pycocotools does on the"
            f" kept detections (score &ge; {kept.get('min_score')}, at most {kept.get('max_per_image')}"
            " an image).</p>"
        )

        # training curves
        scalars = training_scalars(training_dir)
        if scalars:
            body.append(
                "<h2 id=training>Training</h2>"
                f'<img src="{plot_training(scalars, out / "training.png")}" alt="training curves">'
            )

        # PR, F1, confusion
        curves = m.curves(images, class_ids, 0.5)
        best = {c: curves[c].best() for c in class_ids}
        body.append(
            "<h2 id=pr>Precision and recall</h2>"
            f'<img src="{plot_pr(curves, names, score_threshold, out / "pr_curve.png")}" alt="PR curves">'
            f'<img src="{plot_f1(curves, names, out / "f1_curve.png")}" alt="F1 curves">'
            + table(
                ["class", f"precision at {score_threshold}", f"recall at {score_threshold}", "best F1", "at score"],
                [
                    [
                        names[c],
                        fmt(curves[c].at(score_threshold)[0]),
                        fmt(curves[c].at(score_threshold)[1]),
                        fmt(best[c][1]),
                        fmt(best[c][0], 2),
                    ]
                    for c in class_ids
                ],
            )
        )
        matrix = m.confusion(images, class_ids, iou_threshold, score_threshold)
        labels = [names[c] for c in class_ids] + ["background"]
        confusion_png = plot_confusion(
            matrix, labels, out / "confusion_matrix.png", f"confusion at IoU {iou_threshold}, score {score_threshold}"
        )
        body.append(
            "<h2 id=confusion>Confusion matrix</h2>"
            f'<img src="{confusion_png}" alt="confusion matrix">'
            "<p>Rows: the true class; columns: the detected class. Row background: detections of no object;"
            " column background: objects no detection found.</p>"
        )

        # dataset
        dataset = read_json(Path(kept["records"][0]).parent / REPORT) if kept.get("records") else {}
        splits = dataset.get("splits") or {}
        per_class = {
            s: {n: v["boxes"] for n, v in split.get("classes", {}).items()} for s, split in splits.items()
        } or {"testing": {names[c]: boxes[c] for c in class_ids}}
        sizes = np.array(
            [
                np.sqrt(
                    max(b[2] - b[0], 0) * (image.get("height") or 1) * max(b[3] - b[1], 0) * (image.get("width") or 1)
                )
                for image in images
                for b in image["gt_boxes"]
            ]
        )
        body.append(
            "<h2 id=dataset>Dataset</h2>"
            + (f"<p>From {esc(REPORT)}.</p>" if splits else "")
            + f'<img src="{plot_dataset(per_class, sizes, out / "dataset.png")}" alt="dataset">'
        )
        for future in drawn:
            future.result()
    finally:
        pool.shutdown(cancel_futures=True)

    pages = [shown[i : i + PER_PAGE] for i in range(0, len(shown), PER_PAGE)] or [[]]
    legend = (
        "<p><span class=tp>&#9632; true positive</span> <span class=fp>&#9632; false positive</span> "
        "<span class=fn>&#9633; missed (dashed)</span></p>"
    )
    links = "<nav>" + "".join(f'<a href="pictures-{k + 1}.html">page {k + 1}</a>' for k in range(len(pages))) + "</nav>"

    def grid(indices) -> str:
        figures = []
        for i in indices:
            tp, fp, fn = found[i]
            figures.append(
                f'<figure><img src="pictures/{i:05d}.jpg" alt="{esc(images[i].get("filename", i))}">'
                f"<figcaption>{esc(images[i].get('filename', i))}: {len(tp)} TP, {len(fp)} FP, "
                f"{len(fn)} FN</figcaption></figure>"
            )
        return "<div class=grid>" + "".join(figures) + "</div>"

    for k, page in enumerate(pages):
        (out / f"pictures-{k + 1}.html").write_text(
            TEMPLATE.substitute(
                title=esc(f"Pictures, page {k + 1} of {len(pages)}"),
                body='<p><a href="index.html">back to the report</a></p>' + links + legend + grid(page),
            )
        )
    body.append(
        f"<h2 id=pictures>Pictures</h2><p>{with_errors} of {len(images)} test images have an error "
        f"(score &ge; {score_threshold}, IoU {iou_threshold}); worst first, all of them on the pages below.</p>"
        + links
        + legend
        + grid(pages[0][:12])
    )

    nav = (
        "<nav>"
        + "".join(
            f'<a href="#{a}">{t}</a>'
            for a, t in (
                ("run", "run"),
                ("metrics", "metrics"),
                ("training", "training"),
                ("pr", "PR and F1"),
                ("confusion", "confusion"),
                ("dataset", "dataset"),
                ("pictures", "pictures"),
            )
        )
        + "</nav>"
    )
    (out / "index.html").write_text(TEMPLATE.substitute(title=esc(title), body=nav + "\n".join(body)))
