"""The run report: its numbers on hand-built cases with known TP, FP and FN, the page in a real browser."""

from __future__ import annotations

import base64
import fcntl
import io
import json
import os
import re
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tfodkit.report import DETECTIONS, detections_doc, metrics

GT = [0.0, 0.0, 1.0, 1.0]


def image(gt=(), gt_classes=(), boxes=(), scores=(), classes=()):
    return {
        "gt_boxes": [list(b) for b in gt],
        "gt_classes": list(gt_classes),
        "boxes": [list(b) for b in boxes],
        "scores": list(scores),
        "classes": list(classes),
    }


def test_iou_of_known_boxes():
    assert metrics.iou([GT], [[0, 0, 1, 0.49]])[0, 0] == pytest.approx(0.49)
    assert metrics.iou([GT], [[2, 2, 3, 3]])[0, 0] == 0
    assert metrics.iou([], [GT]).shape == (0, 1)


@pytest.mark.parametrize(("width", "tp"), [(0.49, False), (0.51, True)])
def test_a_box_at_iou_049_is_a_miss_and_at_051_a_hit(width, tp):
    img = image([GT], [1], [[0, 0, 1, width]], [0.9], [1])
    found_tp, fp, fn = metrics.errors(img, 0.5, 0.5)
    assert (len(found_tp), len(fp), len(fn)) == ((1, 0, 0) if tp else (0, 1, 1))
    curve = metrics.curves([img], [1])[1]
    assert curve.at(0.5) == ((1.0, 1.0) if tp else (0.0, 0.0))
    c = metrics.confusion([img], [1])
    assert c.tolist() == ([[1, 0], [0, 0]] if tp else [[0, 1], [1, 0]])


def test_a_duplicate_detection_is_one_tp_and_one_fp():
    img = image([GT], [1], [GT, [0, 0, 1, 0.95]], [0.9, 0.8], [1, 1])
    tp, fp, fn = metrics.errors(img, 0.5, 0.5)
    assert tp.tolist() == [0] and fp.tolist() == [1] and fn.tolist() == []
    curve = metrics.curves([img], [1])[1]
    assert curve.precision.tolist() == [1.0, 0.5] and curve.recall.tolist() == [1.0, 1.0]
    assert curve.at(0.85) == (1.0, 1.0) and curve.at(0.5) == (0.5, 1.0)
    threshold, f1 = curve.best()
    assert threshold == pytest.approx(0.81) and f1 == pytest.approx(1.0)  # above the duplicate's 0.8
    assert metrics.confusion([img], [1]).tolist() == [[1, 0], [1, 0]]  # the duplicate: background row


def test_a_wrong_class_is_a_fp_and_a_fn_and_off_the_diagonal():
    img = image([GT], [1], [GT], [0.9], [2])
    tp, fp, fn = metrics.errors(img, 0.5, 0.5)
    assert (len(tp), len(fp), len(fn)) == (0, 1, 1)
    c = metrics.curves([img], [1, 2])
    assert c[1].num_gt == 1 and c[1].at(0.5) == (1.0, 0.0)  # no detection of class 1
    assert c[2].num_gt == 0 and c[2].at(0.5) == (0.0, 0.0)
    matrix = metrics.confusion([img], [1, 2])
    assert matrix.tolist() == [[0, 1, 0], [0, 0, 0], [0, 0, 0]]  # true 1 detected as 2
    assert metrics.normalized(matrix)[0].tolist() == [0.0, 1.0, 0.0]


def test_an_image_without_objects_counts_only_false_positives():
    empty = image()
    noisy = image(boxes=[GT], scores=[0.7], classes=[1])
    hit = image([GT], [1], [GT], [0.9], [1])
    assert [len(x) for x in metrics.errors(empty, 0.5, 0.5)] == [0, 0, 0]
    assert [len(x) for x in metrics.errors(noisy, 0.5, 0.5)] == [0, 1, 0]
    curve = metrics.curves([empty, noisy, hit], [1])[1]
    assert curve.num_gt == 1 and curve.scores.tolist() == [0.9, 0.7]
    assert curve.precision.tolist() == [1.0, 0.5]
    assert metrics.confusion([empty, noisy, hit], [1]).tolist() == [[1, 0], [1, 0]]


