"""The model-file choice, predictor set-up and flags of develop's deploy/python/infer.py
(`load_predictor` and `__main__`), running one blank image: on Paddle 3 it builds
Config(model_dir, 'model'), which opens model.json while the PIR API is on."""
import argparse
import ast
import os

import numpy as np
import paddle
import yaml
from paddle.inference import Config, create_predictor


def argsparser():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model_dir", type=str, default=None, required=True)
    parser.add_argument("--device", type=str, default="cpu")
    parser.add_argument("--enable_mkldnn", type=ast.literal_eval, default=False)
    parser.add_argument("--cpu_threads", type=int, default=1)
    return parser


def load_predictor(model_dir, device="CPU", cpu_threads=1, enable_mkldnn=False):
    if paddle.__version__ >= '3.0.0' or paddle.__version__ == '0.0.0':
        model_path = model_dir
        model_prefix = 'model'
        infer_param = os.path.join(model_dir, 'model.pdiparams')
        if not os.path.exists(infer_param):
            model_prefix = 'inference'
            if paddle.framework.use_pir_api():
                infer_model = os.path.join(model_dir, 'inference.pdmodel')
            else:
                infer_model = os.path.join(model_dir, 'inference.json')
            if not os.path.exists(infer_model):
                raise ValueError(
                    "Cannot find any inference model in dir: {}.".format(model_dir))
        config = Config(model_path, model_prefix)
    else:
        config = Config(os.path.join(model_dir, 'model.pdmodel'),
                        os.path.join(model_dir, 'model.pdiparams'))
    config.disable_gpu()
    config.set_cpu_math_library_num_threads(cpu_threads)
    if enable_mkldnn:
        config.set_mkldnn_cache_capacity(10)
        config.enable_mkldnn()
    config.disable_glog_info()
    config.enable_memory_optim()
    config.switch_use_feed_fetch_ops(False)
    return create_predictor(config)


def main(FLAGS):
    with open(os.path.join(FLAGS.model_dir, "infer_cfg.yml")) as f:
        size = [op for op in yaml.safe_load(f)["Preprocess"] if op["type"] == "Resize"][0]
    height, width = size["target_size"]
    predictor = load_predictor(FLAGS.model_dir, FLAGS.device, FLAGS.cpu_threads,
                               FLAGS.enable_mkldnn)
    feeds = {"image": np.zeros((1, 3, height, width), "float32"),
             "scale_factor": np.ones((1, 2), "float32"),
             "im_shape": np.array([[height, width]], "float32")}
    for name in predictor.get_input_names():
        predictor.get_input_handle(name).copy_from_cpu(feeds[name])
    predictor.run()
    boxes = predictor.get_output_handle(predictor.get_output_names()[0]).copy_to_cpu()
    print("boxes", boxes.shape)


if __name__ == '__main__':
    paddle.enable_static()
    FLAGS = argsparser().parse_args()
    FLAGS.device = FLAGS.device.upper()
    main(FLAGS)
