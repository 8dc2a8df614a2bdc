"""slimext: residual-aware QAT for PaddleDetection models, deployable with Paddle Inference.

Install with `make install` (it pins the Paddle stack in the order that works); a bare
`pip install .` cannot resolve paddleslim's and paddledet's conflicting opencv pins.
"""
from setuptools import find_packages, setup

setup(
    name="slimext",
    version="0.1.0",
    description="Residual-aware quantization-aware training for PaddleDetection",
    long_description=__doc__,
    packages=find_packages(include=["slimext", "slimext.*"]),
    python_requires=">=3.8",
    install_requires=[
        "paddlepaddle>=2.6.2,<3.4",
        "paddledet==2.6.0",
        "numpy<1.24",
        "pyyaml",
    ],
    # paddleslim is installed with --no-deps by `make install` (see constraints.txt).
    # openvino: the optional second CPU runtime (--runtime openvino), see requirements-openvino.txt.
    # onnx: tools/export_onnx.py and --runtime onnxruntime, see requirements-onnx.txt.
    extras_require={"slim": ["paddleslim==2.6.0"], "openvino": ["openvino==2026.4.1"],
                    "onnx": ["onnx==1.23.2", "onnxruntime==1.32.0"]},
)
