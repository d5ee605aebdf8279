"""The shared HF-config readers (families/_readers.py) on real transformers config classes,
in both the transformers 5 shape (rope_parameters, layer_types) and the 4.x shape (rope_theta
plus rope_scaling, max_window_layers); the checks adapters declare; and derivation: a family
built with extend equals its base except for the deltas it declares."""

from types import SimpleNamespace
from typing import Any

import pytest
from transformers import (
    Gemma2Config,
    Gemma3TextConfig,
    GemmaConfig,
    GPT2Config,
    GPTNeoXConfig,
    LlamaConfig,
    MistralConfig,
    Olmo2Config,
    Phi3Config,
    Qwen2Config,
    Qwen3Config,
)

from transformer_lens.pretrained.adapter import Adapter, hf
from transformer_lens.pretrained.convert import config_fields
from transformer_lens.pretrained.families import _readers as readers
from transformer_lens.pretrained.families.gemma import GEMMA
from transformer_lens.pretrained.families.gemma2 import GEMMA2
from transformer_lens.pretrained.families.gemma3 import GEMMA3
from transformer_lens.pretrained.families.gpt2 import GPT2
from transformer_lens.pretrained.families.llama import LLAMA
from transformer_lens.pretrained.families.llama_like import LLAMA_LIKE, ROPE_SCALING
from transformer_lens.pretrained.families.mistral import MISTRAL
from transformer_lens.pretrained.families.neox import NEOX
from transformer_lens.pretrained.families.olmo2 import OLMO2, UNSUPPORTED
from transformer_lens.pretrained.families.phi3 import PHI3
from transformer_lens.pretrained.families.qwen2 import QWEN2
from transformer_lens.pretrained.families.qwen3 import QWEN3
from transformer_lens.pretrained.registry import ADAPTERS

SMALL = dict(
    vocab_size=100,
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=64,
)
LLAMA3_ROPE = {
    "rope_type": "llama3",
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 16,
    "rope_theta": 500000.0,
}


def llama(**overrides: Any) -> LlamaConfig:
    return LlamaConfig(**{**SMALL, **overrides})


# ----- rope parameters: transformers 5 and 4.x --------------------------------------------
def test_rope_parameters_reads_transformers_5_rope_parameters():
    params = readers.rope_parameters(llama(rope_parameters=dict(LLAMA3_ROPE)))
    assert params == LLAMA3_ROPE


def test_rope_parameters_reads_transformers_4_rope_theta_and_rope_scaling():
    config_4x = SimpleNamespace(rope_theta=5e5, rope_scaling={"type": "linear", "factor": 4.0})
    assert readers.rope_parameters(config_4x) == {
        "rope_type": "linear",  # 4.x's "type" becomes rope_type
        "factor": 4.0,
        "rope_theta": 5e5,
    }
    unscaled = SimpleNamespace(rope_theta=123.0, rope_scaling=None)
    assert readers.rope_parameters(unscaled) == {"rope_type": "default", "rope_theta": 123.0}


def test_rope_parameters_takes_the_base_from_a_family_field():
    neox_4x = SimpleNamespace(rope_scaling=None, rotary_emb_base=500, rotary_pct=0.5)
    assert readers.rope_parameters(neox_4x, "rotary_emb_base")["rope_theta"] == 500


def test_llama3_scaling_is_read_the_same_from_either_shape():
    fields_4x = {"rope_theta": 500000.0, "rope_scaling": {k: v for k, v in LLAMA3_ROPE.items() if k != "rope_theta"}}  # fmt: skip
    for config in (
        llama(rope_parameters=dict(LLAMA3_ROPE)),
        llama(**fields_4x),  # transformers 5 folds these into rope_parameters
        SimpleNamespace(**fields_4x),  # a config object of transformers 4
    ):
        assert readers.rope_theta(config) == 500000.0
        assert readers.rope_type_is("llama3")(config) is True
        assert readers.rope_type_is("linear")(config) is False
        read = {field: reader(config) for field, reader in ROPE_SCALING.items()}
        assert read == {
            "use_NTK_by_parts_rope": True,
            "NTK_by_parts_factor": 8.0,
            "NTK_by_parts_low_freq_factor": 1.0,
            "NTK_by_parts_high_freq_factor": 4.0,
            "NTK_original_ctx_len": 16,
            "rotary_linear_scaling_factor": None,  # another rope type's field: its default
        }
        assert isinstance(read["NTK_original_ctx_len"], int)


