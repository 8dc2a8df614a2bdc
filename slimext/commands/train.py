"""Train a detector with ppdet's Trainer, optionally wrapped by a slim method (QAT, ...)."""
from slimext.commands.common import (UserError, load_detection_config, make_parser,
                                     parse_flags, run_command, weights_path)
from slimext.commands.pretrain_check import checked_pretrain_loading
from slimext.commands.slim_config import read_slim_config


def build_parser():
    parser = make_parser(__doc__)
    parser.add_argument("--eval", action="store_true", help="evaluate after each snapshot")
    parser.add_argument("-r", "--resume", default=None, help="checkpoint to resume from")
    parser.add_argument("--slim_config", default=None, help="slim method config (QAT, PTQ, ...)")
    parser.add_argument("--output_dir", default=None, help="where checkpoints go (save_dir)")
    parser.add_argument("--use_vdl", action="store_true", help="log scalars to VisualDL")
    parser.add_argument("--vdl_log_dir", default="vdl_log_dir/scalar")
    parser.add_argument("--save_prediction_only", action="store_true")
    parser.add_argument("--seed", type=int, default=None, help="fix random seeds")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bar/lines on the terminal (logs are unchanged)")
    return parser


def prepare_trainer(flags, cfg):
    """Build model (and slim wrapper), load weights: everything before the first step."""
    from ppdet.engine import Trainer, set_random_seed
    from ppdet.slim import build_slim_model
    from ppdet.core.workspace import merge_config

    from slimext.checkpoints import install_atomic_checkpoints

    install_atomic_checkpoints()
    if flags.seed is not None:
        set_random_seed(flags.seed)
    if flags.resume:
        weights_path(flags.resume, "resume checkpoint")
    if cfg.get("pretrain_weights") and not flags.resume:
        cfg.pretrain_weights = weights_path(cfg.pretrain_weights, "pretrain_weights")
    # Pretrained weights load through the weight check (before the slim wrapping, before
    # any step): a mismatch stops here with one report instead of per-key log lines.
    with checked_pretrain_loading(cfg, flags.config):
        if flags.slim_config:
            cfg = build_slim_model(cfg, flags.slim_config)
            merge_config(flags.opt)  # -o wins over the slim config, as in ppdet
        trainer = Trainer(cfg, mode="train")
        if flags.resume:
            trainer.resume_weights(flags.resume)
        elif cfg.get("pretrain_weights") and not flags.slim_config:
            trainer.load_weights(cfg.pretrain_weights)
    return trainer


def prepare_on_all_ranks(flags, cfg):
    """prepare_trainer on every rank, or a clean stop on every rank (data parallel)."""
    from slimext.distributed import PeerRankFailed, all_ranks_or_none
    from slimext.slim.data_parallel import (RanksDisagree, ScaleSyncConfigError,
                                            install_scale_sync)

    try:
        with all_ranks_or_none("preparing the model"):
            trainer = prepare_trainer(flags, cfg)
        # After the vote: its own collective must not meet a failed rank's vote.
        install_scale_sync(trainer, cfg)
    except (PeerRankFailed, RanksDisagree, ScaleSyncConfigError) as error:
        raise UserError(str(error))
    return trainer


@run_command
def main(argv=None):
    from ppdet.utils.cli import merge_args

    from slimext.commands.engine_progress import install_trainer_progress
    from slimext.distributed import start_data_parallel

    flags = parse_flags(build_parser(), argv)
    start_data_parallel()  # the launcher's process group; a no-op in one process
    cfg = load_detection_config(flags, mode="train")  # also checks the slim settings
    if flags.slim_config:
        read_slim_config(flags.slim_config).refuse_uncalibrated_use("tools/train.py")
    merge_args(cfg, flags, exclude_args=["config", "opt", "slim_config", "output_dir", "seed",
                                         "quiet"])
    if flags.output_dir:
        cfg.save_dir = flags.output_dir
    if flags.eval:
        from slimext.commands.common import check_dataset

        check_dataset(cfg, "eval")
    trainer = prepare_on_all_ranks(flags, cfg)
    install_trainer_progress(trainer, flags.quiet)
    trainer.train(flags.eval)
    # Slim methods with an end-of-training step (ResidualQAT's error report) run it here.
    finalize = getattr(cfg.get("slim"), "finalize", None)
    if callable(finalize):
        finalize()


if __name__ == "__main__":
    main()
