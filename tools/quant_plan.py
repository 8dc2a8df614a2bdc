"""Print the quantization plan: tools/quant_plan.py -c CFG --slim_config SLIM [--json FILE]."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from slimext.commands.quant_plan import main  # noqa: E402

if __name__ == "__main__":
    main()
