"""Every compatibility fix: applied exactly on the versions that need it, and the failure it
prevents is real there (the unfixed function fails, the fixed one works)."""
import os

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

from slimext import compat
from slimext.compat.tracing import export_tracing
from slimext.compat.versions import installed_version, paddle_at_least

PADDLE3 = paddle_at_least(3, 0, 0)


def _unfixed(function):
    """The function as Paddle/ppdet ship it (a fix keeps it as __wrapped__)."""
    return getattr(function, "__wrapped__", function)


def test_fixes_are_applied_exactly_where_needed():
    applied = set(compat.applied_fixes())
    for fix in compat.FIXES:
        assert (fix.name in applied) == fix.needed(), fix.name
    assert "ppdet_export_tracing" in applied
    from PIL import Image

    pillow_major = int(Image.__version__.split(".")[0])
    assert ("pillow_textsize" in applied) == (pillow_major >= 10)  # 10 removed textsize


def test_gates_read_the_imported_code_not_its_version_string():
    # A ppdet run from a develop checkout says 0.0.0 (or nothing); the gates look at the code.
    from slimext.compat.assigners import adds_uncast_batch_index

    class Uncast:  # ppdet 2.6.0's line
        def forward(self, assigned_gt_index, batch_ind, num_max_boxes):
            assigned_gt_index = assigned_gt_index + batch_ind * num_max_boxes
            return assigned_gt_index

    class Cast:  # release/2.7.1's and develop's line
        def forward(self, assigned_gt_index, batch_ind, num_max_boxes):
            assigned_gt_index = assigned_gt_index + (batch_ind * num_max_boxes).astype(
                assigned_gt_index.dtype)
            return assigned_gt_index

    assert adds_uncast_batch_index(Uncast) and not adds_uncast_batch_index(Cast)
    fixes = {fix.name: fix for fix in compat.FIXES}
    assert fixes["lcpan_spatial_scales_default"].needed()  # the list default of every version
    assert fixes["assigner_batch_index_dtype"].needed() == \
        (PADDLE3 and installed_version("ppdet") == (2, 6, 0))  # the installed one is 2.6.0


def test_versions_come_from_package_metadata():
    assert ".".join(map(str, installed_version("paddle"))).startswith(
        paddle.__version__.split("-")[0][:3])


def _old_ir_program(multiply, sigmoid, matmul, total, argmax, maximum):
    main, startup = paddle.static.Program(), paddle.static.Program()
    with paddle.static.program_guard(main, startup):
        x = paddle.static.data("x", [2, 3], "float32")
        y = multiply(x, sigmoid(x))
        z = matmul(y, y, transpose_y=True).sqrt()
        outputs = [z, total(maximum(x, y), axis=1), argmax(x, axis=-1)]
    return main, outputs


def _functions_bound_to_cpp():
    return (paddle.multiply, F.sigmoid, paddle.matmul, paddle.sum, paddle.argmax,
            paddle.maximum)


def test_old_ir_tracing_of_functions_bound_to_cpp():
    x = np.array([[0.5, 1.0, 2.0], [3.0, 0.1, 0.2]], "float32")
    with export_tracing():
        fixed = _functions_bound_to_cpp()
        paddle.enable_static()
        try:
            program, outputs = _old_ir_program(*fixed)
            ops = {op.type for op in program.global_block().ops}
            assert {"elementwise_mul", "sigmoid", "matmul_v2", "sqrt", "reduce_sum",
                    "elementwise_max", "arg_max"} <= ops
            exe = paddle.static.Executor(paddle.CPUPlace())
            z, total, index = exe.run(program, feed={"x": x}, fetch_list=outputs)
            if PADDLE3:
                # Paddle's own shims (a function a model took before the scope) reach the
                # stand-ins beneath them on _C_ops, so they build old-IR ops too.
                unfixed_program, _ = _old_ir_program(*map(_unfixed, fixed))
                assert {op.type for op in unfixed_program.global_block().ops} == ops
        finally:
            paddle.disable_static()
    y = x / (1 + np.exp(-x))
    np.testing.assert_allclose(z, np.sqrt(y @ y.T), rtol=1e-5)
    np.testing.assert_allclose(total, np.maximum(x, y).sum(axis=1), rtol=1e-5)
    np.testing.assert_array_equal(index, x.argmax(axis=-1))


def _beneath_interception():
    """The functions as called: beneath slimext's join interception where a quantized model
    alive in this process has it installed (the stand-ins go beneath it)."""
    return tuple(f.__wrapped__ if getattr(f, "_slimext_forwards", False) else f
                 for f in _functions_bound_to_cpp())


