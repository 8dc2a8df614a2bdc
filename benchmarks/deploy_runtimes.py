"""PicoDet-S 320 on every CPU runtime/precision, and where the oneDNN INT8 time goes.

Builds four exports of one model (the config's random initialisation; latency does not
depend on the weights), all without box decoding and NMS (`export.benchmark=True`):

- `picodet_s_320_as_traced`: the float program as ppdet traces it (each biased conv is a
  conv plus a separate add of the reshaped bias);
- `picodet_s_320_coco_lcnet`: the float export of tools/export_model.py (conv biases in
  the form oneDNN fuses, slimext.deploy.conv_bias);
- `picodet_s_320_residual_qat_float_gates`: ResidualQAT INT8 QDQ with the SE gates left
  float (rule `{type: gate, skip: true}`: the plan before gates were joins);
- `picodet_s_320_residual_qat`: ResidualQAT INT8 QDQ as shipped (gates INT8);

INT8 scales are calibrated on demo images as in benchmarks/picodet_s_latency.py. Then
slimext.deploy.runtime_choice.run_bench times them all interleaved (Paddle plain fp32, oneDNN fp32,
oneDNN INT8, OpenVINO fp32 and INT8 when installed), Paddle's profiler breaks each oneDNN
run down by op type, oneDNN verbose by primitive, and OpenVINO's per-node counters its
fp32 and INT8 runs. Writes
benchmarks/results/deploy_runtimes.{json,md} and prints the tables.

    python -m benchmarks.deploy_runtimes [--workdir bench_output/deploy_runtimes] [--runs 40]
"""
import json
import os

import yaml

from benchmarks import picodet_s_latency as pico_s
from slimext.isolation import run_in_fresh_process
from slimext.fileio import atomic_write_json, atomic_write_text, replace_dir

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = "configs/picodet/picodet_s_320_coco_lcnet.yml"
SLIM = "configs/slim/residual_qat/picodet_s_320_residual_qat.yml"
FLOAT_GATES_RULE = {"type": "gate", "skip": True}


def export_as_traced(config, output_dir, weights):
    """The float export without the conv-bias rewrite, in output_dir/picodet_s_320_as_traced."""
    from slimext import pipeline

    exported = pipeline.export(config, weights, output_dir, overrides=pico_s.EXPORT_OVERRIDES,
                               fold_conv_biases=False)
    return replace_dir(exported, os.path.join(output_dir, "picodet_s_320_as_traced"))


def float_gates_slim_config(workdir, slim):
    """The shipped slim config plus the rule that keeps every SE gate float."""
    with open(slim) as f:
        data = yaml.safe_load(f)
    data["ResidualQAT"]["rules"] = list(data["ResidualQAT"].get("rules") or []) + \
        [FLOAT_GATES_RULE]
    path = os.path.join(workdir, "picodet_s_320_residual_qat_float_gates.yml")
    atomic_write_text(path, yaml.safe_dump(data))
    return path


def _int8_export(workdir, config, slim, weights, float_dir, image_dir):
    from slimext import pipeline

    calibrated = run_in_fresh_process(pico_s.calibrate_quantized_weights, workdir, config,
                                      slim, weights, float_dir, image_dir)
    return run_in_fresh_process(pipeline.export, config, calibrated["weights"],
                                os.path.join(workdir, "int8"), slim_config=slim,
                                overrides=pico_s.EXPORT_OVERRIDES)


