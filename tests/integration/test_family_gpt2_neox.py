"""GPT-2 and GPT-NeoX (Pythia) beyond the shared family matrix: config variants HF supports,
the checkpoint layouts we read, partial rotary, refused fields and the official table."""

import json
import socket
import types
import warnings

import pytest
import torch

from tests.helpers import assert_close, randomize_norms
from tests.integration.family_rows import VOCAB
from transformer_lens import HookedTransformer
from transformer_lens.loading_from_pretrained import get_pretrained_model_config
from transformer_lens.pretrained.families import neox
from transformer_lens.pretrained.official_models import get_official_model_name

ATOL = 1e-5
BATCH, POS = 2, 11


@pytest.fixture(autouse=True)
def _quiet_and_no_grad():
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # config differs from official; no tokenizer offline
        yield


def tokens() -> torch.Tensor:
    return torch.randint(0, VOCAB, (BATCH, POS), generator=torch.Generator().manual_seed(0))


def gpt2_config(**fields):
    from transformers import GPT2Config

    base = dict(vocab_size=VOCAB, n_embd=64, n_layer=2, n_head=4, n_positions=64)
    return GPT2Config(**{**base, **fields}, attn_implementation="eager")


def neox_config(**fields):
    from transformers import GPTNeoXConfig

    base = dict(
        vocab_size=VOCAB,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=64,
        rotary_pct=0.25,
    )
    return GPTNeoXConfig(**{**base, **fields}, attn_implementation="eager")


def random_hf(config):
    import transformers

    torch.manual_seed(0)
    architecture = {"gpt2": "GPT2LMHeadModel", "gpt_neox": "GPTNeoXForCausalLM"}
    model = getattr(transformers, architecture[config.model_type])(config).eval()
    randomize_norms(model)
    return model


def official_name(config) -> str:
    return "gpt2" if config.model_type == "gpt2" else "EleutherAI/pythia-70m"


def load(config, hf):
    return HookedTransformer.from_pretrained_no_processing(official_name(config), hf_model=hf)


VARIANTS = [
    gpt2_config(scale_attn_by_inverse_layer_idx=True),
    gpt2_config(scale_attn_weights=False),
    gpt2_config(n_inner=96, activation_function="gelu", layer_norm_epsilon=1e-3),
    neox_config(rotary_pct=1.0, rotary_emb_base=500),
    neox_config(rotary_pct=0.5, use_parallel_residual=False, hidden_act="gelu_new"),
]
VARIANT_IDS = [
    "gpt2-inverse-layer-scale",
    "gpt2-unscaled",
    "gpt2-n_inner-gelu",
    "neox-full-rotary-base500",
    "neox-half-rotary-sequential",
]


@pytest.mark.parametrize("config", VARIANTS, ids=VARIANT_IDS)
def test_config_variants_match_hugging_face(config):
    hf = random_hf(config)
    assert_close(load(config, hf)(tokens()), hf(tokens()).logits, ATOL, "logits")


def test_gpt2_unembedding_is_the_transposed_embedding():
    model = load(gpt2_config(), random_hf(gpt2_config()))
    assert torch.equal(model.W_U, model.W_E.T)
    assert torch.equal(model.unembed.b_U, torch.zeros(VOCAB))


def test_gpt2_openai_checkpoint_keys_without_transformer_prefix_load(tmp_path):
    """The original checkpoints are GPT2Model weights ("h.0...", "wte.weight") with the head
    tied to wte, under a config that names GPT2LMHeadModel."""
    hf = random_hf(gpt2_config())
    hf.transformer.save_pretrained(tmp_path)
    config_path = tmp_path / "config.json"
    config = json.loads(config_path.read_text())
    config["architectures"] = ["GPT2LMHeadModel"]
    config_path.write_text(json.dumps(config))
    model = HookedTransformer.from_pretrained_no_processing(str(tmp_path))
    assert_close(model(tokens()), hf(tokens()).logits, ATOL, "bare-key checkpoint logits")


def test_neox_tied_embeddings_load_from_a_saved_directory(tmp_path):
    hf = random_hf(neox_config(tie_word_embeddings=True))
    hf.save_pretrained(tmp_path)
    model = HookedTransformer.from_pretrained_no_processing(str(tmp_path))
    assert_close(model(tokens()), hf(tokens()).logits, ATOL, "tied neox logits")


def test_pythia_rotates_only_the_first_rotary_dim_dims():
    config = neox_config()
    model = load(config, random_hf(config))
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
    config = neox_config()
    hf = random_hf(config)
    model = load(config, hf)
    weight = hf.gpt_neox.layers[0].attention.query_key_value.weight
    d_head = model.cfg.d_head
    assert torch.equal(model.blocks[0].attn.W_Q[1], weight[3 * d_head : 4 * d_head].T)
    assert torch.equal(model.blocks[0].attn.W_V[1], weight[5 * d_head : 6 * d_head].T)


REFUSED = [
    (gpt2_config(reorder_and_upcast_attn=True), "reorder_and_upcast_attn"),
    (gpt2_config(add_cross_attention=True), "add_cross_attention"),
    (gpt2_config(activation_function="quick_gelu"), "activation_function"),
    (gpt2_config(some_new_feature=3), "some_new_feature"),
    (neox_config(attention_bias=False), "attention_bias"),
    (neox_config(rope_scaling={"rope_type": "linear", "factor": 2.0}), "rope type 'linear'"),
    (neox_config(hidden_act="xielu"), "hidden_act"),
]


@pytest.mark.parametrize(("config", "field"), REFUSED, ids=[field for _, field in REFUSED])
def test_unsupported_hf_fields_raise_naming_the_field(config, field):
    with pytest.raises(ValueError, match=field):
        get_pretrained_model_config(official_name(config), hf_cfg=config)


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
        ("gpt2-small", "gpt2"),
        ("GPT2", "gpt2"),
        ("distil-gpt2", "distilgpt2"),
        ("pythia-70m", "EleutherAI/pythia-70m"),
        ("pythia-19m", "EleutherAI/pythia-70m"),
        ("pythia-1.4b-deduped", "EleutherAI/pythia-1.4b-deduped"),
    ],
)
def test_official_names_resolve(alias, official):
    assert get_official_model_name(alias) == official


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)


GPT2_TABLE = {  # name: (n_layers, d_model, n_heads)
    "gpt2": (12, 768, 12),
    "gpt2-medium": (24, 1024, 16),
    "gpt2-large": (36, 1280, 20),
    "gpt2-xl": (48, 1600, 25),
    "distilgpt2": (6, 768, 12),
}


@pytest.mark.parametrize("name", list(GPT2_TABLE))
def test_gpt2_official_configs_match_the_table_offline(name, no_network):
    cfg = get_pretrained_model_config(name)
    n_layers, d_model, n_heads = GPT2_TABLE[name]
    assert (cfg.n_layers, cfg.d_model, cfg.n_heads) == (n_layers, d_model, n_heads)
    assert cfg.d_head == 64 and cfg.attn_scale == 8.0
    assert (cfg.d_mlp, cfg.d_vocab, cfg.d_vocab_out, cfg.n_ctx) == (4 * d_model, 50257, 50257, 1024)
    assert (cfg.act_fn, cfg.normalization_type, cfg.eps) == ("gelu_new", "LN", 1e-5)
    assert cfg.positional_embedding_type == "standard" and not cfg.parallel_attn_mlp
    assert cfg.original_architecture == "GPT2LMHeadModel" and cfg.tokenizer_name == name


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
