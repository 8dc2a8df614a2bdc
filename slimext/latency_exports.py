"""Float and INT8 exports of a full-size detector, for timing only.

There is no COCO and no pretrained full-size model here, and latency does not depend on
the weights: the float model is the config's random initialisation (batch-norm statistics
from one demo image, so that its outputs still depend on the input) and the INT8 model
gets its quantizer scales from a few demo images run through it (the float model's
activations), which is all an INT8 runtime needs to run the real program. The exports
leave out box decoding and NMS (`export.benchmark=True`, the way PicoDet's published
latencies are taken): with random weights every anchor passes the score threshold, and
NMS over 80 classes would be all that is measured.

    exports = build_latency_exports("work/picodet_s", config, slim_config, "demo/val")
    # {"float": ".../float/picodet_s_320_coco_lcnet", "int8": ".../int8/..."}

Each step runs in its own process (ppdet keeps its config in a process global).
"""
import glob
import os

import yaml

EXPORT_OVERRIDES = {"export.benchmark": True}   # raw head outputs: no decoding, no NMS


def randomize_zero_filters(model):
    """ppdet zero-initialises some head convs and linears (PP-YOLOE's pred_cls/pred_reg,
    RT-DETR's box-head outputs): a trained model has none, and an all-zero weight has no INT8
    scale (the export refuses it)."""
    import paddle

    for name, param in model.named_parameters():
        if name.endswith("weight") and param.ndim >= 2 and not bool(param.abs().max() > 0):
            param.set_value(paddle.normal(0.0, 0.01, param.shape))


def set_batch_norm_statistics(model, inputs):
    """Running mean/variance of every batch norm from one forward, as a short training would
    leave them. With ppdet's defaults (mean 0, variance 1) random features die out or blow
    up layer by layer, and the heads output constants. Only the norms are put in training
    mode, so the heads keep their inference branch."""
    import paddle

    norms = [layer for layer in model.sublayers()
             if isinstance(layer, paddle.nn.layer.norm._BatchNormBase)]
    saved = [layer._momentum for layer in norms]
    for layer in norms:
        layer._momentum = 0.0
        layer.train()
    with paddle.no_grad():
        model(inputs)
    for layer, momentum in zip(norms, saved):
        layer._momentum = momentum
        layer.eval()


def _first_image_inputs(cfg, image_dir):
    """image_dir's first PNG through the config's own TestReader transforms (ppdet's
    operators), as the model's input dict with a batch of one."""
    import paddle
    from ppdet.data.transform import operators

    path = sorted(glob.glob(os.path.join(image_dir, "*.png")))[0]
    with open(path, "rb") as f:
        sample = {"im_file": path, "image": f.read()}
    for transform in cfg.TestReader["sample_transforms"]:
        (name, args), = transform.items()
        sample = getattr(operators, name)(**(args or {}))(sample)
    return {key: paddle.to_tensor(sample[key][None].astype("float32"))
            for key in ("image", "im_shape", "scale_factor")}


def save_random_weights(workdir, config, image_dir):
    """The config's freshly initialised model, batch-norm statistics set from image_dir's
    first image, as a checkpoint (the 'float weights')."""
    import paddle
    from ppdet.core.workspace import create, load_config

    paddle.seed(0)
    cfg = load_config(config)
    model = create(cfg.architecture)
    model.eval()
    randomize_zero_filters(model)
    set_batch_norm_statistics(model, _first_image_inputs(cfg, image_dir))
    os.makedirs(workdir, exist_ok=True)
    prefix = os.path.join(workdir, "float")
    paddle.save(model.state_dict(), prefix + ".pdparams")
    return prefix


def _is_quantizer(layer):
    from slimext.quant.apply import JoinFakeQuant

    module = type(layer).__module__
    return isinstance(layer, JoinFakeQuant) or module.startswith(("paddle.nn.quant",
                                                                  "paddle.quantization"))


def calibrate_quantized_weights(workdir, config, slim_config, weights, float_model_dir,
                                image_dir, num_images=8):
    """Build config + slim (a QAT slim config), run demo images through it with only the
    quantizers in training mode (their moving-average scales fill in), save that
    checkpoint. Works for ResidualQAT and PaddleSlim's stock QAT alike."""
    import paddle
    from ppdet.core.workspace import load_config
    from ppdet.slim import build_slim_model

    import slimext
    from slimext.deploy.preprocess import Preprocess, load_image

    slimext.register_with_ppdet()   # a fresh process: ppdet must know `slim: ResidualQAT`
    cfg = load_config(config)
    cfg.weights = weights
    cfg = build_slim_model(cfg, slim_config, mode="test")
    model = cfg["model"]
    model.eval()
    quantizers = [layer for layer in model.sublayers() if _is_quantizer(layer)]
    for layer in quantizers:
        layer.train()
    with open(os.path.join(float_model_dir, "infer_cfg.yml")) as f:
        preprocess = Preprocess(yaml.safe_load(f)["Preprocess"])
    with paddle.no_grad():
        for path in sorted(glob.glob(os.path.join(image_dir, "*.png")))[:num_images]:
            inputs = preprocess(load_image(path))
            model({k: paddle.to_tensor(v) for k, v in inputs.items()})
    name = os.path.splitext(os.path.basename(slim_config))[0]
    prefix = os.path.join(workdir, name)
    paddle.save(model.state_dict(), prefix + ".pdparams")
    return {"weights": prefix, "quantizers": len(quantizers)}


def build_latency_exports(workdir, config, slim_config, image_dir, log_dir=None,
                          num_images=8, overrides=None):
    """{"float": folder, "int8": folder}: the float export of the config's random weights
    and the slim config's INT8 export with scales calibrated on image_dir's PNGs. overrides
    (-o keys) replace EXPORT_OVERRIDES for families whose exporter has no benchmark mode."""
    from slimext import pipeline
    from slimext.isolation import run_in_fresh_process

    if not glob.glob(os.path.join(image_dir, "*.png")):
        raise FileNotFoundError("no .png images to calibrate on in {}".format(image_dir))

    def step(name, func, *args, **kwargs):
        log_path = os.path.join(log_dir, name + ".log") if log_dir else None
        return run_in_fresh_process(func, *args, log_path=log_path, **kwargs)

    overrides = EXPORT_OVERRIDES if overrides is None else overrides
    weights = step("latency_weights", save_random_weights, workdir, config, image_dir)
    float_dir = step("latency_export_float", pipeline.export, config, weights,
                     os.path.join(workdir, "float"), overrides=overrides)
    calibrated = step("latency_calibrate", calibrate_quantized_weights, workdir, config,
                      slim_config, weights, float_dir, image_dir, num_images)
    int8_dir = step("latency_export_int8", pipeline.export, config, calibrated["weights"],
                    os.path.join(workdir, "int8"), slim_config=slim_config,
                    overrides=overrides)
    return {"float": float_dir, "int8": int8_dir}
