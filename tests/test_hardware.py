"""The machine line that goes with every performance figure."""
from slimext.deploy.hardware import cpu_flags, cpu_model, int8_capability, isa_line

VNNI_CPU = "model name\t: Example Xeon\nflags\t\t: fpu sse avx2 avx512f avx512bw avx512_vnni\n"
AVX2_CPU = "model name\t: Example EPYC\nflags\t\t: fpu sse avx2 fma\n"


def test_flags_keep_only_int8_relevant_sets():
    assert cpu_flags(VNNI_CPU) == {"avx2", "avx512f", "avx512bw", "avx512_vnni"}
    assert cpu_flags(AVX2_CPU) == {"avx2"}
    assert cpu_flags("") == set()


def test_int8_capability_names_the_best_dot_product_hardware():
    assert int8_capability(cpu_flags(VNNI_CPU)) == "vnni"
    assert int8_capability(cpu_flags(AVX2_CPU)) == "none"
    assert int8_capability({"avx512_vnni", "amx_tile", "amx_int8"}) == "amx"


def test_isa_line_names_cpu_flags_and_paddle():
    info = {"cpu": cpu_model(AVX2_CPU), "isa": ["avx2"], "int8_hardware": "none",
            "cores": 2, "paddle": "3.3.1"}
    assert isa_line(info) == "Example EPYC | avx2 (INT8: none) | 2 cores | Paddle 3.3.1"
