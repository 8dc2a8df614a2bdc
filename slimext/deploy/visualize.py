"""Draw detections (box, class name, score) on an image and save it as PNG."""
import os

import cv2
import numpy as np


def class_colour(class_id):
    """A fixed, well-spread BGR colour per class id."""
    hue = (int(class_id) * 47) % 180
    hsv = np.uint8([[[hue, 200, 255]]])
    return tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0])


def draw_detections(image_rgb, detections, threshold=0.5):
    """Copy of the RGB image with every box at or above threshold drawn and labelled."""
    canvas = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR)
    for class_id, score, x1, y1, x2, y2 in detections.above(threshold).boxes:
        colour = class_colour(class_id)
        name = (detections.labels[int(class_id)] if int(class_id) < len(detections.labels)
                else str(int(class_id)))
        p1, p2 = (int(round(x1)), int(round(y1))), (int(round(x2)), int(round(y2)))
        cv2.rectangle(canvas, p1, p2, colour, 1)
        text = "{} {:.2f}".format(name, score)
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.35, 1)
        top = max(p1[1] - th - 3, 0)
        cv2.rectangle(canvas, (p1[0], top), (p1[0] + tw + 2, top + th + 3), colour, -1)
        cv2.putText(canvas, text, (p1[0] + 1, top + th + 1), cv2.FONT_HERSHEY_SIMPLEX, 0.35,
                    (0, 0, 0), 1, cv2.LINE_AA)
    return cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB)


def save_detections_png(image_rgb, detections, path, threshold=0.5):
    """Draw and write to `path` (a .png); return the path."""
    if not path.lower().endswith(".png"):
        path = os.path.splitext(path)[0] + ".png"
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    drawn = draw_detections(image_rgb, detections, threshold)
    if not cv2.imwrite(path, cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR)):
        raise OSError("could not write {}".format(path))
    return path
