"""What forward accepts and returns (API.md §4 forward): input checks with clear messages,
return types, partial forwards, and left padding through attention_mask."""

import pytest
import torch

from tests.helpers import assert_close
from tests.tiny_models import D_MODEL, D_VOCAB, GPT2_LIKE, GROUPED, N_CTX, TOKENS, build
from transformer_lens import HookedTransformer, utils
from transformer_lens.HookedTransformer import Output

ROTARY_GQA = GROUPED
MODELS = {"rotary_gqa": ROTARY_GQA, "gpt2_like": GPT2_LIKE}


@pytest.fixture(autouse=True)
def no_grad():
    with torch.no_grad():
        yield


@pytest.fixture(scope="module", params=list(MODELS))
def model(request) -> HookedTransformer:
    return build(MODELS[request.param])


@pytest.fixture(scope="module")
def rotary_model() -> HookedTransformer:
    return build(ROTARY_GQA)


@pytest.fixture
def tokens() -> torch.Tensor:
    return TOKENS.clone()


# ----- input checks ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "bad_tokens, error, fragments",
    [
        (torch.tensor([[1, 2, D_VOCAB]]), ValueError, ("d_vocab=50", "max 50")),
        (torch.tensor([[1, -1, 2]]), ValueError, ("d_vocab=50", "min -1")),
        (torch.tensor([[1.0, 2.0]]), TypeError, ("integer", "float32")),
        (torch.tensor([[True, False]]), TypeError, ("integer", "bool")),
        (torch.zeros(1, 0, dtype=torch.long), ValueError, ("Empty input", "(1, 0)")),
        (torch.zeros(1, N_CTX + 1, dtype=torch.long), ValueError, ("17 tokens", "n_ctx=16")),
        (torch.zeros(1, 2, 3, 4, dtype=torch.long), ValueError, ("[batch, pos]", "(1, 2, 3, 4)")),
        ([[1, 2, 3]], ValueError, ("tokenizer",)),
    ],
)
def test_bad_tokens_raise_with_a_clear_message(model, bad_tokens, error, fragments):
    with pytest.raises(error) as raised:
        model(bad_tokens)
    for fragment in fragments:
        assert fragment in str(raised.value), (fragment, str(raised.value))


def test_n_ctx_tokens_are_accepted(model):
    assert model(torch.zeros(1, N_CTX, dtype=torch.long)).shape == (1, N_CTX, D_VOCAB)


@pytest.mark.parametrize("text", ["hello", ["hello", "world"]])
def test_text_input_without_a_tokenizer_raises(model, text):
    with pytest.raises(ValueError, match="tokenizer"):
        model(text)


@pytest.mark.parametrize("mask_shape", [(2, 5), (1, 6), (2, 7), (6,)])
def test_attention_mask_of_the_wrong_shape_raises_naming_both_shapes(model, tokens, mask_shape):
    with pytest.raises(ValueError) as raised:
        model(tokens, attention_mask=torch.ones(mask_shape, dtype=torch.long))
    message = str(raised.value)
    assert "attention_mask" in message
    assert str(tuple(tokens.shape)) in message


@pytest.mark.parametrize("return_type", ["logit", "str", "losses"])
def test_bad_return_type_raises(model, tokens, return_type):
    with pytest.raises(ValueError, match=f"return_type.*{return_type}"):
        model(tokens, return_type=return_type)


# ----- return types -----------------------------------------------------------------------
def test_logits_shape(model, tokens):
    assert model(tokens).shape == (2, 6, D_VOCAB)


def test_one_dimensional_tokens_get_a_batch_dim(model, tokens):
    logits = model(tokens[0])
    assert logits.shape == (1, 6, D_VOCAB)
    assert torch.equal(logits, model(tokens[:1]))


def test_loss_is_lm_cross_entropy_of_the_logits(model, tokens):
    expected = utils.lm_cross_entropy_loss(model(tokens), tokens)
    assert torch.equal(model(tokens, return_type="loss"), expected)


def test_loss_per_token_has_one_fewer_position(model, tokens):
    per_token = model(tokens, return_type="loss", loss_per_token=True)
    assert per_token.shape == (2, 5)
    assert torch.allclose(per_token.mean(), model(tokens, return_type="loss"))


def test_both_returns_an_output_named_tuple_equal_to_separate_calls(model, tokens):
    both = model(tokens, return_type="both")
    assert isinstance(both, Output)
    logits, loss = both
    assert torch.equal(both.logits, logits) and torch.equal(both.loss, loss)
    assert torch.equal(logits, model(tokens))
    assert torch.equal(loss, model(tokens, return_type="loss"))


def test_return_type_none_returns_none(model, tokens):
    assert model(tokens, return_type=None) is None


# ----- partial forwards -------------------------------------------------------------------
def test_stop_at_layer_then_start_at_layer_gives_the_same_logits(model, tokens):
    residual = model(tokens, stop_at_layer=1)
    assert residual.shape == (2, 6, D_MODEL)
    assert torch.equal(model(residual, start_at_layer=1), model(tokens))


