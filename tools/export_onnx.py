"""ONNX export: tools/export_onnx.py --model_dir EXPORT --save_file FILE.onnx [--opset_version N]
[--no_nms]."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from slimext.commands.export_onnx import main  # noqa: E402

if __name__ == "__main__":
    main()
