"""The report's numbers from kept detections: matching, PR and F1 curves, the confusion matrix.

Pure numpy, no TensorFlow. An image is a dict with ``gt_boxes``, ``gt_classes``, ``boxes``,
``scores`` and ``classes`` (boxes as [ymin, xmin, ymax, xmax], any one unit per image), as in
the evaluation's eval_detections.json (tfodkit/evaluate.py). Matching follows COCO: per class,
detections in decreasing score take the unmatched ground-truth box they overlap most, if that
IoU is at least the threshold; a detection left over is a false positive (a duplicate
included), a ground-truth box left over a false negative. AP itself comes from metrics.json
(pycocotools, through TFOD's evaluation): these curves are for looking, not for the AP.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

THRESHOLDS = np.round(np.linspace(0.0, 1.0, 101), 2)  # the F1 curve's score thresholds


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The IoU of every box in a (N, 4) with every box in b (M, 4): (N, M)."""
    a, b = np.asarray(a, float).reshape(-1, 4), np.asarray(b, float).reshape(-1, 4)
    top, left = np.maximum(a[:, None, 0], b[None, :, 0]), np.maximum(a[:, None, 1], b[None, :, 1])
    bottom, right = np.minimum(a[:, None, 2], b[None, :, 2]), np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(bottom - top, 0, None) * np.clip(right - left, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


@dataclass
class Matched:
    """One image's matching: for each detection the index of its ground-truth box or -1, and the reverse."""

    det_gt: np.ndarray  # (num detections,)
    gt_det: np.ndarray  # (num ground-truth boxes,)


def match(image: dict, iou_threshold: float, score_threshold: float = 0.0) -> Matched:
    """COCO-style greedy matching per class of the detections scoring at least score_threshold."""
    gt, gt_classes = np.asarray(image["gt_boxes"], float).reshape(-1, 4), np.asarray(image["gt_classes"], int)
    boxes, classes = np.asarray(image["boxes"], float).reshape(-1, 4), np.asarray(image["classes"], int)
    scores = np.asarray(image["scores"], float)
    det_gt, gt_det = np.full(len(boxes), -1), np.full(len(gt), -1)
    overlaps = iou(boxes, gt)
    for d in np.argsort(-scores, kind="stable"):
        if scores[d] < score_threshold:
            break
        candidates = np.where((gt_classes == classes[d]) & (gt_det < 0))[0]
        if len(candidates):
            best = candidates[np.argmax(overlaps[d, candidates])]
            if overlaps[d, best] >= iou_threshold:
                det_gt[d], gt_det[best] = best, d
    return Matched(det_gt, gt_det)


@dataclass
class Curve:
    """One class's precision-recall curve: a point per detection, in decreasing score."""

    scores: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    num_gt: int

    def at(self, score_threshold: float) -> tuple[float, float]:
        """(precision, recall) counting the detections scoring at least score_threshold."""
        n = int(np.searchsorted(-self.scores, -score_threshold, side="right"))
        if n == 0:
            return 1.0, 0.0
        return float(self.precision[n - 1]), float(self.recall[n - 1])

    def f1(self, thresholds: np.ndarray = THRESHOLDS) -> np.ndarray:
        points = np.array([self.at(t) for t in thresholds]).reshape(-1, 2)
        p, r = points[:, 0], points[:, 1]
        return np.divide(2 * p * r, p + r, out=np.zeros_like(p), where=(p + r) > 0)

    def best(self, thresholds: np.ndarray = THRESHOLDS) -> tuple[float, float]:
        """(score threshold, F1) where F1 is highest (the lowest such threshold)."""
        f1 = self.f1(thresholds)
        i = int(np.argmax(f1))
        return float(thresholds[i]), float(f1[i])


def curves(images: Sequence[dict], class_ids: Sequence[int], iou_threshold: float = 0.5) -> dict[int, Curve]:
    """The precision-recall curve of each class over all images."""
    per_class: dict[int, list] = {c: [[], []] for c in class_ids}
    num_gt = dict.fromkeys(class_ids, 0)
    for image in images:
        m = match(image, iou_threshold)
        classes, scores = np.asarray(image["classes"], int), np.asarray(image["scores"], float)
        for c in class_ids:
            num_gt[c] += int(np.sum(np.asarray(image["gt_classes"], int) == c))
            mine = classes == c
            per_class[c][0].append(scores[mine])
            per_class[c][1].append(m.det_gt[mine] >= 0)
    out = {}
    for c, (scores, tps) in per_class.items():
        scores, tps = np.concatenate(scores or [[]]), np.concatenate(tps or [[]]).astype(bool)
        order = np.argsort(-scores, kind="stable")
        scores, tps = scores[order], tps[order]
        tp, fp = np.cumsum(tps), np.cumsum(~tps)
        precision = np.divide(tp, tp + fp, out=np.zeros(len(tp)), where=(tp + fp) > 0)
        recall = tp / num_gt[c] if num_gt[c] else np.zeros(len(tp))
        out[c] = Curve(scores, precision, recall, num_gt[c])
    return out


def confusion(images: Sequence[dict], class_ids: Sequence[int], iou_threshold: float = 0.5,
              score_threshold: float = 0.5) -> np.ndarray:
    """Counts (K+1, K+1): rows the true class, columns the detected class, the last of each background.

    Detections scoring at least score_threshold, in decreasing score, each take the unmatched
    ground-truth box with IoU >= iou_threshold, of their own class if there is one, else the one
    they overlap most; row background counts the detections that matched none (false
    positives), column background the ground-truth boxes no detection took (missed).
    """
    k = len(class_ids)
    col = {c: i for i, c in enumerate(class_ids)}
    matrix = np.zeros((k + 1, k + 1), dtype=int)
    for image in images:
        gt, gt_classes = np.asarray(image["gt_boxes"], float).reshape(-1, 4), np.asarray(image["gt_classes"], int)
        boxes, classes = np.asarray(image["boxes"], float).reshape(-1, 4), np.asarray(image["classes"], int)
        scores = np.asarray(image["scores"], float)
        overlaps, taken = iou(boxes, gt), np.zeros(len(gt), bool)
        for d in np.argsort(-scores, kind="stable"):
            if scores[d] < score_threshold:
                break
            if classes[d] not in col:
                continue
            free = np.where(~taken & (overlaps[d] >= iou_threshold))[0] if len(gt) else np.array([], int)
            same = free[gt_classes[free] == classes[d]]
            pick = same if len(same) else free
            if len(pick):
                g = pick[np.argmax(overlaps[d, pick])]
                taken[g] = True
                matrix[col.get(int(gt_classes[g]), k), col[classes[d]]] += 1
            else:
                matrix[k, col[classes[d]]] += 1
        for g in np.where(~taken)[0]:
            if int(gt_classes[g]) in col:
                matrix[col[int(gt_classes[g])], k] += 1
    return matrix


def normalized(matrix: np.ndarray) -> np.ndarray:
    """Each row divided by its sum (the share of a true class's boxes in each column); empty rows stay 0."""
    sums = matrix.sum(axis=1, keepdims=True).astype(float)
    return np.divide(matrix, sums, out=np.zeros(matrix.shape), where=sums > 0)


def errors(image: dict, iou_threshold: float, score_threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of the image's true-positive and false-positive detections, and of its missed boxes."""
    m = match(image, iou_threshold, score_threshold)
    shown = np.asarray(image["scores"], float) >= score_threshold
    tp = np.where(shown & (m.det_gt >= 0))[0]
    fp = np.where(shown & (m.det_gt < 0))[0]
    return tp, fp, np.where(m.gt_det < 0)[0]
