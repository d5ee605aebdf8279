import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from transformer_lens import utils
from transformer_lens.utils import Slice, get_act_name, lm_cross_entropy_loss, sample_logits


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("k6",), "blocks.6.attn.hook_k"),
        (("scale4ln1",), "blocks.4.ln1.hook_scale"),
        (("pre5",), "blocks.5.mlp.hook_pre"),
        (("pattern", 0, "attn"), "blocks.0.attn.hook_pattern"),
        (("attn", 0), "blocks.0.attn.hook_pattern"),
        (("attn_logits", 2), "blocks.2.attn.hook_attn_scores"),
        (("attn_scores", 2), "blocks.2.attn.hook_attn_scores"),
        (("key", 1), "blocks.1.attn.hook_k"),
        (("query", 1), "blocks.1.attn.hook_q"),
        (("value", 1), "blocks.1.attn.hook_v"),
        (("z", 3), "blocks.3.attn.hook_z"),
        (("result", 3), "blocks.3.attn.hook_result"),
        (("rot_q", 1), "blocks.1.attn.hook_rot_q"),
        (("rot_k", 1), "blocks.1.attn.hook_rot_k"),
        (("mlp_pre", 2), "blocks.2.mlp.hook_pre"),
        (("mlp_mid", 2), "blocks.2.mlp.hook_mid"),
        (("mlp_post", 2), "blocks.2.mlp.hook_post"),
        (("post", 2), "blocks.2.mlp.hook_post"),
        (("pre_linear", 2), "blocks.2.mlp.hook_pre_linear"),
        (("resid_pre", 3), "blocks.3.hook_resid_pre"),
        (("resid_mid", 3), "blocks.3.hook_resid_mid"),
        (("resid_post", 3), "blocks.3.hook_resid_post"),
        (("attn_out", 3), "blocks.3.hook_attn_out"),
        (("mlp_out", 3), "blocks.3.hook_mlp_out"),
        (("mlp_in", 3), "blocks.3.hook_mlp_in"),
        (("q_input", 3), "blocks.3.hook_q_input"),
        (("k_input", 3), "blocks.3.hook_k_input"),
        (("attn_in", 3), "blocks.3.hook_attn_in"),
        (("scale",), "ln_final.hook_scale"),
        (("normalized",), "ln_final.hook_normalized"),
        (("scale", 1, "ln2"), "blocks.1.ln2.hook_scale"),
        (("normalized", 0, "ln1"), "blocks.0.ln1.hook_normalized"),
        (("embed",), "hook_embed"),
        (("pos_embed",), "hook_pos_embed"),
        (("resid_pre10",), "blocks.10.hook_resid_pre"),
        (("q", 2, "a"), "blocks.2.attn.hook_q"),
        (("pre", 2, "m"), "blocks.2.mlp.hook_pre"),
        (("resid_pre", 2, "b"), "blocks.2.hook_resid_pre"),
        (("resid_pre", 2, "block"), "blocks.2.hook_resid_pre"),
        (("hook_resid_pre", 2), "blocks.2.hook_resid_pre"),
        (("blocks.0.attn.hook_q",), "blocks.0.attn.hook_q"),
        (("hook_embed",), "hook_embed"),
    ],
)
def test_get_act_name_expands_shorthand(args, expected):
    assert get_act_name(*args) == expected


def test_get_act_name_maps_unknown_names_like_classic():
    assert get_act_name("not_a_hook", 2) == "blocks.2.hook_not_a_hook"
    assert get_act_name("foo7") == "blocks.7.hook_foo"


# ---------------------------------------------------------------------------- Slice


def test_slice_int_drops_the_axis():
    tensor = torch.arange(24).reshape(2, 3, 4)
    assert torch.equal(Slice(1).apply(tensor, dim=1), tensor[:, 1])
    assert torch.equal(Slice(-1).apply(tensor, dim=-1), tensor[..., -1])
    assert Slice(1).mode == "int"