def test_the_score_threshold_drops_low_detections():
    img = image([GT, [2, 2, 3, 3]], [1, 1], [GT, [2, 2, 3, 3]], [0.9, 0.3], [1, 1])
    tp, fp, fn = metrics.errors(img, 0.5, 0.5)
    assert tp.tolist() == [0] and fp.tolist() == [] and fn.tolist() == [1]
    curve = metrics.curves([img], [1])[1]
    assert curve.at(0.5) == (1.0, 0.5) and curve.at(0.3) == (1.0, 1.0)
    assert metrics.confusion([img], [1], score_threshold=0.5).tolist() == [[1, 1], [0, 0]]
    assert metrics.confusion([img], [1], score_threshold=0.2).tolist() == [[2, 0], [0, 0]]
    f1 = curve.f1()
    assert f1[np.searchsorted(metrics.THRESHOLDS, 0.3)] == pytest.approx(1.0)
    assert f1[np.searchsorted(metrics.THRESHOLDS, 0.5)] == pytest.approx(2 * 0.5 / 1.5)


def test_matching_takes_the_highest_score_first():
    # two detections on one box: the higher score takes it even though the lower overlaps more
    img = image([GT], [1], [[0, 0, 1, 0.8], GT], [0.9, 0.6], [1, 1])
    tp, fp, _ = metrics.errors(img, 0.5, 0.5)
    assert tp.tolist() == [0] and fp.tolist() == [1]


# --- AP@0.5: metrics.coco_ap against pycocotools itself


def pycocotools_ap(images: list[dict], class_ids: list[int], iou: float = 0.5) -> dict[int, float]:
    """Per-class AP at one IoU from pycocotools' COCOeval, the boxes given to it as the report used to."""
    import contextlib

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gts, dets = [], []
    for i, img in enumerate(images):
        h, w = float(img.get("height") or 1), float(img.get("width") or 1)
        for (y0, x0, y1, x1), c in zip(img["gt_boxes"], img["gt_classes"], strict=True):
            gts.append(
                {
                    "id": len(gts) + 1,
                    "image_id": i,
                    "category_id": int(c),
                    "iscrowd": 0,
                    "bbox": [x0 * w, y0 * h, (x1 - x0) * w, (y1 - y0) * h],
                    "area": (x1 - x0) * w * (y1 - y0) * h,
                }
            )
        for (y0, x0, y1, x1), score, c in zip(img["boxes"], img["scores"], img["classes"], strict=True):
            dets.append(
                {
                    "image_id": i,
                    "category_id": int(c),
                    "score": float(score),
                    "bbox": [x0 * w, y0 * h, (x1 - x0) * w, (y1 - y0) * h],
                }
            )
    if not gts or not dets:
        return {}
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = {
            "images": [{"id": i} for i in range(len(images))],
            "annotations": gts,
            "categories": [{"id": c} for c in class_ids],
        }
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(dets), "bbox")
        ev.params.iouThrs = np.array([iou])
        ev.evaluate()
        ev.accumulate()
    precision = ev.eval["precision"][0, :, :, 0, -1]  # recall points x classes; area all, 100 detections
    return {
        int(c): float(precision[:, k].mean()) if (precision[:, k] > -1).any() else -1.0
        for k, c in enumerate(ev.params.catIds)
    }


