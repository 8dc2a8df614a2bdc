"""PaddleDetection-style training: tools/train.py -c CFG [--slim_config SLIM] [--eval] [-o k=v]."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from slimext.commands.train import main  # noqa: E402

if __name__ == "__main__":
    main()
