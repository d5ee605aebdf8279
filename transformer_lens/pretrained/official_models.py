"""Official checkpoints as data: their HF configuration facts and their aliases, so that a
name resolves, and its configuration is known, with no network call."""

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class OfficialModel:
    architecture: str
    model_type: str
    hf_config: dict[str, Any]
    aliases: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)  # our config fields beyond HF's


def _gemma(
    layers: int, d_model: int, heads: int, kv_heads: int, d_mlp: int, aliases: tuple[str, ...]
) -> OfficialModel:
    return OfficialModel(
        architecture="GemmaForCausalLM",
        model_type="gemma",
        hf_config={
            "vocab_size": 256000,
            "hidden_size": d_model,
            "intermediate_size": d_mlp,
            "num_hidden_layers": layers,
            "num_attention_heads": heads,
            "num_key_value_heads": kv_heads,
            "head_dim": 256,
            "hidden_act": "gelu_pytorch_tanh",
            "max_position_embeddings": 8192,
            "rms_norm_eps": 1e-6,
            "rope_theta": 10000.0,
            "tie_word_embeddings": True,
        },
        aliases=aliases,
    )


OFFICIAL_MODELS: dict[str, OfficialModel] = {
    "google/gemma-2b": _gemma(18, 2048, 8, 1, 16384, ("gemma-2b",)),
    "google/gemma-7b": _gemma(28, 3072, 16, 16, 24576, ("gemma-7b",)),
    "google/gemma-2b-it": _gemma(18, 2048, 8, 1, 16384, ("gemma-2b-it",)),
    "google/gemma-7b-it": _gemma(28, 3072, 16, 16, 24576, ("gemma-7b-it",)),
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