def random_images(rng, n: int, classes: int) -> list[dict]:
    """Images with ties in score, duplicate and degenerate boxes, other classes, and over 100 detections."""
    images = []
    for _ in range(n):
        gt, gt_classes = [], []
        for _ in range(int(rng.integers(0, 6))):
            y0, x0 = rng.uniform(0, 0.8, 2)
            h, w = rng.uniform(-0.05, 0.3, 2)  # now and then inside out
            gt.append([y0, x0, y0 + h, x0 + w])
            gt_classes.append(int(rng.integers(1, classes + 2)))  # classes + 1: not in the label map
        if gt and rng.random() < 0.2:
            gt.append(list(gt[0]))
            gt_classes.append(gt_classes[0])
        boxes, scores, det_classes = [], [], []
        for _ in range(int(rng.integers(0, 130))):
            if gt and rng.random() < 0.5:
                j = int(rng.integers(len(gt)))
                boxes.append([v + rng.normal(0, 0.03) for v in gt[j]])
                det_classes.append(gt_classes[j] if rng.random() < 0.8 else int(rng.integers(1, classes + 2)))
            else:
                y0, x0 = rng.uniform(0, 0.8, 2)
                boxes.append([y0, x0, y0 + rng.uniform(0, 0.2), x0 + rng.uniform(0, 0.2)])
                det_classes.append(int(rng.integers(1, classes + 2)))
            scores.append(round(float(rng.uniform(0, 1)), 2))  # two digits: many ties
        images.append(
            {
                "gt_boxes": [[float(v) for v in b] for b in gt],
                "gt_classes": gt_classes,
                "boxes": [[float(v) for v in b] for b in boxes],
                "scores": scores,
                "classes": det_classes,
                "height": int(rng.integers(50, 500)),
                "width": int(rng.integers(50, 500)),
            }
        )
    return images


def test_coco_ap_equals_pycocotools_on_the_hand_built_cases():
    images = [
        dict(image([GT], [1], [GT, [0, 0, 1, 0.95]], [0.9, 0.8], [1, 1]), height=100, width=100),  # a duplicate
        dict(image([GT], [1], [GT], [0.9], [2]), height=100, width=100),  # a wrong class
        dict(image([GT], [2], [[0, 0, 1, 0.49]], [0.7], [2]), height=100, width=100),  # IoU 0.49: a miss
        dict(image([GT], [2], [[0, 0, 1, 0.51]], [0.6], [2]), height=100, width=100),  # IoU 0.51: a hit
        dict(image(boxes=[GT], scores=[0.95], classes=[1]), height=100, width=100),  # no objects
        dict(
            image([GT], [3], [[2, 2, 3, 3]] * 120 + [GT] * 30, list(np.linspace(0.99, 0.1, 150)), [3] * 150),
            height=100,
            width=100,
        ),  # 150 detections of one class, the hit 121st: COCO counts the first 100
        dict(image([GT], [3], [GT], [0.05], [3]), height=100, width=100),
    ]
    mine = metrics.coco_ap(images, [1, 2, 3, 4])
    assert mine == pycocotools_ap(images, [1, 2, 3, 4])
    assert mine[4] == -1.0 and 0 < mine[1] < 1 and 0 < mine[3] < 0.5
    assert metrics.coco_ap([image([GT], [1])], [1]) == {} == pycocotools_ap([image([GT], [1])], [1])


@pytest.mark.parametrize("seed", range(4))
def test_coco_ap_equals_pycocotools_on_random_images(seed):
    rng = np.random.default_rng(seed)
    for _ in range(6):
        images = random_images(rng, int(rng.integers(1, 40)), 3)
        for iou in (0.5, 0.75):
            assert metrics.coco_ap(images, [1, 2, 3], iou) == pycocotools_ap(images, [1, 2, 3], iou)


# --- the page in headless Chromium, driven over the DevTools protocol on a pipe (no extra dependency)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--remote-debugging-pipe",
]


