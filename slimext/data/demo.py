"""Deterministic synthetic detection set in COCO layout (the project's offline demo data).

Each image holds 1-3 non-overlapping shapes (circle, square, triangle), each at least a sixth
of the image wide, in a saturated colour that stands out from a plain, gently shaded
background: a set a tiny detector learns in minutes on a CPU, so the demo's pictures show a
model that works. The same seed always yields byte-identical files.

    python -m slimext.data.demo --out dataset/demo --train 320 --val 60
"""
import argparse
import os

import numpy as np

from slimext.fileio import atomic_write_json, replace_dir, staging_dir

CATEGORIES = ("circle", "square", "triangle")
IMAGE_SIZE = 192


def textured_background(rng, size):
    """Smooth colour gradient plus blocky noise, so shapes are not on a flat colour."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    base = rng.uniform(40, 200, size=3)
    slope = rng.uniform(-60, 60, size=(2, 3))
    img = base + xx[..., None] * slope[0] + yy[..., None] * slope[1]
    cells = rng.integers(4, 12)
    noise = rng.normal(0, 18, size=(cells, cells, 3))
    img += np.kron(noise, np.ones((size // cells + 1, size // cells + 1, 1)))[:size, :size]
    img += rng.normal(0, 6, size=img.shape)
    return img


def plain_background(rng, size):
    """A dark or a light near-uniform colour with a faint gradient and faint pixel noise."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    dark = rng.random() < 0.5
    base = rng.uniform(15, 70, size=3) if dark else rng.uniform(185, 240, size=3)
    slope = rng.uniform(-15, 15, size=(2, 3))
    img = base + xx[..., None] * slope[0] + yy[..., None] * slope[1]
    img += rng.normal(0, 3, size=img.shape)
    return img, dark


def contrasting_colour(rng, on_dark):
    """A saturated RGB colour far in brightness from the background (bright on dark, deep on light)."""
    import colorsys

    value = rng.uniform(0.8, 1.0) if on_dark else rng.uniform(0.25, 0.5)
    red, green, blue = colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.6, 1.0), value)
    return np.array([red, green, blue]) * 255.0


def shape_mask(kind, size, cx, cy, r):
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    if kind == "circle":
        return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
    if kind == "square":
        return (np.abs(xx - cx) <= r) & (np.abs(yy - cy) <= r)
    # Upward triangle with its apex at (cx, cy - r) and base at cy + r.
    inside_y = (yy >= cy - r) & (yy <= cy + r)
    half_width = (yy - (cy - r)) / 2.0
    return inside_y & (np.abs(xx - cx) <= half_width)


def _overlaps(box, boxes, limit=0.3):
    x0, y0, x1, y1 = box
    for a0, b0, a1, b1 in boxes:
        iw = max(0.0, min(x1, a1) - max(x0, a0))
        ih = max(0.0, min(y1, b1) - max(y0, b0))
        inter = iw * ih
        union = (x1 - x0) * (y1 - y0) + (a1 - a0) * (b1 - b0) - inter
        if inter / union > limit:
            return True
    return False


def render_image(rng, size=IMAGE_SIZE):
    """One image (HxWx3 uint8) and its objects as (category_index, [x, y, w, h])."""
    img, dark = plain_background(rng, size)
    objects, boxes = [], []
    for _ in range(int(rng.integers(1, 4))):
        kind = int(rng.integers(len(CATEGORIES)))
        # Half-size r: every shape spans 2r >= 1/6 of the image, at most ~1/2 of it.
        r = float(rng.uniform(size / 12.0, size * 0.24))
        cx, cy = rng.uniform(r, size - r, size=2)
        box = (cx - r, cy - r, cx + r, cy + r)
        if _overlaps(box, boxes, limit=0.0):
            continue
        mask = shape_mask(CATEGORIES[kind], size, cx, cy, r)
        img[mask] = contrasting_colour(rng, dark) + rng.normal(0, 3, size=(int(mask.sum()), 3))
        ys, xs = np.nonzero(mask)
        x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
        boxes.append(box)
        objects.append((kind, [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]))
    return np.clip(img, 0, 255).astype(np.uint8), objects


def _write_split(root, split, count, seed):
    import cv2

    rng = np.random.default_rng(seed)
    image_dir = os.path.join(root, split)
    os.makedirs(image_dir, exist_ok=True)
    images, annotations = [], []
    for index in range(count):
        img, objects = render_image(rng)
        file_name = "{}_{:05d}.png".format(split, index)
        # PNG is lossless, so the files are identical for identical seeds.
        cv2.imwrite(os.path.join(image_dir, file_name), img[:, :, ::-1])
        image_id = index + 1
        images.append({"id": image_id, "file_name": file_name,
                       "height": img.shape[0], "width": img.shape[1]})
        for kind, (x, y, w, h) in objects:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": kind + 1, "bbox": [x, y, w, h],
                                "area": w * h, "iscrowd": 0})
    coco = {"images": images, "annotations": annotations,
            "categories": [{"id": i + 1, "name": n, "supercategory": "shape"}
                           for i, n in enumerate(CATEGORIES)]}
    atomic_write_json(os.path.join(root, "annotations", "instances_{}.json".format(split)), coco,
                      indent=None)
    return len(annotations)


def generate(out_dir, num_train=320, num_val=60, seed=0):
    """Write the set to out_dir (atomically: a finished set is never half-overwritten)."""
    out_dir = os.path.abspath(out_dir)
    with staging_dir(os.path.dirname(out_dir), prefix=".demo-") as staging:
        build = os.path.join(staging, "set")
        os.makedirs(os.path.join(build, "annotations"))
        counts = {"train": _write_split(build, "train", num_train, seed),
                  "val": _write_split(build, "val", num_val, seed + 1)}
        replace_dir(build, out_dir)
    return counts


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="dataset/demo", help="output directory")
    parser.add_argument("--train", type=int, default=320, help="training images")
    parser.add_argument("--val", type=int, default=60, help="validation images")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.train < 1 or args.val < 1:
        parser.error("--train and --val must be at least 1")
    counts = generate(args.out, args.train, args.val, args.seed)
    print("demo set written to {}: {} train images ({} boxes), {} val images ({} boxes)".format(
        args.out, args.train, counts["train"], args.val, counts["val"]))


if __name__ == "__main__":
    main()