def test_linear_scaling_sets_only_its_own_field():
    config = llama(rope_parameters={"rope_type": "linear", "factor": 4.0, "rope_theta": 1e4})
    assert readers.rope_scaling_value("linear", "rotary_linear_scaling_factor")(config) == 4.0
    assert readers.rope_scaling_value("llama3", "NTK_by_parts_factor")(config) == 8.0  # default
    assert readers.rope_type_is("llama3")(config) is False


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            llama(rope_parameters={"rope_type": "dynamic", "factor": 2.0, "rope_theta": 1e4}),
            "Unsupported rope type 'dynamic' for LlamaConfig; supported: ['default', 'linear', 'llama3']",  # fmt: skip
        ),
        (
            llama(
                rope_parameters={
                    "rope_type": "default",
                    "rope_theta": 1e4,
                    "partial_rotary_factor": 0.5,
                }
            ),  # fmt: skip
            "LlamaConfig: partial_rotary_factor 0.5 != 1",
        ),
        (Gemma3TextConfig(**SMALL), "Gemma3TextConfig: per-layer rope_parameters"),
    ],
    ids=["unknown-type", "partial-rotary", "per-layer"],
)
def test_scaled_rope_refuses_what_the_llama_like_table_cannot_express(config, message):
    with pytest.raises(ValueError) as raised:
        readers.rope_theta(config)
    assert str(raised.value).startswith(message)


def test_default_rope_theta_reads_the_base_and_refuses_scaling():
    assert readers.default_rope_theta(GemmaConfig(**SMALL, rope_theta=1234.0)) == 1234.0
    scaled = GemmaConfig(**SMALL, rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 1e4})  # fmt: skip
    with pytest.raises(ValueError) as raised:
        readers.default_rope_theta(scaled)
    assert str(raised.value) == (
        "Unsupported rope type 'linear' for GemmaConfig; "
        "this family supports only the default rotary embedding"
    )


def test_only_default_rope_names_the_family_reason():
    read = readers.only_default_rope(supported="X supports nothing else")
    config_4x = SimpleNamespace(rope_theta=1e4, rope_scaling={"type": "su"})
    with pytest.raises(ValueError, match=r"^Unsupported rope type 'su' for SimpleNamespace; X supports nothing else$"):  # fmt: skip
        read(config_4x)


# ----- partial rotary ---------------------------------------------------------------------
def test_phi3_partial_rotary_factor_is_read_from_either_shape():
    rotary_dim = readers.rotary_dim_of(readers.only_default_rope())
    phi3 = Phi3Config(**SMALL, partial_rotary_factor=0.5)  # head_dim 64 / 4 = 16
    assert phi3.rope_parameters["partial_rotary_factor"] == 0.5
    assert rotary_dim(phi3) == 8
    phi3_4x = SimpleNamespace(
        rope_theta=1e4, rope_scaling=None, partial_rotary_factor=0.25, hidden_size=64, num_attention_heads=4
    )  # fmt: skip
    assert rotary_dim(phi3_4x) == 4
    assert rotary_dim(Phi3Config(**SMALL)) == 16  # factor 1: every dim rotates


def test_neox_rotary_pct_is_read_from_either_shape():
    neox = readers.only_default_rope(base_field="rotary_emb_base")
    rotary_dim = readers.rotary_dim_of(neox, fraction_field="rotary_pct")
    rotary_base = readers.theta_of(neox)
    config = GPTNeoXConfig(hidden_size=64, num_attention_heads=4, rotary_pct=0.25, rotary_emb_base=500)  # fmt: skip
    assert (rotary_base(config), rotary_dim(config)) == (500.0, 4)
    config_4x = SimpleNamespace(
        rope_scaling=None, rotary_emb_base=700, rotary_pct=0.5, hidden_size=64, num_attention_heads=4
    )  # fmt: skip
    assert (rotary_base(config_4x), rotary_dim(config_4x)) == (700.0, 8)


