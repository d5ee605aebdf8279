"""Model defaults that a call may override: the sentinel, dotted attribute access, and
`LocallyOverridenDefaults`, which swaps defaults in for the length of a `with` block."""

from types import TracebackType
from typing import Any, NamedTuple

from transformer_lens._errors import ClassicAssertionError

USE_DEFAULT_VALUE = None
"""Sentinel for "use the model's default" in arguments such as prepend_bos and padding_side."""


def override_or_use_default_value(default_flag: Any, override: Any | None = None) -> Any:
    """`override` unless it is None, else `default_flag`."""
    return default_flag if override is None else override


def get_nested_attr(obj: Any, attr_str: str) -> Any:
    """`obj.a.b.c` for attr_str "a.b.c"."""
    for attr in attr_str.split("."):
        obj = getattr(obj, attr)
    return obj


def set_nested_attr(obj: Any, attr_str: str, value: Any) -> None:
    """Set `obj.a.b.c = value` for attr_str "a.b.c"."""
    *parents, last = attr_str.split(".")
    for attr in parents:
        obj = getattr(obj, attr)
    setattr(obj, last, value)


class _Default(NamedTuple):
    location: str  # dotted path from the model
    valid_values: tuple[Any, ...]
    needs_tokenizer: bool


_DEFAULTS = {
    "prepend_bos": _Default("cfg.default_prepend_bos", (USE_DEFAULT_VALUE, True, False), False),
    "padding_side": _Default("tokenizer.padding_side", (USE_DEFAULT_VALUE, "left", "right"), True),
}


class LocallyOverridenDefaults:
    """Override a model's defaults inside a `with` block and restore them on exit.

    `LocallyOverridenDefaults(model, prepend_bos=False, padding_side="left")` sets
    `model.cfg.default_prepend_bos` and `model.tokenizer.padding_side` on entry (a None
    override keeps the default) and puts the previous values back on exit, even when the
    block raises. padding_side is left alone when the model has no tokenizer.
    Unknown names and invalid values raise on construction, before anything changes.
    """

    def __init__(self, model: Any, **overrides: Any):
        for name, value in overrides.items():
            if name not in _DEFAULTS:
                raise ClassicAssertionError(
                    f"{name} is not a default that can be overridden; valid names are "
                    f"{sorted(_DEFAULTS)}"
                )
            if value not in _DEFAULTS[name].valid_values:
                raise ClassicAssertionError(
                    f"{name} must be one of {_DEFAULTS[name].valid_values}, got {value!r}"
                )
        self.model = model
        self.overrides = overrides
        self._saved: dict[str, Any] = {}

    def __enter__(self) -> None:
        for name, override in self.overrides.items():
            default = _DEFAULTS[name]
            if default.needs_tokenizer and self.model.tokenizer is None:
                continue
            current = get_nested_attr(self.model, default.location)
            self._saved[default.location] = current
            set_nested_attr(
                self.model, default.location, override_or_use_default_value(current, override)
            )

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        for location, value in self._saved.items():
            set_nested_attr(self.model, location, value)
        self._saved = {}