def build_exports(workdir):
    """{variant: export folder}, each step in a fresh process (ppdet's global config)."""
    from slimext import pipeline
    from slimext.data.demo import generate

    config, slim = os.path.join(REPO_ROOT, CONFIG), os.path.join(REPO_ROOT, SLIM)
    image_dir = os.path.join(workdir, "demo", "val")
    if not os.path.isdir(image_dir):
        generate(os.path.join(workdir, "demo"), num_train=4, num_val=8, seed=0)
    built = os.path.join(workdir, "exports.json")
    if os.path.isfile(built):   # reuse the exports of an earlier run
        with open(built) as f:
            exports = json.load(f)
        if isinstance(exports, dict):
            return exports
    weights = run_in_fresh_process(pico_s.save_random_weights, workdir, config, image_dir)
    exports = {"float_as_traced": run_in_fresh_process(
        export_as_traced, config, os.path.join(workdir, "float"), weights)}
    exports["float"] = run_in_fresh_process(pipeline.export, config, weights,
                                            os.path.join(workdir, "float"),
                                            overrides=pico_s.EXPORT_OVERRIDES)
    exports["int8_float_gates"] = _int8_export(
        workdir, config, float_gates_slim_config(workdir, slim), weights, exports["float"],
        image_dir)
    exports["int8"] = _int8_export(workdir, config, slim, weights, exports["float"], image_dir)
    atomic_write_json(built, exports, indent=1)
    return exports


def steadiest_op_profiles(exports, order, precisions, rounds=2):
    """Each variant profiled `rounds` times in alternating order, the faster kept: a
    profile's absolute times follow the machine's state while it ran."""
    from slimext.deploy.op_profile import OpProfileUnavailable, check_available, profile_ops

    try:
        check_available()
    except OpProfileUnavailable as reason:
        print("no op profiles: {}".format(reason))
        return []
    best = {}
    for _ in range(rounds):
        for variant in order:
            profile = profile_ops(exports[variant], precisions[variant])
            if variant not in best or profile["wall_ms"] < best[variant]["wall_ms"]:
                best[variant] = profile
    return [best[v] for v in order]


def openvino_profiles(exports):
    from slimext.deploy.openvino_runtime import openvino_version, profile_nodes

    if not openvino_version():
        return []
    return [profile_nodes(exports["float"], "fp32"), profile_nodes(exports["int8"], "int8")]


def render_markdown(result):
    from slimext.deploy.runtime_choice import format_table
    from slimext.deploy.onednn_profile import format_profile
    from slimext.deploy.op_profile import format_op_profile

    parts = ["# PicoDet-S 320 deployment runtimes", "",
             "Reproduce: `python -m benchmarks.deploy_runtimes`. Random weights, calibrated "
             "scales: latency only; raw head outputs (no decoding, no NMS).", "",
             format_table(result["bench"]), "", "Recommendation: " +
             result["bench"]["recommendation"], "",
             "## Paddle kernels by op type (Paddle's profiler, steady state)", ""]
    for profile in result["op_profiles"]:
        parts += [format_op_profile(profile), ""]
    parts += ["## oneDNN verbose profiles", ""]
    for profile in result["profiles"]:
        parts += [format_profile(profile), ""]
    if result.get("openvino_profiles"):
        from slimext.deploy.openvino_runtime import format_node_profile

        parts += ["## OpenVINO per-node profiles", ""]
        for profile in result["openvino_profiles"]:
            parts += [format_node_profile(profile), ""]
    return "\n".join(parts)


def main(argv=None):
    import slimext

    slimext.register_with_ppdet()  # slimext's slim classes and compat fixes
    from benchmarks.qat_compare import built_or_exit, timing_parser, write_results
    from slimext.deploy.runtime_choice import run_bench
    from slimext.deploy.onednn_profile import profile_onednn

    flags = timing_parser(__doc__, "bench_output/deploy_runtimes", 40, 15.0).parse_args(argv)
    exports = built_or_exit(build_exports, flags.workdir, "exports")
    order = ("float_as_traced", "float", "int8_float_gates", "int8")
    bench = run_bench([exports[v] for v in order], runs=flags.runs,
                      max_seconds=flags.max_seconds)
    precisions = {"float_as_traced": "onednn", "float": "onednn", "int8_float_gates": "int8",
                  "int8": "int8"}
    op_profiles = steadiest_op_profiles(exports, order, precisions)
    profiles = [profile_onednn(exports["float"], "onednn"), profile_onednn(exports["int8"], "int8")]
    result = {"exports": exports, "bench": bench, "op_profiles": op_profiles,
              "profiles": profiles, "openvino_profiles": openvino_profiles(exports)}
    write_results(flags.results_dir, "deploy_runtimes", result, render_markdown(result))


if __name__ == "__main__":
    main()