# ----- shapes and context -----------------------------------------------------------------
def test_head_dim_prefers_an_explicit_head_dim():
    assert readers.head_dim(Qwen3Config(**{**SMALL, "num_attention_heads": 8}, head_dim=16)) == 16
    assert readers.head_dim(Phi3Config(**SMALL)) == 16  # no head_dim field: 64 / 4


def test_grouped_kv_heads_is_none_when_every_query_head_has_its_own():
    assert readers.grouped_kv_heads(llama()) == 2
    assert readers.grouped_kv_heads(llama(num_key_value_heads=4)) is None


def test_capped_context_caps_at_max_n_ctx():
    assert (
        readers.capped_context(llama(max_position_embeddings=131072)) == readers.MAX_N_CTX == 8192
    )
    assert readers.capped_context(llama(max_position_embeddings=4096)) == 4096


def test_activation_maps_the_names_we_mirror_and_refuses_others():
    read = readers.activation("activation_function")
    assert read(GPT2Config(activation_function="gelu_new")) == "gelu_new"
    assert read(GPT2Config(activation_function="swish")) == "silu"
    with pytest.raises(ValueError, match=r"GPT2Config.activation_function='quick_gelu' is not supported"):  # fmt: skip
        read(GPT2Config(activation_function="quick_gelu"))


# ----- layer types and sliding windows ----------------------------------------------------
def test_attention_types_reads_layer_types_of_transformers_5():
    layer_types = ["sliding_attention", "full_attention"]
    config = Qwen2Config(
        **SMALL, use_sliding_window=True, sliding_window=3, layer_types=layer_types
    )
    assert readers.attention_types(config) == ["local", "global"]
    assert readers.window_of(readers.attention_types)(config) == 3
    assert readers.has_local_layers(readers.attention_types)(config) is True


def test_attention_types_derives_layers_from_max_window_layers_of_transformers_4():
    config = Qwen2Config(**SMALL, use_sliding_window=True, max_window_layers=1, sliding_window=4)
    assert readers.attention_types(config) == ["global", "local"]
    config_4x = SimpleNamespace(num_hidden_layers=3, use_sliding_window=True, max_window_layers=1)
    assert readers.attention_types(config_4x) == ["global", "local", "local"]
    no_sliding = SimpleNamespace(num_hidden_layers=3, use_sliding_window=False, max_window_layers=1)
    assert readers.attention_types(no_sliding) is None


def test_declared_attention_types_reads_gemma2_layer_types_and_refuses_none():
    config = Gemma2Config(**SMALL, sliding_window=4)
    assert config.layer_types == ["sliding_attention", "full_attention"]
    assert readers.declared_attention_types(config) == ["local", "global"]
    assert readers.window_of(readers.declared_attention_types)(config) == 4
    config_4x = SimpleNamespace(num_hidden_layers=2, sliding_window=4)
    with pytest.raises(ValueError, match="SimpleNamespace has no layer_types"):
        readers.declared_attention_types(config_4x)
    assert readers.attention_types(config_4x) is None  # the lenient reader sees no sliding


def test_layer_types_without_a_sliding_layer_read_as_no_local_attention():
    config = Gemma2Config(**SMALL, layer_types=["full_attention", "full_attention"])
    for layer_types in (readers.attention_types, readers.declared_attention_types):
        assert layer_types(config) is None
        assert readers.has_local_layers(layer_types)(config) is False
        assert readers.window_of(layer_types)(config) is None


def test_unknown_layer_types_are_refused_naming_them():
    config = Gemma2Config(**SMALL)
    config.layer_types = ["chunked_attention", "full_attention"]
    for layer_types in (readers.attention_types, readers.declared_attention_types):
        with pytest.raises(ValueError, match=r"unsupported entries \['chunked_attention'\]"):
            layer_types(config)


@pytest.mark.parametrize("window", [None, 0])
def test_sliding_layers_without_a_window_are_refused(window):
    config = Gemma2Config(**SMALL)
    config.sliding_window = window
    with pytest.raises(ValueError, match=rf"^Gemma2Config has sliding-window layers but sliding_window={window}$"):  # fmt: skip
        readers.window_of(readers.declared_attention_types)(config)