class Browser:
    """Chromium with --remote-debugging-pipe: DevTools messages as NUL-terminated JSON on fds 3 (in) and 4 (out)."""

    def __init__(self, profile: Path):
        to_chrome_r, self.to_chrome = os.pipe()
        self.from_chrome, from_chrome_w = os.pipe()

        def fds():  # via copies above 10: the pipes may be fds 3 or 4, and dup2 onto itself keeps close-on-exec
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_chrome_r, from_chrome_w)]
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        self.proc = subprocess.Popen(
            [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--window-size=1200,900", "about:blank"],
            preexec_fn=fds,
            close_fds=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self.buffer, self.next_id, self.events = b"", 0, []

    def read(self, timeout: float = 60) -> dict:
        while b"\0" not in self.buffer:
            ready, _, _ = select.select([self.from_chrome], [], [], timeout)
            assert ready, "no message from Chromium"
            chunk = os.read(self.from_chrome, 1 << 20)
            assert chunk, "Chromium closed the pipe"
            self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, session: str | None = None, **params) -> dict:
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self.to_chrome, json.dumps(message).encode() + b"\0")
        while True:
            reply = self.read()
            if reply.get("id") == self.next_id:
                assert "error" not in reply, reply
                return reply["result"]
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while (event := next((e for e in self.events if e.get("method") == method), None)) is None:
            assert time.monotonic() < deadline, f"no {method}"
            self.events.append(self.read(deadline - time.monotonic()))
        return event

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        os.close(self.to_chrome)
        os.close(self.from_chrome)


def open_in_chromium(page: Path, profile: Path) -> dict:
    """Load page; its console errors, failed or non-file requests, images and a screenshot."""
    browser = Browser(profile)
    try:
        target = next(t for t in browser.send("Target.getTargets")["targetInfos"] if t["type"] == "page")
        session = browser.send("Target.attachToTarget", targetId=target["targetId"], flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            browser.send(f"{domain}.enable", session)
        browser.events.clear()
        browser.send("Page.navigate", session, url=page.as_uri())
        browser.wait_for("Page.loadEventFired")
        images = browser.send(
            "Runtime.evaluate",
            session,
            returnByValue=True,
            expression=("Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, i.naturalWidth])"),
        )
        shot = browser.send("Page.captureScreenshot", session, format="png")["data"]
        events = browser.events
        return {
            "errors": [
                e
                for e in events
                if e.get("method") in ("Runtime.exceptionThrown", "Network.loadingFailed")
                or (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] == "error")
                or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")
            ],
            "requests": [
                e["params"]["request"]["url"] for e in events if e.get("method") == "Network.requestWillBeSent"
            ],
            "images": images["result"]["value"],
            "screenshot": base64.b64decode(shot),
        }
    finally:
        browser.close()


def handmade_training_dir(root: Path) -> Path:
    """A training dir as the evaluation leaves it, for two classes and four images (no records: grey pictures)."""
    training = root / "training"
    training.mkdir()
    images = [
        dict(image([GT], [1], [GT], [0.9], [1]), filename="hit.jpg", height=200, width=300),
        dict(
            image([[0.1, 0.1, 0.5, 0.5]], [2], [[0.1, 0.1, 0.5, 0.5], [0.6, 0.6, 0.9, 0.9]], [0.8, 0.7], [1, 2]),
            filename="wrong-class.jpg",
            height=200,
            width=300,
        ),
        dict(image(), filename="empty.jpg", height=100, width=100),
        dict(image([[0.2, 0.2, 0.4, 0.4]], [2]), filename="missed.jpg", height=100, width=100),
    ]
    (training / DETECTIONS).write_text(
        json.dumps(
            detections_doc(
                checkpoint=training / "ckpt-6", step=6, categories={1: "circle", 2: "square"}, images=images, records=[]
            )
        )
    )
    (training / "metrics.json").write_text(
        json.dumps(
            {
                "mAP": 0.25,
                "mAP@0.5": 0.5,
                "mAP@0.75": 0.25,
                "per_class_AP": {"circle": 0.5, "square": 0.125},
                "all": {"DetectionBoxes_Precision/mAP (small)": -1.0},
            }
        )
    )
    (training / "train.json").write_text(json.dumps({"step": 6, "num_steps": 6, "seconds": 12.0, "steps_per_sec": 2.0}))
    return training