def test_stop_at_layer_returns_the_resid_pre_of_that_layer(model, tokens):
    _, cache = model.run_with_cache(tokens)
    # Caching every hook takes the eager attention path; the plain call the fused one.
    assert_close(model(tokens, stop_at_layer=1), cache["blocks.1.hook_resid_pre"], 1e-5, "resid")


def test_stop_at_layer_zero_returns_the_embedding(model, tokens):
    residual = model(tokens, stop_at_layer=0)
    _, cache = model.run_with_cache(tokens)
    expected = cache["hook_embed"]
    if "hook_pos_embed" in cache:
        expected = expected + cache["hook_pos_embed"]
    assert torch.equal(residual, expected)


def test_rotary_model_has_no_position_embedding_in_the_residual(rotary_model, tokens):
    embed = rotary_model.embed.W_E[tokens]
    assert torch.equal(rotary_model(tokens, stop_at_layer=0), embed)


def test_gpt2_like_model_adds_the_position_embedding():
    model = build(GPT2_LIKE)
    tokens = torch.tensor([[3, 4, 5]])
    expected = model.embed.W_E[tokens] + model.pos_embed.W_pos[:3]
    assert torch.equal(model(tokens, stop_at_layer=0), expected)


def test_loss_from_a_residual_needs_tokens(model, tokens):
    residual = model(tokens, stop_at_layer=1)
    with pytest.raises(ValueError, match="tokens="):
        model(residual, start_at_layer=1, return_type="loss")
    loss = model(residual, start_at_layer=1, return_type="loss", tokens=tokens)
    assert torch.equal(loss, model(tokens, return_type="loss"))


def test_start_at_layer_input_must_be_a_float_residual(model, tokens):
    with pytest.raises(TypeError, match="residual"):
        model(tokens, start_at_layer=1)
    with pytest.raises(ValueError, match="d_model=32"):
        model(torch.zeros(2, 6, 7), start_at_layer=1)


@pytest.mark.parametrize("bad_length", [4, 8])
def test_tokens_for_a_residual_loss_must_match_its_shape(model, tokens, bad_length):
    residual = model(tokens, stop_at_layer=1)
    wrong = torch.zeros(2, bad_length, dtype=torch.long)
    with pytest.raises(ValueError, match="tokens"):
        model(residual, start_at_layer=1, return_type="loss", tokens=wrong)


# ----- left padding -------------------------------------------------------------------------
PROMPT_A = [5, 6, 7, 8, 9]
PROMPT_B = [1, 2, 3, 4, 10, 11, 12, 13]
N_PADS = 3


def left_padded_batch() -> tuple[torch.Tensor, torch.Tensor]:
    pad = 0
    tokens = torch.tensor([[pad] * N_PADS + PROMPT_A, PROMPT_B])
    mask = torch.ones_like(tokens)
    mask[0, :N_PADS] = 0
    return tokens, mask


def test_left_padding_with_attention_mask_matches_the_unpadded_prompt(model):
    tokens, mask = left_padded_batch()
    logits = model(tokens, attention_mask=mask)
    assert not logits.isnan().any()
    alone_a = model(torch.tensor([PROMPT_A]))
    assert_close(logits[0, N_PADS:], alone_a[0], atol=1e-5, what="left-padded prompt_a")
    alone_b = model(torch.tensor([PROMPT_B]))
    assert_close(logits[1], alone_b[0], atol=1e-5, what="unpadded prompt_b")


def test_left_padding_positions_count_from_the_first_real_token(model):
    tokens, mask = left_padded_batch()
    _, cache = model.run_with_cache(tokens, attention_mask=mask)
    _, alone = model.run_with_cache(torch.tensor([PROMPT_A]))
    assert_close(
        cache["blocks.0.hook_resid_pre"][0, N_PADS:],
        alone["blocks.0.hook_resid_pre"][0],
        atol=0.0,
        what="embedding (+ position embedding) of the real tokens",
    )
    pattern = cache["blocks.0.attn.hook_pattern"][0, :, N_PADS:, :N_PADS]
    assert torch.equal(pattern, torch.zeros_like(pattern)), "real tokens attend to pads"


def test_left_padding_mask_gives_the_same_loss_as_the_unpadded_prompt(model):
    tokens, mask = left_padded_batch()
    per_token = model(tokens, attention_mask=mask, return_type="loss", loss_per_token=True)
    alone = model(torch.tensor([PROMPT_A]), return_type="loss", loss_per_token=True)
    assert_close(per_token[0, N_PADS:], alone[0], atol=1e-5, what="per-token loss")
    assert torch.equal(per_token[0, :N_PADS], torch.zeros(N_PADS))


def test_one_dimensional_attention_mask_for_a_single_prompt(model):
    tokens = torch.tensor([[0, 0] + PROMPT_A])
    logits = model(tokens, attention_mask=torch.tensor([0, 0, 1, 1, 1, 1, 1]))
    assert_close(logits[0, 2:], model(torch.tensor([PROMPT_A]))[0], atol=1e-5, what="1-D mask")