def test_every_layer_local_follows_mistral_sliding_window():
    config = MistralConfig(**SMALL, sliding_window=4)
    assert readers.every_layer_local(config) == ["local", "local"]
    assert readers.window_of(readers.every_layer_local)(config) == 4
    unslid = MistralConfig(**SMALL, sliding_window=None)
    assert readers.every_layer_local(unslid) is None
    assert readers.window_of(readers.every_layer_local)(unslid) is None


# ----- checks: declared on the adapter, run before the config map -------------------------
def with_architecture(config: Any, adapter: Adapter) -> Any:
    config.architectures = [adapter.architectures[0]]
    return config


def test_must_be_false_refuses_a_set_flag():
    check = readers.must_be_false("mlp_bias")
    assert check(llama(mlp_bias=False)) is None
    with pytest.raises(ValueError, match=r"^LlamaConfig.mlp_bias=True is not supported$"):
        check(llama(mlp_bias=True))


@pytest.mark.parametrize(
    ("adapter", "config", "message"),
    [
        (LLAMA, llama(mlp_bias=True), "LlamaConfig.mlp_bias=True is not supported"),
        (
            GEMMA,
            GemmaConfig(**SMALL, attention_bias=True),
            "GemmaConfig.attention_bias=True is not supported",
        ),  # fmt: skip
        (
            GEMMA3,
            Gemma3TextConfig(**SMALL, use_bidirectional_attention=True),
            "Gemma3TextConfig.use_bidirectional_attention=True is not supported",
        ),  # fmt: skip
        (
            PHI3,
            Phi3Config(**SMALL, attention_bias=True),
            "Phi3Config.attention_bias=True is not supported",
        ),  # fmt: skip
        (
            NEOX,
            GPTNeoXConfig(hidden_size=64, num_attention_heads=4, attention_bias=False),
            "GPTNeoXConfig.attention_bias=False is not supported",
        ),  # fmt: skip
        (
            GPT2,
            GPT2Config(reorder_and_upcast_attn=True),
            "GPT2Config.reorder_and_upcast_attn=True is not supported (HF computes attention scores in float32; ours uses the model dtype)",
        ),  # fmt: skip
        (
            GPT2,
            GPT2Config(add_cross_attention=True),
            "GPT2Config.add_cross_attention=True is not supported",
        ),  # fmt: skip
        (OLMO2, Olmo2Config(**SMALL), f"{UNSUPPORTED}; cannot load Olmo2Config"),
    ],
    ids=["llama", "gemma", "gemma3", "phi3", "neox", "gpt2-upcast", "gpt2-cross", "olmo2"],
)
def test_declared_checks_raise_their_messages(adapter, config, message):
    with pytest.raises(ValueError) as raised:
        config_fields(adapter, with_architecture(config, adapter))
    assert str(raised.value) == message


def test_checks_run_before_the_config_map_is_read():
    """OLMo-2's refusal comes first, even when a config reader would refuse too."""
    scaled = Olmo2Config(**SMALL, rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 1e4})  # fmt: skip
    with pytest.raises(ValueError, match="^Olmo2ForCausalLM: OLMo-2's full-width"):
        config_fields(OLMO2, with_architecture(scaled, OLMO2))


def test_a_passing_check_leaves_the_fields_as_the_config_map_reads_them():
    fields = config_fields(LLAMA, with_architecture(llama(mlp_bias=False), LLAMA))
    assert set(fields) == set(LLAMA.config) | set(LLAMA.fixed) | {"original_architecture"}


def test_no_registered_adapter_hides_a_check_in_its_config_map():
    for adapter in ADAPTERS.values():
        assert not [ours for ours in adapter.config if ours.startswith("_")], adapter.architectures
    with pytest.raises(ValueError, match=r"\['_mlp_bias'\] are not config fields"):
        Adapter((), {"_mlp_bias": readers.must_be_false("mlp_bias")}, {}, frozenset())


