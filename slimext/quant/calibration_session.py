"""One calibration window on a prepared model: what PTQ samples, and the thresholds from it.

While a session is open every quantizer of the model passes its input through (the model
computes in float), each activation quantizer's input goes to its calibrator, and the
model's forwards are counted as batches (the first `batch_limit()` are sampled). `close`
ends sampling and puts the quantizers back; it is safe to call twice.
"""
from slimext.quant.calibration import CalibrationError, make_calibrator
from slimext.quant.quantizers import bypassed
from slimext.compat.quantizer_internals import quant_bits


class CalibrationSession:
    def __init__(self, model, quantizers, activations, algo, algo_config, batch_limit):
        """quantizers: every quantizer of the model by name (all are bypassed);
        activations: the names that are sampled; batch_limit: callable, None or an int."""
        self.batch_limit = batch_limit
        self.batches = 0
        self.calibrators = {name: make_calibrator(algo, quant_bits(quantizers[name]),
                                                  algo_config)
                            for name in activations}
        self._hooks = [model.register_forward_pre_hook(self._count_batch)]
        self._hooks += [quantizers[name].register_forward_pre_hook(self._sampler(name))
                        for name in activations]
        self._bypass = bypassed(quantizers.values())
        self._bypass.__enter__()

    @property
    def open(self):
        return self._bypass is not None

    def close(self):
        for handle in self._hooks:
            handle.remove()
        self._hooks = []
        if self._bypass is not None:
            bypass, self._bypass = self._bypass, None
            bypass.__exit__(None, None, None)

    def used_batches(self):
        limit = self.batch_limit()
        return self.batches if limit is None else min(self.batches, limit)

    def _count_batch(self, model, _inputs):
        if model.training:
            raise CalibrationError("the model is in training mode during calibration, which "
                                   "would change its batch-norm statistics; call model.eval()")
        self.batches += 1
        return None

    def _sampler(self, name):
        calibrator = self.calibrators[name]

        def hook(_layer, inputs):
            limit = self.batch_limit()
            if limit is None or self.batches <= limit:
                calibrator.observe(inputs[0])
            return None

        return hook

    def thresholds(self):
        """{quantizer name: threshold}; CalibrationError if a batch or a quantizer is missing."""
        if self.batches == 0:
            raise CalibrationError("no calibration batch ran: call model(batch) on a few "
                                   "representative batches after ptq(model) and before "
                                   "finish_calibration/save_quantized_model")
        unseen = [name for name, c in self.calibrators.items() if c.observed == 0]
        if unseen:
            raise CalibrationError(
                "{} quantizer(s) saw no calibration data: {}; the batches never ran through "
                "them: calibrate with inputs that take that path, or leave them in float with "
                "a rule {{match: '<layer path or join site>', skip: true}}".format(
                    len(unseen), ", ".join(unseen[:10])))
        return {name: c.threshold() for name, c in self.calibrators.items()}

    def table(self, thresholds=None):
        """Per quantizer: observed abs max and calibrated threshold."""
        lines = ["{:<52} {:>10} {:>10} {:>6}".format("activation quantizer", "abs max",
                                                     "threshold", "ratio")]
        for name, c in self.calibrators.items():
            value = (thresholds or {}).get(name)
            lines.append("{:<52} {:>10.4g} {:>10} {:>6}".format(
                name, c.abs_max, "-" if value is None else "{:.4g}".format(value),
                "-" if value is None or not c.abs_max else "{:.2f}".format(value / c.abs_max)))
        return "\n".join(lines)
