"""The settings of QATQuantizer / PTQCalibrator (`QuantSettings`, `PTQSettings`), checked once.

`quant_config` holds PaddleSlim's quantization keys. Every key, type and range is checked before any model work, with the same one-line errors
as the rules: an unknown key lists the known ones, a setting slimext cannot honour says
which other setting it conflicts with and what to write instead.
"""
import dataclasses
import difflib
import numbers
from dataclasses import dataclass, field
from typing import Optional

# PaddleSlim's defaults for PicoDet-style QAT; any key can be overridden by quant_config.
DEFAULT_QUANT_CONFIG = {
    "weight_quantize_type": "channel_wise_abs_max",
    "activation_quantize_type": "moving_average_abs_max",
    "weight_bits": 8,
    "activation_bits": 8,
    "moving_rate": 0.9,
    "activation_preprocess_type": None,
    "weight_preprocess_type": None,
    "quantizable_layer_type": ["Conv2D", "Linear"],
    "onnx_format": True,
}

# PaddleSlim's own choices (paddleslim.dygraph.quant.qat, 2.6).
WEIGHT_TYPES = ("abs_max", "channel_wise_abs_max", "range_abs_max", "moving_average_abs_max")
ACTIVATION_TYPES = ("abs_max", "range_abs_max", "moving_average_abs_max")
PREPROCESS_TYPES = (None, "PACT")
# Layer types PaddleSlim's dygraph QAT can wrap with input and weight quantizers.
LAYER_TYPES = ("Conv2D", "Conv2DTranspose", "Linear")

# Keys PaddleSlim accepts beyond the defaults above, with the only value slimext honours.
FIXED_KEYS = {
    "dtype": ("int8", "Paddle Inference's INT8 passes take int8 only"),
    "fuse_conv_bn": (False, "ResidualQAT quantizes the conv inputs and keeps batch norm; the "
                            "INT8 runtime fuses conv and batch norm itself"),
}
KNOWN_KEYS = tuple(DEFAULT_QUANT_CONFIG) + ("window_size",) + tuple(FIXED_KEYS)


class QuantConfigError(ValueError):
    """A quant_config key or value that cannot be used; the message names it and the fix."""


def _fail(message, *args):
    raise QuantConfigError("quant_config: " + message.format(*args))


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _check_choice(key, value, choices):
    if value not in choices:
        _fail("{} must be one of {}, got {!r}", key,
              ", ".join("null" if c is None else c for c in choices), value)