# ----- derivation: one idiom, deltas only -------------------------------------------------
def deltas(derived: Adapter, base: Adapter) -> dict[str, Any]:
    """What `derived` adds, replaces and drops relative to `base`, per declaration."""
    found: dict[str, Any] = {}
    for name in ("config", "fixed", "weights"):
        ours, theirs = getattr(derived, name), getattr(base, name)
        found[name] = {
            "added": sorted(set(ours) - set(theirs)),
            "replaced": sorted(k for k in set(ours) & set(theirs) if ours[k] is not theirs[k]),
            "removed": sorted(set(theirs) - set(ours)),
        }
    found["handled_fields"] = {
        "added": sorted(derived.handled_fields - base.handled_fields),
        "removed": sorted(base.handled_fields - derived.handled_fields),
    }
    assert derived.checks[: len(base.checks)] == base.checks  # base checks kept, in order
    found["checks"] = [check.__name__ for check in derived.checks[len(base.checks) :]]
    return found


def delta(added=(), replaced=(), removed=()) -> dict[str, list[str]]:
    return {"added": sorted(added), "replaced": sorted(replaced), "removed": sorted(removed)}


SLIDING = ("use_local_attn", "window_size", "attn_types")
BIASES = ("blocks.{i}.attn.b_Q", "blocks.{i}.attn._b_K", "blocks.{i}.attn._b_V")
NORMS = ("embed.W_E", "blocks.{i}.ln1.w", "blocks.{i}.ln2.w", "ln_final.w")
QWEN_HANDLED = ["layer_types", "max_window_layers", "sliding_window", "use_sliding_window"]
UNSCALED = sorted(ROPE_SCALING)
CAST = ("rms_norm_cast_before_weight",)

DERIVED = {
    "llama": (LLAMA, LLAMA_LIKE, {
        "config": delta(replaced=["n_key_value_heads"]), "fixed": delta(),
        "weights": delta(replaced=[*BIASES, "blocks.{i}.attn.b_O"]),
        "handled_fields": {"added": ["attention_bias", "mlp_bias", "pretraining_tp"], "removed": []},
        "checks": ["must_be_false(mlp_bias)"],
    }),
    "mistral": (MISTRAL, LLAMA_LIKE, {
        "config": delta(added=SLIDING), "fixed": delta(replaced=["final_rms"]), "weights": delta(),
        "handled_fields": {"added": ["sliding_window"], "removed": []}, "checks": [],
    }),
    "qwen2": (QWEN2, LLAMA_LIKE, {
        "config": delta(added=SLIDING), "fixed": delta(added=["default_prepend_bos"]),
        "weights": delta(replaced=BIASES),
        "handled_fields": {"added": QWEN_HANDLED, "removed": []}, "checks": [],
    }),
    "qwen3": (QWEN3, LLAMA_LIKE, {
        "config": delta(added=SLIDING), "fixed": delta(added=["default_prepend_bos", "use_qk_norm"]),
        "weights": delta(added=["blocks.{i}.attn.q_norm.w", "blocks.{i}.attn.k_norm.w"], replaced=[*BIASES, "blocks.{i}.attn.b_O"]),  # fmt: skip
        "handled_fields": {"added": sorted([*QWEN_HANDLED, "attention_bias"]), "removed": []},
        "checks": [],
    }),
    "phi3": (PHI3, LLAMA_LIKE, {
        "config": delta(added=["rotary_dim", *SLIDING], replaced=["n_key_value_heads", "rotary_base"], removed=UNSCALED),  # fmt: skip
        "fixed": delta(),
        "weights": delta(replaced=["blocks.{i}.attn.W_Q", "blocks.{i}.attn._W_K", "blocks.{i}.attn._W_V", "blocks.{i}.mlp.W_gate", "blocks.{i}.mlp.W_in"]),  # fmt: skip
        "handled_fields": {"added": ["attention_bias", "auto_map", "embd_pdrop", "original_max_position_embeddings", "partial_rotary_factor", "resid_pdrop", "sliding_window"], "removed": []},  # fmt: skip
        "checks": ["must_be_false(attention_bias)"],
    }),
    "gemma": (GEMMA, LLAMA_LIKE, {
        "config": delta(replaced=["n_ctx", "act_fn", "rotary_base"], removed=UNSCALED),
        "fixed": delta(removed=CAST), "weights": delta(replaced=NORMS),
        "handled_fields": {"added": ["attention_bias", "hidden_activation", "use_bidirectional_attention"], "removed": []},  # fmt: skip
        "checks": ["must_be_false(attention_bias)", "must_be_false(use_bidirectional_attention)"],
    }),
    "gemma2": (GEMMA2, GEMMA, {
        "config": delta(added=["attn_scale", "attn_scores_soft_cap", "output_logits_soft_cap", *SLIDING]),  # fmt: skip
        "fixed": delta(added=["use_normalization_before_and_after"]),
        "weights": delta(added=["blocks.{i}.ln1_post.w", "blocks.{i}.ln2_post.w"], replaced=["blocks.{i}.ln2.w"]),  # fmt: skip
        "handled_fields": {"added": ["attn_logit_softcapping", "cache_implementation", "final_logit_softcapping", "layer_types", "query_pre_attn_scalar", "sliding_window"], "removed": []},  # fmt: skip
        "checks": [],
    }),
    "gemma3": (GEMMA3, GEMMA2, {
        "config": delta(added=["rotary_base_local"], replaced=["n_ctx", "attn_scores_soft_cap", "rotary_base"]),  # fmt: skip
        "fixed": delta(added=["use_qk_norm"]),
        "weights": delta(added=["blocks.{i}.attn.q_norm.w", "blocks.{i}.attn.k_norm.w"]),
        "handled_fields": {"added": ["rope_local_base_freq", "sliding_window_pattern"], "removed": []},  # fmt: skip
        "checks": [],
    }),
    "olmo2": (OLMO2, LLAMA_LIKE, {
        "config": delta(replaced=["n_key_value_heads", "rotary_base"], removed=UNSCALED),
        "fixed": delta(added=["use_normalization_before_and_after", "use_qk_norm"], removed=CAST),
        "weights": delta(
            added=["blocks.{i}.attn.q_norm.w", "blocks.{i}.attn.k_norm.w", "blocks.{i}.ln1_post.w", "blocks.{i}.ln2_post.w"],  # fmt: skip
            replaced=[*BIASES, "blocks.{i}.attn.b_O"],
            removed=["blocks.{i}.ln1.w", "blocks.{i}.ln2.w"],
        ),
        "handled_fields": {"added": ["attention_bias"], "removed": []},
        "checks": ["refuse_block"],
    }),
}  # fmt: skip


