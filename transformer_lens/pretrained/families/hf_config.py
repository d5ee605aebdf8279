"""Small named readers of HF config values shared by the family adapters."""

from typing import Any


def rope_parameters(hf_config: Any) -> dict[str, Any]:
    """rope_parameters of transformers 5, or the rope_theta/rope_scaling pair of 4.x."""
    params = getattr(hf_config, "rope_parameters", None)
    if params:
        return dict(params)
    scaling = dict(getattr(hf_config, "rope_scaling", None) or {})
    scaling.setdefault("rope_type", scaling.pop("type", "default"))
    scaling["rope_theta"] = getattr(hf_config, "rope_theta", 10000.0)
    return scaling


def default_rope_theta(hf_config: Any) -> float:
    """rope_theta, refusing scaled rotary variants this family does not implement."""
    params = rope_parameters(hf_config)
    if params.get("rope_type", "default") != "default":
        raise ValueError(
            f"Unsupported rope type {params['rope_type']!r} for {type(hf_config).__name__}; "
            "this family supports only the default rotary embedding"
        )
    return float(params["rope_theta"])


def head_dim(hf_config: Any) -> int:
    value = getattr(hf_config, "head_dim", None)
    return int(value) if value else hf_config.hidden_size // hf_config.num_attention_heads


def must_be_false(field: str) -> Any:
    """A reader that refuses a feature flag we do not implement."""

    def read(hf_config: Any) -> None:
        if getattr(hf_config, field, None):
            raise ValueError(f"{type(hf_config).__name__}.{field}=True is not supported")

    read.__name__ = f"must_be_false({field})"
    return read
