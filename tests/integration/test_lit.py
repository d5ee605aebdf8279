"""HookedTransformerLIT.predict and the model helpers of transformer_lens.lit against Hugging
Face on the same weights: a GPT-2 and a grouped-query Llama (8 query / 2 key-value heads),
each with a locally trained tokenizer. None of this needs lit-nlp."""

import dataclasses

import numpy as np
import pytest
import torch

from tests.tiny_hf import tiny_hf
from tests.tokenizers import load_tokenizer, save_tokenizers
from transformer_lens import HookedTransformer, HookedTransformerConfig
from transformer_lens.lit import HookedTransformerLIT, HookedTransformerLITConfig
from transformer_lens.lit.utils import (
    compute_token_gradients,
    get_model_info,
    get_tokens_from_model,
)

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*official.*:UserWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
]

TEXT = "the cat sat on the mat"
ATOL = 1e-5


def hf_for(family: str) -> torch.nn.Module:
    # A wide init spreads the logits, so the top-k order has no near-ties.
    if family == "llama":
        return tiny_hf(
            "llama",
            random_norms=False,
            vocab_size=400,
            intermediate_size=128,
            max_position_embeddings=128,
            initializer_range=0.1,
        )
    return tiny_hf(
        "gpt2", random_norms=False, vocab_size=400, n_positions=128, initializer_range=0.1
    )


OFFICIAL = {"gpt2": ("gpt2", "plain"), "llama": ("meta-llama/Llama-3.2-1B", "bos_adding")}


@pytest.fixture(scope="module")
def tokenizer_dirs(tmp_path_factory):
    return save_tokenizers(tmp_path_factory.mktemp("tokenizers"))


@pytest.fixture(scope="module", params=list(OFFICIAL))
def pair(request, tokenizer_dirs):
    """(HF model, HookedTransformer on its weights, the tokenizer's expected ids of TEXT)."""
    name, tokenizer_kind = OFFICIAL[request.param]
    hf = hf_for(request.param)
    tokenizer = load_tokenizer(tokenizer_dirs[tokenizer_kind])
    model = HookedTransformer.from_pretrained_no_processing(name, hf_model=hf, tokenizer=tokenizer)
    ids = tokenizer(TEXT)["input_ids"]
    if tokenizer_kind == "plain":  # GPT-2's tokenizer adds no BOS; prepend_bos does.
        ids = [tokenizer.bos_token_id, *ids]
    return hf, model, torch.tensor(ids)


@pytest.fixture(scope="module")
def gpt2(tokenizer_dirs):
    hf = hf_for("gpt2")
    tokenizer = load_tokenizer(tokenizer_dirs["plain"])
    return HookedTransformer.from_pretrained_no_processing("gpt2", hf_model=hf, tokenizer=tokenizer)


def hf_run(hf: torch.nn.Module, ids: torch.Tensor, target_pos: int):
    """HF logits, attentions, token embeddings and d logits[target_pos, ids[target_pos + 1]]
    / d embeddings, for one sequence."""
    embeds = hf.get_input_embeddings()(ids[None]).detach().requires_grad_(True)
    out = hf(inputs_embeds=embeds, output_attentions=True)
    (grad,) = torch.autograd.grad(out.logits[0, target_pos, ids[target_pos + 1]], embeds)
    return (
        out.logits[0].detach(),
        [a[0].detach() for a in out.attentions],
        embeds[0].detach(),
        grad[0],
    )


def predict_one(model: HookedTransformer, **config) -> dict:
    wrapper = HookedTransformerLIT(model, HookedTransformerLITConfig(**config))
    (output,) = wrapper.predict([{"text": TEXT}])
    return output


def test_tokens_are_the_tokenizers_with_display_spaces(pair):
    _, model, ids = pair
    output = predict_one(model, compute_gradients=False)
    raw = model.tokenizer.convert_ids_to_tokens(ids.tolist())
    assert output["tokens"] == [t.replace("Ġ", "▁", 1) if t[0] == "Ġ" else t for t in raw]


def test_attention_is_hf_pattern_for_every_query_head(pair):
    hf, model, ids = pair
    output = predict_one(model, compute_gradients=False)
    _, attentions, _, _ = hf_run(hf, ids, len(ids) - 2)
    for layer, expected in enumerate(attentions):
        got = output[f"layer_{layer}/attention"]
        assert got.shape == (model.cfg.n_heads, len(ids), len(ids))
        np.testing.assert_allclose(got, expected.numpy(), atol=ATOL)


