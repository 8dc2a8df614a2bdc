"""PaddleDetection-style export: tools/export_model.py -c CFG -o weights=W [--output_dir DIR]."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from slimext.commands.export import main  # noqa: E402

if __name__ == "__main__":
    main()
