"""ppdet slim classes provided by slimext: `ResidualQAT` (residual_qat) and `ResidualPTQ`
(residual_ptq). Importing their modules registers them with ppdet, which
`slimext.register_with_ppdet()` does; `slim.settings` and the builder import without it."""

QAT_METHOD = "ResidualQAT"
PTQ_METHOD = "ResidualPTQ"
