"""Verify a HookedTransformer against Hugging Face on the same weights
(`python -m transformer_lens verify MODEL`)."""

from transformer_lens.verification.checks import RELATIVE_TOLERANCE, Row
from transformer_lens.verification.report import Report
from transformer_lens.verification.runner import DEFAULT_MODEL, VerifyOptions, verify

__all__ = ["DEFAULT_MODEL", "RELATIVE_TOLERANCE", "Report", "Row", "VerifyOptions", "verify"]
