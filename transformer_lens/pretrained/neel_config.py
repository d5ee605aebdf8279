"""The config.json of NeelNanda's (and ArthurConmy's, Baidicoot's) models, which is written
in HookedTransformer terms rather than Hugging Face's, as HookedTransformerConfig fields."""

from __future__ import annotations

from typing import Any

from transformer_lens.pretrained import hub
from transformer_lens.pretrained.name_hints import official_or_repo_id

_REQUIRED = ("d_model", "n_layers", "d_mlp", "d_head", "n_heads", "n_ctx", "d_vocab", "act_fn", "attn_only")  # fmt: skip


def convert_neel_model_config(official_model_name: str, **kwargs: Any) -> dict[str, Any]:
    """Config fields of such a model, from its config.json (the local Hugging Face cache
    first, else the hub); kwargs reach the download (revision, cache_dir, token, ...)."""
    repo = official_or_repo_id(official_model_name)
    return neel_config_fields(repo, hub.json_file(repo, "config.json", **kwargs))


def neel_config_fields(repo: str, cfg_json: dict[str, Any]) -> dict[str, Any]:
    """Config fields from the config.json dict of the model `repo`."""
    # The SoLU models of the first training runs (names ending _old) predate the
    # "architecture" entry and need their own weight conversion.
    default_architecture = "neel-solu-old" if repo.endswith("_old") else "neel"
    missing = [key for key in _REQUIRED if key not in cfg_json]
    if "normalization" not in cfg_json and "normalization_type" not in cfg_json:
        missing.append("normalization_type")
    if missing:
        raise ValueError(f"config.json of {repo!r} lacks {missing}")
    fields = {key: cfg_json[key] for key in _REQUIRED}
    fields.update(
        tokenizer_name=cfg_json.get("tokenizer_name"),
        final_rms=cfg_json.get("final_rms", False),
        original_architecture=cfg_json.get("architecture", default_architecture),
        # Older files call it "normalization".
        normalization_type=cfg_json.get("normalization", cfg_json.get("normalization_type")),
        positional_embedding_type=(
            "shortformer" if cfg_json.get("shortformer_pos", False) else "standard"
        ),
    )
    return fields
