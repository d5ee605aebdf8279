"""The config flags that switch hook points on, and the reason a hook point cannot fire:
functions of the config behind HookedTransformer's `set_use_*` methods and the check its
`add_hook` asks."""

from transformer_lens.components.attention import check_attn_in_allowed
from transformer_lens.HookedTransformerConfig import HookedTransformerConfig

# Hook names that fire only under a config flag: suffix -> (flag, how to turn it on).
_FLAGGED_HOOKS = {
    "hook_q_input": ("use_split_qkv_input", "call model.set_use_split_qkv_input(True)"),
    "hook_k_input": ("use_split_qkv_input", "call model.set_use_split_qkv_input(True)"),
    "hook_v_input": ("use_split_qkv_input", "call model.set_use_split_qkv_input(True)"),
    "hook_attn_in": ("use_attn_in", "call model.set_use_attn_in(True)"),
    "hook_result": ("use_attn_result", "call model.set_use_attn_result(True)"),
    "hook_mlp_in": ("use_hook_mlp_in", "call model.set_use_hook_mlp_in(True)"),
    "hook_tokens": ("use_hook_tokens", "set model.cfg.use_hook_tokens = True"),
}


def hook_unavailable_reason(cfg: HookedTransformerConfig, name: str) -> str | None:
    """Why the hook point `name` never fires under cfg; None if it can."""
    suffix = name.rsplit(".", 1)[-1]
    if cfg.attn_only and suffix in ("hook_mlp_in", "hook_mlp_out"):
        return f"{name} never fires on an attention-only model (cfg.attn_only=True)"
    if suffix not in _FLAGGED_HOOKS:
        return None
    flag, how = _FLAGGED_HOOKS[suffix]
    if getattr(cfg, flag):
        return None
    if suffix == "hook_attn_in" and cfg.is_grouped:
        how = "on this grouped model call set_ungroup_grouped_query_attention(True), then " + how
    return f"{name} only fires when cfg.{flag} is True; {how} first"


def set_use_split_qkv_input(cfg: HookedTransformerConfig, use_split_qkv_input: bool) -> None:
    """See HookedTransformer.set_use_split_qkv_input."""
    if use_split_qkv_input and cfg.use_attn_in:
        raise ValueError("use_attn_in is on; turn it off before enabling use_split_qkv_input")
    cfg.use_split_qkv_input = use_split_qkv_input


def set_use_hook_mlp_in(cfg: HookedTransformerConfig, use_hook_mlp_in: bool) -> None:
    """See HookedTransformer.set_use_hook_mlp_in."""
    if use_hook_mlp_in and cfg.attn_only:
        raise ValueError("hook_mlp_in cannot be used with an attention-only model")
    cfg.use_hook_mlp_in = use_hook_mlp_in


def set_use_attn_in(cfg: HookedTransformerConfig, use_attn_in: bool) -> None:
    """See HookedTransformer.set_use_attn_in."""
    if use_attn_in:
        check_attn_in_allowed(cfg)
        if cfg.use_split_qkv_input:
            raise ValueError("use_split_qkv_input is on; turn it off before enabling use_attn_in")
    cfg.use_attn_in = use_attn_in


def set_ungroup_grouped_query_attention(
    cfg: HookedTransformerConfig, ungroup_grouped_query_attention: bool
) -> None:
    """See HookedTransformer.set_ungroup_grouped_query_attention."""
    if not ungroup_grouped_query_attention and cfg.use_attn_in and cfg.is_grouped:
        raise ValueError("use_attn_in needs ungrouped attention on this model; turn it off first")
    cfg.ungroup_grouped_query_attention = ungroup_grouped_query_attention
