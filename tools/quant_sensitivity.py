"""Rank per-layer/per-join quantization sensitivity and suggest rules that keep the worst.

    tools/quant_sensitivity.py -c CFG --slim_config SLIM -o weights=FLOAT_WEIGHTS [--metric map]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from slimext.commands.quant_sensitivity import main  # noqa: E402

if __name__ == "__main__":
    main()
