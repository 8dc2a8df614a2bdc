"""Draw detections (box, class name, score) on an image and save it as PNG."""
import os

import cv2
import numpy as np
from slimext.fileio import atomic_path, atomic_write_bytes


def class_colour(class_id):
    """A fixed, well-spread BGR colour per class id."""
    hue = (int(class_id) * 47) % 180
    hsv = np.uint8([[[hue, 200, 255]]])
    return tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0])


def draw_detections(image_rgb, detections, threshold=0.5, thickness=1):
    """Copy of the RGB image with every box at or above threshold drawn and labelled."""
    canvas = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR)
    labels_drawn = []
    for class_id, score, x1, y1, x2, y2 in detections.above(threshold).boxes:
        colour = class_colour(class_id)
        name = (detections.labels[int(class_id)] if int(class_id) < len(detections.labels)
                else str(int(class_id)))
        p1, p2 = (int(round(x1)), int(round(y1))), (int(round(x2)), int(round(y2)))
        cv2.rectangle(canvas, p1, p2, colour, thickness)
        text = "{} {:.2f}".format(name, score)
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.35, 1)
        top = _free_label_top(p1, p2, tw + 2, th + 3, labels_drawn)
        labels_drawn.append((p1[0], top, p1[0] + tw + 2, top + th + 3))
        cv2.rectangle(canvas, (p1[0], top), (p1[0] + tw + 2, top + th + 3), colour, -1)
        cv2.putText(canvas, text, (p1[0] + 1, top + th + 1), cv2.FONT_HERSHEY_SIMPLEX, 0.35,
                    (0, 0, 0), 1, cv2.LINE_AA)
    return cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB)


def _free_label_top(p1, p2, width, height, taken):
    """Top of a label at the box's left: above it, else just inside its top or bottom edge,
    whichever does not cover a label already drawn (two classes often claim one object)."""
    candidates = (max(p1[1] - height, 0), p1[1] + 1, max(p2[1] - height - 1, 0))
    for top in candidates:
        box = (p1[0], top, p1[0] + width, top + height)
        if not any(box[0] < t[2] and t[0] < box[2] and box[1] < t[3] and t[1] < box[3]
                   for t in taken):
            return top
    return candidates[0]


def save_detections_png(image_rgb, detections, path, threshold=0.5):
    """Draw and write to `path` (a .png); return the path."""
    if not path.lower().endswith(".png"):
        path = os.path.splitext(path)[0] + ".png"
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    drawn = draw_detections(image_rgb, detections, threshold)
    if not cv2.imwrite(path, cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR)):
        raise OSError("could not write {}".format(path))
    return path


def draw_ground_truth(image_rgb, objects, labels):
    """Copy of the RGB image with ground-truth boxes: objects are (class_id, x, y, w, h)."""
    canvas = image_rgb.copy()
    for class_id, x, y, w, h in objects:
        p1, p2 = (int(round(x)), int(round(y))), (int(round(x + w)), int(round(y + h)))
        # White on a black outline: visible on dark and on light backgrounds.
        cv2.rectangle(canvas, p1, p2, (0, 0, 0), 3)
        cv2.rectangle(canvas, p1, p2, (255, 255, 255), 1)
        name = labels[int(class_id)] if int(class_id) < len(labels) else str(int(class_id))
        origin = (p1[0] + 3, min(p2[1] - 4, canvas.shape[0] - 4))
        for colour, width in (((0, 0, 0), 3), ((255, 255, 255), 1)):
            cv2.putText(canvas, name, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, width,
                        cv2.LINE_AA)
    return canvas


def _with_title(cell, title, height=22):
    bar = np.full((height, cell.shape[1], 3), 255, np.uint8)
    cv2.putText(bar, title, (4, height - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1,
                cv2.LINE_AA)
    return np.vstack([bar, cell])


def detection_grid(examples, threshold, scale=2):
    """A picture grid: one row per image, ground truth then each model's detections.

    examples: [(image_rgb, gt_objects, labels, [(column_title, Detections), ...])].
    Images are enlarged `scale` times before drawing so labels stay readable. Returns
    (grid RGB array, drawn) with drawn[row][column] = boxes drawn in that model's cell.
    """
    rows, drawn = [], []
    for image, objects, labels, columns in examples:
        big = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        cells = [_with_title(draw_ground_truth(big, [(c, x * scale, y * scale, w * scale,
                                                      h * scale)
                                                     for c, x, y, w, h in objects], labels),
                             "ground truth")]
        counts = []
        for title, detections in columns:
            scaled = detections.above(threshold)
            boxes = scaled.boxes.copy()
            boxes[:, 2:] *= scale
            cell = draw_detections(big, type(scaled)(boxes, scaled.labels), threshold,
                                   thickness=2)
            if not len(boxes):  # say so: an empty cell could pass for a missing picture
                cv2.putText(cell, "no detection >= {}".format(threshold), (6, cell.shape[0] - 8),
                            cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 0, 0), 1, cv2.LINE_AA)
            cells.append(_with_title(cell, "{} (score >= {})".format(title, threshold)))
            counts.append(len(boxes))
        gap = np.full((cells[0].shape[0], 6, 3), 255, np.uint8)
        row = cells[0]
        for cell in cells[1:]:
            row = np.hstack([row, gap, cell])
        rows.append(row)
        drawn.append(counts)
    gap = np.full((6, rows[0].shape[1], 3), 255, np.uint8)
    grid = rows[0]
    for row in rows[1:]:
        grid = np.vstack([grid, gap, row])
    return grid, drawn


def write_png(image_rgb, path):
    """Write an RGB array as PNG via a temporary file and a rename; return the path."""
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError("could not encode {} as PNG".format(path))
    return atomic_write_bytes(path, encoded.tobytes())


def metrics_chart(variants, path):
    """Bar chart PNG: mAP@[.5:.95] and median latency per variant.

    variants: [(name, mAP or None, latency_ms or None)]; a missing number leaves no bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [v[0] for v in variants]
    fig, (ax_map, ax_ms) = plt.subplots(1, 2, figsize=(10, 0.55 * len(names) + 1.6))
    for ax, index, label, fmt in ((ax_map, 1, "mAP@[.5:.95] (higher is better)", "{:.3f}"),
                                  (ax_ms, 2, "median latency, ms (lower is better)", "{:.1f}")):
        values = [v[index] if v[index] is not None else 0.0 for v in variants]
        bars = ax.barh(range(len(names)), values, color="#4c72b0")
        ax.set_yticks(range(len(names)))
        ax.set_yticklabels(names if ax is ax_map else [""] * len(names))
        ax.invert_yaxis()
        ax.set_title(label, fontsize=10)
        for bar, v in zip(bars, variants):
            if v[index] is not None:
                ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2,
                        " " + fmt.format(v[index]), va="center", fontsize=9)
        # mAP on its full 0..1 scale; latency from 0 with room for the value labels.
        ax.set_xlim(0, 1.0 if index == 1 else max(values + [1e-6]) * 1.25)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as partial:
        fig.savefig(partial, dpi=100, format="png")
    plt.close(fig)
    return path
