"""ONNX export of slimext's validated Paddle exports (float and INT8 QDQ), see docs/onnx.md.

    from slimext.onnx import export_onnx
    export_onnx("output_inference/picodet_demo_residual_qat", "picodet_int8.onnx")
"""
from slimext.onnx.export import (DEFAULT_OPSET, convert_export, convert_program,  # noqa: F401
                                 export_onnx)
from slimext.onnx.graph_builder import UnsupportedOpError  # noqa: F401
