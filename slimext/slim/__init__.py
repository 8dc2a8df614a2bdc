"""ppdet slim classes provided by slimext (registered on import)."""
from slimext.slim.residual_qat import ResidualQAT  # noqa: F401
from slimext.slim.residual_ptq import ResidualPTQ  # noqa: F401
