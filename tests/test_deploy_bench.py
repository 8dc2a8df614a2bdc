"""tools/deploy_bench.py: every case an export allows, the machine line, a recommendation."""
import json
import os

import pytest

from conftest import run_tool_ok
from slimext.deploy.runtime_choice import applicable_cases, recommendation
from slimext.deploy.latency import percentile


def test_cases_follow_the_export_kind(float_export, qdq_export):
    assert applicable_cases(float_export, ("paddle", "openvino")) == [
        ("paddle", "fp32"), ("paddle", "onednn"), ("openvino", "fp32")]
    assert applicable_cases(qdq_export, ("paddle", "openvino")) == [
        ("paddle", "int8"), ("openvino", "int8")]


def test_percentile_interpolates():
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 0.9) == 4.6
    assert percentile([7.0], 0.9) == 7.0


def _result(hardware, fp32_ms, int8_ms):
    rows = [{"label": "Paddle oneDNN fp32", "kind": "fp32", "median_ms": fp32_ms},
            {"label": "OpenVINO fp32", "kind": "fp32", "median_ms": fp32_ms + 5},
            {"label": "Paddle oneDNN INT8", "kind": "int8", "median_ms": int8_ms},
            {"label": "OpenVINO INT8", "kind": "int8", "error": "Int8NotUsedError: ..."}]
    return {"machine": {"int8_hardware": hardware}, "rows": rows}


def test_recommendation_ships_int8_only_when_it_is_faster():
    text = recommendation(_result("vnni", 20.0, 10.0))
    assert text.startswith("ship Paddle oneDNN INT8 (10.0 ms): 2.00x faster") and "VNNI" in text
    text = recommendation(_result("none", 20.0, 19.0))
    assert text.startswith("INT8 gives no speed-up here (1.05x")
    assert "no VNNI/AMX" in text and text.endswith("ship Paddle oneDNN fp32")


def test_recommendation_asks_for_the_missing_export():
    only_fp32 = {"machine": {"int8_hardware": "vnni"},
                 "rows": [{"label": "OpenVINO fp32", "kind": "fp32", "median_ms": 9.0}]}
    assert "pass a QDQ export too" in recommendation(only_fp32)


def test_cli_times_float_and_int8_and_writes_json(float_export, qdq_export, tmp_path):
    out = tmp_path / "bench.json"
    result = run_tool_ok(["tools/deploy_bench.py", "--model_dir", float_export, qdq_export,
                          "--runtimes", "paddle", "--runs", "3", "--warmup", "1",
                          "--json", str(out)])
    assert "machine: " in result.stdout and "| Paddle oneDNN INT8 |" in result.stdout
    assert "Recommendation: " in result.stdout
    data = json.loads(out.read_text())
    assert [r["label"] for r in data["rows"]] == [
        "Paddle plain fp32", "Paddle oneDNN fp32", "Paddle oneDNN INT8"]
    assert all(r["runs"] == 3 and r["median_ms"] > 0 for r in data["rows"])
    int8 = data["rows"][2]["int8_kernels"]
    assert int8["int8_convs"] == int8["convs"] > 0
    assert data["isa_line"].endswith("Paddle " + data["machine"]["paddle"])
    assert data["recommendation"] == result.stdout.split("Recommendation: ")[1].splitlines()[0]


def test_cli_refuses_an_unknown_runtime(float_export):
    from conftest import run_tool

    result = run_tool(["tools/deploy_bench.py", "--model_dir", float_export,
                       "--runtimes", "tensorrt"])
    assert result.returncode == 2 and "Error: runtime 'tensorrt' unknown" in result.stderr


