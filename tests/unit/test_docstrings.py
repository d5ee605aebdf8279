"""Every public class, function, method and property of the public API has a docstring.

A module's public names are its `__all__`, or else every name not starting with "_". For each
public class or function defined in transformer_lens (not re-exported from torch or typing),
the test checks its own docstring; for a class, also the public methods and properties
defined on it and on the transformer_lens classes it inherits from (mixins included).
"""

import importlib
import inspect
from collections.abc import Iterator

MODULES = [
    "transformer_lens",
    "transformer_lens.HookedTransformer",
    "transformer_lens.HookedTransformerConfig",
    "transformer_lens.ActivationCache",
    "transformer_lens.FactoredMatrix",
    "transformer_lens.hook_points",
    "transformer_lens.utils",
    "transformer_lens.patching",
    "transformer_lens.weight_processing",
    "transformer_lens.loading_from_pretrained",
    "transformer_lens.past_key_value_caching",
    "transformer_lens.components",
    "transformer_lens.generation",
    "transformer_lens.tokenization",
    "transformer_lens.activation_functions",
    "transformer_lens.verification",
    "transformer_lens.cli",
]


def _ours(obj: object) -> bool:
    return getattr(obj, "__module__", "").startswith("transformer_lens")


def _own_class_doc(cls: type) -> str | None:
    """The class's own docstring: not inherited, and not the signature that NamedTuple and
    dataclass write when there is none."""
    doc = cls.__dict__.get("__doc__")
    if not doc or doc.startswith(f"{cls.__name__}("):
        return None
    return doc


def _public_members(cls: type) -> Iterator[tuple[str, object]]:
    """Public functions, static/class methods and property getters defined on `cls`."""
    for name, attr in vars(cls).items():
        if name.startswith("_"):
            continue
        func = attr.fget if isinstance(attr, property) else getattr(attr, "__func__", attr)
        if inspect.isfunction(func):
            yield name, func


def _public_api() -> Iterator[object]:
    """Each public class or function of MODULES once, with the transformer_lens classes that
    a public class inherits from."""
    seen: set[int] = set()
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        names = getattr(module, "__all__", None) or [
            n for n in vars(module) if not n.startswith("_")
        ]
        for name in names:
            obj = getattr(module, name)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)) or not _ours(obj):
                continue
            for item in obj.__mro__ if inspect.isclass(obj) else (obj,):
                if _ours(item) and id(item) not in seen:
                    seen.add(id(item))
                    yield item


def _undocumented() -> list[str]:
    missing = []
    for obj in _public_api():
        qualified = f"{obj.__module__}.{obj.__qualname__}"
        if inspect.isclass(obj):
            if _own_class_doc(obj) is None:
                missing.append(qualified)
            missing += [
                f"{qualified}.{name}"
                for name, func in _public_members(obj)
                if not (func.__doc__ or "").strip()
            ]
        elif not (obj.__doc__ or "").strip():
            missing.append(qualified)
    return missing


def test_public_api_is_documented():
    missing = _undocumented()
    assert not missing, f"{len(missing)} public names have no docstring:\n" + "\n".join(
        f"  {name}" for name in missing
    )


def test_the_check_sees_the_main_entry_points():
    # Guards against a walk that silently finds nothing (a renamed module, a broken filter).
    names = {f"{obj.__module__}.{obj.__qualname__}" for obj in _public_api()}
    for expected in (
        "transformer_lens.HookedTransformer.HookedTransformer",
        "transformer_lens.weight_processing.ProcessingFlags",
        "transformer_lens.hook_points.HookedRootModule",
        "transformer_lens.ActivationCache.ActivationCache",
        "transformer_lens.components.attention.Attention",
    ):
        assert expected in names
