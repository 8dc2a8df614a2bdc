"""Every shipped detection config (PicoDet, legacy PicoDet, PP-YOLOE+, YOLOv3, GFL) loads, builds its model and runs one eval forward."""
import glob
import os

import pytest

from conftest import REPO_ROOT

FAMILY_DIRS = ("picodet", "picodet/legacy_model", "ppyoloe", "yolov3", "gfl")
CONFIGS = sorted(path for folder in FAMILY_DIRS
                 for path in glob.glob(os.path.join(REPO_ROOT, "configs", folder, "*.yml")))
LCNET_CONFIGS = sorted(glob.glob(os.path.join(REPO_ROOT, "configs", "picodet", "*lcnet.yml")))


def test_there_are_configs():
    assert len(CONFIGS) >= 17


@pytest.mark.parametrize("config", CONFIGS, ids=os.path.basename)
def test_config_builds_and_runs_one_forward(config, ppdet_workspace):
    import paddle

    cfg = ppdet_workspace.load_config(config)
    model = ppdet_workspace.create(cfg.architecture)
    model.eval()
    # The export size; PicoHeadV2 and PPYOLOEHead precompute their anchors for it.
    shape = (cfg.TestReader.get("inputs_def") or {}).get("image_shape") or [3, 320, 320]
    height, width = shape[-2:]
    with paddle.no_grad():
        out = model({"image": paddle.rand([1, 3, height, width]),
                     "im_shape": paddle.to_tensor([[float(height), float(width)]]),
                     "scale_factor": paddle.to_tensor([[1.0, 1.0]])})
    boxes, counts = out["bbox"].numpy(), out["bbox_num"].numpy()
    assert boxes.ndim == 2 and boxes.shape[1] == 6
    assert counts.shape == (1,) and counts[0] == boxes.shape[0]
    # A random model may keep no box at the score threshold; any it keeps has a known class.
    assert boxes.shape[0] == 0 or boxes[:, 0].max() < cfg.num_classes


def test_two_picodets_build_in_one_process(ppdet_workspace):
    """ppdet's LCPAN grows a shared default list per build; slimext.compat undoes that."""
    from ppdet.modeling.necks.lc_pan import LCPAN

    cfg = ppdet_workspace.load_config(LCNET_CONFIGS[0])
    first = ppdet_workspace.create(cfg.architecture)
    second = ppdet_workspace.create(cfg.architecture)
    assert len(first.neck.spatial_scales) == len(second.neck.spatial_scales) == 4
    assert LCPAN.__init__._copies_default == "spatial_scales"