def test_the_stand_ins_exist_only_inside_the_export_scope():
    before = _beneath_interception()
    with export_tracing():
        inside = _beneath_interception()
        with export_tracing():  # nested: nothing installed twice
            assert _beneath_interception() == inside
    assert _beneath_interception() == before
    if PADDLE3:
        assert all(getattr(f, "_old_ir_fallback", False) for f in inside)
        assert all(f is _unfixed(g) for f, g in zip(before, inside))


def test_dygraph_calls_go_to_paddles_own_functions():
    x = paddle.to_tensor([[1.0, -2.0]])
    np.testing.assert_allclose(paddle.multiply(x, x).numpy(), [[1.0, 4.0]])
    np.testing.assert_allclose(F.sigmoid(x).numpy(), 1 / (1 + np.exp(-x.numpy())), rtol=1e-6)


def _assigner_inputs():
    # 8x8 anchors of size 8 on a 64x64 image, two ground-truth boxes labelled 1 and 2.
    centers = (np.arange(8) * 8 + 4).astype("float32")
    cx, cy = np.meshgrid(centers, centers)
    anchors = np.stack([cx - 4, cy - 4, cx + 4, cy + 4], -1).reshape(-1, 4)
    gt_boxes = paddle.to_tensor([[[0, 0, 20, 20], [30, 30, 60, 60]]], "float32")
    gt_labels = paddle.to_tensor([[[1], [2]]], "int32")
    return paddle.to_tensor(anchors), gt_labels, gt_boxes, paddle.ones([1, 2, 1])


def test_atss_assigner_accepts_int32_labels():
    from ppdet.modeling.assigners.atss_assigner import ATSSAssigner

    assigner = ATSSAssigner(topk=9, num_classes=3)
    anchors, labels, boxes, mask = _assigner_inputs()
    assigned = assigner(anchors, [64], labels, boxes, mask, bg_index=3)[0]
    assert assigned.dtype == paddle.int32
    values = set(assigned.numpy().ravel().tolist())
    assert 3 in values and values & {1, 2}  # background and at least one object
    if PADDLE3:
        with pytest.raises(Exception, match="int64|int32|dtype|type"):
            _unfixed(ATSSAssigner.forward)(assigner, anchors, [64], labels, boxes, mask, 3)


def test_task_aligned_assigner_accepts_int32_labels():
    from ppdet.modeling.assigners.task_aligned_assigner import TaskAlignedAssigner

    assigner = TaskAlignedAssigner(topk=9)
    anchors, labels, boxes, mask = _assigner_inputs()
    points = (anchors[:, :2] + anchors[:, 2:]) / 2
    scores = paddle.full([1, 64, 3], 0.5)
    pred_boxes = paddle.to_tensor(anchors.numpy()[None])
    assigned = assigner(scores, pred_boxes, points, [64], labels, boxes, mask, 3)[0]
    assert assigned.dtype == paddle.int32
    assert {1, 2} <= set(assigned.numpy().ravel().tolist())
    if PADDLE3:
        with pytest.raises(Exception, match="int64|int32|dtype|type"):
            _unfixed(TaskAlignedAssigner.forward)(assigner, scores, pred_boxes, points, [64],
                                                  labels, boxes, mask, 3)


SAVE_LINEAR = """
import os, sys
import slimext, paddle
from slimext.compat.tracing import export_tracing
model = paddle.nn.Linear(2, 2)
spec = [paddle.static.InputSpec([1, 2], "float32")]
def save(name):
    paddle.jit.save(paddle.jit.to_static(model, full_graph=True), sys.argv[1] + "/" + name,
                    input_spec=spec)
save("before")
with export_tracing():
    save("export")
save("after")
print(sorted(os.listdir(sys.argv[1])))
print(paddle.get_flags("FLAGS_enable_pir_api")["FLAGS_enable_pir_api"] if
      hasattr(paddle, "pir") else None, os.environ.get("FLAGS_enable_pir_api"),
      os.environ.get("ENABLE_FALL_BACK"))
"""