def test_slice_tuple_slice_and_none():
    tensor = torch.arange(10)
    assert torch.equal(Slice((2, 8, 2)).apply(tensor), tensor[2:8:2])
    assert torch.equal(Slice(slice(None, 3)).apply(tensor), tensor[:3])
    assert torch.equal(Slice(None).apply(tensor), tensor)


@pytest.mark.parametrize("index", [[0, 2, -1], np.array([0, 2, -1]), torch.tensor([0, 2, -1])])
def test_slice_array_gathers(index):
    tensor = torch.arange(20).reshape(4, 5)
    out = Slice(index).apply(tensor, dim=1)
    assert torch.equal(out, tensor[:, [0, 2, 4]])
    assert Slice(index).mode == "array"


def test_slice_indices():
    assert Slice(3).indices().tolist() == [3]
    assert Slice([1, 4]).indices().tolist() == [1, 4]
    assert Slice((1, None)).indices(4).tolist() == [1, 2, 3]
    assert Slice(-1).indices(5).tolist() == [4]
    with pytest.raises(ValueError, match="max_ctx"):
        Slice((1, None)).indices()


def test_slice_unwrap_int_keeps_the_axis():
    tensor = torch.arange(24).reshape(2, 3, 4)
    assert torch.equal(Slice.unwrap(1).apply(tensor, dim=1), tensor[:, 1:2])
    assert torch.equal(Slice.unwrap(-1).apply(tensor, dim=1), tensor[:, -1:])
    assert torch.equal(Slice.unwrap(-2).apply(tensor, dim=1), tensor[:, -2:-1])
    assert torch.equal(Slice.unwrap(None).apply(tensor, dim=1), tensor)
    existing = Slice([0, 2])
    assert Slice.unwrap(existing) is existing


def test_slice_rejects_out_of_range_dim():
    with pytest.raises(ValueError, match="out of range"):
        Slice(0).apply(torch.zeros(2, 3), dim=2)


# ---------------------------------------------------------------------------- losses


def _random_logits_and_tokens(batch=2, pos=5, d_vocab=7):
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(batch, pos, d_vocab, generator=generator)
    tokens = torch.randint(0, d_vocab, (batch, pos), generator=generator)
    return logits, tokens


def test_lm_cross_entropy_loss_matches_torch_cross_entropy():
    logits, tokens = _random_logits_and_tokens()
    expected = F.cross_entropy(logits[:, :-1].transpose(1, 2), tokens[:, 1:], reduction="none")
    per_token = lm_cross_entropy_loss(logits, tokens, per_token=True)
    assert per_token.shape == (2, 4)
    torch.testing.assert_close(per_token, expected)
    torch.testing.assert_close(lm_cross_entropy_loss(logits, tokens), expected.mean())


def test_lm_cross_entropy_loss_is_float32_for_half_logits():
    logits, tokens = _random_logits_and_tokens()
    assert lm_cross_entropy_loss(logits.bfloat16(), tokens).dtype == torch.float32


def test_lm_cross_entropy_loss_mask_excludes_pad_positions():
    logits, tokens = _random_logits_and_tokens(batch=2, pos=5)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    full = F.cross_entropy(logits[:, :-1].transpose(1, 2), tokens[:, 1:], reduction="none")
    counted = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]], dtype=torch.bool)

    per_token = lm_cross_entropy_loss(logits, tokens, attention_mask=mask, per_token=True)
    torch.testing.assert_close(per_token, torch.where(counted, full, 0.0))
    mean = lm_cross_entropy_loss(logits, tokens, attention_mask=mask)
    torch.testing.assert_close(mean, full[counted].mean())
    bool_mask_mean = lm_cross_entropy_loss(logits, tokens, attention_mask=mask.bool())
    torch.testing.assert_close(bool_mask_mean, mean)


