"""Runtime/precision benchmark: tools/deploy_bench.py --model_dir DIR [DIR] [--json OUT]."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from slimext.commands.deploy_bench import main  # noqa: E402

if __name__ == "__main__":
    main()
