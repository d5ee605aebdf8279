"""Tokenization (API.md §4): BOS handled exactly once whatever the tokenizer does, padding
sides, text <-> token round trips, and text input to forward with padding masks."""

import numpy as np
import pytest
import torch

from tests.helpers import assert_close
from tests.tiny_models import GPT2_LIKE, GROUPED
from tests.tokenizers import load_tokenizer, save_tokenizers
from transformer_lens import HookedTransformer, HookedTransformerConfig

N_CTX = 24
# The shared tiny models, with a longer context and the vocabulary taken from the tokenizer.
MODELS = {
    "rotary_gqa": dict(GROUPED, n_ctx=N_CTX, d_vocab=-1),
    "learned_positions": dict(GPT2_LIKE, n_ctx=N_CTX, d_vocab=-1),
}
TEXT = "the cat sat on the mat"


def build(tokenizer, kind: str = "rotary_gqa", **overrides) -> HookedTransformer:
    cfg = HookedTransformerConfig(**{**MODELS[kind], **overrides}, seed=0)
    return HookedTransformer(cfg, tokenizer=tokenizer)


@pytest.fixture(autouse=True)
def no_grad():
    with torch.no_grad():
        yield


@pytest.fixture(scope="module")
def tokenizer_dirs(tmp_path_factory):
    return save_tokenizers(tmp_path_factory.mktemp("tokenizers"))


# Loaded per test: set_tokenizer fills in pad and sets padding_side on the tokenizer.
@pytest.fixture
def bos_adding_tokenizer(tokenizer_dirs):
    return load_tokenizer(tokenizer_dirs["bos_adding"])


@pytest.fixture
def plain_tokenizer(tokenizer_dirs):
    return load_tokenizer(tokenizer_dirs["plain"])


@pytest.fixture(params=["bos_adding", "plain"])
def any_tokenizer(request, tokenizer_dirs):
    return load_tokenizer(tokenizer_dirs[request.param])


@pytest.fixture
def model(any_tokenizer) -> HookedTransformer:
    return build(any_tokenizer)


# ----- set_tokenizer ------------------------------------------------------------------------
def test_set_tokenizer_records_whether_the_tokenizer_adds_bos(
    bos_adding_tokenizer, plain_tokenizer
):
    assert build(bos_adding_tokenizer).cfg.tokenizer_prepends_bos is True
    assert build(plain_tokenizer).cfg.tokenizer_prepends_bos is False


def test_set_tokenizer_fills_pad_from_eos_and_d_vocab_from_the_vocabulary(plain_tokenizer):
    assert plain_tokenizer.pad_token is None
    model = build(plain_tokenizer)
    assert model.tokenizer.pad_token == model.tokenizer.eos_token == "<|endoftext|>"
    assert model.cfg.d_vocab == model.cfg.d_vocab_out == len(plain_tokenizer)


def test_set_tokenizer_refuses_an_unknown_padding_side(plain_tokenizer):
    with pytest.raises(ValueError, match="padding_side"):
        build(plain_tokenizer).set_tokenizer(plain_tokenizer, default_padding_side="middle")


# ----- BOS ------------------------------------------------------------------------------------
def test_prepend_bos_adds_exactly_one_bos(model):
    bos = model.tokenizer.bos_token_id
    bos_text = model.tokenizer.bos_token
    for text in (TEXT, bos_text + TEXT, bos_text):
        tokens = model.to_tokens(text)[0]
        assert tokens[0] == bos and (tokens[1:] != bos).all(), (text, tokens)
    without = model.to_tokens(TEXT, prepend_bos=False)[0]
    assert (without != bos).all()
    assert torch.equal(model.to_tokens(TEXT)[0, 1:], without)


def test_prepend_bos_false_removes_the_bos_the_tokenizer_adds(bos_adding_tokenizer):
    model = build(bos_adding_tokenizer)
    assert bos_adding_tokenizer.encode(TEXT)[0] == bos_adding_tokenizer.bos_token_id
    expected = bos_adding_tokenizer.encode(TEXT)[1:]
    assert model.to_tokens(TEXT, prepend_bos=False)[0].tolist() == expected


def test_default_prepend_bos_comes_from_the_config_and_a_call_overrides_it(any_tokenizer):
    model = build(any_tokenizer, default_prepend_bos=False)
    bos = any_tokenizer.bos_token_id
    assert model.to_tokens(TEXT)[0, 0] != bos
    assert model.to_tokens(TEXT, prepend_bos=True)[0, 0] == bos
    assert model.to_str_tokens(TEXT)[0] != any_tokenizer.bos_token


def test_batch_has_one_bos_per_row(model):
    tokens = model.to_tokens([TEXT, "hello", model.tokenizer.bos_token + "hello"])
    assert (tokens[:, 0] == model.tokenizer.bos_token_id).all()
    assert torch.equal(tokens[1], tokens[2])


