"""Real checkpoints for the weight-matcher tests, built from the project's configs."""
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(REPO, "configs", "picodet")
S320 = os.path.join(CONFIGS, "picodet_s_320_coco_lcnet.yml")
M320 = os.path.join(CONFIGS, "picodet_m_320_coco_lcnet.yml")
L320 = os.path.join(CONFIGS, "picodet_l_320_coco_lcnet.yml")
DEMO = os.path.join(CONFIGS, "picodet_xs_192_demo_lcnet.yml")

# PaddleDetection's PicoDet QAT recipe: PACT, per-channel weights, moving-average activations.
QAT_CONFIG = {
    "activation_preprocess_type": "PACT",
    "weight_quantize_type": "channel_wise_abs_max",
    "activation_quantize_type": "moving_average_abs_max",
    "weight_bits": 8, "activation_bits": 8, "dtype": "int8", "window_size": 10000,
    "moving_rate": 0.9, "quantizable_layer_type": ["Conv2D", "Linear"],
}


def build(config_path, initialize=True, **overrides):
    """The config's model as a fresh process builds it; `overrides` as with -o."""
    from ppdet.core.workspace import load_config, merge_config

    from slimext.matcher.model_shapes import build_model, isolated_ppdet_config

    with isolated_ppdet_config():
        cfg = load_config(config_path)
        if overrides:
            merge_config(overrides)
        return build_model(cfg, initialize=initialize)


def quantize(model, test_mode=False):
    """Wrap with PaddleSlim QAT as ppdet's `slim: QAT` does (test mode: no PACT)."""
    from ppdet.slim.quant import QAT

    config = dict(QAT_CONFIG)
    if test_mode:
        config["activation_preprocess_type"] = None
    return QAT(quant_config=config, print_model=False)(model)


def save(model, path):
    import paddle

    paddle.save(model.state_dict(), path)
    return path
