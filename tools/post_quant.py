"""PaddleDetection-style post-training quantization:
tools/post_quant.py -c CFG --slim_config SLIM -o weights=FLOAT [--output_dir DIR] [--eval]."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from slimext.commands.post_quant import main  # noqa: E402

if __name__ == "__main__":
    main()
