"""Detection: tools/infer.py --model_dir DIR --image_file IMG [--runtime R] [--precision P]."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from slimext.commands.infer import main  # noqa: E402

if __name__ == "__main__":
    main()
