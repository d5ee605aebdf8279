"""HookedTransformerConfig: derived values, validation at construction, dict round trips, and
models owning their config (API.md §2)."""

import math
import re

import pytest
import torch

from transformer_lens import HookedTransformer, HookedTransformerConfig
from transformer_lens.HookedTransformerConfig import resolve_dtype

# rotary_base is given as a float only to work around the annotation bug that
# test_config_with_default_rotary_base_can_be_copied pins down.
BASE = dict(n_layers=2, d_model=32, n_ctx=16, d_head=8, d_vocab=50, rotary_base=10000.0)


def make_cfg(**overrides) -> HookedTransformerConfig:
    fields = dict(BASE, act_fn="gelu_new")
    fields.update(overrides)
    return HookedTransformerConfig(**fields)


# ----- derivations ----------------------------------------------------------------------
def test_n_heads_is_derived_from_d_model_and_d_head():
    assert make_cfg(d_model=48, d_head=8).n_heads == 6


def test_explicit_n_heads_is_kept():
    # Gemma-7b: n_heads * d_head != d_model.
    assert make_cfg(d_model=32, d_head=16, n_heads=4).n_heads == 4


def test_d_mlp_defaults_to_four_times_d_model():
    assert make_cfg(d_model=32).d_mlp == 128
    assert make_cfg(d_mlp=40).d_mlp == 40


def test_attention_only_model_has_no_d_mlp_and_needs_no_act_fn():
    cfg = make_cfg(attn_only=True, act_fn=None)
    assert cfg.d_mlp is None


def test_d_vocab_out_defaults_to_d_vocab():
    assert make_cfg(d_vocab=50).d_vocab_out == 50
    assert make_cfg(d_vocab=50, d_vocab_out=7).d_vocab_out == 7


def test_rotary_dim_defaults_to_d_head_only_for_rotary():
    assert make_cfg(positional_embedding_type="rotary").rotary_dim == 8
    assert make_cfg(positional_embedding_type="rotary", rotary_dim=4).rotary_dim == 4
    assert make_cfg().rotary_dim is None


def test_attn_scale_is_sqrt_d_head():
    assert make_cfg(d_head=16, d_model=32).attn_scale == pytest.approx(4.0)
    assert make_cfg(d_head=8).attn_scale == pytest.approx(math.sqrt(8))
    assert make_cfg(attn_scale=3.0).attn_scale == 3.0


def test_attn_scale_stays_unset_without_use_attn_scale():
    assert make_cfg(use_attn_scale=False).attn_scale == -1.0


def test_initializer_range_is_gpt2_default():
    assert make_cfg(d_model=64, d_head=8).initializer_range == pytest.approx(0.8 / 8)
    assert make_cfg(initializer_range=0.02).initializer_range == 0.02


def test_dtype_is_kept():
    assert make_cfg(dtype=torch.bfloat16).dtype is torch.bfloat16
    assert make_cfg().dtype is torch.float32


def test_resolve_dtype_accepts_classic_dtype_strings():
    assert resolve_dtype("bfloat16") is torch.bfloat16
    assert resolve_dtype("torch.float16") is torch.float16
    assert resolve_dtype("fp32") is torch.float32
    assert resolve_dtype(torch.float16) is torch.float16
    with pytest.raises(ValueError, match="Unknown dtype 'float8'"):
        resolve_dtype("float8")


def test_group_size_and_is_grouped():
    grouped = make_cfg(n_key_value_heads=2)  # 4 heads
    assert (grouped.group_size, grouped.is_grouped) == (2, True)
    full = make_cfg(n_key_value_heads=4)
    assert (full.group_size, full.is_grouped) == (1, False)
    assert (make_cfg().group_size, make_cfg().is_grouped) == (1, False)


# ----- validation -----------------------------------------------------------------------
def test_n_heads_not_divisible_by_n_key_value_heads_names_both_numbers():
    with pytest.raises(ValueError) as error:
        make_cfg(n_key_value_heads=3)  # 4 heads
    message = str(error.value)
    assert re.search(r"n_heads\D*4", message), message
    assert re.search(r"n_key_value_heads\D*3", message), message


def test_zero_key_value_heads_is_rejected():
    with pytest.raises(ValueError, match="n_key_value_heads"):
        make_cfg(n_key_value_heads=0)


@pytest.mark.parametrize(
    "overrides, fragments",
    [
        (dict(act_fn="swish"), ("act_fn", "'swish'")),
        (dict(act_fn=None), ("act_fn", "None")),
        (dict(normalization_type="LayerNorm"), ("normalization_type", "'LayerNorm'")),
        (dict(positional_embedding_type="learned"), ("positional_embedding_type", "'learned'")),
        (dict(attention_dir="sideways"), ("attention_dir", "'sideways'")),
        (dict(attn_types=["global"]), ("attn_types", "1", "n_layers is 2")),
        (dict(attn_types=["global", "sliding"]), ("attn_types", "'sliding'")),
        (
            dict(use_local_attn=True, attn_types=["local", "global"]),
            ("use_local_attn", "window_size"),
        ),
        (dict(use_local_attn=True, window_size=4), ("use_local_attn", "attn_types")),
        (dict(num_experts=4), ("num_experts", "experts_per_token")),
        (dict(positional_embedding_type="rotary", rotary_dim=3), ("rotary_dim", "3")),
    ],
)
def test_invalid_config_raises_value_error_naming_the_problem(overrides, fragments):
    with pytest.raises(ValueError) as error:
        make_cfg(**overrides)
    for fragment in fragments:
        assert fragment in str(error.value), (fragment, str(error.value))


