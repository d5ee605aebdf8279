"""Official checkpoints and their aliases, gathered from the family modules, so that a name
resolves, and its configuration is known, with no network call."""

from typing import Any

from transformer_lens.pretrained.official import OfficialModel
from transformer_lens.pretrained.registry import FAMILIES

OFFICIAL_MODELS: dict[str, OfficialModel] = {
    name: model for family in FAMILIES for name, model in family.OFFICIAL.items()
}
OFFICIAL_MODEL_NAMES: list[str] = list(OFFICIAL_MODELS)
MODEL_ALIASES: dict[str, list[str]] = {name: list(m.aliases) for name, m in OFFICIAL_MODELS.items()}
DEFAULT_MODEL_ALIASES: list[str] = [
    m.aliases[0] if m.aliases else n for n, m in OFFICIAL_MODELS.items()
]


def get_official_model_name(model_name: str) -> str:
    """Case-insensitive lookup over official names and aliases."""
    wanted = model_name.lower()
    for official, model in OFFICIAL_MODELS.items():
        if wanted == official.lower() or wanted in (alias.lower() for alias in model.aliases):
            return official
    raise ValueError(
        f"{model_name!r} is not an official model name or alias; known names: {OFFICIAL_MODEL_NAMES}"
    )


def official_hf_config(official_name: str) -> Any:
    """The HF config object of an official checkpoint, built from the table."""
    from transformers import AutoConfig

    model = OFFICIAL_MODELS[official_name]
    config = AutoConfig.for_model(model.model_type, **model.hf_config)
    config.architectures = [model.architecture]
    return config
