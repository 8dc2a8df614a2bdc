"""How far an INT8 run's detections are from the fake-quant model's on the same input.

Boxes after NMS come in an order that flips with tiny score changes, so the comparison is
on the sorted scores of the top detections: the largest difference, as a share of the
highest fake-quant score. Both runs use the same scales; what this measures is the INT8
runtime's integer arithmetic and requantize rounding against the float simulation.
"""
import numpy as np

TOP_K = 50


def sorted_scores(boxes, top_k=TOP_K):
    """Scores of rows [class, score, x1, y1, x2, y2] with a class (NMS pads class -1), high
    to low, at most top_k."""
    boxes = np.asarray(boxes).reshape(-1, 6)
    return np.sort(boxes[boxes[:, 0] >= 0][:, 1])[::-1][:top_k]


def score_deviation(reference_boxes, boxes, top_k=TOP_K):
    """(largest score difference / highest reference score, detections compared) over the
    top detections both runs kept; (None, 0) when either kept none."""
    expected, measured = sorted_scores(reference_boxes, top_k), sorted_scores(boxes, top_k)
    count = min(len(expected), len(measured))
    if count == 0 or expected[0] <= 0:
        return None, 0
    deviation = np.abs(expected[:count] - measured[:count]).max() / expected[0]
    return float(deviation), count
