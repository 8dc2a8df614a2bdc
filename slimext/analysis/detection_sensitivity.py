"""Sensitivity analysis of a ppdet detector from its config, a ResidualQAT slim config and
float weights: batches from the EvalReader, raw head outputs for SQNR, ppdet's own metric
(COCO/VOC) on the EvalDataset for mAP.

EvalReader batches are used for calibration and for SQNR: their preprocessing is the
deploy preprocessing, and their fixed size is the one the head's anchors are built for.
"""
import contextlib
import io
import logging
import tempfile
from dataclasses import dataclass
from typing import Optional

import paddle

from slimext.analysis.raw_outputs import head_outputs
from slimext.analysis.sensitivity import (SensitivityRanking, check_mode, prepare_measurement,
                                          rank_units, screen_then_rank)

SLIM_METHOD = "ResidualQAT"
METRICS = ("sqnr", "map")


class SensitivitySetupError(ValueError):
    """A setting that makes the analysis impossible; the message says what to change."""


def float_detector(cfg, weights, policy=None):
    """The config's architecture with the float weights loaded through the weight check."""
    from ppdet.core.workspace import create
    from ppdet.utils.checkpoint import load_pretrain_weight

    from slimext.matcher.loading import load_checked_weights

    model = create(cfg.architecture)
    if policy is not None and not policy.enable:
        load_pretrain_weight(model, weights)
    else:
        load_checked_weights(model, weights, policy, target=cfg.architecture)
    return model


def _quiet_ppdet_metrics():
    """ppdet's metric loggers and cocoapi's printed summary, silenced (one eval per unit)."""
    stack = contextlib.ExitStack()
    for name, item in list(logging.Logger.manager.loggerDict.items()):
        if name.startswith("ppdet.metrics") and isinstance(item, logging.Logger):
            level = item.level
            item.setLevel(logging.WARNING)
            stack.callback(item.setLevel, level)
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    return stack


class DetectionMAP:
    """Metric: the first number of ppdet's metric on the EvalDataset (COCO mAP@[.5:.95])."""
    name = "map"
    label = "mAP"

    def __init__(self, trainer):
        self.loader = trainer.loader
        from slimext.compat.ppdet_internals import trainer_metrics

        self.metrics = trainer_metrics(trainer)
        self.images_per_evaluation = []   # every evaluation must see the whole EvalDataset

    def __call__(self, model):
        model.eval()
        for metric in self.metrics:
            metric.reset()
        images = 0
        with paddle.no_grad():
            for data in self.loader:
                outs = model(data)
                for metric in self.metrics:
                    metric.update(data, outs)
                images += int(data["im_id"].shape[0])
        self.images_per_evaluation.append(images)
        with _quiet_ppdet_metrics():
            for metric in self.metrics:
                metric.accumulate()
        results = self.metrics[0].get_results() or {}
        values = next(iter(results.values()), [0.0])   # no detections: nothing to score
        return float(values[0])


def eval_trainer(cfg, model, output_eval):
    """ppdet's eval Trainer around an already built model: its loader and metrics."""
    from ppdet.engine import Trainer

    cfg["model"] = model
    cfg["slim_type"] = cfg.get("slim")
    cfg["output_eval"] = output_eval
    return Trainer(cfg, mode="eval")


def eval_batches(cfg, dataset, count):
    """The first `count` EvalReader batches, from a reader of their own.

    ppdet's reader is one shared iterator: taking batches from the Trainer's loader would
    make its next evaluation start after them.
    """
    from ppdet.core.workspace import create

    sampler = paddle.io.BatchSampler(dataset, batch_size=cfg.EvalReader["batch_size"])
    batches = []
    for data in create("EvalReader")(dataset, 0, sampler):
        batches.append(data)
        if len(batches) == count:
            break
    return batches


@dataclass
class DetectionSensitivity:
    ranking: SensitivityRanking
    screening: Optional[SensitivityRanking]
    plan: object
    num_batches: int
    map_images: Optional[list] = None   # images each mAP evaluation scored


def analyze_detector(cfg, slim, weights, metric="sqnr", mode="alone", num_batches=4,
                     candidates=None, weight_policy=None, logger=None):
    """Calibrate `slim` on the detector with float `weights`, then rank its units."""
    if metric not in METRICS:
        raise SensitivitySetupError("metric must be one of {}, got {!r}".format(
            "/".join(METRICS), metric))
    check_mode(mode)
    model = slim(float_detector(cfg, weights, weight_policy))
    plan = slim.plan
    with tempfile.TemporaryDirectory(prefix="sensitivity-eval-") as output_eval:
        trainer = eval_trainer(cfg, model, output_eval)
        batches = eval_batches(cfg, trainer.dataset, num_batches)
        if not batches:
            raise SensitivitySetupError("the EvalReader gave no batch: check EvalDataset "
                                        "(dataset_dir, anno_path) and EvalReader.batch_size")
        setup = prepare_measurement(model, plan, batches, mode, head_outputs)
        if metric == "sqnr":
            ranking = rank_units(model, setup.units, setup.quantizers, setup.sqnr, mode, logger)
            return DetectionSensitivity(ranking, None, plan, len(batches))
        mean_ap = DetectionMAP(trainer)
        ranking, screening = screen_then_rank(model, setup.units, setup.quantizers, setup.sqnr,
                                              mean_ap, mode, candidates, logger)
        return DetectionSensitivity(ranking, screening, plan, len(batches),
                                    sorted(set(mean_ap.images_per_evaluation)))
