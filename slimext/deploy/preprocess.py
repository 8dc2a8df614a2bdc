"""The image preprocessing an exported ppdet detector expects, read from its infer_cfg.yml.

Mirrors ppdet's Decode/Resize/NormalizeImage/Permute/PadStride so the predictor sees exactly what the
dygraph model saw during evaluation (same resize call, same float order of operations).
"""
import os

import cv2
import numpy as np


def load_image(path):
    """Read an image file as RGB uint8 (ppdet's Decode converts BGR to RGB too)."""
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("cannot read image {!r} (missing or not an image)".format(path))
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


class Resize:
    def __init__(self, target_size, keep_ratio=False, interp=cv2.INTER_LINEAR):
        if isinstance(target_size, int):
            target_size = [target_size, target_size]
        self.target_h, self.target_w = target_size
        self.keep_ratio = keep_ratio
        self.interp = interp

    def __call__(self, image, info):
        h, w = image.shape[:2]
        if self.keep_ratio:
            scale = min(min(self.target_h, self.target_w) / min(h, w),
                        max(self.target_h, self.target_w) / max(h, w))
            scale_y = scale_x = scale
        else:
            scale_y, scale_x = self.target_h / h, self.target_w / w
        image = cv2.resize(image, None, None, fx=scale_x, fy=scale_y,
                           interpolation=self.interp).astype(np.float32)
        info["im_shape"] = np.array(image.shape[:2], dtype=np.float32)
        info["scale_factor"] = np.array([scale_y, scale_x], dtype=np.float32)
        return image


class NormalizeImage:
    def __init__(self, mean, std, is_scale=True, norm_type="mean_std"):
        self.mean = np.array(mean, dtype=np.float32)[None, None, :]
        self.std = np.array(std, dtype=np.float32)[None, None, :]
        self.is_scale = is_scale
        self.norm_type = norm_type

    def __call__(self, image, info):
        image = image.astype(np.float32, copy=False)
        if self.is_scale:
            image = image * np.float32(1.0 / 255.0)
        if self.norm_type == "mean_std":
            image = (image - self.mean) / self.std
        return image


class Permute:
    def __call__(self, image, info):
        return image.transpose((2, 0, 1)).copy()


class PadStride:
    """Zero-pad a CHW image at the bottom and right to multiples of `stride` (FPN detectors
    such as GFL export it as a batch transform); im_shape keeps the unpadded size."""

    def __init__(self, stride=0):
        self.stride = int(stride)

    def __call__(self, image, info):
        if self.stride <= 0:
            return image
        channels, height, width = image.shape
        padded = np.zeros((channels, -(-height // self.stride) * self.stride,
                           -(-width // self.stride) * self.stride), dtype=image.dtype)
        padded[:, :height, :width] = image
        return padded


TRANSFORMS = {"Resize": Resize, "NormalizeImage": NormalizeImage, "Permute": Permute,
              "PadStride": PadStride}


class Preprocess:
    """RGB uint8 image -> {'image': 1x3xHxW, 'im_shape': 1x2, 'scale_factor': 1x2}."""

    def __init__(self, steps):
        self.transforms = []
        for step in steps:
            step = dict(step)
            kind = step.pop("type")
            if kind not in TRANSFORMS:
                raise ValueError("infer_cfg.yml asks for preprocessing step {!r}; supported: {}"
                                 .format(kind, ", ".join(TRANSFORMS)))
            self.transforms.append(TRANSFORMS[kind](**step))

    def __call__(self, image):
        h, w = image.shape[:2]
        info = {"im_shape": np.array([h, w], dtype=np.float32),
                "scale_factor": np.array([1.0, 1.0], dtype=np.float32)}
        for transform in self.transforms:
            image = transform(image, info)
        return {"image": image[None], "im_shape": info["im_shape"][None],
                "scale_factor": info["scale_factor"][None]}


def read_infer_cfg(model_dir):
    """An export's infer_cfg.yml (preprocessing, label list, architecture) as a dict."""
    import yaml

    with open(os.path.join(model_dir, "infer_cfg.yml")) as f:
        return yaml.safe_load(f) or {}


def bench_image(model_dir, image_path=None):
    """The image to time: the given file, or a fixed random one at the model's input size."""
    if image_path:
        return load_image(image_path)
    steps = read_infer_cfg(model_dir).get("Preprocess", [])
    size = next((s["target_size"] for s in steps if s.get("type") == "Resize"), [320, 320])
    return np.random.RandomState(0).randint(0, 256, (size[0], size[1], 3)).astype(np.uint8)
