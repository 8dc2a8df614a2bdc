"""The detection configs shipped under configs/, with the architecture each one builds.

Read with plain YAML (and `_BASE_` merging) rather than ppdet's loader, which merges
every file it reads into one process-wide config.
"""
import functools
import glob
import os
from dataclasses import dataclass

import yaml

from slimext.compat.ppdet_internals import read_yaml_with_base
from slimext.matcher.diagnosis import ArchSignature, same_architecture

DEFAULT_CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "configs")
_HEAD_DEFAULT_REG_MAX = 16  # PicoHead/PicoHeadV2 default when a config does not set it


@dataclass
class ShippedConfig:
    path: str
    signature: ArchSignature


def signature_from_config(cfg):
    """ArchSignature a config's YAML describes (PicoDet-style keys; others partly)."""
    arch = cfg.get(cfg.get("architecture", ""), {}) or {}
    backbone, neck, head = (cfg.get(arch.get(p, ""), {}) or {} for p in ("backbone", "neck",
                                                                          "head"))
    conv_feat = head.get("conv_feat", {}) or {}
    return ArchSignature(
        backbone=arch.get("backbone"),
        backbone_scale=backbone.get("scale"),
        neck_channels=neck.get("out_channels"),
        head_channels=conv_feat.get("feat_out"),
        head_num_convs=conv_feat.get("num_convs"),
        num_classes=cfg.get("num_classes"),
        reg_max=head.get("reg_max", _HEAD_DEFAULT_REG_MAX) if head else None)


def configs_dir_for(config_path):
    """The configs/ folder the user's config lives in (a PaddleDetection checkout's own, or
    this project's), so that a suggested config is one of theirs; this project's when the
    config is not under a configs/ folder."""
    if config_path and os.path.isfile(str(config_path)):
        folder = os.path.dirname(os.path.abspath(str(config_path)))
        while True:
            if os.path.basename(folder) == "configs":
                return folder
            parent = os.path.dirname(folder)
            if parent == folder:
                break
            folder = parent
    return DEFAULT_CONFIG_DIR


def shown_path(path):
    """A config path as the user would type it: relative to the working folder when it is
    inside it, else absolute."""
    absolute = os.path.abspath(path)
    relative = os.path.relpath(absolute)
    return absolute if relative.startswith(os.pardir) else relative


@functools.lru_cache(maxsize=8)  # the files do not change while a command runs
def shipped_configs(config_dir=DEFAULT_CONFIG_DIR):
    """Every config under config_dir that names an architecture (bases excluded)."""
    found = []
    for path in sorted(glob.glob(os.path.join(config_dir, "**", "*.yml"), recursive=True)):
        if "_base_" in path.split(os.sep):
            continue
        try:
            cfg = read_yaml_with_base(path) or {}
        except (OSError, TypeError, yaml.YAMLError):  # unreadable, or an empty _BASE_ file
            continue
        if isinstance(cfg, dict) and cfg.get("architecture"):
            found.append(ShippedConfig(os.path.abspath(path), signature_from_config(cfg)))
    return tuple(found)


def configs_matching(signature, config_dir=DEFAULT_CONFIG_DIR):
    """Shipped configs whose architecture agrees with the signature in every stated field.

    A backbone-only signature states no neck/head fields, so it never names a detector.
    """
    if signature.backbone is None or signature.neck_channels is None:
        return []
    return [c for c in shipped_configs(config_dir)
            if c.signature.backbone == signature.backbone
            and c.signature.neck_channels is not None
            and same_architecture(c.signature, signature)]
