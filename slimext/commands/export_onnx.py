"""Write a slimext export (float, ResidualQAT, ResidualPTQ) as ONNX: INT8 as QuantizeLinear/
DequantizeLinear with the trained scales, NMS as NonMaxSuppression (or left out)."""
import argparse

from slimext.commands.common import run_command


def build_parser():
    # paddle2onnx's flag names, so that its users know them.
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model_dir", required=True,
                        help="export folder (model.pdmodel, model.pdiparams)")
    parser.add_argument("--save_file", required=True, help="the .onnx file to write")
    parser.add_argument("--opset_version", type=int, default=None,
                        help="ONNX opset, 13 (default) to 19")
    parser.add_argument("--no_nms", action="store_true",
                        help="leave NMS out: the outputs are the raw boxes and scores")
    return parser


@run_command
def main(argv=None):
    from slimext import pipeline

    flags = build_parser().parse_args(argv)
    summary = pipeline.export_onnx(flags.model_dir, flags.save_file, flags.opset_version,
                                   nms=not flags.no_nms)
    print("{}: opset {}, {} nodes, {} QuantizeLinear / {} DequantizeLinear, outputs {}".format(
        summary["path"], summary["opset"], summary["nodes"], summary["quantize"],
        summary["dequantize"], ", ".join(summary["outputs"])))


if __name__ == "__main__":
    main()
