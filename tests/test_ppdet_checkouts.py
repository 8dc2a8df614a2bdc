"""PaddleDetection checkouts of other versions than the installed ppdet, through
`python -m slimext.launch`: a version mismatch is one Error line, a checkout's missing
requirement names `make checkout-deps`, and the deploy scripts of v2.6.0 (Pillow 10+ drawing)
and develop (Paddle 3 model-file choice) run slimext's exports. The scripts under
tests/ppdet_tools/checkout_v2x/ keep those versions' import lines and argument handling."""
import os
import subprocess
import sys

import pytest

from slimext.compat.versions import paddle_at_least, version_text

HERE = os.path.dirname(os.path.abspath(__file__))
V27 = os.path.join(HERE, "ppdet_tools", "checkout_v27")
V26 = os.path.join(HERE, "ppdet_tools", "checkout_v26")
REPO = os.path.dirname(HERE)


def run(args, cwd, env=None):
    environment = dict(os.environ, PYTHONPATH=REPO)
    environment.pop("FLAGS_enable_pir_api", None)
    environment.update(env or {})
    return subprocess.run([sys.executable] + list(args), cwd=str(cwd), capture_output=True,
                          text=True, timeout=600, env=environment)


def test_v27_tools_with_the_installed_ppdet_end_with_one_error_line(tmp_path):
    result = run(["-m", "slimext.launch", os.path.join(V27, "tools", "train.py"),
                  "-c", "any.yml"], cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("Error: tools/train.py is from the PaddleDetection checkout " + V27)
    assert "setup.py says 0.0.0" in line
    assert "imported ppdet {} from ".format(version_text("ppdet")) in line
    assert "cannot import name 'Trainer_ARSL' from 'ppdet.engine.trainer_ssod'" in line
    assert "cd {} && python -m slimext.launch tools/train.py".format(V27) in line
    assert "make checkout-deps PPDET={}".format(V27) in line


def test_a_checkouts_missing_requirement_names_checkout_deps(tmp_path):
    root = tmp_path / "PaddleDetection"
    (root / "ppdet").mkdir(parents=True)
    (root / "ppdet" / "__init__.py").write_text("")
    (root / "setup.py").write_text('PPDET_VERSION = "0.0.0"\n')
    (root / "deploy").mkdir()
    (root / "deploy" / "preprocess.py").write_text("import augmenter_nobody_installed\n")
    result = run(["-m", "slimext.launch", str(root / "deploy" / "preprocess.py")], cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("Error: deploy/preprocess.py needs the module "
                           "'augmenter_nobody_installed'")
    assert "make checkout-deps PPDET={}".format(root) in line
    assert "Traceback" not in result.stderr


def test_v26_box_labels_draw_on_pillow_without_textsize(tmp_path):
    from PIL import ImageDraw

    script = os.path.join(V26, "deploy", "python", "visualize.py")
    plain = run([script, "--output", str(tmp_path / "plain.png")], cwd=tmp_path)
    if not hasattr(ImageDraw.ImageDraw, "textsize"):  # Pillow >= 10: what the fix is for
        assert "no attribute 'textsize'" in plain.stderr
    launched = run(["-m", "slimext.launch", script, "--output", str(tmp_path / "l.png")],
                   cwd=tmp_path)
    assert launched.returncode == 0, launched.stderr[-2000:]
    assert (tmp_path / "l.png").stat().st_size > 0


@pytest.mark.parametrize("export, mkldnn", [("float_export", "False"), ("qdq_export", "True")])
def test_develops_infer_opens_slimexts_old_ir_export(export, mkldnn, request, tmp_path):
    model_dir = request.getfixturevalue(export)
    args = [os.path.join(V27, "deploy", "python", "infer.py"), "--model_dir", model_dir,
            "--device", "CPU", "--enable_mkldnn", mkldnn]
    plain = run(args, cwd=tmp_path)
    if paddle_at_least(3, 0, 0):  # Config(model_dir, "model") looks for model.json
        assert plain.returncode != 0 and "model.json" in plain.stderr
    launched = run(["-m", "slimext.launch"] + args, cwd=tmp_path)
    assert launched.returncode == 0, launched.stderr[-3000:]
    assert "boxes (" in launched.stdout