def test_onednn_verbose_lines_are_keyed_by_kind_and_data_type():
    from slimext.deploy.onednn_profile import primitive_key

    # Lines as oneDNN 3.2 (Paddle 2.6.2) prints them.
    conv = ("onednn_verbose,exec,cpu,convolution,jit_int8:avx512_core_vnni,forward_inference,"
            "src_s8:a:blocked:acdb::f0 wei_s8:a:blocked:Abcde16a::f3:s8m1 bia_f32::blocked:a::f0"
            " dst_s8:a:blocked:acdb::f0,attr-scales:src0:0+dst:0+wei:3 ,alg:convolution_direct,"
            "g24mb1_ic24oc24_ih48oh48kh3sh1dh0ph1_iw48ow48kw3sw1dw0pw1,0.0661621")
    reorder = ("onednn_verbose,exec,cpu,reorder,jit:uni,undef,src_f32::blocked:abcd::f0 "
               "dst_s8::blocked:abcd::f0,attr-scales:src0:0 ,,1x3x192x192,0.0861816")
    eltwise = ("onednn_verbose,exec,cpu,eltwise,jit:avx512_core,forward_training,"
               "data_f32::blocked:abcd::f0 diff_undef::undef:::,,alg:eltwise_logistic "
               "alpha:0 beta:0,1x3x24x24,0.02")
    assert primitive_key(conv.split(",")) == ("convolution", "int8 depthwise")
    assert primitive_key(reorder.split(",")) == ("reorder", "fp32->int8")
    assert primitive_key(eltwise.split(",")) == ("eltwise", "logistic fp32")
    # Paddle 3.3's oneDNN: a `primitive` field, and `src:s8:` for `src_s8:`.
    conv33 = ("onednn_verbose,v1,primitive,exec,cpu,convolution,brdgmm_dw:avx512_core_vnni,"
              "forward_inference,src:s8:a:blocked:acdb::f0 wei:s8:ap:blocked:deAbc16a::f1:s8m1 "
              "bia:f32::blocked:a::f0 dst:s8:a:blocked:acdb::f0,attr-scales:src0:0:f32,"
              "alg:convolution_direct,g8mb1_ic8oc8_ih96oh96kh3sh1dh0ph1_iw96ow96kw3sw1dw0pw1,"
              "0.0939941")
    assert primitive_key(conv33.split(",")) == ("convolution", "int8 depthwise")


def test_profile_counts_every_int8_conv_of_the_program(qdq_export):
    from slimext.deploy.onednn_profile import profile_onednn
    from slimext.deploy.predictor import DetectorPredictor

    report = DetectorPredictor(qdq_export, "int8").int8_report
    profile = profile_onednn(qdq_export, "int8", runs=2, warmup=1)
    convs = [p for p in profile["primitives"] if p["kind"] == "convolution"]
    assert sum(p["calls"] for p in convs if p["detail"].startswith("int8")) == report.int8_convs
    assert 0 < profile["onednn_ms"] < profile["wall_ms"]


def test_op_profile_counts_each_conv_once_per_run_and_leaves_no_file(float_export, qdq_export,
                                                                    tmp_path, monkeypatch):
    from slimext.deploy.int8_kernels import CONV_OP_TYPES, _read_program
    from slimext.deploy.op_profile import profile_ops
    from slimext.deploy.predictor import DetectorPredictor

    from slimext.compat.versions import paddle_at_least
    from slimext.deploy.op_profile import OpProfileUnavailable

    monkeypatch.chdir(tmp_path)
    if not paddle_at_least(3, 0, 0):   # its profiler prints nothing: a clear refusal
        with pytest.raises(OpProfileUnavailable, match="paddle33 stack"):
            profile_ops(qdq_export, "int8", runs=3, warmup=1)
        return
    report = DetectorPredictor(qdq_export, "int8").int8_report
    int8 = profile_ops(qdq_export, "int8", runs=3, warmup=1)
    conv_calls = sum(row["calls"] for row in int8["ops"] if row["op"] in CONV_OP_TYPES)
    assert conv_calls == report.convs
    assert 0 < int8["kernel_ms"] and int8["ops_per_run"] >= report.convs
    fp32 = profile_ops(float_export, "onednn", runs=3, warmup=1)
    # every conv-bias add of the export is fused into its conv: only the adds of two
    # activations (LCPAN's top level, box decoding) still run
    adds = sum(row["calls"] for row in fp32["ops"]
               if row["op"] in ("elementwise_add", "fused_elementwise_add"))
    program = _read_program(os.path.join(float_export, "model.pdmodel"))
    persistable = {var.name for var in program.blocks[0].vars if var.persistable}
    ops = program.blocks[0].ops
    conv_outputs = {arg for op in ops if op.type in CONV_OP_TYPES for var in op.outputs
                    for arg in var.arguments}

    def argument(op, parameter):
        return next(var.arguments[0] for var in op.inputs if var.parameter == parameter)

    saved_adds = [op for op in ops if op.type == "elementwise_add"]
    bias_adds = [op for op in saved_adds if argument(op, "Y") in persistable
                 and argument(op, "X") in conv_outputs]
    assert len(bias_adds) >= 16 and adds == len(saved_adds) - len(bias_adds)
    assert os.listdir(str(tmp_path)) == []
