"""Llama beyond the family matrix (family_rows.ROWS, which runs its rope-scaling, bias, tied,
wide-head and pretraining_tp variants against HF): what the loaded config and weights hold,
refusals, official configs (no network) and bfloat16 on longer sequences."""

import warnings

import pytest
import torch

from tests.helpers import assert_close, bfloat16_like_from_pretrained, eager_attention
from tests.integration.family_rows import ATOL, hf_model, row, tokens
from tests.tiny_hf import tiny_hf
from transformer_lens import HookedTransformer
from transformer_lens.components.rotary import inverse_frequencies
from transformer_lens.loading_from_pretrained import get_pretrained_model_config
from transformer_lens.pretrained.official_models import get_official_model_name

LLAMA = row("llama")


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # config differs from official; no tokenizer offline
        yield


def load(hf, **kwargs) -> HookedTransformer:
    return HookedTransformer.from_pretrained_no_processing(LLAMA.official_name, hf_model=hf, **kwargs)  # fmt: skip


def assert_logits_match(hf, pos: int) -> None:
    assert_close(load(hf)(tokens(pos)), hf(tokens(pos)).logits, ATOL, "logits")


# ------------------------------------------------------------------ rope scaling


def test_llama3_rope_scaling_matches_hf():
    hf = hf_model(LLAMA, "llama3_rope")
    model = load(hf)
    cfg = model.cfg
    assert cfg.use_NTK_by_parts_rope and cfg.NTK_original_ctx_len == 16
    assert (cfg.NTK_by_parts_factor, cfg.NTK_by_parts_low_freq_factor, cfg.NTK_by_parts_high_freq_factor) == (8.0, 1.0, 4.0)  # fmt: skip
    ours = inverse_frequencies(cfg, cfg.rotary_base)
    unscaled = 1.0 / (500000.0 ** (torch.arange(0, cfg.d_head, 2).float() / cfg.d_head))
    assert not torch.equal(ours, unscaled), "the scaling must change some frequencies"
    assert torch.equal(ours, hf.model.rotary_emb.inv_freq)
    assert_logits_match(hf, pos=40)  # beyond original_max_position_embeddings 16


def test_linear_rope_scaling_matches_hf():
    hf = hf_model(LLAMA, "linear_rope")
    model = load(hf)
    assert model.cfg.rotary_linear_scaling_factor == 4.0
    assert torch.equal(inverse_frequencies(model.cfg, 10000.0), hf.model.rotary_emb.inv_freq)
    assert_logits_match(hf, pos=40)


def test_unknown_rope_type_raises_naming_it():
    hf = tiny_hf(
        "llama", rope_parameters={"rope_type": "dynamic", "factor": 2.0, "rope_theta": 1e4}
    )
    with pytest.raises(ValueError, match="'dynamic'"):
        load(hf)


# ------------------------------------------------------------------ Llama options


def test_mlp_bias_is_refused():
    with pytest.raises(ValueError, match="mlp_bias"):
        load(tiny_hf("llama", mlp_bias=True))


def test_attention_bias_is_read_per_head():
    """Logits and processed log-probs: the matrix's attention_bias row."""
    hf = hf_model(LLAMA, "attention_bias")
    model = load(hf)
    attn = hf.model.layers[1].self_attn
    assert torch.equal(model.blocks[1].attn.b_Q.flatten(), attn.q_proj.bias)
    assert torch.equal(model.blocks[1].attn._b_K.flatten(), attn.k_proj.bias)
    assert torch.equal(model.blocks[1].attn.b_O, attn.o_proj.bias)


def test_without_attention_bias_the_biases_are_zero():
    model = load(hf_model(LLAMA, "gqa"))
    for name in ("b_Q", "_b_K", "_b_V", "b_O"):
        assert not getattr(model.blocks[0].attn, name).any(), name


@pytest.mark.parametrize("variant", ["gqa", "tied"], ids=["untied", "tied"])
def test_unembedding_follows_tie_word_embeddings(variant, tmp_path):
    """Logits: the matrix's gqa and tied rows."""
    hf = hf_model(LLAMA, variant)
    tied = variant == "tied"
    model = load(hf)
    assert torch.equal(model.W_U, hf.lm_head.weight.T)
    assert torch.equal(model.W_U, hf.model.embed_tokens.weight.T) == tied
    hf.save_pretrained(tmp_path)  # a tied checkpoint on disk has no lm_head.weight
    from_path = HookedTransformer.from_pretrained_no_processing(str(tmp_path))
    assert torch.equal(from_path.W_U, model.W_U)


def test_multi_head_llama_keeps_classic_per_head_keys():
    model = load(hf_model(LLAMA, "mha"))
    assert model.cfg.n_key_value_heads is None
    assert "blocks.0.attn.W_K" in model.state_dict()


def test_head_dim_wider_than_d_model_over_heads_is_read():
    """Logits: the matrix's wide_heads row."""
    assert load(hf_model(LLAMA, "wide_heads")).cfg.d_head == 16  # 8 heads x 16 = 128 != 64


# ------------------------------------------------------------------ official configs


@pytest.mark.parametrize(
    ("alias", "official"),
    [
        ("llama-3.2-1b", "meta-llama/Llama-3.2-1B"),
        ("Llama-2-7b", "meta-llama/Llama-2-7b-hf"),
        ("meta-llama-3-8b", "meta-llama/Meta-Llama-3-8B"),
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


# ------------------------------------------------------------------ bfloat16


@pytest.mark.parametrize(
    "variant",
    ["gqa", "llama3_rope", "attention_bias"],
    ids=["plain", "llama3-rope", "attention-bias"],
)
def test_llama_bfloat16_matches_hf_bfloat16_on_40_positions(variant):
    """Both sides round every op to bfloat16 with the same dtype choices (float32 norms and
    softmax, RMSNorm weight applied after the cast to bfloat16, float32 rotary frequencies
    as in HF's from_pretrained), so the logits agree bit for bit."""
    hf = bfloat16_like_from_pretrained(hf_model(LLAMA, variant))
    ours = eager_attention(load(hf, dtype=torch.bfloat16))(tokens(40)).float()
    diff = float((ours - hf(tokens(40)).logits.float()).abs().max())
    assert diff <= LLAMA.bf16_tolerance, f"bf16 max |logit diff| {diff:.4f}"