def test_local_attention_with_window_and_types_is_valid():
    cfg = make_cfg(use_local_attn=True, window_size=4, attn_types=["local", "global"])
    assert cfg.attn_types == ["local", "global"]


# ----- dict round trips -------------------------------------------------------------------
def test_from_dict_with_unknown_field_raises_naming_it():
    with pytest.raises(ValueError, match="not_a_field"):
        HookedTransformerConfig.from_dict({**BASE, "act_fn": "relu", "not_a_field": 1})


def test_from_dict_of_to_dict_round_trips():
    cfg = make_cfg(n_key_value_heads=2, positional_embedding_type="rotary")
    assert HookedTransformerConfig.from_dict(cfg.to_dict()) == cfg


def test_unwrap_accepts_dict_or_config():
    cfg = make_cfg()
    assert HookedTransformerConfig.unwrap(cfg) is cfg
    assert HookedTransformerConfig.unwrap(cfg.to_dict()) == cfg


def test_to_dict_returns_a_copy():
    cfg = make_cfg()
    as_dict = cfg.to_dict()
    as_dict["d_model"] = 999
    as_dict["use_split_qkv_input"] = True
    as_dict["new_key"] = 1
    assert cfg.d_model == 32
    assert cfg.use_split_qkv_input is False
    assert not hasattr(cfg, "new_key")


def test_repr_starts_with_class_name_and_lists_fields():
    text = repr(make_cfg())
    assert text.startswith("HookedTransformerConfig:\n")
    assert "'d_model': 32" in text


# ----- a model owns its config --------------------------------------------------------------
def test_config_shared_by_two_models_is_never_changed_through_one_of_them():
    cfg = make_cfg(n_key_value_heads=2, seed=0)
    model_a = HookedTransformer(cfg)
    model_b = HookedTransformer(cfg)
    model_a.set_use_split_qkv_input(True)
    model_a.set_use_attn_result(True)
    model_a.set_use_hook_mlp_in(True)
    assert model_a.cfg.use_split_qkv_input and model_a.cfg.use_attn_result
    for other in (model_b.cfg, cfg):
        assert other.use_split_qkv_input is False
        assert other.use_attn_result is False
        assert other.use_hook_mlp_in is False


def test_moving_one_model_to_another_dtype_leaves_the_shared_config_alone():
    cfg = make_cfg(seed=0)
    model_a = HookedTransformer(cfg)
    model_b = HookedTransformer(cfg)
    model_a.to(torch.bfloat16)
    assert model_a.cfg.dtype is torch.bfloat16
    assert cfg.dtype is torch.float32
    assert model_b.cfg.dtype is torch.float32


def test_model_config_copy_keeps_every_field():
    cfg = make_cfg(
        n_key_value_heads=2, use_local_attn=True, window_size=4, attn_types=["local", "global"]
    )
    model = HookedTransformer(cfg)
    assert model.cfg is not cfg
    assert model.cfg == cfg
    assert model.cfg.attn_types is not cfg.attn_types


def test_model_without_d_vocab_or_tokenizer_raises():
    with pytest.raises(ValueError, match="d_vocab"):
        HookedTransformer(make_cfg(d_vocab=-1))


def test_config_with_default_rotary_base_can_be_copied():
    cfg = HookedTransformerConfig(
        n_layers=1, d_model=32, n_ctx=16, d_head=8, d_vocab=50, act_fn="relu"
    )
    assert HookedTransformerConfig.from_dict(cfg.to_dict()) == cfg
    assert HookedTransformer(cfg).cfg == cfg


def test_mixture_of_experts_is_refused_clearly():
    from transformer_lens import HookedTransformer
    from transformer_lens.components import MoE

    cfg = HookedTransformerConfig(
        n_layers=1, d_model=16, n_ctx=8, d_head=4, d_vocab=20, act_fn="silu",
        num_experts=4, experts_per_token=2,
    )  # fmt: skip
    with pytest.raises(NotImplementedError, match="not supported"):
        MoE(cfg)
    with pytest.raises(NotImplementedError, match="not supported"):
        MoE(cfg.to_dict())
    with pytest.raises(NotImplementedError, match="xperts"):
        HookedTransformer(cfg)


# ----- classic raised AssertionError at these checks -------------------------------------
@pytest.mark.parametrize(
    "overrides, fragment",
    [
        (dict(use_local_attn=True, attn_types=["local", "global"]), "window_size"),
        (dict(use_local_attn=True, window_size=4), "attn_types"),
        (dict(act_fn=None), "act_fn"),
        (dict(act_fn="swish"), "'swish'"),
        (dict(num_experts=4), "experts_per_token"),
        (dict(experts_per_token=2), "num_experts"),
        (dict(n_key_value_heads=3), "n_key_value_heads"),
        (dict(n_devices=10**6), "n_devices"),
    ],
)
@pytest.mark.parametrize("error", [AssertionError, ValueError])
def test_invalid_config_is_both_an_assertion_error_and_a_value_error(overrides, fragment, error):
    with pytest.raises(error, match=re.escape(fragment)):
        make_cfg(**overrides)


@pytest.mark.parametrize("error", [AssertionError, ValueError])
def test_default_prepend_bos_that_is_not_a_bool_is_refused(error):
    # The test run's type checker refuses a str argument before validation runs, so set the
    # field afterwards and validate again, as a config built without the checker would be.
    cfg = make_cfg()
    cfg.default_prepend_bos = "yes"  # type: ignore[assignment]
    with pytest.raises(error, match="default_prepend_bos must be a bool, got 'yes'"):
        cfg.__post_init__()