@pytest.mark.parametrize("family", list(DERIVED))
def test_a_derived_family_equals_its_base_except_the_declared_deltas(family):
    derived, base, expected = DERIVED[family]
    assert deltas(derived, base) == expected


def test_extend_keeps_the_base_order_and_appends_new_entries():
    gemma_keys = list(GEMMA.config)
    assert gemma_keys == [k for k in LLAMA_LIKE.config if k not in ROPE_SCALING]
    assert list(GEMMA2.config)[: len(gemma_keys)] == gemma_keys
    assert list(OLMO2.weights)[:3] == ["embed.W_E", "blocks.{i}.attn.W_Q", "blocks.{i}.attn._W_K"]


def test_extend_refuses_to_remove_what_the_base_lacks():
    with pytest.raises(ValueError, match=r"cannot remove \['no_such_field'\] from Adapter.config"):
        LLAMA_LIKE.extend(remove={"config": ["no_such_field"]})
    with pytest.raises(TypeError, match="Adapter.checks has no named entries"):
        GEMMA.extend(remove={"checks": ["must_be_false(attention_bias)"]})


def test_extend_changes_nothing_it_is_not_given():
    copy = LLAMA_LIKE.extend(architectures=("X",))
    assert copy.architectures == ("X",)
    assert (copy.config, copy.weights, copy.fixed) == (LLAMA_LIKE.config, LLAMA_LIKE.weights, LLAMA_LIKE.fixed)  # fmt: skip
    assert (copy.handled_fields, copy.checks) == (LLAMA_LIKE.handled_fields, LLAMA_LIKE.checks)
    extra = copy.extend(weights={"embed.W_E": hf("other")})
    assert extra.weights["embed.W_E"].hf_keys == ("other",)
    assert LLAMA_LIKE.weights["embed.W_E"].hf_keys == ("model.embed_tokens.weight",)
