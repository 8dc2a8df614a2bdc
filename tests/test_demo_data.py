"""The synthetic demo set is deterministic and valid COCO."""
import filecmp
import json
import os

import cv2
import numpy as np

from slimext.data.demo import CATEGORIES, generate


def _files(root):
    return sorted(os.path.relpath(os.path.join(d, f), root)
                  for d, _, files in os.walk(root) for f in files)


def test_same_seed_gives_identical_files(tmp_path):
    generate(str(tmp_path / "a"), num_train=6, num_val=3, seed=7)
    generate(str(tmp_path / "b"), num_train=6, num_val=3, seed=7)
    names = _files(str(tmp_path / "a"))
    assert names == _files(str(tmp_path / "b")) and len(names) == 6 + 3 + 2
    for name in names:
        assert filecmp.cmp(str(tmp_path / "a" / name), str(tmp_path / "b" / name),
                           shallow=False), name


def test_other_seed_gives_other_images(tmp_path):
    generate(str(tmp_path / "a"), num_train=3, num_val=1, seed=1)
    generate(str(tmp_path / "b"), num_train=3, num_val=1, seed=2)
    assert not filecmp.cmp(str(tmp_path / "a" / "train" / "train_00000.png"),
                           str(tmp_path / "b" / "train" / "train_00000.png"), shallow=False)


def test_annotations_are_valid_coco(tiny_dataset):
    from pycocotools.coco import COCO

    for split, count in (("train", 16), ("val", 8)):
        anno_file = os.path.join(tiny_dataset, "annotations", "instances_{}.json".format(split))
        coco = COCO(anno_file)
        assert len(coco.getImgIds()) == count
        assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(CATEGORIES)
        for image in coco.loadImgs(coco.getImgIds()):
            pixels = cv2.imread(os.path.join(tiny_dataset, split, image["file_name"]))
            assert pixels.shape[:2] == (image["height"], image["width"])
            annotations = coco.loadAnns(coco.getAnnIds(imgIds=image["id"]))
            assert annotations, "every image holds at least one shape"
            for ann in annotations:
                x, y, w, h = ann["bbox"]
                assert w > 0 and h > 0 and x >= 0 and y >= 0
                assert x + w <= image["width"] and y + h <= image["height"]
                assert ann["category_id"] in coco.getCatIds()


def test_annotation_ids_are_unique(tiny_dataset):
    with open(os.path.join(tiny_dataset, "annotations", "instances_train.json")) as f:
        data = json.load(f)
    ids = [a["id"] for a in data["annotations"]]
    assert len(ids) == len(set(ids))


def test_classification_set_is_deterministic_and_balanced():
    from slimext.data.demo_classification import NUM_CLASSES, class_name, make_split

    images, labels = make_split(30, seed=3, size=64)
    again, labels_again = make_split(30, seed=3, size=64)
    assert images.shape == (30, 3, 64, 64) and images.dtype == np.float32
    assert np.array_equal(images, again) and np.array_equal(labels, labels_again)
    assert np.bincount(labels, minlength=NUM_CLASSES).tolist() == [3] * NUM_CLASSES
    assert -1.0 <= images.min() and images.max() <= 1.0
    assert class_name(NUM_CLASSES - 1) == "background" and class_name(0) == "red circle"
