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
    if not len(boxes) or not len(gt):
        return Matched(det_gt, gt_det)
    overlaps = iou(boxes, gt)
    same = classes[:, None] == gt_classes[None, :]
    # only a detection with a box of its class at IoU >= the threshold can match: the others are left out
    hopeful = (same & (overlaps >= iou_threshold)).any(axis=1) & (scores >= score_threshold)
    order = np.argsort(-scores, kind="stable")
    for d in order[hopeful[order]]:
        candidates = np.where(same[d] & (gt_det < 0))[0]
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
    classes, scores, hits, gt_classes = [], [], [], []
    for image in images:
        classes.append(np.asarray(image["classes"], int).reshape(-1))
        scores.append(np.asarray(image["scores"], float).reshape(-1))
        hits.append(match(image, iou_threshold).det_gt >= 0)
        gt_classes.append(np.asarray(image["gt_classes"], int).reshape(-1))
    all_classes, all_scores, all_hits, all_gt_classes = (
        np.concatenate(x) if x else np.zeros(0) for x in (classes, scores, hits, gt_classes)
    )
    out = {}
    for c in class_ids:  # each class's detections, images in order, then a stable sort by score
        mine = all_classes == c
        scores, tps, num_gt = all_scores[mine], all_hits[mine].astype(bool), int(np.sum(all_gt_classes == c))
        order = np.argsort(-scores, kind="stable")
        scores, tps = scores[order], tps[order]
        tp, fp = np.cumsum(tps), np.cumsum(~tps)
        precision = np.divide(tp, tp + fp, out=np.zeros(len(tp)), where=(tp + fp) > 0)
        recall = tp / num_gt if num_gt else np.zeros(len(tp))
        out[c] = Curve(scores, precision, recall, num_gt)
    return out


def confusion(
    images: Sequence[dict], class_ids: Sequence[int], iou_threshold: float = 0.5, score_threshold: float = 0.5
) -> np.ndarray:
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


RECALL_POINTS = np.linspace(0.0, 1.0, 101)  # COCOeval's recThrs
MAX_DETECTIONS = 100  # COCOeval's largest maxDets: per image and class
AREA_ALL = (0.0, 1e5**2)  # COCOeval's area range "all"


def _pixels(boxes: list, height: float, width: float) -> np.ndarray:
    """[ymin, xmin, ymax, xmax] in [0, 1] -> COCO's [x, y, w, h] in pixels, with pycocotools' float operations."""
    b = np.asarray(boxes, float).reshape(-1, 4)
    return np.stack([b[:, 1] * width, b[:, 0] * height, (b[:, 3] - b[:, 1]) * width, (b[:, 2] - b[:, 0]) * height], 1)


def _coco_iou(dets: np.ndarray, gts: np.ndarray) -> np.ndarray:
    """pycocotools' bbIou (maskApi.c) for [x, y, w, h] boxes, no crowd: (detections, ground truth)."""
    d, g = dets[:, None, :], gts[None, :, :]
    w = np.minimum(d[..., 2] + d[..., 0], g[..., 2] + g[..., 0]) - np.maximum(d[..., 0], g[..., 0])
    h = np.minimum(d[..., 3] + d[..., 1], g[..., 3] + g[..., 1]) - np.maximum(d[..., 1], g[..., 1])
    inter = w * h
    union = d[..., 2] * d[..., 3] + g[..., 2] * g[..., 3] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((w > 0) & (h > 0), inter / union, 0.0)


