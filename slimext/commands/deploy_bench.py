"""Time an export on every runtime and precision that applies here; recommend what to ship."""
import argparse

from slimext.commands.common import run_command


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model_dir", required=True, nargs="+",
                        help="export folder(s); give the float and the QDQ export of a model "
                             "to compare fp32 with INT8")
    parser.add_argument("--runtimes", default=None,
                        help="comma-separated: paddle,openvino,onnxruntime (default: every "
                             "installed one)")
    parser.add_argument("--json", default=None, help="also write the result here")
    parser.add_argument("--image_file", default=None,
                        help="image to time (default: a fixed random one at the input size)")
    parser.add_argument("--cpu_threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=20, help="timed runs per case (at most)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--max_seconds", type=float, default=8.0,
                        help="stop a case's timed runs after this long (at least 3 runs)")
    return parser


@run_command
def main(argv=None):
    from slimext import pipeline
    from slimext.deploy.runtime_choice import format_table

    flags = build_parser().parse_args(argv)
    runtimes = [r.strip() for r in flags.runtimes.split(",") if r.strip()] \
        if flags.runtimes else None
    result = pipeline.benchmark(flags.model_dir, runtimes, flags.cpu_threads, flags.runs,
                                flags.warmup, flags.max_seconds, flags.image_file,
                                json_path=flags.json)
    print(format_table(result))
    if flags.json:
        print("result written to {}".format(flags.json))
    print()
    print("Recommendation: " + result["recommendation"])


if __name__ == "__main__":
    main()
