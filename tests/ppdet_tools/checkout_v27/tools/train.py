"""The imports and argument handling of PaddleDetection release/2.7.1 and develop
tools/train.py: the checkout's root goes first on sys.path, cv2 is set up before paddle,
and the semi-supervised trainers come from ppdet.engine.trainer_ssod (ppdet 2.6.0 has only
Trainer_DenseTeacher there)."""
import os
import sys

parent_path = os.path.abspath(os.path.join(__file__, *(['..'] * 2)))
sys.path.insert(0, parent_path)

import cv2  # noqa: E402

cv2.setNumThreads(0)

import paddle  # noqa: E402,F401
from ppdet.core.workspace import load_config, merge_config  # noqa: E402,F401
from ppdet.engine import Trainer, TrainerCot, init_parallel_env, set_random_seed, init_fleet_env  # noqa: E402,F401,E501
from ppdet.engine.trainer_ssod import Trainer_DenseTeacher, Trainer_ARSL, Trainer_Semi_RTDETR  # noqa: E402,F401,E501
from ppdet.slim import build_slim_model  # noqa: E402,F401
from ppdet.utils.cli import ArgsParser, merge_args  # noqa: E402


def parse_args():
    parser = ArgsParser()
    parser.add_argument("--eval", action="store_true", default=False)
    parser.add_argument("-r", "--resume", default=None)
    parser.add_argument("--slim_config", default=None, type=str)
    return parser.parse_args()


if __name__ == "__main__":
    FLAGS = parse_args()
    cfg = load_config(FLAGS.config)
    merge_args(cfg, FLAGS)
    merge_config(FLAGS.opt)
    print("would train", cfg.architecture)
