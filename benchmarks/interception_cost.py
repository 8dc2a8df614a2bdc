"""What join interception costs: float forwards with the patches in place, and the checks
ResidualQAT runs once per model (discovery and the coverage trace).

    python -m benchmarks.interception_cost [--runs 30] [--config CFG]

1. Float forward of the config's detector (eval, random init, one 1x3xHxW image) with
   Paddle unpatched vs patched (no quantized model running): the price every other model
   in the process pays. The two states alternate run by run in one process (the patches
   are swapped in and out), so load on the shared CPU hits both alike.
2. Once per model: join discovery (one dygraph forward) and the coverage trace (one
   to_static trace of the float model), timed on the same detector; the joins found and
   the joins reported as uncovered.
Prints a markdown table, writes benchmarks/results/interception_cost.json with the CPU line.
"""
import argparse
import os
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
DEMO_CONFIG = os.path.join(REPO, "configs", "picodet", "picodet_xs_192_demo_lcnet.yml")
RESULTS = os.path.join(REPO, "benchmarks", "results", "interception_cost.json")


def detector(config):
    from ppdet.core.workspace import create, load_config

    import paddle

    cfg = load_config(config)
    paddle.seed(0)
    model = create(cfg.architecture)
    model.eval()
    shape = [1] + list(cfg.TestReader["inputs_def"]["image_shape"][1:])
    return model, shape


def patch_switch():
    """set(True/False): Paddle's join entry points and Layer.__call__ patched or original."""
    from slimext.quant import interception

    interception.install()
    patched = {key: getattr(key[0], key[1]) for key in interception._ORIGINALS}

    def set_state(on):
        for (owner, attribute), original in interception._ORIGINALS.items():
            setattr(owner, attribute, patched[(owner, attribute)] if on else original)

    return set_state


def time_forwards(model, inputs, runs, set_state):
    import paddle

    timings = {False: [], True: []}
    with paddle.no_grad():
        for state in (False, True):  # warm-up of both paths
            set_state(state)
            model(*inputs)
        for run in range(runs):
            for state in ((False, True) if run % 2 == 0 else (True, False)):
                set_state(state)
                start = time.perf_counter()
                model(*inputs)
                timings[state].append(time.perf_counter() - start)
    set_state(True)
    return {state: statistics.median(values) * 1000 for state, values in timings.items()}


def time_micro(set_state, calls=20000, rounds=7):
    """Per-call cost (microseconds) of `a + b` on one-element tensors and of calling a
    trivial layer, unpatched vs patched: the overhead without the model's own noise."""
    import paddle

    a, b = paddle.ones([1]), paddle.ones([1])
    layer = paddle.nn.Identity()
    cases = {"a + b": lambda: a + b, "Layer call": lambda: layer(a)}
    result = {}
    for name, call in cases.items():
        best = {False: float("inf"), True: float("inf")}
        for _ in range(rounds):
            for state in (False, True):
                set_state(state)
                start = time.perf_counter()
                for _ in range(calls):
                    call()
                best[state] = min(best[state], (time.perf_counter() - start) / calls * 1e6)
        result[name] = best
    set_state(True)
    return result


def count_calls(model, inputs):
    """Layer calls and intercepted ops in one forward of `model`."""
    from slimext.quant import interception

    counts = {"layers": 0, "ops": 0}

    class Counter:
        def on_join(self, kind, operands, compute):
            counts["ops"] += 1
            return compute(operands)

        def on_unquantizable_join(self, kind, form, operands):
            counts["ops"] += 1

    hooks = [layer.register_forward_pre_hook(lambda *_: counts.__setitem__(
        "layers", counts["layers"] + 1)) for layer in [model] + list(model.sublayers())]
    try:
        with interception.handling(Counter()):
            model(*inputs)
    finally:
        for hook in hooks:
            hook.remove()
    return counts