def test_top_k_are_hf_softmax_probabilities(pair):
    hf, model, ids = pair
    output = predict_one(model, top_k=5, compute_gradients=False)
    logits, _, _, _ = hf_run(hf, ids, len(ids) - 2)
    probs = torch.softmax(logits, dim=-1)
    assert len(output["top_k_tokens"]) == len(ids)
    for position, top in enumerate(output["top_k_tokens"]):
        expected_probs, expected_ids = torch.topk(probs[position], 5)
        assert [token for token, _ in top] == [model.tokenizer.decode([i]) for i in expected_ids]
        assert [p for _, p in top] == pytest.approx(expected_probs.tolist(), abs=ATOL)


def test_gradients_are_hf_input_gradients_of_the_last_tokens_logit(pair):
    hf, model, ids = pair
    output = predict_one(model)
    _, _, embeds, grad = hf_run(hf, ids, len(ids) - 2)
    np.testing.assert_allclose(output["input_embeddings"], embeds.numpy(), atol=ATOL)
    for field in ("grad_l2", "grad_dot_input"):
        np.testing.assert_allclose(output[field], grad.numpy(), atol=ATOL)


def test_embeddings_are_the_residual_stream(pair):
    _, model, ids = pair
    output = predict_one(model, compute_gradients=False)
    _, cache = model.run_with_cache(ids[None])
    final = cache["blocks.1.hook_resid_post"][0]
    np.testing.assert_allclose(output["cls_embedding"], final[0].numpy(), atol=ATOL)
    np.testing.assert_allclose(output["mean_embedding"], final.mean(0).numpy(), atol=ATOL)
    for layer in (0, 1):
        expected = cache[f"blocks.{layer}.hook_resid_post"][0].mean(0)
        np.testing.assert_allclose(output[f"layer_{layer}/embeddings"], expected, atol=ATOL)


def test_compute_token_gradients_reduces_hf_gradients(pair):
    hf, model, ids = pair
    grad_l2, grad_dot_input, tokens = compute_token_gradients(model, TEXT, target_idx=2)
    _, _, embeds, grad = hf_run(hf, ids, 2)
    np.testing.assert_allclose(grad_l2, grad.norm(dim=-1).numpy(), atol=ATOL)
    np.testing.assert_allclose(grad_dot_input, (grad * embeds).sum(-1).numpy(), atol=ATOL)
    assert tokens == model.tokenizer.convert_ids_to_tokens(ids.tolist())
    default_l2, _, _ = compute_token_gradients(model, TEXT)
    _, _, _, last_grad = hf_run(hf, ids, len(ids) - 2)
    np.testing.assert_allclose(default_l2, last_grad.norm(dim=-1).numpy(), atol=ATOL)


def test_gradients_leave_the_weights_grad_alone(gpt2):
    predict_one(gpt2)
    compute_token_gradients(gpt2, TEXT)
    assert all(p.grad is None for p in gpt2.parameters())


@pytest.mark.parametrize("target_idx", [-1, 7, 100])
def test_compute_token_gradients_needs_a_next_token(gpt2, target_idx):
    # TEXT is 7 tokens after BOS: positions 0..6 have a next token, 7 (= -1) does not.
    with pytest.raises(ValueError, match=f"position {target_idx} has no next token.* 8 token"):
        compute_token_gradients(gpt2, TEXT, target_idx=target_idx)


def test_predict_names_a_text_too_short_for_gradients(gpt2):
    wrapper = HookedTransformerLIT(gpt2)
    with pytest.raises(ValueError, match="no next token in a sequence of 1 token"):
        list(wrapper.predict([{"text": ""}]))


# ----- the wrapper around the model --------------------------------------------------------


def test_predict_yields_one_output_per_example_lazily(gpt2):
    wrapper = HookedTransformerLIT(gpt2, HookedTransformerLITConfig(compute_gradients=False))
    texts = ["hello world", TEXT]
    outputs = wrapper.predict([{"text": texts[0]}, {"text": texts[1], "label": 1}])
    assert not isinstance(outputs, list)
    expected = [gpt2.to_tokens(text).shape[1] for text in texts]
    assert [len(out["tokens"]) for out in outputs] == expected


def test_predict_names_the_missing_text_field(gpt2):
    wrapper = HookedTransformerLIT(gpt2)
    with pytest.raises(ValueError, match=r"Expected fields: \['text'\], got: \['prompt'\]"):
        list(wrapper.predict([{"prompt": TEXT}]))
    with pytest.raises(TypeError, match="'text' must be a str"):
        list(wrapper.predict([{"text": 3}]))


def test_predict_without_tokenizer_says_so():
    cfg = HookedTransformerConfig(
        n_layers=1, d_model=16, n_ctx=8, d_head=4, d_vocab=20, act_fn="relu", seed=0
    )
    wrapper = HookedTransformerLIT(HookedTransformer(cfg, load_tokenizer=False))
    with pytest.raises(ValueError, match="has no tokenizer"):
        list(wrapper.predict([{"text": TEXT}]))


