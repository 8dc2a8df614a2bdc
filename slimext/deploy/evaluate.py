"""COCO box mAP of a Paddle Inference predictor over a COCO-format validation set."""
import json
import os
import tempfile

import numpy as np

from slimext.deploy.preprocess import load_image
from slimext.fileio import atomic_write_json


def predict_dataset(predictor, anno_file, image_dir, limit=None):
    """COCO-style result dicts for the images listed in anno_file (first `limit` only)."""
    from pycocotools.coco import COCO
    from ppdet.data.source.category import get_categories
    from ppdet.metrics.json_results import get_det_res

    coco = COCO(anno_file)
    # The same class-index -> category-id map ppdet's COCODataSet uses when training.
    clsid2catid, _ = get_categories("COCO", anno_file)
    image_ids = sorted(coco.getImgIds())[:limit]
    results = []
    for image_id in image_ids:
        info = coco.loadImgs(image_id)[0]
        detections = predictor.predict(load_image(os.path.join(image_dir, info["file_name"])))
        results += get_det_res(detections.boxes, [len(detections.boxes)],
                               np.array([[image_id]]), clsid2catid)
    return results, image_ids


def coco_map(anno_file, results, image_ids=None):
    """COCOeval box stats (12 numbers; [0] mAP@[.5:.95], [1] mAP@.5) via ppdet's helper."""
    from ppdet.metrics.coco_utils import cocoapi_eval

    if not results:
        return [0.0] * 12  # COCO's loadRes refuses an empty result list
    with tempfile.TemporaryDirectory() as folder:
        json_file = os.path.join(folder, "bbox.json")
        atomic_write_json(json_file, results, indent=None)
        if image_ids is not None:
            anno_file = _subset_annotations(anno_file, image_ids, folder)
        return [float(x) for x in cocoapi_eval(json_file, "bbox", anno_file=anno_file)]


def _subset_annotations(anno_file, image_ids, folder):
    """Annotation file restricted to image_ids, so a partial run is scored fairly."""
    with open(anno_file) as f:
        data = json.load(f)
    keep = set(image_ids)
    data["images"] = [im for im in data["images"] if im["id"] in keep]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in keep]
    path = os.path.join(folder, "subset.json")
    return atomic_write_json(path, data, indent=None)


def evaluate_predictor(predictor, anno_file, image_dir, limit=None):
    """Box stats of the predictor on the set; see coco_map for the layout."""
    results, image_ids = predict_dataset(predictor, anno_file, image_dir, limit)
    return coco_map(anno_file, results, image_ids)