def test_report_cli_writes_the_page_and_its_numbers(tmp_path):
    training = handmade_training_dir(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "tfodkit.report", str(training), "--score_threshold", "0.5"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    index = training / "report" / "index.html"
    assert f"report: {index}" in result.stdout
    text = index.read_text()
    # per-class AP is metrics.json's
    assert re.search(r"<td class=l>circle</td><td>0\.500</td>", text), text
    assert re.search(r"<td class=l>square</td><td>0\.125</td>", text), text
    # 2 of 4 images have an error, the worst (wrong class and a stray box: 2 FP + 1 FN) first
    assert "2 of 4 test images have an error" in text
    pictures = (training / "report" / "pictures-1.html").read_text()
    captions = re.findall(r"<figcaption>([^<]*)</figcaption>", pictures)
    assert captions[0] == "wrong-class.jpg: 0 TP, 2 FP, 1 FN" and "missed.jpg: 0 TP, 0 FP, 1 FN" in captions
    assert "<script" not in text and "http" not in text.replace("http-equiv", "")


def test_report_refuses_a_dir_without_evaluation(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "tfodkit.report", str(tmp_path)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: ") and len(result.stderr.strip().splitlines()) == 1


# --- the run's files read without TensorFlow (tfodkit/report/files.py), checked against TensorFlow's writers


def write_test_record(path: Path, pictures: list) -> None:
    import tfodkit.compat  # noqa: F401  (before TensorFlow, as every TF user in a worker must)

    import tensorflow as tf

    def feature(values):
        if isinstance(values[0], bytes):
            return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))
        if isinstance(values[0], float):
            return tf.train.Feature(float_list=tf.train.FloatList(value=values))
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))

    with tf.io.TFRecordWriter(str(path)) as writer:
        for i, picture in enumerate(pictures):
            encoded = io.BytesIO()
            picture.save(encoded, format="JPEG", quality=95)
            writer.write(
                tf.train.Example(
                    features=tf.train.Features(
                        feature={  # as the dataset tool's records
                            "image/height": feature([picture.height]),
                            "image/width": feature([picture.width]),
                            "image/filename": feature([f"{i}.jpg".encode()]),
                            "image/encoded": feature([encoded.getvalue()]),
                            "image/object/bbox/xmin": feature([0.1, 0.5]),
                            "image/object/class/label": feature([1, 2]),
                        }
                    )
                ).SerializeToString()
            )


def test_record_images_are_read_by_index_without_tensorflow(tmp_path):
    from PIL import Image

    from tfodkit.report import files

    colors = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (240, 240, 0)]
    write_test_record(tmp_path / "testing.record", [Image.new("RGB", (40 + i, 30), c) for i, c in enumerate(colors)])
    read = files.encoded_images(tmp_path / "testing.record", {1, 3})
    assert sorted(read) == [1, 3]
    for i, encoded in read.items():
        picture = Image.open(io.BytesIO(encoded))
        assert picture.size == (40 + i, 30)
        assert np.abs(np.asarray(picture, int)[15, 20] - colors[i]).max() < 8
    assert files.encoded_images(tmp_path / "testing.record", {7}) == {}  # past the end: nothing


def test_training_scalars_are_read_as_tensorboard_shows_them(tmp_path):
    import tfodkit.compat  # noqa: F401  (before TensorFlow, as every TF user in a worker must)

    import tensorflow as tf

    from tfodkit.report import files

    train = tmp_path / "train"
    first = tf.summary.create_file_writer(str(train), filename_suffix=".1")
    with first.as_default():
        for step in range(1, 6):
            tf.summary.scalar("Loss/total_loss", 1.0 / step, step=step)  # TF2: a scalar tensor
            tf.summary.scalar("learning_rate", tf.constant(0.01 * step, tf.float64), step=step)
            raw = tf.compat.v1.Summary(value=[tf.compat.v1.Summary.Value(tag="old_style", simple_value=step * 2.0)])
            tf.summary.experimental.write_raw_pb(raw.SerializeToString(), step=step)  # TF1: simple_value
            tf.summary.image("train_input_images", tf.zeros([1, 4, 4, 3]), step=step)  # not a scalar: left out
            tf.summary.text("note", "not a number", step=step)  # a string: left out
    first.close()
    time.sleep(1.1)  # the next file's name (its time in seconds) sorts after
    resumed = tf.summary.create_file_writer(str(train), filename_suffix=".2")
    with resumed.as_default():
        for step in (5, 6):  # a resumed training redoes step 5
            tf.summary.scalar("Loss/total_loss", 10.0 * step, step=step)
    resumed.close()
    scalars = files.scalars(train)
    assert sorted(scalars) == ["Loss/total_loss", "learning_rate", "old_style"]
    steps, values = scalars["Loss/total_loss"]
    assert steps.tolist() == [1, 2, 3, 4, 5, 6]
    assert values == pytest.approx([1.0, 0.5, 1 / 3, 0.25, 50.0, 60.0])  # the later file's step 5
    assert scalars["learning_rate"][1] == pytest.approx([0.01 * s for s in range(1, 6)])
    assert scalars["old_style"][1].tolist() == [2.0, 4.0, 6.0, 8.0, 10.0]
    # the wall times of a tag's points (bench/train's windows), the resumed file's step 5 last
    walls = files.wall_times(train)
    assert sorted(walls) == [1, 2, 3, 4, 5, 6]
    assert walls[1] <= walls[4] < walls[5] <= walls[6] and walls[5] - walls[4] >= 1.0
    # an events file still being written ends inside a record: read up to its last whole one
    newest = max(train.iterdir(), key=lambda f: f.name)
    newest.write_bytes(newest.read_bytes()[:-5])
    assert files.scalars(train)["Loss/total_loss"][0].tolist() == [1, 2, 3, 4, 5]


