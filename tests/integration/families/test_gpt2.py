"""GPT-2 beyond the family matrix (family_rows.ROWS, which also runs GPT-2's config variants):
the transposed unembedding, the original checkpoint layout, refused fields and the official
table."""

import json
import warnings

import pytest
import torch

from tests.helpers import assert_close
from tests.integration.family_rows import ATOL, VOCAB, hf_model, row, tokens
from tests.tiny_hf import tiny_hf, tiny_hf_config
from transformer_lens import HookedTransformer
from transformer_lens.loading_from_pretrained import get_pretrained_model_config
from transformer_lens.pretrained.official_models import get_official_model_name


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # config differs from official; no tokenizer offline
        yield


def test_gpt2_unembedding_is_the_transposed_embedding():
    model = HookedTransformer.from_pretrained_no_processing(
        "gpt2", hf_model=hf_model(row("gpt2"), "mha")
    )
    assert torch.equal(model.W_U, model.W_E.T)
    assert torch.equal(model.unembed.b_U, torch.zeros(VOCAB))


def test_gpt2_openai_checkpoint_keys_without_transformer_prefix_load(tmp_path):
    """The original checkpoints are GPT2Model weights ("h.0...", "wte.weight") with the head
    tied to wte, under a config that names GPT2LMHeadModel. A model of its own: saving the
    inner GPT2Model renames the architecture in the config both share."""
    hf = tiny_hf("gpt2")
    hf.transformer.save_pretrained(tmp_path)
    config_path = tmp_path / "config.json"
    config = json.loads(config_path.read_text())
    config["architectures"] = ["GPT2LMHeadModel"]
    config_path.write_text(json.dumps(config))
    model = HookedTransformer.from_pretrained_no_processing(str(tmp_path))
    assert_close(model(tokens()), hf(tokens()).logits, ATOL, "bare-key checkpoint logits")


REFUSED = [
    (dict(reorder_and_upcast_attn=True), "reorder_and_upcast_attn"),
    (dict(add_cross_attention=True), "add_cross_attention"),
    (dict(activation_function="quick_gelu"), "activation_function"),
    (dict(some_new_feature=3), "some_new_feature"),
]


@pytest.mark.parametrize(("fields", "field"), REFUSED, ids=[field for _, field in REFUSED])
def test_unsupported_hf_fields_raise_naming_the_field(fields, field):
    with pytest.raises(ValueError, match=field):
        get_pretrained_model_config("gpt2", hf_cfg=tiny_hf_config("gpt2", **fields))


@pytest.mark.parametrize(
    ("alias", "official"),
    [("gpt2-small", "gpt2"), ("GPT2", "gpt2"), ("distil-gpt2", "distilgpt2")],
)
def test_official_names_resolve(alias, official):
    assert get_official_model_name(alias) == official


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