# ----- padding and truncation ---------------------------------------------------------------
@pytest.mark.parametrize("side", ["left", "right"])
def test_padding_side_per_call(model, side):
    pad = model.tokenizer.pad_token_id
    short = model.to_tokens("hello")[0]
    tokens = model.to_tokens([TEXT, "hello"], padding_side=side)
    n_pad = tokens.shape[1] - len(short)
    assert n_pad > 0
    real = tokens[1, n_pad:] if side == "left" else tokens[1, : len(short)]
    pads = tokens[1, :n_pad] if side == "left" else tokens[1, len(short) :]
    assert torch.equal(real, short)
    assert (pads == pad).all()


def test_default_padding_side_is_the_models(any_tokenizer):
    model = HookedTransformer(
        HookedTransformerConfig(**MODELS["rotary_gqa"]), any_tokenizer, default_padding_side="left"
    )
    assert model.default_padding_side == "left"
    left = model.to_tokens([TEXT, "hello"])
    assert left[1, 0] == any_tokenizer.pad_token_id
    assert torch.equal(model.to_tokens([TEXT, "hello"], padding_side="left"), left)


def test_unknown_padding_side_raises(model):
    with pytest.raises(ValueError, match="padding_side"):
        model.to_tokens([TEXT, "hello"], padding_side="center")


def test_to_tokens_truncates_to_n_ctx_unless_told_not_to(model):
    long_text = " ".join([TEXT] * 10)
    assert model.to_tokens(long_text).shape == (1, N_CTX)
    assert model.to_tokens(long_text, truncate=False).shape[1] > N_CTX


def test_to_tokens_moves_to_the_model_device(model):
    assert model.to_tokens(TEXT).device == torch.device(model.cfg.device)
    assert model.to_tokens(TEXT, move_to_device=False).device == torch.device("cpu")


@pytest.mark.parametrize("bad", [3, [1, 2], [], None])
def test_to_tokens_refuses_what_is_not_text(model, bad):
    with pytest.raises(TypeError, match="str"):
        model.to_tokens(bad)


# ----- tokens -> text -------------------------------------------------------------------------
def test_to_string_round_trips_and_follows_the_rank(model):
    texts = [TEXT, "hello there, general kenobi"]
    tokens = model.to_tokens(texts, prepend_bos=False)
    assert model.to_string(model.to_tokens(TEXT, prepend_bos=False)[0]) == TEXT
    single = model.to_tokens(texts[1], prepend_bos=False)
    assert model.to_string(single) == [texts[1]]
    assert model.to_string(single[0].numpy()) == texts[1]
    assert model.to_string(single[0].tolist()) == texts[1]
    assert isinstance(model.to_string(tokens), list) and len(model.to_string(tokens)) == 2
    assert model.to_string(int(single[0, 0])) == model.to_str_tokens(single[0])[0]


def test_to_str_tokens_accepts_text_tensors_arrays_and_lists(model):
    str_tokens = model.to_str_tokens(TEXT)
    assert str_tokens[0] == model.tokenizer.bos_token
    assert "".join(str_tokens[1:]) == TEXT
    tokens = model.to_tokens(TEXT)
    for ids in (tokens, tokens[0], tokens[0].numpy(), tokens.numpy(), tokens[0].tolist()):
        assert model.to_str_tokens(ids) == str_tokens, type(ids)
    nested = model.to_str_tokens([TEXT, "hello"], prepend_bos=False)
    assert nested == [str_tokens[1:], model.to_str_tokens("hello", prepend_bos=False)]


def test_to_str_tokens_refuses_a_batch_and_non_integers(model):
    with pytest.raises(ValueError, match=r"\[1, pos\]"):
        model.to_str_tokens(model.to_tokens([TEXT, TEXT]))
    with pytest.raises(TypeError):  # the annotation's check, or ours when checks are off
        model.to_str_tokens(torch.tensor([1.0, 2.0]))
    with pytest.raises(TypeError, match="integer"):
        model.to_str_tokens(np.array([0.5]))


def test_to_single_token_and_back(model):
    token = model.to_single_token("the")
    assert isinstance(token, int)
    assert model.to_single_str_token(token) == "the"
    assert model.to_single_str_token(torch.tensor(token)) == "the"
    assert torch.equal(model.tokens_to_residual_directions("the"), model.W_U[:, token])


@pytest.mark.parametrize("text", ["the cat sat", "", "zzqqxx"])
def test_to_single_token_raises_unless_exactly_one_token(model, text):
    with pytest.raises(ValueError, match="not one"):
        model.to_single_token(text)


