"""A training script shaped like PaddleDetection v2.6's tools/train.py: ArgsParser flags,
config merged from -o, device chosen from use_gpu, slim wrapping, weights through
Trainer.load_weights, then train."""
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

import paddle  # noqa: E402
from ppdet.core.workspace import load_config, merge_config  # noqa: E402
from ppdet.engine import Trainer, init_parallel_env  # noqa: E402
from ppdet.slim import build_slim_model  # noqa: E402
from ppdet.utils.cli import ArgsParser, merge_args  # noqa: E402


def parse_args():
    parser = ArgsParser()
    parser.add_argument("--eval", action="store_true")
    parser.add_argument("-r", "--resume", default=None)
    parser.add_argument("--slim_config", default=None)
    return parser.parse_args()


def main():
    flags = parse_args()
    cfg = load_config(flags.config)
    merge_args(cfg, flags)
    merge_config(flags.opt)
    cfg.setdefault("use_gpu", False)
    paddle.set_device("gpu" if cfg.use_gpu else "cpu")
    if flags.slim_config:
        cfg = build_slim_model(cfg, flags.slim_config)
    merge_config(flags.opt)
    init_parallel_env()
    trainer = Trainer(cfg, mode="train")
    if flags.resume is not None:
        trainer.resume_weights(flags.resume)
    elif cfg.get("pretrain_weights"):
        trainer.load_weights(cfg.pretrain_weights)
    trainer.train(flags.eval)


if __name__ == "__main__":
    main()
