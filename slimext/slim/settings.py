"""One `ResidualQAT:` / `ResidualPTQ:` section of a slim YAML as a checked settings object.

    settings = parse_slim_settings("ResidualQAT", {"backend": "onednn", "rules": [...]})
    settings.quant        # QuantSettings (PTQSettings for ResidualPTQ), for the core class
    settings.monitor      # MonitorConfig or None
    settings.print_plan   # print the plan table when the model is quantized

The commands parse a section once, before any model work, and pass the object down; the
ppdet slim classes parse the keys ppdet gives them with the same function.
"""
import dataclasses
import difflib
from dataclasses import dataclass
from typing import Optional

from slimext.quant.settings import PTQSettings, QuantSettings

from slimext.slim import PTQ_METHOD, QAT_METHOD

# The keys of each section, in the order the slim classes take them.
SECTION_KEYS = {
    QAT_METHOD: ("backend", "quant_config", "rules", "input_shape", "print_plan", "monitor",
                 "strict"),
    PTQ_METHOD: ("backend", "algo", "algo_config", "quant_config", "rules", "input_shape",
                 "print_plan", "strict"),
}


@dataclass(frozen=True)
class SlimSettings:
    method: str
    quant: QuantSettings
    monitor: Optional[object] = None   # slimext.analysis.monitor.MonitorConfig
    print_plan: bool = True

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


def parse_slim_settings(method, section):
    """The checked settings of a `method` section; ValueError naming the key on a bad one."""
    # Imported here: the monitor needs paddle, and the commands read settings before
    # anything imports paddle (its import-time warnings are filtered by then).
    from slimext.analysis.monitor import parse_monitor_setting

    if method not in SECTION_KEYS:
        raise ValueError("{} is not a slimext slim method (use {})".format(
            method, " or ".join(SECTION_KEYS)))
    section = dict(section or {})
    known = SECTION_KEYS[method]
    unknown = sorted(str(key) for key in section if key not in known)
    if unknown:  # ppdet would drop them without a word
        close = difflib.get_close_matches(unknown[0], known, n=1)
        hint = " (did you mean {}?)".format(close[0]) if close else ""
        raise ValueError("unknown key(s) {}{}; {} takes {}".format(
            ", ".join(unknown), hint, method, ", ".join(known)))
    print_plan = section.pop("print_plan", True)
    if not isinstance(print_plan, bool):
        raise ValueError("print_plan must be true or false, got {!r}".format(print_plan))
    monitor = parse_monitor_setting(section.pop("monitor", None))
    quant_class = PTQSettings if method == PTQ_METHOD else QuantSettings
    return SlimSettings(method=method, quant=quant_class.parse(**section), monitor=monitor,
                        print_plan=print_plan)