def test_only_the_export_scope_traces_into_the_old_ir(tmp_path):
    """Paddle's default IR before and after; the old-IR .pdmodel INT8 inference needs inside;
    no environment variable left for the process or its children."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items()
           if k not in ("FLAGS_enable_pir_api", "ENABLE_FALL_BACK")}
    result = subprocess.run([sys.executable, "-c", SAVE_LINEAR, str(tmp_path)],
                            capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    files, state = result.stdout.strip().splitlines()[-2:]
    assert "export.pdmodel" in files
    default = "json" if PADDLE3 else "pdmodel"  # what Paddle writes by itself
    assert "before.{}".format(default) in files and "after.{}".format(default) in files
    assert state == ("True None None" if PADDLE3 else "False None None")  # Paddle's default


@pytest.mark.parametrize("module, name", [("ppdet.modeling.necks.csp_pan", "CSPPAN"),
                                          ("ppdet.modeling.necks.lc_pan", "LCPAN")])
def test_pan_builds_do_not_share_a_growing_default(module, name):
    import importlib
    import inspect

    neck = getattr(importlib.import_module(module), name)

    def build(init):
        layer = neck.__new__(neck)
        init(layer, in_channels=[16, 32, 64], out_channels=16, num_features=4)
        return layer

    assert [len(build(neck.__init__).spatial_scales) for _ in range(2)] == [4, 4]
    unfixed = _unfixed(neck.__init__)
    default = inspect.signature(unfixed).parameters["spatial_scales"].default
    pristine = list(default)
    try:  # the failure the fix prevents: each build appends to the one default list
        assert [len(build(unfixed).spatial_scales) for _ in range(2)] == [4, 5]
    finally:
        default[:] = pristine


MAIN_PROGRAM = """
import slimext, paddle
from slimext.compat.tracing import export_tracing
model = paddle.nn.Linear(2, 2)
with export_tracing():
    static = paddle.jit.to_static(model.forward,
                                  input_spec=[paddle.static.InputSpec([1, 2], "float32")])
    print(type(static.main_program).__name__)
