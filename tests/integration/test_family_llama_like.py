"""Llama, Mistral and Qwen2 beyond the shared matrix: rope scaling, biases, tied and untied
unembeddings, sliding windows, refusals, official configs (no network) and bfloat16.

Every parity check builds a tiny random HF model (eager attention, float32, norms and biases
randomised) and compares logits at the shared matrix's 1e-5."""

import warnings

import pytest
import torch

from tests.helpers import (
    assert_close,
    bfloat16_like_from_pretrained,
    eager_attention,
    randomize_norms,
)
from tests.integration.family_rows import ROWS, VOCAB, hf_model
from transformer_lens import HookedTransformer
from transformer_lens.components.rotary import inverse_frequencies
from transformer_lens.loading_from_pretrained import get_pretrained_model_config
from transformer_lens.pretrained.convert import config_fields
from transformer_lens.pretrained.families.qwen2 import QWEN2
from transformer_lens.pretrained.official_models import get_official_model_name
from transformer_lens.pretrained.registry import adapter_for

ATOL = 1e-5
BATCH = 2
LLAMA3_ROPE = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 16, "rope_theta": 500000.0}  # fmt: skip
LINEAR_ROPE = {"rope_type": "linear", "factor": 4.0, "rope_theta": 10000.0}


@pytest.fixture(autouse=True)
def _quiet_and_no_grad():
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # config differs from official; no tokenizer offline
        yield


def tokens(pos: int = 11) -> torch.Tensor:
    return torch.randint(0, VOCAB, (BATCH, pos), generator=torch.Generator().manual_seed(0))


def tiny(class_name: str, **overrides):
    """A seeded random HF model of `class_name` (e.g. "Llama"), norms and biases randomised."""
    import transformers

    fields = dict(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=8,
        num_key_value_heads=2,
        max_position_embeddings=64,
        attn_implementation="eager",
    )
    fields.update(overrides)
    config = getattr(transformers, f"{class_name}Config")(**fields)
    torch.manual_seed(0)
    model = getattr(transformers, f"{class_name}ForCausalLM")(config).eval()
    randomize_norms(model)
    return model


def load(hf, name: str = "meta-llama/Llama-3.2-1B", **kwargs) -> HookedTransformer:
    return HookedTransformer.from_pretrained_no_processing(name, hf_model=hf, **kwargs)


def assert_logits_match(hf, name: str = "meta-llama/Llama-3.2-1B", pos: int = 11) -> None:
    assert_close(load(hf, name)(tokens(pos)), hf(tokens(pos)).logits, ATOL, "logits")


def row(name: str):
    return next(r for r in ROWS if r.name == name)


# ------------------------------------------------------------------ rope scaling


def test_llama3_rope_scaling_matches_hf():
    hf = tiny("Llama", rope_parameters=dict(LLAMA3_ROPE))
    model = load(hf)
    cfg = model.cfg
    assert cfg.use_NTK_by_parts_rope and cfg.NTK_original_ctx_len == 16
    assert (cfg.NTK_by_parts_factor, cfg.NTK_by_parts_low_freq_factor, cfg.NTK_by_parts_high_freq_factor) == (8.0, 1.0, 4.0)  # fmt: skip
    ours = inverse_frequencies(cfg, cfg.rotary_base)
    unscaled = 1.0 / (500000.0 ** (torch.arange(0, cfg.d_head, 2).float() / cfg.d_head))
    assert not torch.equal(ours, unscaled), "the scaling must change some frequencies"
    assert torch.equal(ours, hf.model.rotary_emb.inv_freq)
    assert_logits_match(hf, pos=40)


def test_linear_rope_scaling_matches_hf():
    hf = tiny("Llama", rope_parameters=dict(LINEAR_ROPE))
    model = load(hf)
    assert model.cfg.rotary_linear_scaling_factor == 4.0
    assert torch.equal(inverse_frequencies(model.cfg, 10000.0), hf.model.rotary_emb.inv_freq)
    assert_logits_match(hf, pos=40)


def test_unknown_rope_type_raises_naming_it():
    hf = tiny("Llama", rope_parameters={"rope_type": "dynamic", "factor": 2.0, "rope_theta": 1e4})
    with pytest.raises(ValueError, match="'dynamic'"):
        load(hf)


# ------------------------------------------------------------------ Llama options


def test_mlp_bias_is_refused():
    with pytest.raises(ValueError, match="mlp_bias"):
        load(tiny("Llama", mlp_bias=True))


def test_attention_bias_matches_hf():
    hf = tiny("Llama", attention_bias=True)
    model = load(hf)
    attn = hf.model.layers[1].self_attn
    assert torch.equal(model.blocks[1].attn.b_Q.flatten(), attn.q_proj.bias)
    assert torch.equal(model.blocks[1].attn._b_K.flatten(), attn.k_proj.bias)
    assert torch.equal(model.blocks[1].attn.b_O, attn.o_proj.bias)
    assert_logits_match(hf)
    processed = HookedTransformer.from_pretrained("meta-llama/Llama-3.2-1B", hf_model=hf)
    expected = hf(tokens()).logits.log_softmax(-1)
    assert_close(processed(tokens()).log_softmax(-1), expected, 1e-4, "processed log-probs")