def test_the_report_of_records_and_events_imports_no_tensorflow_and_replaces_the_old_one(tmp_path):
    import tfodkit.compat  # noqa: F401  (before TensorFlow, as every TF user in a worker must)

    import tensorflow as tf
    from PIL import Image

    training = handmade_training_dir(tmp_path)
    write_test_record(training / "testing.record", [Image.new("RGB", (300, 200), (20, 90, 160))] * 4)
    kept = json.loads((training / "eval_detections.json").read_text())
    for i, entry in enumerate(kept["images"]):
        entry.update(record=str(training / "testing.record"), index=i, height=200, width=300)
    kept["records"] = [str(training / "testing.record")]
    (training / "eval_detections.json").write_text(json.dumps(kept))
    with tf.summary.create_file_writer(str(training / "train")).as_default():
        for step in range(1, 4):
            tf.summary.scalar("Loss/total_loss", 1.0 / step, step=step)
    stray = training / "report" / "pictures" / "99999.jpg"  # from an earlier report
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"old")
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from tfodkit.report.__main__ import main; main(["
            f"{str(training)!r}]); print('tensorflow imported:', 'tensorflow' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).parent.parent,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "tensorflow imported: False" in result.stdout
    report = training / "report"
    assert (report / "training.png").is_file() and not stray.exists()
    assert not [p.name for p in training.iterdir() if p.name.startswith(".report")]  # no staging dir left
    wrong = next(i for i, e in enumerate(kept["images"]) if e["filename"] == "wrong-class.jpg")
    picture = np.asarray(Image.open(report / "pictures" / f"{wrong:05d}.jpg").convert("RGB"), int)
    assert picture.shape == (200, 300, 3)  # shown at 280 pixels: within twice that, drawn at its own size
    assert np.abs(picture[195, 5] - (20, 90, 160)).max() < 10  # the record's image, not the grey stand-in
    assert picture[:, :, 0].max() > 200  # a red false positive drawn on it


@pytest.mark.slow  # over 10 s alone, so make test-fast leaves it out
@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (.ci/run installs it)")
def test_the_page_loads_in_chromium_with_every_image(tmp_path):
    from PIL import Image

    training = handmade_training_dir(tmp_path)
    from tfodkit.report.page import build

    for page in (build(training), training / "report" / "pictures-1.html"):
        seen = open_in_chromium(page, tmp_path / f"profile-{page.stem}")
        assert seen["errors"] == []
        assert seen["requests"] and all(u.startswith("file://") for u in seen["requests"]), seen["requests"]
        assert seen["images"] and all(done and width > 0 for _, done, width in seen["images"]), seen["images"]
        shot = np.asarray(Image.open(io.BytesIO(seen["screenshot"])).convert("L"))
        assert shot.std() > 10 and len(np.unique(shot)) > 20  # text and plots, not a blank page
