"""The run report: its numbers on hand-built cases with known TP, FP and FN, the page in a real browser."""

from __future__ import annotations

import numpy as np
import pytest

from tfodkit.report import metrics

GT = [0.0, 0.0, 1.0, 1.0]


def image(gt=(), gt_classes=(), boxes=(), scores=(), classes=()):
    return {"gt_boxes": [list(b) for b in gt], "gt_classes": list(gt_classes), "boxes": [list(b) for b in boxes],
            "scores": list(scores), "classes": list(classes)}


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