def test_without_attention_bias_the_biases_are_zero():
    model = load(tiny("Llama"))
    for name in ("b_Q", "_b_K", "_b_V", "b_O"):
        assert not getattr(model.blocks[0].attn, name).any(), name


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_unembedding_follows_tie_word_embeddings(tied, tmp_path):
    hf = tiny("Llama", tie_word_embeddings=tied)
    model = load(hf)
    assert torch.equal(model.W_U, hf.lm_head.weight.T)
    assert torch.equal(model.W_U, hf.model.embed_tokens.weight.T) == tied
    assert_logits_match(hf)
    hf.save_pretrained(tmp_path)  # a tied checkpoint on disk has no lm_head.weight
    from_path = HookedTransformer.from_pretrained_no_processing(str(tmp_path))
    assert torch.equal(from_path.W_U, model.W_U)


def test_multi_head_llama_keeps_classic_per_head_keys():
    model = load(tiny("Llama", num_key_value_heads=8))
    assert model.cfg.n_key_value_heads is None
    assert "blocks.0.attn.W_K" in model.state_dict()


def test_head_dim_wider_than_d_model_over_heads_matches_hf():
    hf = tiny("Llama", head_dim=16)  # 8 heads x 16 = 128 != d_model 64
    assert load(hf).cfg.d_head == 16
    assert_logits_match(hf)


def test_pretraining_tp_does_not_change_the_maths():
    hf = tiny("Llama", pretraining_tp=2)
    assert_logits_match(hf)


# ------------------------------------------------------------------ sliding windows


@pytest.mark.parametrize("variant", ["mha", "gqa", "mqa"])
def test_mistral_window_shorter_than_the_sequence_masks_exactly(variant):
    mistral = row("mistral")
    hf = hf_model(mistral, variant)
    model = load(hf, mistral.official_name)
    assert model.cfg.use_local_attn and model.cfg.window_size == 4
    assert model.cfg.attn_types == ["local", "local"]
    _, cache = model.run_with_cache(tokens())
    query = torch.arange(11)[:, None]
    key = torch.arange(11)[None, :]
    outside = (key > query) | (key <= query - 4)
    for layer in range(model.cfg.n_layers):
        pattern = cache["pattern", layer]
        assert torch.all(pattern[..., outside] == 0), f"layer {layer} attends outside the window"
        assert torch.all(pattern[..., ~outside] > 0), f"layer {layer}"


def test_mistral_without_sliding_window_is_global():
    hf = tiny("Mistral", sliding_window=None)
    model = load(hf, "mistralai/Mistral-7B-v0.1")
    assert not model.cfg.use_local_attn and model.cfg.attn_types is None
    assert_logits_match(hf, "mistralai/Mistral-7B-v0.1")


def test_mistral_first_n_layers_keeps_the_first_layers_attention_types():
    hf = hf_model(row("mistral"), "gqa")
    model = load(hf, "mistralai/Mistral-7B-v0.1", first_n_layers=1)
    assert model.cfg.attn_types == ["local"]


def test_qwen2_sliding_window_from_max_window_layers_matches_hf():
    hf = tiny("Qwen2", use_sliding_window=True, max_window_layers=1, sliding_window=4)
    model = load(hf, "Qwen/Qwen2-0.5B")
    assert model.cfg.attn_types == ["global", "local"] and model.cfg.window_size == 4
    assert_logits_match(hf, "Qwen/Qwen2-0.5B")
    out = hf(tokens(), output_attentions=True)
    _, cache = model.run_with_cache(tokens())
    for layer in range(2):
        assert_close(cache["pattern", layer], out.attentions[layer], ATOL, f"pattern {layer}")


def test_qwen2_explicit_layer_types_match_hf():
    layer_types = ["sliding_attention", "full_attention"]
    hf = tiny("Qwen2", use_sliding_window=True, sliding_window=3, layer_types=layer_types)
    assert load(hf, "Qwen/Qwen2-0.5B").cfg.attn_types == ["local", "global"]
    assert_logits_match(hf, "Qwen/Qwen2-0.5B")


def test_qwen2_sliding_layers_without_a_window_raise():
    hf_config = tiny("Qwen2").config
    hf_config.layer_types = ["sliding_attention", "full_attention"]  # and sliding_window None
    with pytest.raises(ValueError, match="sliding_window=None"):
        config_fields(QWEN2, hf_config)


# ------------------------------------------------------------------ official configs