def time_checks(config):
    from slimext.quant.coverage import trace_uncovered_joins
    from slimext.quant.joins import trace_joins
    from slimext.quant.qat import _ppdet_example_inputs

    model, shape = detector(config)
    inputs = _ppdet_example_inputs(shape)
    start = time.perf_counter()
    discovery = trace_joins(model, inputs)
    discovery_s = time.perf_counter() - start
    start = time.perf_counter()
    try:
        uncovered, error = [u.describe() for u in trace_uncovered_joins(model, inputs)], None
    except Exception as failure:  # e.g. Paddle 3 cannot trace ppdet 2.6's NMS under PIR
        uncovered, error = [], "{}: {}".format(type(failure).__name__,
                                               (str(failure).strip().splitlines() or [""])[-1])
    coverage_s = time.perf_counter() - start
    return {"joins": len(discovery.joins), "unquantizable": len(discovery.unquantizable),
            "uncovered": uncovered, "coverage_trace_error": error,
            "discovery_s": round(discovery_s, 2), "coverage_trace_s": round(coverage_s, 2)}


def main(argv=None):
    import slimext

    slimext.register_with_ppdet()  # slimext's slim classes and compat fixes
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="timed forwards per state")
    parser.add_argument("--config", default=DEMO_CONFIG, help="a ppdet detector config")
    parser.add_argument("--json", default=RESULTS, help="where the results go")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be >= 1")

    import paddle

    from slimext.deploy.hardware import describe_machine, isa_line
    from slimext.fileio import atomic_write_json
    from slimext.quant.qat import _ppdet_example_inputs

    paddle.set_device("cpu")
    model, shape = detector(args.config)
    set_state = patch_switch()
    forward = time_forwards(model, _ppdet_example_inputs(shape), args.runs, set_state)
    micro = time_micro(set_state)
    calls = count_calls(model, _ppdet_example_inputs(shape))
    estimate_ms = (calls["layers"] * (micro["Layer call"][True] - micro["Layer call"][False])
                   + calls["ops"] * (micro["a + b"][True] - micro["a + b"][False])) / 1000
    checks = time_checks(args.config)
    machine = describe_machine()
    rows = [
        ("float forward, Paddle unpatched (median ms)", "{:.2f}".format(forward[False])),
        ("float forward, interception installed (median ms)", "{:.2f}".format(forward[True])),
        ("ratio installed / unpatched", "{:.3f}".format(forward[True] / forward[False])),
        ("`a + b` per call, unpatched / installed (us)", "{:.2f} / {:.2f}".format(
            micro["a + b"][False], micro["a + b"][True])),
        ("layer call, unpatched / installed (us)", "{:.2f} / {:.2f}".format(
            micro["Layer call"][False], micro["Layer call"][True])),
        ("layer calls / intercepted ops per forward", "{} / {}".format(
            calls["layers"], calls["ops"])),
        ("overhead per forward from the per-call costs (ms)", "{:.3f}".format(estimate_ms)),
        ("join discovery, once per model (s)", checks["discovery_s"]),
        ("coverage trace (to_static), once per model (s)", checks["coverage_trace_s"]
         if checks["coverage_trace_error"] is None
         else "failed after {} s: {}".format(checks["coverage_trace_s"],
                                             checks["coverage_trace_error"][:120])),
        ("joins found / in-place (reported) / uncovered (reported)", "{} / {} / {}".format(
            checks["joins"], checks["unquantizable"], len(checks["uncovered"]))),
    ]
    table = "\n".join(["| {} | {} |".format(os.path.relpath(args.config, REPO), "value"),
                       "|---|---|"] + ["| {} | {} |".format(k, v) for k, v in rows])
    result = {"benchmark": "join interception cost", "config": os.path.relpath(args.config, REPO),
              "input_shape": shape, "runs": args.runs, "machine": isa_line(machine),
              "paddle": machine["paddle"],
              "forward_ms": {"unpatched": forward[False], "installed": forward[True]},
              "ratio": forward[True] / forward[False], "micro_us": {
                  k: {"unpatched": v[False], "installed": v[True]} for k, v in micro.items()},
              "calls_per_forward": calls, "estimated_overhead_ms": estimate_ms,
              "checks": checks, "markdown": table,
              "reproduce": "python -m benchmarks.interception_cost --runs {} --config {}".format(
                  args.runs, os.path.relpath(args.config, REPO))}
    atomic_write_json(args.json, result)
    print(isa_line(machine))
    print(table)
    for line in checks["uncovered"]:
        print("uncovered:", line)
    print("\nwritten: {}".format(args.json))


if __name__ == "__main__":
    main()
