"""What to tell someone who names a model that is neither official nor a local directory:
whether its architecture loads here, and how. Only error messages read this module; no
loading decision depends on a name."""

from __future__ import annotations

import json
import os
import re
from typing import Any

from transformer_lens.pretrained import hub, official_models
from transformer_lens.pretrained.registry import ADAPTERS

# Model series whose hub names tell their HF architecture (lower-cased name prefix ->
# architecture); the longest matching prefix wins, so a multimodal sibling can override
# its series. A hint for the message only: the checkpoint's config.json is what counts.
SERIES_ARCHITECTURES: dict[str, str] = {
    "openai-community/gpt2": "GPT2LMHeadModel",
    "distilbert/distilgpt2": "GPT2LMHeadModel",
    "stanford-crfm/": "GPT2LMHeadModel",
    "eleutherai/pythia-": "GPTNeoXForCausalLM",
    "eleutherai/gpt-neox-": "GPTNeoXForCausalLM",
    "eleutherai/gpt-neo-": "GPTNeoForCausalLM",
    "eleutherai/gpt-j-": "GPTJForCausalLM",
    "roneneldan/tinystories-": "GPTNeoForCausalLM",
    "meta-llama/llama-2-": "LlamaForCausalLM",
    "meta-llama/meta-llama-3-": "LlamaForCausalLM",
    "meta-llama/llama-3.": "LlamaForCausalLM",
    "meta-llama/llama-3.2-11b-vision": "MllamaForConditionalGeneration",
    "meta-llama/llama-3.2-90b-vision": "MllamaForConditionalGeneration",
    "codellama/codellama-": "LlamaForCausalLM",
    "mistralai/mistral-7b-": "MistralForCausalLM",
    "mistralai/mixtral-": "MixtralForCausalLM",
    "qwen/qwen2-": "Qwen2ForCausalLM",
    "qwen/qwen2-vl-": "Qwen2VLForConditionalGeneration",
    "qwen/qwen2.5-": "Qwen2ForCausalLM",
    "qwen/qwen2.5-vl-": "Qwen2_5_VLForConditionalGeneration",
    "qwen/qwen3-": "Qwen3ForCausalLM",
    "qwen/qwen3-30b-a3b": "Qwen3MoeForCausalLM",
    "qwen/qwen3-235b-a22b": "Qwen3MoeForCausalLM",
    "google/gemma-2b": "GemmaForCausalLM",
    "google/gemma-7b": "GemmaForCausalLM",
    "google/gemma-1.1-": "GemmaForCausalLM",
    "google/gemma-2-": "Gemma2ForCausalLM",
    "google/gemma-3-270m": "Gemma3ForCausalLM",
    "google/gemma-3-1b-": "Gemma3ForCausalLM",
    "google/gemma-3-4b-": "Gemma3ForConditionalGeneration",
    "google/gemma-3-12b-": "Gemma3ForConditionalGeneration",
    "google/gemma-3-27b-": "Gemma3ForConditionalGeneration",
    "microsoft/phi-2": "PhiForCausalLM",
    "microsoft/phi-3-mini-": "Phi3ForCausalLM",
    "microsoft/phi-3-medium-": "Phi3ForCausalLM",
    "microsoft/phi-3.5-mini-": "Phi3ForCausalLM",
    "microsoft/phi-4": "Phi3ForCausalLM",
    "allenai/olmo-2-": "Olmo2ForCausalLM",
    "facebook/opt-": "OPTForCausalLM",
    "bigscience/bloom": "BloomForCausalLM",
}
_REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


class UnknownModelNameError(ValueError, FileNotFoundError):
    """A name that is neither official nor a local directory. A ValueError, as classic
    raises for unknown names, and a FileNotFoundError, as this fork raised for names that
    look like paths."""


def looks_like_repo_id(name: str) -> bool:
    """`org/name`, as hub repositories are named (a path has more parts, or starts with .)."""
    return bool(_REPO_ID.match(name)) and not name.startswith(".")


def official_or_repo_id(name: str) -> str:
    """The official name of an official name or alias, else a hub repository id as given
    (for series classic knows that are not in the official table yet)."""
    try:
        return official_models.get_official_model_name(name)
    except ValueError:
        if looks_like_repo_id(name):
            return name
        raise


def unknown_model_error(name: str, hub_kwargs: dict[str, Any]) -> UnknownModelNameError:
    lines = [
        f"{name!r} is not an official model name or alias (the table is "
        "transformer_lens.loading_from_pretrained.OFFICIAL_MODEL_NAMES), and no local "
        "directory of that name exists.",
        _architecture_line(name, hub_kwargs),
        hub.what_works(name, cached=False),
    ]
    return UnknownModelNameError("\n".join(line for line in lines if line))


def _architecture_line(name: str, hub_kwargs: dict[str, Any]) -> str:
    if name.lower() in (n.lower() for n in official_models.NON_HF_HOSTED_MODEL_NAMES):
        return "Its weights are not hosted on the Hugging Face Hub: pass them as hf_model=."
    snapshot = cached_snapshot(name, hub_kwargs)
    if snapshot is not None:
        found = _architectures_in(os.path.join(snapshot, "config.json"))
        return (
            f"Its config.json in the local Hugging Face cache names {found}, "
            f"{_verdict(found)}. If that cached snapshot is complete, its directory loads: "
            f"HookedTransformer.from_pretrained({snapshot!r})"
        )
    architecture = series_architecture(name)
    if architecture is not None:
        return (
            f"Judging by its name (its config.json decides), it is a {architecture} model, "
            f"{_verdict([architecture])}."
        )
    return f"Its architecture is unknown offline; supported architectures: {sorted(ADAPTERS)}."


def series_architecture(name: str) -> str | None:
    """The architecture of the longest series prefix the name starts with, if any."""
    wanted = name.lower()
    matches = [prefix for prefix in SERIES_ARCHITECTURES if wanted.startswith(prefix)]
    return SERIES_ARCHITECTURES[max(matches, key=len)] if matches else None


def cached_snapshot(name: str, hub_kwargs: dict[str, Any]) -> str | None:
    """The cached snapshot directory holding the repository's config.json; no network."""
    if not looks_like_repo_id(name):
        return None
    from huggingface_hub import try_to_load_from_cache

    path = try_to_load_from_cache(
        name,
        "config.json",
        cache_dir=hub_kwargs.get("cache_dir"),
        revision=hub_kwargs.get("revision"),
    )
    return os.path.dirname(path) if isinstance(path, str) else None


def _architectures_in(config_path: str) -> list[str]:
    with open(config_path) as file:
        return list(json.load(file).get("architectures") or [])


def _verdict(architectures: list[str]) -> str:
    if any(architecture in ADAPTERS for architecture in architectures):
        return "an architecture that loads here through hf_model= or a local directory"
    return f"an architecture not supported here (supported: {sorted(ADAPTERS)})"
