"""Deterministic synthetic 10-class image classification set, kept in memory.

Classes 0-8 are one shape (circle, square, triangle) in one colour family (red, green,
blue dominant); class 9 is background only. It reuses the detection demo's textures so the
two tasks see the same kind of images. Used by the ResNet-18 QAT benchmark.
"""
import numpy as np

from slimext.data.demo import CATEGORIES, shape_mask, textured_background

NUM_CLASSES = 10
COLOUR_FAMILIES = ("red", "green", "blue")
IMAGE_SIZE = 224


def class_name(label):
    if label == NUM_CLASSES - 1:
        return "background"
    return "{} {}".format(COLOUR_FAMILIES[label % 3], CATEGORIES[label // 3])


def _colour(rng, family):
    colour = rng.uniform(0, 110, size=3)
    colour[family] = rng.uniform(180, 255)
    return colour


def render_example(rng, label, size=IMAGE_SIZE):
    img = textured_background(rng, size)
    if label != NUM_CLASSES - 1:
        r = float(rng.uniform(size * 0.12, size * 0.3))
        cx, cy = rng.uniform(r, size - r, size=2)
        mask = shape_mask(CATEGORIES[label // 3], size, cx, cy, r)
        img[mask] = _colour(rng, label % 3) + rng.normal(0, 4, size=(int(mask.sum()), 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def make_split(count, seed, size=IMAGE_SIZE):
    """(images float32 [N, 3, size, size] normalised to about [-1, 1], labels int64 [N])."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % NUM_CLASSES
    rng.shuffle(labels)
    images = np.stack([render_example(rng, int(label), size) for label in labels])
    images = images.transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1.0
    return images, labels.astype(np.int64)
