"""Weight matcher vs ppdet's match_state_dict on the same key sets, measured in one run.

    .venv/bin/python -m benchmarks.matcher_speed [--repeat 20] [--json benchmarks/matcher_speed.json]

Key sets come from models built from the project's configs (shapes only). Both matchers
get the same inputs; ppdet's gets objects with a `.shape`, as its loader passes tensors.
Times are medians; the ratio is ppdet / ours. The pairs both produce are compared.
"""
import argparse
import logging
import os
import platform
import statistics
import sys
import time
from types import SimpleNamespace

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
CONFIGS = os.path.join(REPO, "configs", "picodet")
FOUR_LEVELS = [0.125, 0.0625, 0.03125, 0.015625]


def key_shapes(config, **overrides):
    from ppdet.core.workspace import load_config, merge_config

    from slimext.matcher.model_shapes import build_model, isolated_ppdet_config, model_shapes

    with isolated_ppdet_config():
        cfg = load_config(os.path.join(CONFIGS, config))
        if overrides:
            merge_config(overrides)
        return model_shapes(build_model(cfg))


def cases():
    s = key_shapes("picodet_s_320_coco_lcnet.yml")
    m = key_shapes("picodet_m_320_coco_lcnet.yml")
    yield "PicoDet-S model vs PicoDet-S checkpoint", s, s
    yield "PicoDet-S model vs PicoDet-M checkpoint", s, m
    yield "PicoDet-S model vs PicoDet-L checkpoint", s, key_shapes("picodet_l_320_coco_lcnet.yml")
    # The 463 x 593 of ENVIRONMENT.md: M built second in one process gets a 4-level LCPAN.
    yield ("PicoDet-S model vs PicoDet-M checkpoint, 4-level neck (463 x 593)", s,
           key_shapes("picodet_m_320_coco_lcnet.yml", LCPAN={"spatial_scales": FOUR_LEVELS}))


def median_ms(fn, repeat):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


def main(argv=None):
    import slimext

    slimext.register_with_ppdet()  # slimext's slim classes and compat fixes
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--json", default=os.path.join(REPO, "benchmarks",
                                                       "matcher_speed.json"))
    args = parser.parse_args(argv)

    from ppdet.utils.checkpoint import match_state_dict

    from slimext.matcher import check_weights, match_keys

    logging.getLogger("ppdet.utils.checkpoint").setLevel(logging.WARNING)  # time, not logs
    rows = []
    for name, model, ckpt in cases():
        as_tensors = ({k: SimpleNamespace(shape=list(v)) for k, v in d.items()}
                      for d in (model, ckpt))
        model_t, ckpt_t = as_tensors
        ppdet_ms = median_ms(lambda: match_state_dict(model_t, ckpt_t), args.repeat)
        ours_ms = median_ms(lambda: match_keys(model, ckpt), args.repeat)
        report_ms = median_ms(lambda: check_weights(model, ckpt_t), max(3, args.repeat // 4))
        match = match_keys(model, ckpt)
        same = {p.model_key for p in match.loaded} == set(match_state_dict(model_t, ckpt_t))
        rows.append({"case": name, "model_keys": len(model), "checkpoint_keys": len(ckpt),
                     "loaded": len(match.loaded), "ppdet_ms": round(ppdet_ms, 2),
                     "ours_ms": round(ours_ms, 3), "speedup": round(ppdet_ms / ours_ms, 1),
                     "full_report_ms": round(report_ms, 1), "same_pairs": same})
    print("| case | model x ckpt keys | loaded | ppdet match_state_dict | slimext match_keys "
          "| ratio | full check (match+classify+diagnose) | same pairs |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print("| {case} | {model_keys} x {checkpoint_keys} | {loaded} | {ppdet_ms:.1f} ms | "
              "{ours_ms:.2f} ms | {speedup:.0f}x | {full_report_ms:.1f} ms | {same_pairs} |"
              .format(**r))
    print("\nmedian of {} runs; {} CPU(s), Python {}; reproduce: "
          ".venv/bin/python -m benchmarks.matcher_speed".format(
              args.repeat, os.cpu_count(), platform.python_version()))
    from slimext.fileio import atomic_write_json

    atomic_write_json(args.json, {"repeat": args.repeat, "cpus": os.cpu_count(), "rows": rows},
                      indent=1)
    print("JSON: {}".format(os.path.relpath(args.json, REPO)))


if __name__ == "__main__":
    main()