def coco_ap(images: Sequence[dict], class_ids: Sequence[int], iou_threshold: float = 0.5) -> dict[int, float]:
    """Per class, COCO's AP at one IoU threshold, as pycocotools' COCOeval computes it for boxes (area "all",
    100 detections an image), -1.0 for a class without ground truth; {} when there is no ground truth or no
    detection at all. Boxes in [0, 1] of the image's height and width.

    A port of COCOeval.evaluateImg and accumulate whose numbers equal pycocotools' (tests/test_report.py
    compares them): per image and class the detections in decreasing score (at most 100) each take the
    ground-truth box of highest IoU >= the threshold not yet taken (the last of equal ones); a box whose
    area is outside COCO's range is ignored, and so is a detection matched to one or, unmatched, outside
    that range itself; then over all images, precision interpolated at 101 recall points and averaged.
    """
    threshold = min(iou_threshold, 1 - 1e-10)
    columns: dict[str, list[np.ndarray]] = {"class": [], "score": [], "matched": [], "ignored": []}
    gt_counted: list[np.ndarray] = []  # the classes of the boxes not ignored
    any_gt = any_det = False
    for image in images:
        h, w = float(image.get("height") or 1), float(image.get("width") or 1)
        gts, gt_classes = _pixels(image["gt_boxes"], h, w), np.asarray(image["gt_classes"], int).reshape(-1)
        dets, classes = _pixels(image["boxes"], h, w), np.asarray(image["classes"], int).reshape(-1)
        scores = np.asarray(image["scores"], float).reshape(-1)
        any_gt, any_det = any_gt or len(gts) > 0, any_det or len(dets) > 0
        b = np.asarray(image["gt_boxes"], float).reshape(-1, 4)
        area = (b[:, 3] - b[:, 1]) * w * (b[:, 2] - b[:, 0]) * h  # the "area" pycocotools is given
        g_ignored = (area < AREA_ALL[0]) | (area > AREA_ALL[1])
        g = np.argsort(g_ignored, kind="mergesort")  # COCOeval's gt order, per class: the ignored ones last
        gts, gt_classes, g_ignored = gts[g], gt_classes[g], g_ignored[g]
        d = np.argsort(-scores, kind="mergesort")  # per class this is COCOeval's detection order
        if len(d) > MAX_DETECTIONS:  # each class keeps its 100 highest
            rank = np.zeros(len(d), int)
            for c in np.unique(classes):
                rank[classes[d] == c] = np.arange(int(np.sum(classes == c)))
            d = d[rank < MAX_DETECTIONS]
        dets, classes, scores = dets[d], classes[d], scores[d]
        matched, ignored = np.zeros(len(d), bool), np.zeros(len(d), bool)
        if len(gts) and len(dets):
            overlaps = _coco_iou(dets, gts)
            same = classes[:, None] == gt_classes[None, :]
            taken = np.zeros(len(gts), bool)
            for k in np.where((same & (overlaps >= threshold)).any(axis=1))[0]:
                best, m = threshold, -1
                for j in np.where(same[k])[0]:  # COCOeval's loop, as it is for its ties and ignored boxes
                    if taken[j]:
                        continue
                    if m > -1 and not g_ignored[m] and g_ignored[j]:
                        break
                    if overlaps[k, j] < best:
                        continue
                    best, m = overlaps[k, j], j
                if m > -1:
                    matched[k], ignored[k], taken[m] = True, g_ignored[m], True
        det_area = dets[:, 2] * dets[:, 3]
        ignored |= ~matched & ((det_area < AREA_ALL[0]) | (det_area > AREA_ALL[1]))
        for name, values in (("class", classes), ("score", scores), ("matched", matched), ("ignored", ignored)):
            columns[name].append(values)
        gt_counted.append(gt_classes[~g_ignored])
    if not any_gt or not any_det:
        return {}
    classes, scores, matched, ignored = (
        np.concatenate(columns[k]) if columns[k] else np.zeros(0) for k in ("class", "score", "matched", "ignored")
    )
    counted = np.concatenate(gt_counted)
    out = {}
    for c in class_ids:
        num_gt = int(np.sum(counted == c))
        if not num_gt:
            out[c] = -1.0
            continue
        mine = classes == c
        # COCOeval: each image's detections in score order, images in order, then a stable sort by score
        order = np.argsort(-scores[mine], kind="mergesort")
        hit, skip = matched[mine][order].astype(bool), ignored[mine][order].astype(bool)
        tp = np.cumsum(hit & ~skip).astype(float)
        fp = np.cumsum(~hit & ~skip).astype(float)
        recall = tp / num_gt
        precision = np.maximum.accumulate((tp / (fp + tp + np.spacing(1)))[::-1])[::-1]  # the envelope
        at = np.searchsorted(recall, RECALL_POINTS, side="left")
        q = np.zeros(len(RECALL_POINTS))
        q[at < len(precision)] = precision[at[at < len(precision)]]
        out[c] = float(q.mean())
    return out
