"""slimext changes nothing in what other code computes: importing it leaves the process as it
was, and after a quantization Paddle's join functions take exactly Paddle's arguments and
return Paddle's results (with no handler active and with one active). Each check runs in a
fresh process, where Paddle has not been touched yet."""
import json
import os
import subprocess
import sys

from slimext.compat.versions import paddle_at_least

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Every call form of the patched functions, with the keywords, aliases, alpha and out= that
# Paddle's functions take. A form this Paddle refuses must be refused the same way after.
CALLS = r'''
import numpy as np
import paddle

def _calls():
    x = paddle.to_tensor([[1.0, -2.0, 3.0], [0.5, 4.0, -1.5]])
    y = paddle.to_tensor([[2.0, 1.0, -1.0], [3.0, -0.5, 2.5]])
    return {
        "x + y": lambda: x + y, "2 + x": lambda: 2 + x, "x - 1": lambda: x - 1,
        "1 - x": lambda: 1 - x, "x * y": lambda: x * y, "3 * x": lambda: 3 * x,
        "x.__add__(y)": lambda: x.__add__(y),
        "paddle.add(x, y)": lambda: paddle.add(x, y),
        "paddle.add(x=x, y=y)": lambda: paddle.add(x=x, y=y),
        "paddle.add(x, y, name='a')": lambda: paddle.add(x, y, name="a"),
        "paddle.add(x, y, alpha=2)": lambda: paddle.add(x, y, alpha=2),
        "x.add(y, alpha=2)": lambda: x.add(y, alpha=2),
        "paddle.add(input=x, other=y)": lambda: paddle.add(input=x, other=y),
        "paddle.add(x, y, out=z)": lambda: _with_out(lambda z: paddle.add(x, y, out=z)),
        "paddle.subtract(x, y, alpha=3)": lambda: paddle.subtract(x, y, alpha=3),
        "paddle.subtract(y=y, x=x)": lambda: paddle.subtract(y=y, x=x),
        "paddle.multiply(x, y)": lambda: paddle.multiply(x, y),
        "paddle.tensor.multiply(x, y)": lambda: paddle.tensor.multiply(x, y),
        "x.multiply(y)": lambda: x.multiply(y),
        "paddle.multiply(x, y, out=z)":
            lambda: _with_out(lambda z: paddle.multiply(x, y, out=z)),
        "paddle.add_n([x, y])": lambda: paddle.add_n([x, y]),
        "paddle.add_n(inputs=[x, y])": lambda: paddle.add_n(inputs=[x, y]),
        "paddle.concat([x, y], 1)": lambda: paddle.concat([x, y], 1),
        "paddle.concat(x=[x, y], axis=-1)": lambda: paddle.concat(x=[x, y], axis=-1),
        "paddle.concat(tensors=[x, y], dim=1)": lambda: paddle.concat(tensors=[x, y], dim=1),
        "paddle.stack([x, y], dim=1)": lambda: paddle.stack([x, y], dim=1),
        "paddle.stack(x=[x, y])": lambda: paddle.stack(x=[x, y]),
        "paddle.concat([x, y], axis=0, out=z)":
            lambda: _with_out(lambda z: paddle.concat([x, y], axis=0, out=z), [4, 3]),
        "x.clone().add_(y)": lambda: x.clone().add_(y),
        "x.clone().subtract_(y, alpha=2)": lambda: x.clone().subtract_(y, alpha=2),
        "x.clone().multiply_(y)": lambda: x.clone().multiply_(y),
    }

def _with_out(call, shape=(2, 3)):
    z = paddle.zeros(list(shape))
    result = call(z)
    return [result, z]

def outcome(call):
    try:
        value = call()
    except Exception as error:  # the refusal must stay the same
        return ["error", type(error).__name__]
    values = value if isinstance(value, list) else [value]
    return ["ok", [np.asarray(v.numpy()).tolist() for v in values]]

def outcomes():
    return {name: outcome(call) for name, call in _calls().items()}
'''