def test_lm_cross_entropy_loss_mask_excludes_left_pads():
    logits, tokens = _random_logits_and_tokens(batch=1, pos=5)
    mask = torch.tensor([[0, 0, 1, 1, 1]])
    unpadded = lm_cross_entropy_loss(logits[:, 2:], tokens[:, 2:])
    torch.testing.assert_close(lm_cross_entropy_loss(logits, tokens, attention_mask=mask), unpadded)


def test_lm_accuracy():
    tokens = torch.tensor([[0, 1, 2, 3]])
    logits = F.one_hot(torch.tensor([[1, 2, 0, 0]]), 4).float()
    assert utils.lm_accuracy(logits, tokens, per_token=True).tolist() == [[True, True, False]]
    torch.testing.assert_close(utils.lm_accuracy(logits, tokens), torch.tensor(2 / 3))


# ---------------------------------------------------------------------------- activations


def test_gelu_new_matches_closed_form():
    x = torch.linspace(-5, 5, 101)
    expected = 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    torch.testing.assert_close(utils.gelu_new(x), expected)
    torch.testing.assert_close(utils.gelu_fast(x), expected)


def test_gelu_pytorch_tanh_equals_torch():
    x = torch.randn(3, 7)
    torch.testing.assert_close(utils.gelu_pytorch_tanh(x), F.gelu(x, approximate="tanh"))


def test_solu_is_x_times_softmax():
    x = torch.randn(2, 5)
    torch.testing.assert_close(utils.solu(x), x * x.softmax(dim=-1))


def test_xielu_follows_its_definition():
    x = torch.tensor([-3.0, -0.5, 0.0, 0.5, 2.0])
    positive = 0.8 * x**2 + 0.5 * x
    negative = 0.8 * (torch.expm1(torch.clamp(x, max=-1e-6)) - x) + 0.5 * x
    torch.testing.assert_close(utils.xielu(x), torch.where(x > 0, positive, negative))
    assert utils.xielu(torch.tensor([2.0])).item() == pytest.approx(0.8 * 4 + 1.0)


# ---------------------------------------------------------------------------- sampling


def test_sample_logits_temperature_zero_is_argmax():
    logits = torch.randn(4, 10)
    assert torch.equal(sample_logits(logits, temperature=0.0), logits.argmax(dim=-1))


def test_sample_logits_top_k_one_is_argmax():
    logits = torch.randn(4, 10)
    for _ in range(5):
        assert torch.equal(sample_logits(logits, top_k=1), logits.argmax(dim=-1))


def test_sample_logits_tiny_top_p_is_argmax():
    logits = torch.randn(4, 10)
    assert torch.equal(sample_logits(logits, top_p=1e-6), logits.argmax(dim=-1))


def test_sample_logits_top_k_restricts_support():
    torch.manual_seed(0)
    logits = torch.tensor([[5.0, 4.0, 3.0, 0.0, -1.0]]).repeat(200, 1)
    assert set(sample_logits(logits, top_k=2).tolist()) == {0, 1}


def test_sample_logits_freq_penalty_changes_argmax():
    logits = torch.tensor([[2.0, 1.5, 0.0]])
    tokens = torch.tensor([[0, 0, 2]])
    assert sample_logits(logits, top_k=1).item() == 0
    assert sample_logits(logits, top_k=1, freq_penalty=1.0, tokens=tokens).item() == 1


def test_sample_logits_rejects_bad_arguments():
    logits = torch.randn(1, 5)
    with pytest.raises(ValueError, match="tokens"):
        sample_logits(logits, freq_penalty=1.0)
    with pytest.raises(ValueError, match="top_p"):
        sample_logits(logits, top_p=1.5)
    with pytest.raises(ValueError, match="top_k"):
        sample_logits(logits, top_k=0)


# ---------------------------------------------------------------------------- tensor tools


def test_to_numpy():
    assert np.array_equal(utils.to_numpy(torch.tensor([1.0, 2.0], requires_grad=True)), [1.0, 2.0])
    assert utils.to_numpy(torch.ones(2, dtype=torch.bfloat16)).dtype == np.float32
    array = np.arange(3)
    assert utils.to_numpy(array) is array
    assert np.array_equal(utils.to_numpy([[1, 2], [3, 4]]), [[1, 2], [3, 4]])
    assert utils.to_numpy(3.5).shape == ()


