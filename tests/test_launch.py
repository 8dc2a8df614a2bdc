"""slimext.launch runs a user's script like `python script.py`, with slimext registered."""
import textwrap

from conftest import DEMO_CONFIG, run_tool_ok

SLIM_QAT = """\
slim: QAT
QAT:
  quant_config: {
    'weight_quantize_type': 'channel_wise_abs_max', 'activation_quantize_type': 'moving_average_abs_max',
    'weight_bits': 8, 'activation_bits': 8, 'dtype': 'int8', 'window_size': 10000, 'moving_rate': 0.9,
    'quantizable_layer_type': ['Conv2D', 'Linear']}
  print_model: False
"""

SCRIPT = """\
import sys
import helper_beside_script  # found only if the script's folder is on sys.path
from ppdet.core.workspace import create, load_config

assert __name__ == "__main__"
assert "slimext" in sys.modules
config, slim_config = sys.argv[1], sys.argv[2]
cfg = load_config(config)
model = create(cfg.architecture)
load_config(slim_config)
model = create(cfg.slim)(model)
quantized = [n for n, layer in model.named_sublayers() if "Quant" in type(layer).__name__]
print("argv", sys.argv[1:], "quantized layers", len(quantized), helper_beside_script.MARK)
"""


def test_launch_runs_script_that_builds_a_qat_model(tmp_path):
    (tmp_path / "qat.yml").write_text(SLIM_QAT)
    (tmp_path / "helper_beside_script.py").write_text("MARK = 'helper-ok'\n")
    script = tmp_path / "build_qat.py"
    script.write_text(textwrap.dedent(SCRIPT))
    result = run_tool_ok(["-m", "slimext.launch", str(script), DEMO_CONFIG,
                          str(tmp_path / "qat.yml")])
    line = [l for l in result.stdout.splitlines() if l.startswith("argv")][0]
    assert "helper-ok" in line
    assert int(line.split("quantized layers")[1].split()[0]) > 10


def test_importing_slimext_keeps_png_writing_working():
    # Loading paddle before Python's zlib makes compression segfault; slimext loads zlib
    # first, so PNG writers keep working after `import slimext`.
    code = ("import slimext, paddle, zlib, cv2, numpy as np, sys; "
            "ok = cv2.imwrite(sys.argv[1], np.zeros((8, 8, 3), np.uint8)); "
            "print(len(zlib.compress(b'x' * 1000)), ok)")
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        result = subprocess.run([sys.executable, "-c", code, folder + "/a.png"],
                                capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-1500:]
    assert result.stdout.strip().endswith("True")
