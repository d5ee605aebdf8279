"""The one place that imports lit-nlp. It is optional and heavy (scipy, scikit-learn, shap,
google-cloud...), so the rest of transformer_lens.lit asks here for the class to subclass and
for lit's modules, and gets a clear ImportError naming the `lit` extra when it is missing."""

import importlib
from types import ModuleType

from transformer_lens._utils_optional import import_optional


def lit_installed() -> bool:
    """Whether lit-nlp can be imported here (its top-level package is empty: this is cheap)."""
    try:
        importlib.import_module("lit_nlp")
    except ImportError:
        return False
    return True


def lit_module(name: str, purpose: str) -> ModuleType:
    """`lit_nlp.<name>` (e.g. "api.types"), or ImportError saying `purpose` needs lit-nlp."""
    import_optional("lit_nlp", purpose)
    return importlib.import_module(f"lit_nlp.{name}")


def lit_base(name: str, class_name: str) -> type:
    """The lit-nlp class `lit_nlp.<name>.<class_name>` when lit-nlp is installed, else
    `object`: our wrappers are LIT models/datasets where LIT runs, plain classes elsewhere."""
    if not lit_installed():
        return object
    base: type = getattr(lit_module(name, "subclassing LIT's types"), class_name)
    return base