def test_get_device_returns_a_torch_device():
    assert isinstance(utils.get_device(), torch.device)


def test_small_tensor_tools():
    assert utils.remove_batch_dim(torch.zeros(1, 3, 4)).shape == (3, 4)
    assert utils.remove_batch_dim(torch.zeros(2, 3)).shape == (2, 3)
    assert utils.transpose(torch.zeros(2, 3, 4)).shape == (2, 4, 3)
    assert utils.get_corner(torch.arange(100).reshape(10, 10), n=2).tolist() == [[0, 1], [10, 11]]
    assert utils.USE_DEFAULT_VALUE is None


# ---------------------------------------------------------------------------- attention mask

PAD, BOS = 0, 9


def _tokenizer(pad=PAD, bos=BOS, padding_side="right"):
    return SimpleNamespace(pad_token_id=pad, bos_token_id=bos, padding_side=padding_side)


def test_get_attention_mask_right_padding():
    tokens = torch.tensor([[BOS, 5, 6, 7], [BOS, 5, PAD, PAD]])
    mask = utils.get_attention_mask(_tokenizer(), tokens, prepend_bos=True)
    assert mask.tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]


def test_get_attention_mask_left_padding_keeps_inner_pad_ids():
    tokens = torch.tensor([[PAD, PAD, 5, PAD, 6], [4, 5, 6, 7, 8]])
    mask = utils.get_attention_mask(_tokenizer(), tokens, prepend_bos=False)
    assert mask.tolist() == [[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]]


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_get_attention_mask_bos_equal_to_pad_is_real(padding_side):
    tokenizer = _tokenizer(pad=BOS, bos=BOS, padding_side=padding_side)
    if padding_side == "right":
        tokens = torch.tensor([[BOS, 5, 6, 7], [BOS, 5, BOS, BOS], [BOS, BOS, BOS, BOS]])
        expected = [[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]]
    else:
        tokens = torch.tensor([[BOS, 5, 6, 7], [BOS, BOS, BOS, 5], [BOS, BOS, BOS, BOS]])
        expected = [[1, 1, 1, 1], [0, 0, 1, 1], [0, 0, 0, 1]]
    assert utils.get_attention_mask(tokenizer, tokens, prepend_bos=True).tolist() == expected


def test_get_attention_mask_without_tokenizer_is_all_ones():
    tokens = torch.tensor([[1, 2, 0]])
    assert utils.get_attention_mask(None, tokens, prepend_bos=True).tolist() == [[1, 1, 1]]


# ---------------------------------------------------------------------------- test_prompt


class _CharModel:
    """One token per character (id = ord - 96, space = 27), BOS = 0; logits favour 'b', then ' '."""

    d_vocab = 30

    def to_tokens(self, text, prepend_bos=None):
        ids = ([0] if prepend_bos is not False else []) + [
            ord(c) - 96 if c != " " else 27 for c in text
        ]
        return torch.tensor([ids])

    def to_str_tokens(self, text, prepend_bos=None):
        return (["<bos>"] if prepend_bos is not False else []) + list(text)

    def to_single_str_token(self, token):
        return {0: "<bos>", 27: " "}.get(token, chr(token + 96))

    def __call__(self, tokens):
        logits = -0.01 * torch.arange(self.d_vocab).float().expand(*tokens.shape, -1).clone()
        logits[..., 2] = 5.0
        logits[..., 27] = 4.0
        return logits


def test_test_prompt_prints_answer_ranks(capsys):
    utils.test_prompt("ab", "b", _CharModel(), top_k=2)
    out = capsys.readouterr().out
    assert "Tokenized answer: [' ', 'b']" in out
    assert "Ranks of the answer tokens: [(' ', 1), ('b', 0)]" in out
    assert "Top 0th token. Logit:  5.00" in out
