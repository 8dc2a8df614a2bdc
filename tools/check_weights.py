"""Check weights against a config: tools/check_weights.py -c CFG -o pretrain_weights=PATH."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from slimext.commands.check_weights import main  # noqa: E402

if __name__ == "__main__":
    main()
