"""PaddleDetection-style evaluation: tools/eval.py -c CFG -o weights=W [--slim_config SLIM]."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from slimext.commands.eval import main  # noqa: E402

if __name__ == "__main__":
    main()
