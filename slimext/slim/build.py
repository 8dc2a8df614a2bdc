"""Build a detector wrapped by a slim method, with the run's options passed as arguments.

ppdet's `build_slim_model(cfg, slim_config, mode)` merges the slim YAML into the global
config, which overwrites the user's `-o` values before it loads any weights, and it calls
the slim object with the model alone. For the slim methods it builds the same way (every
method but ppdet's Distill/OFA/DistillPrune/PTQ/UnstructuredPruner, whose branches are left
to ppdet) this builder does what it does with two differences:

- the user's overrides are merged again right after the slim YAML, so `-o` wins before
  anything reads the config (pretrain_weights included);
- slimext's classes get their settings object (checked once, by the caller) and explicit
  `check_coverage` / `print_plan` arguments instead of keys left in the global config.
"""
from slimext.slim.settings import PTQ_METHOD, SECTION_KEYS, parse_slim_settings

# Slim methods ppdet builds in branches of their own (distillation, OFA, PTQ's weights-first
# order, pruning without a model); this builder hands them to ppdet unchanged.
PPDET_OWN_BRANCHES = ("Distill", "OFA", "DistillPrune", "PTQ", "UnstructuredPruner")


def _slim_method(slim_config):
    from slimext.compat.ppdet_internals import read_yaml_with_base

    return (read_yaml_with_base(slim_config) or {}).get("slim")


def build_slim_model(cfg, slim_config, mode="train", overrides=None, settings=None,
                     check_coverage=None, print_plan=None, ppdet_builder=None):
    """cfg with cfg.model (quantized), cfg.slim and cfg.slim_type set, as ppdet's builder.

    overrides: the user's -o mapping (ppdet's nested form), applied over the slim YAML.
    settings: slimext SlimSettings already parsed from this file (parsed here if None).
    check_coverage: trace for joins interception missed; default only in training.
    print_plan: True (the plan table), "summary" (its first line) or False; default: the
        slim YAML's print_plan in training, the summary otherwise.
    ppdet_builder: ppdet's own build_slim_model, for the methods it builds its own way
        (default: ppdet.slim's).
    """
    import ppdet.slim
    from ppdet.core.workspace import create, load_config, merge_config

    method = settings.method if settings is not None else _slim_method(slim_config)
    if method in PPDET_OWN_BRANCHES:
        cfg = (ppdet_builder or ppdet.slim.build_slim_model)(cfg, slim_config, mode=mode)
        if overrides:
            merge_config(overrides)
        return cfg
    load_config(slim_config)  # with its _BASE_ files, as ppdet's builder does
    if overrides:
        merge_config(overrides)  # the user's -o wins over the slim YAML
    model = create(cfg.architecture)
    # ppdet.slim's own name for the loader, so that a weight check installed around it
    # (slimext.compat.ppdet_hooks.pretrain_loader_replaced) applies here too.
    if mode == "train":
        ppdet.slim.load_pretrain_weight(model, cfg.pretrain_weights)
    slim = _slim_object(method, cfg, settings)
    if mode == "test" and "QAT" in method:
        # As ppdet does: PACT clipping is a training aid that an export leaves out.
        slim.quant_config["activation_preprocess_type"] = None
    cfg["slim_type"] = cfg.slim
    if method in SECTION_KEYS:
        training = mode == "train"
        cfg["model"] = slim(model,
                            check_coverage=training if check_coverage is None else check_coverage,
                            print_plan=print_plan if print_plan is not None
                            else (None if training else "summary"))
    else:
        cfg["model"] = slim(model)
    cfg["slim"] = slim
    # ResidualPTQ loads the float weights itself, before quantizing.
    if mode != "train" and method != PTQ_METHOD:
        ppdet.slim.load_pretrain_weight(cfg["model"], cfg.weights)
    return cfg


def _slim_object(method, cfg, settings):
    from ppdet.core.workspace import create

    if method not in SECTION_KEYS:
        return create(cfg.slim)
    if settings is None:
        settings = parse_slim_settings(method, cfg.get(method) or {})
    return slim_object(settings)


def slim_object(settings):
    """The ppdet slim class (ResidualQAT / ResidualPTQ) for checked SlimSettings."""
    import slimext

    slimext.register_with_ppdet()
    from slimext.slim.residual_ptq import ResidualPTQ
    from slimext.slim.residual_qat import ResidualQAT

    classes = {ResidualQAT.__name__: ResidualQAT, ResidualPTQ.__name__: ResidualPTQ}
    return classes[settings.method].from_settings(settings)
