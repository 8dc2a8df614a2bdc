"""The imports and label drawing of PaddleDetection v2.6.0 deploy/python/visualize.py
(`draw_box`): each box's label is measured with ImageDraw.textsize, which Pillow 10 removed."""
import argparse

import numpy as np
from PIL import Image, ImageDraw


def draw_box(im, np_boxes, labels, threshold=0.5):
    draw_thickness = min(im.size) // 320
    draw = ImageDraw.Draw(im)
    expect_boxes = (np_boxes[:, 1] > threshold) & (np_boxes[:, 0] > -1)
    for dt in np_boxes[expect_boxes]:
        clsid, bbox, score = int(dt[0]), dt[2:], dt[1]
        xmin, ymin, xmax, ymax = bbox
        draw.line([(xmin, ymin), (xmin, ymax), (xmax, ymax), (xmax, ymin), (xmin, ymin)],
                  width=draw_thickness, fill=(255, 0, 0))
        text = "{} {:.4f}".format(labels[clsid], score)
        tw, th = draw.textsize(text)
        draw.rectangle([(xmin + 1, ymin - th), (xmin + tw + 1, ymin)], fill=(255, 0, 0))
        draw.text((xmin + 1, ymin - th), text, fill=(255, 255, 255))
    return im


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", required=True)
    FLAGS = parser.parse_args()
    image = Image.fromarray(np.zeros((64, 64, 3), "uint8"))
    boxes = np.array([[0, 0.9, 20, 30, 50, 60]], "float32")
    draw_box(image, boxes, ["circle"]).save(FLAGS.output)
    print("saved", FLAGS.output)
