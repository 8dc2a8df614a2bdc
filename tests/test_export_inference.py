"""A trained checkpoint, exported, gives the dygraph model's numbers under Paddle Inference."""
import os

import numpy as np

from conftest import DEMO_CONFIG, run_tool, run_tool_ok
from slimext.deploy.predictor import DetectorPredictor
from slimext.deploy.preprocess import load_image


def _flatten(outputs):
    if isinstance(outputs, (list, tuple)):
        return [a for o in outputs for a in _flatten(o)]
    return [outputs.numpy()]


def _dygraph_model(workspace, weights, raw):
    from ppdet.utils.checkpoint import load_weight

    cfg = workspace.load_config(DEMO_CONFIG)
    model = workspace.create(cfg.architecture)
    load_weight(model, weights)
    model.eval()
    model.export_post_process = not raw
    return model


def _val_image(tiny_dataset):
    return load_image(os.path.join(tiny_dataset, "val", "val_00000.png"))


def test_raw_head_outputs_match_dygraph(raw_export, trained_weights, tiny_dataset,
                                        ppdet_workspace):
    import paddle

    predictor = DetectorPredictor(raw_export, "fp32")
    inputs = predictor.preprocess(_val_image(tiny_dataset))
    static = predictor.run_raw(inputs)

    model = _dygraph_model(ppdet_workspace, trained_weights, raw=True)
    with paddle.no_grad():
        dygraph = _flatten(model({"image": paddle.to_tensor(inputs["image"])})["picodet"])
    assert [a.shape for a in static] == [a.shape for a in dygraph]
    for s, d in zip(static, dygraph):
        np.testing.assert_allclose(s, d, rtol=1e-3, atol=1e-4)


def test_final_boxes_match_dygraph(float_export, trained_weights, tiny_dataset,
                                   ppdet_workspace):
    import paddle

    predictor = DetectorPredictor(float_export, "fp32")
    image = _val_image(tiny_dataset)
    static = predictor.predict(image).boxes

    inputs = predictor.preprocess(image)
    model = _dygraph_model(ppdet_workspace, trained_weights, raw=False)
    with paddle.no_grad():
        out = model({k: paddle.to_tensor(v) for k, v in inputs.items()})
    dygraph = out["bbox"].numpy()[:int(out["bbox_num"].numpy()[0])]
    assert len(static) == len(dygraph) > 0
    # Scores sorted: robust to NMS reordering near-equal boxes of a barely trained model.
    np.testing.assert_allclose(np.sort(static[:, 1]), np.sort(dygraph[:, 1]), atol=1e-4)
    # Every static box has a dygraph box of the same class within a pixel.
    for row in static:
        same = dygraph[dygraph[:, 0] == row[0]]
        assert np.abs(same[:, 2:] - row[2:]).max(axis=1).min() < 1.0


def test_export_replaces_existing_export(tmp_path, trained_weights, dataset_overrides):
    target = tmp_path / "picodet_xs_192_demo_lcnet"
    target.mkdir()
    (target / "stale.txt").write_text("old export")
    run_tool_ok(["tools/export_model.py", "-c", DEMO_CONFIG, "--output_dir", str(tmp_path),
                 "-o", "weights=" + trained_weights] + dataset_overrides)
    assert sorted(os.listdir(target)) == ["infer_cfg.yml", "model.pdiparams",
                                          "model.pdiparams.info", "model.pdmodel"]
    assert sorted(os.listdir(tmp_path)) == ["picodet_xs_192_demo_lcnet"]  # no staging left


def test_failed_export_keeps_existing_export(tmp_path, dataset_overrides):
    target = tmp_path / "picodet_xs_192_demo_lcnet"
    target.mkdir()
    (target / "model.pdmodel").write_text("previous export")
    result = run_tool(["tools/export_model.py", "-c", DEMO_CONFIG, "--output_dir",
                       str(tmp_path), "-o", "weights=" + str(tmp_path / "missing")]
                      + dataset_overrides)
    assert result.returncode != 0
    assert (target / "model.pdmodel").read_text() == "previous export"


def test_replace_dir_restores_old_folder_when_move_fails(tmp_path):
    from slimext.fileio import replace_dir

    target = tmp_path / "export"
    target.mkdir()
    (target / "model.pdmodel").write_text("previous export")
    try:
        replace_dir(str(tmp_path / "does_not_exist"), str(target))
    except OSError:
        pass
    assert (target / "model.pdmodel").read_text() == "previous export"
    assert sorted(os.listdir(tmp_path)) == ["export"]
