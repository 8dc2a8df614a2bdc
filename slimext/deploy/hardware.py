"""What this CPU and software stack can do for INT8: the line every performance figure carries.

INT8 speed-ups on CPU come from VNNI (AVX-512 or AVX) and AMX dot-product instructions; with
AVX2 alone oneDNN's INT8 kernels are rarely faster than fp32. Recording the instruction
sets next to each timing is what makes figures from different machines comparable.
"""
import os
import platform
import re

# The flags that decide CPU INT8 speed, in /proc/cpuinfo spelling.
INT8_RELEVANT_FLAGS = ("avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni",
                       "amx_tile", "amx_int8", "amx_bf16")


def _read_cpuinfo(path="/proc/cpuinfo"):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def cpu_flags(cpuinfo_text=None):
    """The INT8-relevant instruction-set flags of this CPU (an empty set where unknown)."""
    text = _read_cpuinfo() if cpuinfo_text is None else cpuinfo_text
    match = re.search(r"^flags\s*:\s*(.*)$", text, re.MULTILINE)
    present = set(match.group(1).split()) if match else set()
    return {flag for flag in INT8_RELEVANT_FLAGS if flag in present}


def cpu_model(cpuinfo_text=None):
    text = _read_cpuinfo() if cpuinfo_text is None else cpuinfo_text
    match = re.search(r"^model name\s*:\s*(.*)$", text, re.MULTILINE)
    return match.group(1).strip() if match else (platform.processor() or "unknown CPU")


def int8_capability(flags):
    """'amx', 'vnni' or 'none': which INT8 dot-product hardware oneDNN can use."""
    if {"amx_tile", "amx_int8"} <= set(flags):
        return "amx"
    if {"avx512_vnni", "avx_vnni"} & set(flags):
        return "vnni"
    return "none"


def describe_machine():
    """A dict for result files: CPU, flags, INT8 capability, cores, Paddle's version."""
    flags = cpu_flags()
    info = {"cpu": cpu_model(), "isa": sorted(flags), "int8_hardware": int8_capability(flags),
            "cores": os.cpu_count(), "python": platform.python_version()}
    try:
        import paddle

        info["paddle"] = paddle.__version__
    except ImportError:
        info["paddle"] = None
    return info


def isa_line(info=None):
    """One line, e.g. 'AMD EPYC | avx2 avx512f avx512_vnni (INT8: vnni) | 2 cores | Paddle 3.3.1'."""
    info = info or describe_machine()
    return "{} | {} (INT8: {}) | {} cores | Paddle {}".format(
        info["cpu"], " ".join(info["isa"]) or "no AVX2", info["int8_hardware"],
        info["cores"], info.get("paddle"))
