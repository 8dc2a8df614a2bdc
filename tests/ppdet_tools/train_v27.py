"""Shaped like PaddleDetection v2.7/develop tools/train.py: cv2 set up before paddle, a
teacher/student weights branch before the pretrain_weights one."""
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

import cv2  # noqa: E402

cv2.setNumThreads(0)

import paddle  # noqa: E402
from ppdet.core.workspace import load_config, merge_config  # noqa: E402
from ppdet.engine import Trainer  # noqa: E402
from ppdet.utils.cli import ArgsParser, merge_args  # noqa: E402


def main():
    parser = ArgsParser()
    parser.add_argument("--eval", action="store_true")
    flags = parser.parse_args()
    cfg = load_config(flags.config)
    merge_args(cfg, flags)
    merge_config(flags.opt)
    for device in ("use_gpu", "use_npu", "use_xpu", "use_mlu"):
        cfg.setdefault(device, False)
    paddle.set_device("gpu" if cfg.use_gpu else "cpu")
    trainer = Trainer(cfg, mode="train")
    if cfg.get("pretrain_student_weights") and cfg.get("pretrain_teacher_weights"):
        trainer.load_semi_weights(cfg.pretrain_teacher_weights, cfg.pretrain_student_weights)
    elif cfg.get("pretrain_weights"):
        trainer.load_weights(cfg.pretrain_weights)
    trainer.train(flags.eval)


if __name__ == "__main__":
    main()
