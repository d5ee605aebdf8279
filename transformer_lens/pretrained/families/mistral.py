"""Mistral: the Llama-like table with sliding-window attention on every layer when
sliding_window is set (None: global attention). HF's window lets query i see keys j with
i - sliding_window < j <= i, as our local attention does. No biases, always grouped K/V."""

from transformer_lens.pretrained.families._readers import (
    every_layer_local,
    has_local_layers,
    window_of,
)
from transformer_lens.pretrained.families.llama_like import LLAMA_LIKE
from transformer_lens.pretrained.official import OfficialModel

MISTRAL = LLAMA_LIKE.extend(
    architectures=("MistralForCausalLM",),
    config={
        "use_local_attn": has_local_layers(every_layer_local),
        "window_size": window_of(every_layer_local),
        "attn_types": every_layer_local,
    },
    fixed={"final_rms": False},  # classic's value; an RMS-normalised model ignores it
    handled_fields={"sliding_window"},
)

ADAPTERS = (MISTRAL,)


def _mistral_7b(aliases: tuple[str, ...]) -> OfficialModel:
    return OfficialModel(
        architecture="MistralForCausalLM",
        model_type="mistral",
        hf_config={
            "vocab_size": 32000,
            "hidden_size": 4096,
            "intermediate_size": 14336,
            "num_hidden_layers": 32,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
            "head_dim": 128,
            "hidden_act": "silu",
            "max_position_embeddings": 32768,
            "rms_norm_eps": 1e-5,
            "rope_theta": 10000.0,
            "sliding_window": 4096,
            "tie_word_embeddings": False,
        },
        aliases=aliases,
    )


OFFICIAL: dict[str, OfficialModel] = {
    "mistralai/Mistral-7B-v0.1": _mistral_7b(("mistral-7b",)),
    "mistralai/Mistral-7B-Instruct-v0.1": _mistral_7b(("mistral-7b-instruct",)),
}
