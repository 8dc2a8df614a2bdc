"""PicoDet-S 320 on every CPU runtime/precision, and where the oneDNN INT8 time goes.

Builds the float export (the config's random initialisation; latency does not depend on
the weights) and the ResidualQAT INT8 QDQ export (scales calibrated on demo images, as in
benchmarks/picodet_s_latency.py), both without box decoding and NMS
(`export.benchmark=True`), then runs slimext.deploy.bench.run_bench on them (Paddle plain
fp32, oneDNN fp32, oneDNN INT8, OpenVINO fp32 and INT8 when installed; interleaved runs)
and profiles the oneDNN fp32 and INT8 programs with oneDNN verbose. Writes
benchmarks/results/deploy_runtimes.{json,md} and prints the tables.

    python -m benchmarks.deploy_runtimes [--workdir bench_output/deploy_runtimes] [--runs 40]
"""
import argparse
import json
import os

from benchmarks import picodet_s_latency as pico_s
from slimext.isolation import StepFailed, run_in_fresh_process

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = "configs/picodet/picodet_s_320_coco_lcnet.yml"
SLIM = "configs/slim/residual_qat/picodet_s_320_residual_qat.yml"


def build_exports(workdir):
    """(float_dir, int8_dir), each step in a fresh process (ppdet's global config)."""
    from slimext.commands.export import run as export_run
    from slimext.data.demo import generate

    config, slim = os.path.join(REPO_ROOT, CONFIG), os.path.join(REPO_ROOT, SLIM)
    image_dir = os.path.join(workdir, "demo", "val")
    if not os.path.isdir(image_dir):
        generate(os.path.join(workdir, "demo"), num_train=4, num_val=8, seed=0)
    built = os.path.join(workdir, "exports.json")
    if os.path.isfile(built):   # reuse the exports of an earlier run
        with open(built) as f:
            return tuple(json.load(f))
    weights = run_in_fresh_process(pico_s.save_random_weights, workdir, config)
    float_dir = run_in_fresh_process(export_run, [
        "-c", config, "--output_dir", os.path.join(workdir, "float"),
        "-o", "weights=" + weights] + pico_s.EXPORT_OVERRIDES)
    calibrated = run_in_fresh_process(pico_s.calibrate_quantized_weights, workdir, config,
                                      slim, weights, float_dir, image_dir)
    int8_dir = run_in_fresh_process(export_run, [
        "-c", config, "--slim_config", slim, "--output_dir",
        os.path.join(workdir, "residual_qat"), "-o", "weights=" + calibrated["weights"]]
        + pico_s.EXPORT_OVERRIDES)
    with open(built, "w") as f:
        json.dump([float_dir, int8_dir], f)
    return float_dir, int8_dir


def render_markdown(result):
    from slimext.deploy.bench import format_table
    from slimext.deploy.onednn_profile import format_profile

    parts = ["# PicoDet-S 320 deployment runtimes", "",
             "Reproduce: `python -m benchmarks.deploy_runtimes`. Random weights, calibrated "
             "scales: latency only; raw head outputs (no decoding, no NMS).", "",
             format_table(result["bench"]), "", "Recommendation: " +
             result["bench"]["recommendation"], "", "## oneDNN verbose profiles", ""]
    for profile in result["profiles"]:
        parts += [format_profile(profile), ""]
    return "\n".join(parts)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="bench_output/deploy_runtimes")
    parser.add_argument("--results_dir", default=os.path.join(REPO_ROOT, "benchmarks", "results"))
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--max_seconds", type=float, default=15.0)
    flags = parser.parse_args(argv)

    from slimext.analysis.sensitivity_report import write_atomically, write_text
    from slimext.deploy.bench import run_bench
    from slimext.deploy.onednn_profile import profile_onednn

    workdir = os.path.abspath(flags.workdir)
    try:
        float_dir, int8_dir = build_exports(workdir)
    except StepFailed as error:
        raise SystemExit("building the exports failed: {}".format(error))
    bench = run_bench([float_dir, int8_dir], runs=flags.runs, max_seconds=flags.max_seconds)
    profiles = [profile_onednn(float_dir, "onednn"), profile_onednn(int8_dir, "int8")]
    result = {"bench": bench, "profiles": profiles}
    markdown = render_markdown(result)
    print(markdown)

    def write_json(tmp):
        with open(tmp, "w") as f:
            json.dump(result, f, indent=2)

    write_atomically(os.path.join(flags.results_dir, "deploy_runtimes.json"), write_json)
    write_text(os.path.join(flags.results_dir, "deploy_runtimes.md"), markdown)


if __name__ == "__main__":
    main()