@pytest.mark.parametrize(
    ("alias", "official"),
    [
        ("llama-3.2-1b", "meta-llama/Llama-3.2-1B"),
        ("Llama-2-7b", "meta-llama/Llama-2-7b-hf"),
        ("meta-llama-3-8b", "meta-llama/Meta-Llama-3-8B"),
        ("mistral-7b", "mistralai/Mistral-7B-v0.1"),
        ("qwen2-0.5b", "Qwen/Qwen2-0.5B"),
        ("QWEN2-7B", "Qwen/Qwen2-7B"),
    ],
)
def test_official_names_resolve(alias, official):
    assert get_official_model_name(alias) == official


def test_meta_llama_3_8b_config_has_the_official_facts():
    cfg = get_pretrained_model_config("meta-llama/Meta-Llama-3-8B")
    assert (cfg.n_layers, cfg.d_model, cfg.n_heads, cfg.n_key_value_heads) == (32, 4096, 32, 8)
    assert (cfg.d_head, cfg.d_mlp, cfg.d_vocab, cfg.rotary_base) == (128, 14336, 128256, 500000.0)
    assert (cfg.act_fn, cfg.normalization_type, cfg.eps, cfg.n_ctx) == ("silu", "RMS", 1e-5, 8192)
    assert cfg.gated_mlp and cfg.final_rms and cfg.positional_embedding_type == "rotary"
    assert cfg.rms_norm_cast_before_weight and not cfg.use_NTK_by_parts_rope
    assert cfg.original_architecture == "LlamaForCausalLM"


def test_llama_3_1_and_3_2_configs_scale_rope_by_parts():
    llama31 = get_pretrained_model_config("meta-llama/Llama-3.1-8B")
    assert llama31.use_NTK_by_parts_rope and llama31.NTK_by_parts_factor == 8.0
    assert (llama31.NTK_by_parts_low_freq_factor, llama31.NTK_by_parts_high_freq_factor) == (1.0, 4.0)  # fmt: skip
    assert llama31.NTK_original_ctx_len == 8192 and llama31.n_ctx == 8192  # capped from 131072
    llama32 = get_pretrained_model_config("llama-3.2-1b")
    assert (llama32.n_layers, llama32.d_model, llama32.d_head, llama32.d_mlp) == (
        16,
        2048,
        64,
        8192,
    )
    assert llama32.NTK_by_parts_factor == 32.0


def test_llama_2_7b_config_is_multi_head_without_n_key_value_heads():
    cfg = get_pretrained_model_config("Llama-2-7b")
    assert cfg.n_key_value_heads is None and (cfg.d_vocab, cfg.d_mlp, cfg.n_ctx) == (32000, 11008, 4096)  # fmt: skip


def test_mistral_7b_config_slides_every_layer():
    cfg = get_pretrained_model_config("mistral-7b")
    assert cfg.use_local_attn and cfg.window_size == 4096 and cfg.attn_types == ["local"] * 32
    assert (cfg.n_key_value_heads, cfg.d_vocab, cfg.rotary_base) == (8, 32000, 10000.0)


def test_qwen2_configs_have_the_official_facts():
    cfg = get_pretrained_model_config("Qwen/Qwen2-0.5B")
    assert (cfg.n_layers, cfg.d_model, cfg.n_heads, cfg.n_key_value_heads) == (24, 896, 14, 2)
    assert (cfg.d_head, cfg.d_mlp, cfg.eps, cfg.rotary_base) == (64, 4864, 1e-6, 1e6)
    assert not cfg.use_local_attn and cfg.attn_types is None
    big = get_pretrained_model_config("qwen2-7b")
    assert (big.n_layers, big.d_model, big.n_heads, big.n_key_value_heads, big.d_vocab) == (28, 3584, 28, 4, 152064)  # fmt: skip


def test_qwen2_adapter_does_not_prepend_bos():
    from transformer_lens.pretrained.official_models import official_hf_config

    hf_config = official_hf_config("Qwen/Qwen2-0.5B")
    assert config_fields(adapter_for(hf_config), hf_config)["default_prepend_bos"] is False


def test_qwen2_0_5b_config_does_not_prepend_bos():
    assert get_pretrained_model_config("Qwen/Qwen2-0.5B").default_prepend_bos is False


# ------------------------------------------------------------------ bfloat16


@pytest.mark.parametrize(
    "overrides",
    [{}, {"rope_parameters": dict(LLAMA3_ROPE)}, {"attention_bias": True}],
    ids=["plain", "llama3-rope", "attention-bias"],
)
def test_llama_bfloat16_matches_hf_bfloat16(overrides):
    """Both sides round every op to bfloat16 with the same dtype choices (float32 norms and
    softmax, RMSNorm weight applied after the cast to bfloat16, float32 rotary frequencies
    as in HF's from_pretrained), so the logits agree bit for bit."""
    hf = bfloat16_like_from_pretrained(tiny("Llama", **overrides))
    ours = eager_attention(load(hf, dtype=torch.bfloat16))(tokens(40)).float()
    diff = float((ours - hf(tokens(40)).logits.float()).abs().max())
    assert diff <= row("llama").bf16_tolerance, f"bf16 max |logit diff| {diff:.4f}"