def check_quant_config(raw):
    """The defaults merged with `raw`, every key and value checked; QuantConfigError if not."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        _fail("must be a mapping such as {{weight_bits: 8, activation_bits: 8}}, got {!r}", raw)
    unknown = sorted(str(k) for k in raw if k not in KNOWN_KEYS)
    if unknown:
        close = difflib.get_close_matches(unknown[0], KNOWN_KEYS, n=1)
        hint = " (did you mean {}?)".format(close[0]) if close else ""
        _fail("unknown key(s) {}{}; known keys are {}", ", ".join(unknown), hint,
              ", ".join(KNOWN_KEYS))
    config = dict(DEFAULT_QUANT_CONFIG, **raw)
    _check_choice("weight_quantize_type", config["weight_quantize_type"], WEIGHT_TYPES)
    _check_choice("activation_quantize_type", config["activation_quantize_type"],
                  ACTIVATION_TYPES)
    _check_choice("weight_preprocess_type", config["weight_preprocess_type"], PREPROCESS_TYPES)
    _check_choice("activation_preprocess_type", config["activation_preprocess_type"],
                  PREPROCESS_TYPES)
    for key in ("weight_bits", "activation_bits"):
        value = config[key]
        if not _is_int(value) or not 2 <= value <= 16:
            _fail("{} must be an integer from 2 to 16, got {!r}", key, value)
    rate = config["moving_rate"]
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not 0.0 < rate < 1.0:
        _fail("moving_rate must be a number between 0 and 1 (exclusive), e.g. 0.9, got {!r}",
              rate)
    config["moving_rate"] = float(rate)
    layer_types = config["quantizable_layer_type"]
    if not isinstance(layer_types, (list, tuple)) or not layer_types \
            or any(t not in LAYER_TYPES for t in layer_types):
        _fail("quantizable_layer_type must be a non-empty list of {}, got {!r}",
              ", ".join(LAYER_TYPES), layer_types)
    config["quantizable_layer_type"] = list(layer_types)
    if "window_size" in config:
        if not _is_int(config["window_size"]) or config["window_size"] < 1:
            _fail("window_size must be a positive integer, got {!r}", config["window_size"])
        if "range_abs_max" not in (config["weight_quantize_type"],
                                   config["activation_quantize_type"]):
            _fail("window_size applies only to range_abs_max, which neither "
                  "weight_quantize_type nor activation_quantize_type uses; remove it")
    if config["onnx_format"] is not True:
        _fail("onnx_format: {!r} conflicts with the export: ResidualQAT always writes the QDQ "
              "(quantize_linear/dequantize_linear) format that Paddle Inference's INT8 passes "
              "read; remove onnx_format or set it to true", config["onnx_format"])
    for key, (only, why) in FIXED_KEYS.items():
        if key in config and config[key] != only:
            _fail("{} must be {!r} ({}), got {!r}", key, only, why, config[key])
    return config


# Calibration writes a fixed scale; other activation quantizer types recompute theirs per
# batch, and PACT clipping is learned in training, which PTQ does not do.
PTQ_QUANT_CONFIG_REQUIREMENTS = (
    ("activation_quantize_type", ("moving_average_abs_max",)),
    ("activation_preprocess_type", (None,)),
    ("weight_preprocess_type", (None,)),
    ("weight_quantize_type", ("channel_wise_abs_max", "abs_max")),
)


def check_ptq_quant_config(raw):
    """quant_config for PTQ: every general check, then what calibration needs. Returns the
    merged config."""
    from slimext.quant.calibration import CalibrationError

    config = check_quant_config(raw)
    for key, allowed in PTQ_QUANT_CONFIG_REQUIREMENTS:
        if config.get(key) not in allowed:
            raise CalibrationError("quant_config {}: {!r} cannot be used for post-training "
                                   "quantization; use {} (or leave the key out)".format(
                                       key, config.get(key),
                                       " or ".join(repr(a) for a in allowed)))
    return config


def check_input_shape(shape):
    """None, or [N, C, H, W] of positive integers (the example input joins are found with)."""
    if shape is None:
        return None
    if not isinstance(shape, (list, tuple)) or len(shape) != 4 \
            or not all(_is_int(d) and d > 0 for d in shape):
        raise ValueError("input_shape must be [N, C, H, W] with positive integers, e.g. "
                         "[1, 3, 320, 320], got {!r}".format(shape))
    return tuple(shape)


@dataclass(frozen=True)
class QuantSettings:
    """Every setting a QATQuantizer takes, checked once by `parse` and passed down as is.

    quant_config is PaddleSlim's keys merged over DEFAULT_QUANT_CONFIG; rules are the raw
    rule mappings (quant.rules parses them into the plan's rules).
    """
    backend: str = "onednn"
    quant_config: dict = field(default_factory=lambda: dict(DEFAULT_QUANT_CONFIG))
    rules: tuple = ()
    input_shape: Optional[tuple] = None
    strict: bool = False

    @classmethod
    def parse(cls, backend="onednn", quant_config=None, rules=None, input_shape=None,
              strict=False, **extra):
        """The checked settings; ValueError (one line, with the fix) on the first bad one."""
        from slimext.quant.backends import get_backend
        from slimext.quant.rules import parse_rules

        get_backend(backend)
        parse_rules(rules)
        if not isinstance(strict, bool):
            raise ValueError("strict must be true or false, got {!r}".format(strict))
        values = dict(backend=backend, quant_config=cls._quant_config(quant_config),
                      rules=tuple(rules or ()), input_shape=check_input_shape(input_shape),
                      strict=strict)
        values.update(cls._extra(**extra))
        return cls(**values)

    @staticmethod
    def _quant_config(raw):
        return check_quant_config(raw)

    @staticmethod
    def _extra(**extra):
        if extra:
            raise TypeError("unexpected setting(s) {}".format(", ".join(sorted(extra))))
        return {}

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class PTQSettings(QuantSettings):
    """QuantSettings plus the calibration algorithm and its options (quant.calibration)."""
    algo: str = "KL"
    algo_config: dict = field(default_factory=dict)

    @staticmethod
    def _quant_config(raw):
        return check_ptq_quant_config(raw)

    @staticmethod
    def _extra(algo="KL", algo_config=None):
        from slimext.quant.calibration import check_options

        algo, algo_config = check_options(algo, algo_config)
        return {"algo": algo, "algo_config": algo_config}
