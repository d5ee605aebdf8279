"""GPT-NeoX (Pythia) beyond the family matrix (family_rows.ROWS, which also runs its rotary,
sequential and tied variants): tied embeddings from a directory, partial rotary, the fused
query_key_value layout, refused fields, transformers 4 fields and the official table."""

import types
import warnings

import pytest
import torch

from tests.helpers import assert_close
from tests.integration.family_rows import ATOL, hf_model, row, tokens
from tests.tiny_hf import tiny_hf_config
from transformer_lens import HookedTransformer
from transformer_lens.loading_from_pretrained import get_pretrained_model_config
from transformer_lens.pretrained.families import neox
from transformer_lens.pretrained.official_models import get_official_model_name

NEOX = row("neox")


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # config differs from official; no tokenizer offline
        yield


def load(variant: str = "mha") -> HookedTransformer:
    return HookedTransformer.from_pretrained_no_processing(
        NEOX.official_name, hf_model=hf_model(NEOX, variant)
    )


def test_neox_tied_embeddings_load_from_a_saved_directory(tmp_path):
    hf = hf_model(NEOX, "tied")
    hf.save_pretrained(tmp_path)
    model = HookedTransformer.from_pretrained_no_processing(str(tmp_path))
    assert_close(model(tokens()), hf(tokens()).logits, ATOL, "tied neox logits")


def test_pythia_rotates_only_the_first_rotary_dim_dims():
    model = load()
    rotary_dim = model.cfg.rotary_dim
    assert rotary_dim == 4  # 0.25 * d_head 16
    _, cache = model.run_with_cache(tokens())
    for layer in range(model.cfg.n_layers):
        for q, rot in (("q", "rot_q"), ("k", "rot_k")):
            plain, rotated = cache[q, layer], cache[rot, layer]
            assert torch.equal(rotated[..., rotary_dim:], plain[..., rotary_dim:])
            assert torch.equal(rotated[:, 0], plain[:, 0])  # position 0: angle 0
            assert not torch.allclose(rotated[:, 1:, :, :rotary_dim], plain[:, 1:, :, :rotary_dim])


def test_neox_query_key_value_is_split_per_head():
    """HF's fused output axis is [heads, 3, d_head]: head 1's query is rows 3 * d_head ..."""
    hf = hf_model(NEOX, "mha")
    model = load()
    weight = hf.gpt_neox.layers[0].attention.query_key_value.weight
    d_head = model.cfg.d_head
    assert torch.equal(model.blocks[0].attn.W_Q[1], weight[3 * d_head : 4 * d_head].T)
    assert torch.equal(model.blocks[0].attn.W_V[1], weight[5 * d_head : 6 * d_head].T)


REFUSED = [
    (dict(attention_bias=False), "attention_bias"),
    (dict(rope_scaling={"rope_type": "linear", "factor": 2.0}), "rope type 'linear'"),
    (dict(hidden_act="xielu"), "hidden_act"),
]


@pytest.mark.parametrize(("fields", "field"), REFUSED, ids=[field for _, field in REFUSED])
def test_unsupported_hf_fields_raise_naming_the_field(fields, field):
    with pytest.raises(ValueError, match=field):
        get_pretrained_model_config(NEOX.official_name, hf_cfg=tiny_hf_config("neox", **fields))


def test_transformers_4_rotary_fields_are_read():
    config_4x = types.SimpleNamespace(
        rope_scaling=None,
        rotary_emb_base=500,
        rotary_pct=0.5,
        hidden_size=64,
        num_attention_heads=4,
    )
    assert neox._rotary_base(config_4x) == 500.0
    assert neox._rotary_dim(config_4x) == 8


@pytest.mark.parametrize(
    ("alias", "official"),
    [
        ("pythia-70m", "EleutherAI/pythia-70m"),
        ("pythia-19m", "EleutherAI/pythia-70m"),
        ("pythia-1.4b-deduped", "EleutherAI/pythia-1.4b-deduped"),
    ],
)
def test_official_names_resolve(alias, official):
    assert get_official_model_name(alias) == official


PYTHIA_TABLE = {  # name: (n_layers, d_model, n_heads, d_head, d_vocab, rotary_dim)
    "pythia-70m": (6, 512, 8, 64, 50304, 16),
    "pythia-160m": (12, 768, 12, 64, 50304, 16),
    "pythia-410m": (24, 1024, 16, 64, 50304, 16),
    "pythia-1.4b": (24, 2048, 16, 128, 50304, 32),
    "pythia-6.9b": (32, 4096, 32, 128, 50432, 32),
}


@pytest.mark.parametrize("name", list(PYTHIA_TABLE))
def test_pythia_official_configs_match_the_table_offline(name, no_network):
    cfg = get_pretrained_model_config(name)
    n_layers, d_model, n_heads, d_head, d_vocab, rotary_dim = PYTHIA_TABLE[name]
    assert (cfg.n_layers, cfg.d_model, cfg.n_heads, cfg.d_head) == (
        n_layers,
        d_model,
        n_heads,
        d_head,
    )
    assert (cfg.d_mlp, cfg.d_vocab, cfg.n_ctx) == (4 * d_model, d_vocab, 2048)
    assert (cfg.rotary_dim, cfg.rotary_base, cfg.positional_embedding_type) == (
        rotary_dim,
        1e4,
        "rotary",
    )
    assert (cfg.act_fn, cfg.normalization_type, cfg.eps) == ("gelu", "LN", 1e-5)
    assert cfg.parallel_attn_mlp and cfg.n_key_value_heads is None
    assert cfg.original_architecture == "GPTNeoXForCausalLM"
    assert cfg.tokenizer_name == f"EleutherAI/{name}"
