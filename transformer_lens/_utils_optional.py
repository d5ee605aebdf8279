"""Import an optional dependency inside the function that needs it, and say which extra
installs it when it is missing: the core package does not depend on datasets, pandas or lit-nlp."""

import importlib
from types import ModuleType

EXTRAS = {"datasets": "data", "pandas": "pandas", "lit_nlp": "lit"}
"""Package -> the `transformer-lens[...]` extra that installs it."""


def import_optional(module: str, purpose: str) -> ModuleType:
    """Import `module`, or raise ImportError naming `purpose` and the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        extra = EXTRAS[module]
        raise ImportError(
            f"{purpose} needs {module}, which is not installed (transformer_lens does not "
            f'depend on it): pip install "transformer-lens[{extra}]" (or pip install {module})'
        ) from error
