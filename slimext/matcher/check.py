"""One weight check: match, classify, diagnose, decide. Returns a WeightMatchReport."""
import os
import time

from slimext.matcher.checkpoint_file import read_checkpoint
from slimext.matcher.classify import MatchContext, classify
from slimext.matcher.config_catalog import configs_dir_for, configs_matching, shown_path
from slimext.matcher.diagnosis import read_signature, signature_differences
from slimext.matcher.keys import is_quantizer_state, module_of
from slimext.matcher.match import match_keys
from slimext.matcher.model_shapes import model_shapes as shapes_of_model
from slimext.matcher.policy import ERROR, WeightCheckPolicy
from slimext.matcher.report import WeightMatchReport, part_counts, unused_counts

_WRONG_KIND = {
    "optimizer": "this is optimizer state (.pdopt content), not model weights: pass the "
                 ".pdparams file written beside it",
    "ema": "this is a .pdema file (ppdet keeps the raw weights there and the EMA weights in "
           "the .pdparams beside it): pass the .pdparams file",
}


def check_weights(model, checkpoint, policy=None, target="model", config_dir=None,
                  contents=None):
    """Compare a model (Layer or {key: shape}) with a checkpoint (path or state dict).

    config_dir: where to look for configs that build the checkpoint's architecture
    (default: the configs/ folder `target`, the user's config file, lives in).

    Raises CheckpointError when the checkpoint cannot be read at all.
    """
    policy = policy or WeightCheckPolicy()
    shapes = model if isinstance(model, dict) else shapes_of_model(model)
    contents = contents or read_checkpoint(checkpoint)
    start = time.perf_counter()
    match = match_keys(shapes, contents.shapes)
    match_ms = 1000.0 * (time.perf_counter() - start)
    differences = classify(match)
    ratio, basis = _loaded_ratio(match)
    report = WeightMatchReport(
        checkpoint=contents.path, target=target, checkpoint_kind=contents.kind,
        model_keys=len(shapes), checkpoint_keys=len(contents.shapes),
        loaded=len(match.loaded),
        loaded_through_wrapper=sum(p.through_wrapper for p in match.loaded),
        loaded_ratio=ratio, ratio_basis=basis, match_ms=match_ms,
        parts=part_counts(match, {k for ks in match.ambiguous.values() for k in ks}),
        unused_by_part=unused_counts(match), differences=differences,
        loaded_pairs=[(p.model_key, p.ckpt_key) for p in match.loaded])
    report.diagnosis = _diagnose(shapes, contents.shapes, report,
                                 config_dir or configs_dir_for(target))
    report.verdict, report.reasons = policy.verdict(
        report.suspicious, report.notable_expected, ratio, _WRONG_KIND.get(contents.kind))
    report.advice = _advice(report)
    return report


def _loaded_ratio(match):
    """Loaded share of the tensors this checkpoint is meant to provide.

    Quantizer state is never counted (a float checkpoint cannot hold it); for a
    backbone-only checkpoint only the backbone's tensors are.
    """
    backbone_only = MatchContext.of(match).ckpt_backbone_only
    basis = [k for k in match.model_shapes if not is_quantizer_state(k)
             and (not backbone_only or module_of(k) == "backbone")]
    if not basis:
        return 1.0, "0 tensors"
    wanted = set(basis)
    loaded = sum(1 for p in match.loaded if p.model_key in wanted)
    what = "backbone tensors" if backbone_only else "model tensors"
    return loaded / len(basis), "{} {}".format(len(basis), what)


def _diagnose(model_shapes, ckpt_shapes, report, config_dir):
    ckpt_sig, model_sig = read_signature(ckpt_shapes), read_signature(model_shapes)
    diag = {"checkpoint_describes": ckpt_sig.describe(),
            "config_describes": model_sig.describe(),
            "checkpoint_signature": ckpt_sig.as_dict(),
            "config_signature": model_sig.as_dict(),
            "differences": signature_differences(model_sig, ckpt_sig),
            "matching_configs": [], "notes": []}
    if report.suspicious or diag["differences"]:
        matches = configs_matching(ckpt_sig, config_dir)
        diag["matching_configs"] = [shown_path(c.path) for c in matches]
        if matches:
            classes = {c.signature.num_classes for c in matches}
            diag["notes"].append(
                "config(s) with the checkpoint's architecture: {}{}".format(
                    ", ".join(shown_path(c.path) for c in matches),
                    " (input size is not stored in weights: pick the one for your input size)"
                    if len(matches) > 1 else " (input size is not stored in weights)"))
            if ckpt_sig.num_classes is not None and ckpt_sig.num_classes not in classes:
                diag["notes"].append("none of them is set to {} classes".format(
                    ckpt_sig.num_classes))
        elif ckpt_sig.neck_channels is not None:
            diag["notes"].append("no shipped config under configs/ builds this architecture")
    if ckpt_sig.imagenet_classes is not None:
        diag["notes"].append("backbone-only checkpoint: only the backbone is compared")
    return diag


def _advice(report):
    advice = []
    configs = report.diagnosis.get("matching_configs", [])
    if report.verdict == ERROR and report.checkpoint_kind == "weights":
        if configs and os.path.abspath(configs[0]) != os.path.abspath(str(report.target)):
            advice.append("Fix: train with -c {} (it builds the checkpoint's architecture), or "
                          "pass pretrain_weights made for {}".format(
                              configs[0], report.diagnosis.get("config_describes")))
        else:
            advice.append("Fix: pass weights made for this config's architecture ({})".format(
                report.diagnosis.get("config_describes")))
        advice.append("To load what fits and go on anyway: -o WeightCheck.on_mismatch=warn")
    if report.count(category="class_count"):
        sig = report.diagnosis.get("checkpoint_signature", {})
        advice.append("Class layers: the checkpoint was trained for {} classes; if that is your "
                      "dataset, set num_classes: {} to reuse them".format(
                          sig.get("num_classes", "?"), sig.get("num_classes", "?")))
    return advice