"""


@pytest.mark.parametrize("fallback", [None, "True"])
def test_full_graph_tracing_is_what_ppdet_export_reads(fallback):
    # ppdet's Trainer.export reads `.main_program`, which SOT fallback tracing refuses.
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "ENABLE_FALL_BACK"}
    if fallback:
        env["ENABLE_FALL_BACK"] = fallback  # a user's own value is kept: the unfixed case
    result = subprocess.run([sys.executable, "-c", MAIN_PROGRAM], capture_output=True,
                            text=True, timeout=300, env=env)
    if fallback:
        assert result.returncode != 0 and "full_graph=False" in result.stderr
    else:
        assert result.returncode == 0, result.stderr[-2000:]
        assert result.stdout.strip().endswith("Program")


def test_textsize_on_pillow_without_it_measures_as_pillow_9_did():
    from PIL import Image, ImageDraw, ImageFont

    from slimext.compat.pillow_textsize import _textsize

    draw = ImageDraw.Draw(Image.new("RGB", (64, 32)))
    font = ImageFont.load_default()
    # Pillow 9's textsize was the font's getsize: the text's size plus its offset, that is
    # the right and bottom edge of the box drawn at the origin.
    _, _, right, bottom = draw.textbbox((0, 0), "cat 0.93", font=font)
    assert _textsize(draw, "cat 0.93", font=font) == (right, bottom)
    assert draw.textsize("cat 0.93") == _textsize(draw, "cat 0.93")  # applied or Pillow's own
    assert right > 0 and bottom > 0


def test_label_font_needs_no_network(tmp_path, monkeypatch):
    from PIL import ImageFont

    from slimext.compat.ppdet_font import offline_safe_font_path

    url = "https://paddledet.bj.bcebos.com/simfang.ttf"
    calls = []

    def offline_get_path(url, root_dir, md5sum=None, check_exist=True):
        calls.append((url, root_dir))
        raise ConnectionError("Failed to resolve 'paddledet.bj.bcebos.com'")

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConnectionError):  # what ppdet's draw_bbox meets offline
        offline_get_path(url, "~/.cache/paddle/")
    get_path = offline_safe_font_path(offline_get_path)
    path, _ = get_path(url, "~/.cache/paddle/")
    assert ImageFont.truetype(path, 18, encoding="utf-8").getbbox("person 0.88")[2] > 0
    assert calls[-1] == (url, os.path.expanduser("~/.cache/paddle/"))  # "~" expanded
    # A font the checkout ships beside ppdet/utils/visualizer.py is used without asking.
    utils = tmp_path / "ppdet" / "utils"
    utils.mkdir(parents=True)
    (utils / "simfang.ttf").write_bytes(open(path, "rb").read())
    calls.clear()
    shipped = offline_safe_font_path(offline_get_path, str(utils / "visualizer.py"))
    assert shipped(url, "~/.cache/paddle/") == (str(utils / "simfang.ttf"), True) and not calls
    with pytest.raises(ConnectionError):  # anything but the font is ppdet's own call
        get_path("https://paddledet.bj.bcebos.com/models/x.pdparams", "~/.cache/paddle/")


def test_deploy_scripts_get_the_old_ir_flag_only_for_an_old_ir_export(tmp_path):
    from slimext.compat.deploy_scripts import PIR_FLAG, old_ir_model_environment

    (tmp_path / "model.pdmodel").write_bytes(b"")
    args = ["--model_dir", str(tmp_path), "--enable_mkldnn", "True"]
    assert old_ir_model_environment(args, {}) == ({PIR_FLAG: "0"} if PADDLE3 else {})
    assert old_ir_model_environment(["--model_dir=" + str(tmp_path)], {}) == \
        old_ir_model_environment(args, {})
    assert old_ir_model_environment(args, {PIR_FLAG: "1"}) == {}  # the user's setting stays
    assert old_ir_model_environment(["-c", "cfg.yml"], {}) == {}
    (tmp_path / "model.json").write_text("{}")
    assert old_ir_model_environment(args, {}) == {}  # a PIR export opens as Paddle chooses


def test_checkout_requirements_keep_installed_modules_and_pins(tmp_path, capsys):
    from slimext.compat import checkout_requirements as deps

    installed = deps.installed_distributions()
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("numpy < 2.0\n# for MOT\nlapx\nopencv-python-headless\n")
    assert deps.read_requirements(str(requirements))[0] == [
        "numpy < 2.0", "lapx", "opencv-python-headless"]
    pins = deps.constraints_text(installed, None).splitlines()
    assert "numpy=={}".format(installed["numpy"]) in pins
    assert "paddledet=={}".format(installed["paddledet"]) in pins
    assert deps.main([str(tmp_path), "--dry_run"]) == 0
    out = capsys.readouterr().out
    assert "skipped opencv-python-headless: the installed opencv-python already provides " \
        "module 'cv2'" in out
    if "lap" in installed:
        assert "skipped lapx: the installed lap already provides module 'lap'" in out
    assert "nothing to install" in out


def _qfl_inputs():
    import paddle

    rng = np.random.default_rng(0)
    pred = paddle.to_tensor(rng.standard_normal((6, 3)).astype("float32"))
    label = paddle.to_tensor(np.array([0, 3, 2, 3, 1, 2], dtype="int32"))   # 3: background
    quality = paddle.to_tensor(rng.uniform(0.1, 0.9, 6).astype("float32"))
    return pred, label, quality


def _qfl_reference(pred, label, quality, beta=2.0):
    """GFL's eq. 3 in numpy: BCE to the target quality (0 off the anchor's class), times
    |target - sigmoid(pred)|^beta."""
    x = pred.numpy().astype("float64")
    prob = 1.0 / (1.0 + np.exp(-x))
    target = np.zeros_like(x)
    for row, cls in enumerate(label.numpy()):
        if 0 <= cls < x.shape[1]:
            target[row, cls] = quality.numpy()[row]
    bce = np.maximum(x, 0) - x * target + np.log1p(np.exp(-np.abs(x)))
    return (bce * np.abs(target - prob) ** beta).sum(axis=1)


def test_quality_focal_loss_runs_and_equals_the_papers_formula():
    from ppdet.modeling.losses import gfocal_loss

    from slimext.compat.quality_focal_loss import multiplies_by_bool_mask, quality_focal_loss

    pred, label, quality = _qfl_inputs()
    expected = _qfl_reference(pred, label, quality)
    np.testing.assert_allclose(quality_focal_loss(pred, (label, quality)).numpy(), expected,
                               rtol=1e-5)
    fixes = {fix.name: fix for fix in compat.FIXES}
    assert fixes["quality_focal_loss_bool_mask"].needed() == paddle_at_least(3, 0, 0)
    if paddle_at_least(3, 0, 0):
        assert gfocal_loss.quality_focal_loss is quality_focal_loss
        unfixed = quality_focal_loss.replaces
        assert multiplies_by_bool_mask(unfixed)
        with pytest.raises(TypeError, match="bool"):
            unfixed(pred, (label, quality))
    else:   # Paddle 2.6 runs ppdet's own loss: the same numbers
        assert gfocal_loss.quality_focal_loss is not quality_focal_loss
        np.testing.assert_allclose(gfocal_loss.quality_focal_loss(pred, (label, quality))
                                   .numpy(), expected, rtol=1e-5)
