"""Detect objects with an exported model (Paddle Inference, OpenVINO or ONNX Runtime); save
PNGs with boxes."""
import argparse
import glob
import os

from slimext.commands.common import UserError, run_command

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model_dir", required=True,
                        help="export folder (model.pdmodel, model.pdiparams, infer_cfg.yml)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--image_file", help="one image")
    source.add_argument("--image_dir", help="every image in this folder")
    parser.add_argument("--output_dir", default="output", help="where the PNGs go")
    parser.add_argument("--runtime", default="paddle",
                        choices=("paddle", "openvino", "onnxruntime"),
                        help="paddle: Paddle Inference; openvino: OpenVINO CPU (optional "
                             "install: pip install -r requirements-openvino.txt); "
                             "onnxruntime: ONNX Runtime CPU on the export converted to ONNX "
                             "(pip install -r requirements-onnx.txt)")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "onednn", "int8"),
                        help="fp32: plain CPU; onednn: oneDNN fp32 (paddle only); int8: INT8 "
                             "kernels (needs a QAT/PTQ export; checked after loading)")
    parser.add_argument("--verbose", action="store_true",
                        help="show the runtime's optimization pass log")
    parser.add_argument("--threshold", type=float, default=0.5,
                        help="lowest score drawn and printed")
    parser.add_argument("--cpu_threads", type=int, default=2)
    return parser


def list_images(image_file, image_dir):
    if image_file:
        if not os.path.isfile(image_file):
            raise UserError("image file {!r} does not exist".format(image_file))
        return [image_file]
    if not os.path.isdir(image_dir):
        raise UserError("image directory {!r} does not exist".format(image_dir))
    images = sorted(p for p in glob.glob(os.path.join(image_dir, "*"))
                    if p.lower().endswith(IMAGE_EXTENSIONS))
    if not images:
        raise UserError("no {} images in {!r}".format("/".join(IMAGE_EXTENSIONS), image_dir))
    return images


def format_detections(path, detections):
    lines = ["{}: {} detections".format(path, len(detections.boxes))]
    for class_id, score, x1, y1, x2, y2 in detections.boxes:
        name = (detections.labels[int(class_id)] if int(class_id) < len(detections.labels)
                else str(int(class_id)))
        lines.append("  {:<12s} {:.3f}  [{:.1f}, {:.1f}, {:.1f}, {:.1f}]".format(
            name, score, x1, y1, x2, y2))
    return "\n".join(lines)


def infer_images(predictor, images, output_dir, threshold):
    """Predict each image, save it with boxes drawn, print its detections; return PNG paths."""
    from slimext.deploy.preprocess import load_image
    from slimext.deploy.visualize import save_detections_png

    written = []
    for path in images:
        try:
            image = load_image(path)
        except ValueError as error:
            raise UserError(str(error))
        detections = predictor.predict(image).above(threshold)
        name = os.path.splitext(os.path.basename(path))[0] + ".png"
        written.append(save_detections_png(image, detections, os.path.join(output_dir, name),
                                           threshold))
        print(format_detections(path, detections))
    return written


@run_command
def main(argv=None):
    flags = build_parser().parse_args(argv)
    from slimext.deploy.int8_kernels import Int8NotUsedError
    from slimext.deploy.predictor import PredictorError
    from slimext.deploy.runtimes import create_detector

    images = list_images(flags.image_file, flags.image_dir)
    try:
        predictor = create_detector(flags.model_dir, flags.runtime, flags.precision,
                                    flags.cpu_threads, verbose=flags.verbose)
    except (FileNotFoundError, ValueError, ImportError, Int8NotUsedError,
            PredictorError) as error:
        raise UserError(str(error))
    if predictor.int8_report is not None:
        print(predictor.int8_report.line())
    try:
        written = infer_images(predictor, images, flags.output_dir, flags.threshold)
    except (PredictorError, ValueError) as error:  # ValueError: an export without boxes
        raise UserError(str(error))
    print("{} image(s) with boxes written to {}".format(len(written), flags.output_dir))


if __name__ == "__main__":
    main()
