"""HF architecture -> family adapter, a dict lookup. Every module in `families/` that
exports ADAPTERS (and OFFICIAL, its official checkpoints) is registered: a new family is one
new file."""

import importlib
import pkgutil
from types import ModuleType
from typing import Any

from transformer_lens.pretrained import families
from transformer_lens.pretrained.adapter import Adapter


def _family_modules() -> list[ModuleType]:
    modules = []
    for info in sorted(pkgutil.iter_modules(families.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{families.__name__}.{info.name}")
        if hasattr(module, "ADAPTERS"):
            modules.append(module)
    return modules


FAMILIES: list[ModuleType] = _family_modules()
ADAPTERS: dict[str, Adapter] = {
    architecture: adapter
    for family in FAMILIES
    for adapter in family.ADAPTERS
    for architecture in adapter.architectures
}


def adapter_for(hf_config: Any) -> Adapter:
    architectures = list(getattr(hf_config, "architectures", None) or [])
    for architecture in architectures:
        if architecture in ADAPTERS:
            return ADAPTERS[architecture]
    raise ValueError(
        f"Unsupported architecture {architectures or type(hf_config).__name__}; "
        f"supported: {sorted(ADAPTERS)}"
    )