SIGNATURES = CALLS + r'''
import inspect, json
from slimext.quant import QATQuantizer, interception
from slimext.quant.coverage import CoverageRecorder

def signatures():
    found = {}
    for owner, attribute, _ in interception.patch_targets():
        key = "{}.{}".format(getattr(owner, "__qualname__", owner.__name__), attribute)
        try:
            found[key] = str(inspect.signature(getattr(owner, attribute)))
        except (TypeError, ValueError) as error:
            found[key] = "no signature ({})".format(type(error).__name__)
    return found

plain_signatures, plain = signatures(), outcomes()
class Net(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.a, self.b = paddle.nn.Conv2D(3, 4, 3, padding=1), paddle.nn.Conv2D(3, 4, 1)
    def forward(self, t):
        return paddle.add(self.a(t), self.b(t))
qat = QATQuantizer(backend="onednn")
qat(Net(), example_inputs=[paddle.rand([1, 3, 8, 8])])
assert interception.patched_entry_points()
after_signatures, after = signatures(), outcomes()
with interception.handling(CoverageRecorder()):
    handled = outcomes()
changed = lambda a, b: sorted(k for k in a if a[k] != b[k])
print(json.dumps({"targets": len(plain_signatures),
                  "signatures": changed(plain_signatures, after_signatures),
                  "after": changed(plain, after), "handled": changed(plain, handled),
                  "refused": sorted(k for k, v in plain.items() if v[0] == "error")}))
'''


def _run(script):
    env = {k: v for k, v in os.environ.items()
           if k not in ("FLAGS_enable_pir_api", "ENABLE_FALL_BACK")}
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_after_a_quantization_paddles_join_functions_take_and_compute_what_they_did():
    found = _run(SIGNATURES)
    assert found["targets"] >= 30  # operators on 3 tensor classes, functions in 4 modules
    assert found["signatures"] == []
    assert found["after"] == []     # no handler active: Paddle's own function runs
    assert found["handled"] == []   # a handler that changes nothing changes nothing
    # The forms this Paddle refuses are refused the same way after (compared above); on
    # Paddle 3 the keyword forms slimext once narrowed are accepted, so they were exercised.
    if paddle_at_least(3, 0, 0):
        assert not {"paddle.add(x, y, alpha=2)", "x.add(y, alpha=2)", "paddle.add(x, y, out=z)",
                    "paddle.concat(tensors=[x, y], dim=1)", "paddle.stack([x, y], dim=1)"} \
            & set(found["refused"]), found["refused"]


IMPORTS = r'''
import inspect, json, logging, os, sys, warnings
import paddle
import paddle.nn.functional as F
from paddle.static import Variable

def functions():
    owners = [paddle, paddle.tensor, paddle.tensor.math, paddle.tensor.manipulation, F,
              paddle.Tensor, Variable, paddle.nn.Layer] + \
        ([paddle.pir.Value] if hasattr(paddle, "pir") else [])
    return {"{}.{}".format(getattr(o, "__qualname__", o.__name__), n): id(v)
            for o in owners for n, v in vars(o).items() if callable(v)}

def state():
    root = logging.getLogger()
    pir = paddle.get_flags("FLAGS_enable_pir_api")["FLAGS_enable_pir_api"] \
        if paddle.__version__ >= "3" else None
    return {"environment": dict(os.environ), "warning filters": [repr(f) for f in warnings.filters],
            "root logger": [repr(h) for h in root.handlers] + [root.level],
            "pir": pir, "functions": functions(), "static": paddle.in_dynamic_mode()}

def diff(a, b):
    out = {}
    for key in a:
        if a[key] != b[key]:
            if isinstance(a[key], dict):
                out[key] = sorted(k for k in set(a[key]) | set(b[key])
                                  if a[key].get(k) != b[key].get(k))[:10]
            else:
                out[key] = [str(a[key])[-300:], str(b[key])[-300:]]
    return out

before = state()
import slimext
import slimext.analysis, slimext.compat, slimext.data, slimext.deploy, slimext.matcher
import slimext.quant, slimext.commands, slimext.launch, slimext.slim.settings, slimext.pipeline
import slimext.commands.train, slimext.commands.slim_config
import_diff = diff(before, state())
loaded = sorted(m for m in ("ppdet", "paddleslim") if m in sys.modules)
slimext.register_with_ppdet()
registered = state()
# ppdet's own imports set Qt paths for cv2 (cv2's doing, not a setting of Paddle's or ours).
for key in list(registered["environment"]):
    if key.startswith("QT_") or key == "LD_LIBRARY_PATH":
        registered["environment"].pop(key)
        before["environment"].pop(key, None)
fixes = [n for n in registered["functions"] if registered["functions"][n] != before["functions"][n]]
print(json.dumps({"import": import_diff, "loaded": loaded,
                  "register": {k: v for k, v in diff(before, registered).items() if k != "functions"},
                  "patched by register": fixes}))
'''


def test_importing_slimext_changes_nothing_in_the_process():
    found = _run(IMPORTS)
    assert found["import"] == {}
    assert found["loaded"] == []  # ppdet and PaddleSlim are loaded when asked for


def test_registering_with_ppdet_leaves_paddle_warnings_and_logging_as_they_were():
    found = _run(IMPORTS)
    assert found["register"] == {}
    assert found["patched by register"] == []  # the compat fixes touch ppdet, not Paddle