def test_to_single_str_token_refuses_non_ints(model):
    with pytest.raises(TypeError, match="int"):
        model.to_single_str_token("the")


def test_get_token_position_first_and_last(model):
    the = model.to_single_token("the")
    str_tokens = model.to_str_tokens(TEXT)
    first, last = str_tokens.index("the"), len(str_tokens) - 1 - str_tokens[::-1].index(" the")
    assert model.get_token_position("the", TEXT) == first == 1
    assert model.get_token_position(" the", TEXT, mode="last") == last
    assert model.get_token_position("the", TEXT, prepend_bos=False) == 0
    tokens = model.to_tokens(TEXT)
    assert model.get_token_position(the, tokens) == model.get_token_position(the, tokens[0]) == 1
    assert model.get_token_position(torch.tensor(the), tokens) == 1


def test_get_token_position_raises_for_absent_tokens_and_bad_modes(model):
    with pytest.raises(ValueError, match="does not occur"):
        model.get_token_position("hello", TEXT)
    with pytest.raises(ValueError, match="mode"):
        model.get_token_position("the", TEXT, mode="middle")
    with pytest.raises(ValueError, match="single sequence"):
        model.get_token_position("the", model.to_tokens([TEXT, TEXT]))


def test_text_methods_without_a_tokenizer_raise_clearly():
    model = HookedTransformer(HookedTransformerConfig(**{**MODELS["rotary_gqa"], "d_vocab": 50}))
    for call in (
        lambda: model.to_tokens(TEXT),
        lambda: model.to_string(torch.tensor([1, 2])),
        lambda: model.to_str_tokens(torch.tensor([1, 2])),
        lambda: model.to_single_token("the"),
        lambda: model.to_single_str_token(3),
        lambda: model.get_token_position("the", TEXT),
    ):
        with pytest.raises(ValueError, match="tokenizer"):
            call()


# ----- text input to forward, padding masks ---------------------------------------------------
def test_text_input_equals_token_input_in_forward_run_with_cache_and_run_with_hooks(model):
    tokens = model.to_tokens([TEXT, TEXT])
    expected = model(tokens)
    # One row against a batch of two: other matmul shapes, so equal up to summation order.
    assert_close(model(TEXT), expected[:1], atol=1e-5, what="one row vs a batch")
    assert torch.equal(model([TEXT, TEXT]), expected)
    logits, cache = model.run_with_cache([TEXT, TEXT], names_filter="hook_embed")
    assert torch.equal(logits, expected)
    assert torch.equal(cache["hook_embed"], model.embed(tokens))
    seen = []
    hooked = model.run_with_hooks(
        TEXT, fwd_hooks=[("hook_embed", lambda x, hook: seen.append(x.shape))]
    )
    assert torch.equal(hooked, model(TEXT)) and seen == [(1, tokens.shape[1], 32)]


@pytest.mark.parametrize("kind", list(MODELS))
def test_left_padded_batch_matches_each_prompt_alone(any_tokenizer, kind):
    model = build(any_tokenizer, kind)
    prompts = [TEXT, "hello", "the lazy dog sleeps in the sun"]
    logits = model(prompts, padding_side="left")
    assert not logits.isnan().any()
    for row, prompt in enumerate(prompts):
        alone = model(prompt)[0]
        assert_close(logits[row, -alone.shape[0] :], alone, atol=1e-5, what=prompt)
    _, cache = model.run_with_cache(prompts, padding_side="left")
    for name, activation in cache.items():
        assert not activation.isnan().any(), name


@pytest.mark.parametrize("kind", list(MODELS))
@pytest.mark.parametrize("side", ["left", "right"])
def test_a_row_of_padding_only_gives_no_nan(any_tokenizer, kind, side):
    model = build(any_tokenizer, kind)
    logits, cache = model.run_with_cache([TEXT, ""], prepend_bos=False, padding_side=side)
    assert not logits.isnan().any()
    for name, activation in cache.items():
        assert not activation.isnan().any(), name
    assert_close(logits[0], model(TEXT, prepend_bos=False)[0], atol=1e-5, what="real row")


def test_right_padding_is_excluded_from_the_loss(any_tokenizer):
    model = build(any_tokenizer, "learned_positions")
    prompts = [TEXT, "hello"]
    per_token = model(prompts, return_type="loss", loss_per_token=True)
    alone = [model(p, return_type="loss", loss_per_token=True)[0] for p in prompts]
    n_short = alone[1].shape[0]
    assert_close(per_token[0], alone[0], atol=1e-5, what="long row")
    assert_close(per_token[1, :n_short], alone[1], atol=1e-5, what="short row")
    assert (per_token[1, n_short:] == 0).all()
    mean = model(prompts, return_type="loss")
    assert_close(mean, torch.cat(alone).mean(), atol=1e-5, what="mean loss")
