"""Paddle Inference settings that depend on the Paddle version.

Paddle 3's predictor has two pipelines: PIR (new) and the old pass pipeline. Only the old one
has the oneDNN INT8 passes (`quant_dequant_onednn_pass`, `cpu_quantize_pass`, ...), so a QDQ
`.pdmodel` on the new pipeline would run its quantize/dequantize ops in fp32 or fail. Paddle
3.3.1 picks the old pipeline for `.pdmodel` by default; saying so explicitly keeps INT8 when
that default moves.
"""
from slimext.compat.versions import paddle_at_least


def use_int8_capable_pipeline(config):
    """Keep a CPU predictor on the pipeline that has the oneDNN INT8 passes."""
    if paddle_at_least(3, 0, 0):
        config.enable_new_ir(False)
    return config


def check_program_readable(model_path):
    """Raise ValueError unless `model_path` parses as a program: Paddle Inference's
    create_predictor ends the process with SIGSEGV on an unreadable .pdmodel instead of
    raising (Paddle 2.6.2 and 3.3.1)."""
    from paddle.base import core

    with open(model_path, "rb") as f:
        core.ProgramDesc(f.read())  # parses only; raises ValueError on bytes it cannot read
