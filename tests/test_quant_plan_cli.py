"""tools/quant_plan.py prints (and saves) the plan a slim config gives a model, untrained."""
import json

from conftest import DEMO_CONFIG, run_tool
from test_cli_errors import assert_one_error_line

RESIDUAL_SLIM = "configs/slim/residual_qat/picodet_demo_residual_qat.yml"


def test_plan_of_demo_picodet_is_printed_and_saved(tmp_path):
    out = tmp_path / "plan.json"
    result = run_tool(["tools/quant_plan.py", "-c", DEMO_CONFIG, "--slim_config", RESIDUAL_SLIM,
                       "--json", str(out)])
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Quantization plan (backend: onednn)" in result.stdout
    plan = json.loads(out.read_text())
    assert plan["backend"] == "onednn"
    # The LCPAN top level adds two branches and concatenates inputs: both are planned.
    sites = {join["site"] for join in plan["joins"] if join["skipped"] is None}
    assert any(":add#" in site for site in sites) and any(":concat#" in site for site in sites)
    for name in plan["quantizers"]:
        assert name in result.stdout
    assert len(plan["layers"]) == result.stdout.count("Conv2D") + result.stdout.count("Linear")


def test_plan_needs_a_plan_based_slim_method():
    result = run_tool(["tools/quant_plan.py", "-c", DEMO_CONFIG, "--slim_config",
                       "configs/slim/quant/picodet_demo_qat.yml"])
    assert_one_error_line(result, "no quantization plan", "ResidualQAT")
