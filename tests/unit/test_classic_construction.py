"""Classic construction and devices: the tokenizer cfg.tokenizer_name names, cfg.device as
classic records it, modules replaced by wrappers (circuit-tracer), and classic names."""

import inspect

import pytest
import torch
from torch import nn

from tests.tiny_models import GPT2_LIKE, GROUPED, TOKENS, build
from tests.tokenizers import make_plain_tokenizer
from transformer_lens import HookedTransformer, HookedTransformerConfig
from transformer_lens.HookedTransformer import DTYPE_FROM_STRING, Loss, LossPerToken, SingleLoss


def test_the_tokenizer_cfg_tokenizer_name_names_is_loaded(tmp_path):
    make_plain_tokenizer(tmp_path)
    model = build(GPT2_LIKE, tokenizer_name=str(tmp_path), d_vocab=-1)
    assert model.tokenizer is not None
    assert model.cfg.d_vocab == max(model.tokenizer.get_vocab().values()) + 1
    assert model.to_str_tokens("the cat", prepend_bos=False) == ["the", " cat"]


def test_a_tokenizer_that_cannot_be_loaded_is_a_warning(tmp_path):
    with pytest.warns(UserWarning, match="Could not load a tokenizer for 'no-such/tokenizer'"):
        model = build(GPT2_LIKE, tokenizer_name="no-such/tokenizer")
    assert model.tokenizer is None
    assert model(TOKENS).shape == (2, 6, 50)


def test_cfg_device_is_kept_as_classic_keeps_it():
    assert build(GPT2_LIKE, device="cpu").cfg.device == "cpu"
    default = build(GPT2_LIKE)
    assert default.cfg.device == torch.device("cpu")  # classic: utils.get_device()
    assert default.to("cpu").cfg.device == "cpu"
    assert default.to(torch.device("cpu")).cfg.device == "cpu"
    assert default.to(torch.float64).cfg.dtype is torch.float64
    assert default.to(device="cpu", dtype=torch.float32).cfg.dtype is torch.float32
    assert default.W_E.dtype is torch.float32


class WrappedUnembed(nn.Module):
    """circuit-tracer's ReplacementUnembed: the Unembed inside, hooks around it."""

    def __init__(self, old: nn.Module) -> None:
        super().__init__()
        self.old_unembed = old

    @property
    def W_U(self) -> torch.Tensor:
        return self.old_unembed.W_U

    @property
    def b_U(self) -> torch.Tensor:
        return self.old_unembed.b_U

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.old_unembed(x)


class WrappedMLP(nn.Module):
    def __init__(self, old: nn.Module) -> None:
        super().__init__()
        self.old_mlp = old

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.old_mlp(x)


@pytest.mark.parametrize("fields", [GROUPED, GPT2_LIKE], ids=["grouped", "gpt2_like"])
def test_models_with_wrapped_components_load_move_and_run(fields):
    model = build(fields)
    expected = model(TOKENS)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    model.unembed = WrappedUnembed(model.unembed)
    for block in model.blocks:
        block.mlp = WrappedMLP(block.mlp)
    model.setup()
    assert torch.equal(model(TOKENS), expected)
    renamed = {k.replace("unembed.", "unembed.old_unembed.") for k in state}
    renamed = {k.replace(".mlp.", ".mlp.old_mlp.") for k in renamed}
    assert set(model.state_dict()) == renamed
    model.load_state_dict(model.state_dict())
    model.to(torch.float64)
    assert model.W_U.dtype is torch.float64
    assert torch.allclose(model(TOKENS), expected.double(), atol=1e-5)


def test_a_wrapped_tied_unembed_stays_tied_through_dtype_moves():
    model = build(GPT2_LIKE)
    model.unembed.tie_to(model.embed)
    model.unembed = WrappedUnembed(model.unembed)
    model.to(torch.float64)
    inner = model.unembed.old_unembed
    assert inner.is_tied_to(model.embed) and inner.W_U.dtype is torch.float64


def test_classic_loss_types_and_dtype_names():
    assert Loss == SingleLoss | LossPerToken
    assert DTYPE_FROM_STRING["bf16"] is torch.bfloat16
    assert (
        DTYPE_FROM_STRING["fp32"] is torch.float32 and DTYPE_FROM_STRING["float16"] is torch.float16
    )


def test_from_pretrained_signatures_name_every_classic_parameter():
    names = list(inspect.signature(HookedTransformer.from_pretrained).parameters)
    classic = ["model_name", "fold_ln", "center_writing_weights", "center_unembed",
               "refactor_factored_attn_matrices", "checkpoint_index", "checkpoint_value",
               "hf_model", "device", "n_devices", "tokenizer", "move_to_device",
               "fold_value_biases", "default_prepend_bos", "default_padding_side", "dtype",
               "first_n_layers", "n_ctx", "from_pretrained_kwargs"]  # fmt: skip
    assert names == classic
    no_processing = inspect.signature(HookedTransformer.from_pretrained_no_processing)
    assert no_processing.parameters["dtype"].default is torch.float32
    assert no_processing.parameters["fold_ln"].default is False


def test_set_ungroup_takes_classics_keyword():
    model = build(GROUPED)
    model.set_ungroup_grouped_query_attention(ungroup_grouped_query_attention=True)
    assert model.cfg.ungroup_grouped_query_attention
    _, cache = model.run_with_cache(TOKENS, names_filter="blocks.0.attn.hook_k")
    assert cache["k", 0].shape[2] == model.cfg.n_heads


def test_a_dict_config_is_accepted():
    fields = dict(GPT2_LIKE, seed=0)
    assert torch.equal(HookedTransformer(fields)(TOKENS), build(GPT2_LIKE)(TOKENS))
    assert isinstance(HookedTransformer(fields).cfg, HookedTransformerConfig)


def test_easy_transformer_names_are_the_hooked_classes():
    import transformer_lens as tl

    assert tl.EasyTransformer is HookedTransformer
    assert tl.EasyTransformerConfig is HookedTransformerConfig
    assert tl.EasyTransformerKeyValueCache is tl.HookedTransformerKeyValueCache
    assert tl.EasyTransformerKeyValueCacheEntry is tl.HookedTransformerKeyValueCacheEntry


@pytest.mark.parametrize("fields", [GROUPED, GPT2_LIKE], ids=["grouped", "gpt2_like"])
def test_backward_hooks_added_in_a_context_fire_after_it_with_autograd_gradients(fields):
    # circuit-tracer's attribution: hooks inside model.hooks(), backward() after the exit.
    model = build(fields)
    names = ["blocks.0.hook_resid_mid", "blocks.1.attn.hook_z", "blocks.1.hook_resid_pre"]
    kept, grads = {}, {}
    fwd = [(n, lambda t, hook: kept.setdefault(hook.name, t)) for n in names]
    bwd = [(n, lambda g, hook: grads.setdefault(hook.name, g.clone())) for n in names]
    embed_input = model.W_E[TOKENS].detach().requires_grad_(True)

    def leaf_embedding(t, hook):
        return embed_input

    with model.hooks(fwd_hooks=[("hook_embed", leaf_embedding), *fwd], bwd_hooks=bwd):
        target = model(TOKENS)[0, -1, 3]
    expected = torch.autograd.grad(target, [kept[n] for n in names], retain_graph=True)
    target.backward()
    for name, gradient in zip(names, expected, strict=True):
        assert gradient.abs().sum() > 0, name
        torch.testing.assert_close(grads[name], gradient, rtol=0, atol=0, msg=name)
