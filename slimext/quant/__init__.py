"""Residual-aware quantization: discover joins, plan quantizers per backend, apply, export."""
from slimext.quant.backends import BACKENDS, BackendProfile, PlacementRule, get_backend
from slimext.quant.coverage import JoinCoverageError
from slimext.quant.joins import JoinPoint, discover_joins
from slimext.quant.plan import QuantPlan, QuantizerSpec, build_plan
from slimext.quant.ptq import PTQCalibrator
from slimext.quant.qat import QATQuantizer
from slimext.quant.settings import QuantConfigError
from slimext.quant.validate import ExportValidationError, validate_saved_model

__all__ = ["BACKENDS", "BackendProfile", "PlacementRule", "get_backend", "JoinPoint",
           "discover_joins", "QuantPlan", "QuantizerSpec", "build_plan", "PTQCalibrator",
           "QATQuantizer", "ExportValidationError", "validate_saved_model", "JoinCoverageError",
           "QuantConfigError"]
