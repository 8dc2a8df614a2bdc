"""ResidualPTQ as one call, and a calibration window that never leaves quantizers bypassed."""
import numpy as np
import paddle
import pytest

from quant_models import ResidualNet, example_input, train_steps
from test_residual_ptq import calibration_batches
from slimext.quant.calibration import CalibrationError
from slimext.quant.ptq import PTQCalibrator
from slimext.quant.quantizers import all_quantizers


def float_model():
    paddle.seed(0)
    return train_steps(ResidualNet(channels=8, blocks=1))


def run_batches(batches):
    def loop(model):
        for batch in batches:
            model(batch)

    return loop


def bypassed_quantizers(ptq, model):
    # `bypassed` replaces a quantizer's forward by an instance attribute.
    return [n for n, q in all_quantizers(model, ptq.plan).items() if "forward" in q.__dict__]


def test_quantize_is_one_call_equal_to_the_step_by_step_flow():
    batches = calibration_batches(2)
    one_call = PTQCalibrator(algo="abs_max")
    model = one_call.quantize(float_model(), run_batches(batches),
                              example_inputs=[example_input()])
    steps = PTQCalibrator(algo="abs_max")
    stepped = steps(float_model(), example_inputs=[example_input()])
    run_batches(batches)(stepped)
    assert one_call.thresholds == steps.finish_calibration(stepped)
    x = calibration_batches(3)[2]
    np.testing.assert_array_equal(model(x).numpy(), stepped(x).numpy())


def test_an_interrupted_calibration_restores_the_quantizers_and_can_run_again():
    batches = calibration_batches(2)
    reference = PTQCalibrator(algo="KL")
    reference.quantize(float_model(), run_batches(batches), example_inputs=[example_input()])

    ptq = PTQCalibrator(algo="KL")
    model = ptq.prepare(float_model(), example_inputs=[example_input()])
    hooks = len(model._forward_pre_hooks)

    def interrupted(model):
        model(calibration_batches(5)[4])     # samples that must not count later
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        with ptq.calibrating(model):
            interrupted(model)
    assert bypassed_quantizers(ptq, model) == []
    assert len(model._forward_pre_hooks) == hooks
    # Uncalibrated scales are never used silently.
    with pytest.raises(CalibrationError, match="not calibrated"):
        model(batches[0])
    with pytest.raises(CalibrationError, match="no calibration is running"):
        ptq.finish_calibration(model)
    # Calibrating again gives exactly what an uninterrupted run gives.
    with ptq.calibrating(model):
        run_batches(batches)(model)
    assert ptq.thresholds == reference.thresholds
    assert bypassed_quantizers(ptq, model) == []


def test_a_failing_finish_also_leaves_nothing_bypassed():
    ptq = PTQCalibrator(algo="abs_max")
    model = ptq(float_model(), example_inputs=[example_input()])  # ppdet's flow: window open
    assert bypassed_quantizers(ptq, model) != []
    with pytest.raises(CalibrationError, match="no calibration batch ran"):
        ptq.finish_calibration(model)
    assert bypassed_quantizers(ptq, model) == []


def test_abort_is_the_exception_path_of_the_ppdet_flow():
    ptq = PTQCalibrator(algo="abs_max")
    model = ptq(float_model(), example_inputs=[example_input()])
    model(calibration_batches(1)[0])
    ptq.abort_calibration()
    ptq.abort_calibration()  # twice is harmless
    assert bypassed_quantizers(ptq, model) == []
    with pytest.raises(CalibrationError, match="not calibrated"):
        model(calibration_batches(1)[0])
