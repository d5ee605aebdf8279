"""The record of one official checkpoint: HF configuration facts and aliases, as data."""

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class OfficialModel:
    architecture: str
    model_type: str
    hf_config: dict[str, Any]
    aliases: tuple[str, ...] = ()