def test_outputs_follow_the_config(gpt2):
    only_tokens = predict_one(
        gpt2, compute_gradients=False, output_embeddings=False, output_attention=False
    )
    assert set(only_tokens) == {"tokens", "top_k_tokens"}
    assert len(only_tokens["top_k_tokens"][0]) == 10
    short = predict_one(gpt2, max_seq_length=3, top_k=2, compute_gradients=False)
    assert len(short["tokens"]) == len(short["top_k_tokens"]) == 3
    assert len(short["top_k_tokens"][0]) == 2 and short["layer_0/attention"].shape == (4, 3, 3)
    assert set(predict_one(gpt2, embedding_layers=[1], compute_gradients=False)) == {
        "tokens",
        "top_k_tokens",
        "input_embeddings",
        "cls_embedding",
        "mean_embedding",
        "layer_1/embeddings",
        "layer_0/attention",
        "layer_1/attention",
    }


def test_config_is_copied_and_completed(gpt2):
    config = HookedTransformerLITConfig(output_embeddings=False)
    wrapper = HookedTransformerLIT(gpt2, config)
    assert config == HookedTransformerLITConfig(output_embeddings=False)
    # The gradients are taken against input_embeddings, so those must be output.
    assert wrapper.config.output_embeddings and wrapper.config.device == str(gpt2.cfg.device)
    assert dataclasses.replace(wrapper.config, output_embeddings=False, device=None) == config


@pytest.mark.parametrize(
    "config, message",
    [
        (dict(embedding_layers=[0, 2, -1]), r"embedding_layers \[2, -1\] do not exist.*0\.\.1"),
        (dict(top_k=401), "top_k must be between 1 and d_vocab=400, got 401"),
        (dict(top_k=0), "top_k must be between 1"),
        (dict(batch_size=0), "batch_size must be at least 1"),
        (dict(max_seq_length=0), "max_seq_length must be at least 1"),
    ],
)
def test_bad_config_is_named_at_construction(gpt2, config, message):
    with pytest.raises(ValueError, match=message):
        HookedTransformerLIT(gpt2, HookedTransformerLITConfig(**config))


def test_only_a_hooked_transformer_is_wrapped(gpt2):
    # The test run's type checker may see the annotation first; both say HookedTransformer.
    with pytest.raises(TypeError, match="HookedTransformer"):
        HookedTransformerLIT(gpt2.blocks[0])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "n_layers, config, layers",
    [
        (2, {}, [0, 1]),
        (3, {}, [0, 1, 2]),
        (6, {}, [0, 3, 5]),
        (7, {}, [0, 3, 6]),
        (6, dict(output_all_layers=True), [0, 1, 2, 3, 4, 5]),
        (6, dict(embedding_layers=[4]), [4]),
    ],
)
def test_embedding_layers_default_to_first_middle_last(n_layers, config, layers):
    cfg = HookedTransformerConfig(
        n_layers=n_layers, d_model=16, n_ctx=8, d_head=4, d_vocab=20, act_fn="relu", seed=0
    )
    wrapper = HookedTransformerLIT(
        HookedTransformer(cfg, load_tokenizer=False), HookedTransformerLITConfig(**config)
    )
    assert wrapper._get_embedding_layers() == layers


def test_wrapper_describes_the_model(gpt2):
    wrapper = HookedTransformerLIT(gpt2, HookedTransformerLITConfig(batch_size=3))
    assert wrapper.description() == "TransformerLens: gpt2 (2L, 4H, d=64)"
    assert wrapper.max_minibatch_size() == 3 and wrapper.supports_concurrent_predictions is False
    info = get_model_info(gpt2)
    assert info["n_layers"] == 2 and info["d_model"] == 64 and info["d_vocab"] == 400
    assert info["positional_embedding_type"] == "standard" and info["model_name"] == "gpt2"


def test_embedding_table_is_w_e_with_decoded_vocabulary(gpt2):
    vocab, table = HookedTransformerLIT(gpt2).get_embedding_table()
    np.testing.assert_array_equal(table, gpt2.W_E.detach().numpy()[: len(gpt2.tokenizer)])
    assert len(vocab) == table.shape[0] == min(400, len(gpt2.tokenizer))
    the_id = gpt2.tokenizer("the")["input_ids"][0]
    assert vocab[the_id] == "the"


def test_get_tokens_from_model_cuts_to_max_length(gpt2):
    tokens, ids = get_tokens_from_model(gpt2, TEXT, max_length=4)
    expected = gpt2.to_tokens(TEXT)[0, :4]
    assert ids.tolist() == expected.tolist()
    assert tokens == gpt2.tokenizer.convert_ids_to_tokens(expected.tolist())
    _, without_bos = get_tokens_from_model(gpt2, TEXT, prepend_bos=False)
    assert without_bos.tolist() == gpt2.tokenizer(TEXT)["input_ids"]
