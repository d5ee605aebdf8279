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
# Classic's names for the original LLaMA weights, which were never on the hub: they load
# only through hf_model=.
NON_HF_HOSTED_MODEL_NAMES: list[str] = [
    "llama-7b-hf",
    "llama-13b-hf",
    "llama-30b-hf",
    "llama-65b-hf",
]
# Classic's official encoder and encoder-decoder models (and their aliases), which classic
# loads with other classes than HookedTransformer: refused by kind before any network call.
_OTHER_KINDS = {
    "encoder": (
        "google-bert/bert-base-cased",
        "google-bert/bert-base-uncased",
        "google-bert/bert-large-cased",
        "google-bert/bert-large-uncased",
    ),
    "encoder-decoder": ("google-t5/t5-small", "google-t5/t5-base", "google-t5/t5-large"),
    "audio encoder": ("facebook/hubert-base-ls960",),
}
NOT_DECODER_ONLY: dict[str, str] = {
    name: kind
    for kind, officials in _OTHER_KINDS.items()
    for official in officials
    for name in (official.lower(), official.split("/")[-1].lower())
}
"""Lower-cased name or alias -> what kind of model it is."""

# Name prefixes of the models for which classic sets trust_remote_code=True.
NEED_REMOTE_CODE_MODELS: tuple[str, ...] = (
    "bigcode/santacoder",
    "Qwen/Qwen-",
    "Qwen/Qwen3-",
    "microsoft/phi-2",
    "microsoft/Phi-3-mini-4k-instruct",
    "microsoft/phi-4",
    "openai/gpt-oss-",
    "swiss-ai/Apertus-",
)


def make_model_alias_map() -> dict[str, str]:
    """Every lower-cased official name and alias -> its official name."""
    alias_map: dict[str, str] = {}
    for official, model in OFFICIAL_MODELS.items():
        for alias in model.aliases:
            alias_map[alias.lower()] = official
        alias_map[official.lower()] = official
    return alias_map


def get_official_model_name(model_name: str) -> str:
    """Case-insensitive lookup over official names and aliases."""
    official = make_model_alias_map().get(model_name.lower())
    if official is not None:
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
