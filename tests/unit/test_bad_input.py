"""Bad input (issue 7): an exception of a fitting type whose message names the problem and the
expected value, raised before anything changes.

Each bad input is tested once. Where another module already checks it, this file adds only
what that test lacks (the expected value in the message, another entry point, or that nothing
changed):

- unknown hook name, with the closest names: test_hook_points
  (test_unknown_hook_names_raise_with_suggestions), test_model_hooks
  (test_unknown_hook_name_suggests_the_closest_names). Here: a valid hook listed before the bad
  name is not left behind, on every entry point of a whole model.
- hook returning a wrong shape: test_hook_points, test_model_hooks; wrong dtype: test_hook_points
  (toy model). Here: wrong dtype on a whole model, forward and backward, and backward hooks
  returning a wrong shape on a whole model.
- token ids >= d_vocab or negative, empty input, sequence longer than n_ctx, attention_mask of
  the wrong shape: test_model_inputs (without a cache). Here: the same with a key/value cache,
  which must stay untouched; empty and too long residuals; "expected" in the empty message;
  attention_mask values other than 0 and 1; caches that do not fit the model.
- use_attn_in on a grouped model: tests/integration/test_gemma_parity.py
  (test_attn_in_on_grouped_model_needs_ungrouping). Here: regrouping while use_attn_in is on.
- n_heads not divisible by n_key_value_heads: test_config
  (test_n_heads_not_divisible_by_n_key_value_heads_names_both_numbers).
- unknown act_fn / normalization_type / positional_embedding_type: test_config
  (test_invalid_config_raises_value_error_naming_the_problem). Here: the expected choices.
- unknown architecture / unsupported HF config field: test_loading
  (test_unsupported_architecture_raises_naming_it, test_unsupported_hf_config_values_raise,
  test_unknown_hf_config_attribute_raises_naming_it). Here: the supported architectures.
- state dict with missing / unexpected / wrongly shaped keys: test_state_dict. Here: the weights
  stay unchanged for each kind, also with strict=False, and values that are not tensors.
- hook that cannot fire under the current flags: test_model_hooks
  (test_hook_that_cannot_fire_under_the_flags_is_refused_naming_the_flag). Here: hooks() and
  list filters, use_hook_tokens, attention-only models.
- names_filter of the wrong type: test_hook_points (toy model). Here: a whole model, with the
  accepted kinds in the message.
- a path that does not exist: test_loading (from_pretrained). Here: get_pretrained_model_config.
"""

import re

import pytest
import torch

from tests.helpers import assert_close
from tests.tiny_models import (
    D_MODEL,
    D_VOCAB,
    GPT2_LIKE,
    GROUPED,
    MODELS,
    N_CTX,
    TOKENS,
    attached_hooks,
    build,
)
from transformer_lens import (
    HookedTransformer,
    HookedTransformerConfig,
    HookedTransformerKeyValueCache,
    loading_from_pretrained,
)


@pytest.fixture(params=list(MODELS))
def model(request) -> HookedTransformer:
    return build(MODELS[request.param])


@pytest.fixture
def grouped() -> HookedTransformer:
    return build(GROUPED)


def logits(model: HookedTransformer) -> torch.Tensor:
    with torch.no_grad():
        return model(TOKENS)


def assert_unchanged(model: HookedTransformer, before: torch.Tensor) -> None:
    assert attached_hooks(model) == 0
    assert torch.equal(logits(model), before)


def assert_message(error: pytest.ExceptionInfo, *fragments: str) -> None:
    message = str(error.value)
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def zero(tensor, hook):
    return torch.zeros_like(tensor)


# ----- unknown hook names ----------------------------------------------------------------------
VALID, MISSPELT = "blocks.0.hook_resid_post", "blocks.0.attn.hook_patern"


def enter_hooks(model: HookedTransformer, fwd_hooks=(), bwd_hooks=()) -> None:
    with model.hooks(fwd_hooks=fwd_hooks, bwd_hooks=bwd_hooks):
        model(TOKENS)


ADD_VALID_THEN_MISSPELT = {
    "run_with_hooks": lambda m: m.run_with_hooks(
        TOKENS, fwd_hooks=[(VALID, zero), (MISSPELT, zero)]
    ),
    "hooks": lambda m: enter_hooks(m, fwd_hooks=[(VALID, zero)], bwd_hooks=[(MISSPELT, zero)]),
    "run_with_cache": lambda m: m.run_with_cache(TOKENS, names_filter=[VALID, MISSPELT]),
    "add_perma_hook": lambda m: (m.add_perma_hook(VALID, zero), m.add_perma_hook(MISSPELT, zero)),
}


@pytest.mark.parametrize("entry", list(ADD_VALID_THEN_MISSPELT))
def test_unknown_hook_name_leaves_no_hook_behind_and_names_the_closest(model, entry):
    before = logits(model)
    with pytest.raises(ValueError) as raised:
        ADD_VALID_THEN_MISSPELT[entry](model)
    assert_message(raised, repr(MISSPELT), "Did you mean", "'blocks.0.attn.hook_pattern'")
    if entry == "add_perma_hook":  # two separate calls: the first one's hook was added
        assert attached_hooks(model) == 1
        model.reset_hooks(including_permanent=True)
    assert_unchanged(model, before)


# ----- hooks returning the wrong dtype ----------------------------------------------------------
def to_double(tensor, hook):
    return tensor.double()


def test_forward_hook_returning_the_wrong_dtype_names_hook_and_both_dtypes(model):
    before = logits(model)
    with pytest.raises(ValueError) as raised:
        model.run_with_hooks(TOKENS, fwd_hooks=[("blocks.1.attn.hook_z", to_double)])
    assert_message(
        raised,
        "'to_double' on hook point 'blocks.1.attn.hook_z'",
        "(2, 6, 4, 8) and dtype torch.float64",
        "activation has shape (2, 6, 4, 8) and dtype torch.float32",
    )
    assert_unchanged(model, before)


def first_sequence(tensor, hook):
    return tensor[:1]


@pytest.mark.parametrize(
    "hook_fn, returned",
    [(to_double, "(2, 6, 32) and dtype torch.float64"), (first_sequence, "(1, 6, 32) and dtype")],
    ids=["dtype", "shape"],
)
def test_backward_hook_returning_the_wrong_gradient_names_hook_and_both(model, hook_fn, returned):
    before = logits(model)
    with pytest.raises(ValueError) as raised:
        with model.hooks(bwd_hooks=[("blocks.0.hook_resid_mid", hook_fn)]):
            model(TOKENS, return_type="loss").backward()
    assert_message(
        raised,
        f"{hook_fn.__name__!r} on hook point 'blocks.0.hook_resid_mid'",
        returned,
        "gradient has shape (2, 6, 32) and dtype torch.float32",
    )
    assert_unchanged(model, before)


# ----- forward inputs, with a key/value cache that must stay untouched ---------------------------
def cache_state(cache: HookedTransformerKeyValueCache) -> list[torch.Tensor]:
    tensors = [cache.previous_attention_mask]
    for entry in cache.entries:
        tensors += [entry.past_keys, entry.past_values]
    return [tensor.clone() for tensor in tensors]


def prompt_cache(model: HookedTransformer, batch: int = 2) -> HookedTransformerKeyValueCache:
    cache = HookedTransformerKeyValueCache.init_cache(model.cfg, model.cfg.device, batch)
    with torch.no_grad():
        model(TOKENS[:batch, :4], past_kv_cache=cache)
    return cache


ONE_TOKEN = TOKENS[:, 4:5]
BAD_CACHED_CALLS = {
    "token_id_d_vocab": (
        lambda m, c: m(ONE_TOKEN * 0 + D_VOCAB, past_kv_cache=c),
        ("Token ids must lie in [0, d_vocab=50)", "max 50"),
    ),
    "negative_token_id": (
        lambda m, c: m(ONE_TOKEN * 0 - 1, past_kv_cache=c),
        ("Token ids must lie in [0, d_vocab=50)", "min -1"),
    ),
    "empty": (
        lambda m, c: m(TOKENS[:, :0], past_kv_cache=c),
        ("Empty input", "(2, 0)", "expected at least one"),
    ),
    "longer_than_n_ctx": (
        lambda m, c: m(torch.zeros(2, 13, dtype=torch.long), past_kv_cache=c),
        ("4 cached + 13 new positions exceed n_ctx=16",),
    ),
    "mask_shape": (
        lambda m, c: m(ONE_TOKEN, attention_mask=torch.ones(2, 2), past_kv_cache=c),
        ("attention_mask has shape (2, 2)", "[batch, pos] = (2, 1)"),
    ),
    "mask_values": (
        lambda m, c: m(ONE_TOKEN, attention_mask=torch.full((2, 1), 2), past_kv_cache=c),
        ("only 0 (padding) and 1 (real token)", "[2]"),
    ),
    "batch_of_another_size": (
        lambda m, c: m(ONE_TOKEN[:1], past_kv_cache=c),
        ("holds [batch, heads, d_head] = (2,", "needs (1,"),
    ),
}


@pytest.mark.parametrize("case", list(BAD_CACHED_CALLS))
def test_bad_forward_input_leaves_the_kv_cache_untouched(model, case):
    call, fragments = BAD_CACHED_CALLS[case]
    before = logits(model)
    cache = prompt_cache(model)
    state = cache_state(cache)
    with pytest.raises(ValueError) as raised, torch.no_grad():
        call(model, cache)
    assert_message(raised, *fragments)
    assert all(torch.equal(a, b) for a, b in zip(cache_state(cache), state, strict=True))
    assert_unchanged(model, before)
    with torch.no_grad():  # and the cache still continues the prompt
        assert_close(model(ONE_TOKEN, past_kv_cache=cache), before[:, 4:5], 1e-5, "next step")


def test_cache_built_before_ungrouping_is_refused_before_it_changes(grouped):
    cache = prompt_cache(grouped)
    state = cache_state(cache)
    grouped.set_ungroup_grouped_query_attention(True)
    with pytest.raises(ValueError) as raised, torch.no_grad():
        grouped(ONE_TOKEN, past_kv_cache=cache)
    assert_message(raised, "layer 0 holds [batch, heads, d_head] = (2, 2, 8)", "needs (2, 4, 8)")
    assert all(torch.equal(a, b) for a, b in zip(cache_state(cache), state, strict=True))


def test_cache_that_only_some_layers_extended_is_refused(grouped):
    cache = HookedTransformerKeyValueCache.init_cache(grouped.cfg, grouped.cfg.device, 2)
    with torch.no_grad():
        grouped(TOKENS[:, :4], past_kv_cache=cache, stop_at_layer=1)  # layer 1 never ran
    state = cache_state(cache)
    with pytest.raises(ValueError) as raised, torch.no_grad():
        grouped(ONE_TOKEN, past_kv_cache=cache)
    assert_message(raised, "inconsistent: layer 1 holds 0 positions but its attention mask 4")
    assert all(torch.equal(a, b) for a, b in zip(cache_state(cache), state, strict=True))


@pytest.mark.parametrize(
    "residual",
    [torch.zeros(1, 0, D_MODEL), torch.zeros(0, 3, D_MODEL)],
    ids=["no_positions", "no_sequences"],
)
def test_empty_residual_names_what_is_expected(model, residual):
    with pytest.raises(ValueError) as raised:
        model(residual, start_at_layer=1)
    assert_message(raised, "Empty input", str(tuple(residual.shape)), "expected at least one")


def test_empty_tokens_name_what_is_expected(model):
    with pytest.raises(ValueError) as raised:
        model(torch.zeros(0, 3, dtype=torch.long))
    assert_message(raised, "Empty input", "(0, 3)", "expected at least one sequence")


def test_residual_longer_than_n_ctx_names_n_ctx(model):
    with pytest.raises(ValueError) as raised:
        model(torch.zeros(1, N_CTX + 1, D_MODEL), start_at_layer=1)
    assert_message(raised, "17 positions", "n_ctx=16")


@pytest.mark.parametrize("mask_value", [2, -1, 0.5])
def test_attention_mask_values_other_than_zero_and_one_are_refused(model, mask_value):
    mask = torch.ones(TOKENS.shape, dtype=torch.float if mask_value == 0.5 else torch.long)
    mask[0, 2] = mask_value
    with pytest.raises(ValueError) as raised:
        model(TOKENS, attention_mask=mask)
    assert_message(raised, "only 0 (padding) and 1 (real token)", str(mask_value))


# ----- use_attn_in on a grouped model ----------------------------------------------------------
def test_regrouping_while_use_attn_in_is_on_is_refused_and_changes_nothing(grouped):
    grouped.set_ungroup_grouped_query_attention(True)
    grouped.set_use_attn_in(True)
    before = logits(grouped)
    with pytest.raises(ValueError) as raised:
        grouped.set_ungroup_grouped_query_attention(False)
    assert_message(raised, "use_attn_in needs ungrouped attention", "turn it off first")
    assert grouped.cfg.ungroup_grouped_query_attention and grouped.cfg.use_attn_in
    assert_unchanged(grouped, before)


# ----- config values ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "field, value, expected",
    [
        ("act_fn", "swish", "'gelu_new', 'gelu_fast', 'silu', 'relu', 'gelu'"),
        ("normalization_type", "LayerNorm", "['LN', 'LNPre', 'RMS', 'RMSPre', None]"),
        ("positional_embedding_type", "learned", "['standard', 'rotary', 'shortformer', 'alibi']"),
    ],
)
def test_unknown_config_choice_lists_the_expected_choices(field, value, expected):
    with pytest.raises(ValueError) as raised:
        HookedTransformer({**GPT2_LIKE, field: value})
    assert_message(raised, f"Unknown {field} {value!r}", "expected one of", expected)


def test_unknown_architecture_lists_the_supported_ones():
    from transformers import OPTConfig

    hf_config = OPTConfig(num_hidden_layers=1, hidden_size=16, num_attention_heads=2)
    hf_config.architectures = ["OPTForCausalLM"]
    with pytest.raises(ValueError) as raised:
        loading_from_pretrained.get_pretrained_model_config("tiny-opt", hf_cfg=hf_config)
    assert_message(raised, "Unsupported architecture ['OPTForCausalLM']", "supported: [")
    assert "'LlamaForCausalLM'" in str(raised.value) and "'GPT2LMHeadModel'" in str(raised.value)


# ----- state dicts -------------------------------------------------------------------------------
def other_weights(model: HookedTransformer) -> dict[str, torch.Tensor]:
    fields = GROUPED if model.cfg.n_key_value_heads else GPT2_LIKE
    return HookedTransformer(HookedTransformerConfig(**fields, seed=1)).state_dict()


STATE_DICT_EDITS = {
    "missing": (lambda sd: sd.pop("unembed.b_U"), ValueError, "missing keys: ['unembed.b_U']"),
    "unexpected": (
        lambda sd: sd.__setitem__("blocks.0.attn.W_X", torch.zeros(1)),
        ValueError,
        "unexpected keys: ['blocks.0.attn.W_X']",
    ),
    "wrong_shape": (
        lambda sd: sd.__setitem__("embed.W_E", torch.zeros(D_VOCAB + 1, D_MODEL)),
        ValueError,
        "embed.W_E: got (51, 32), expected (50, 32)",
    ),
    "not_a_tensor": (
        lambda sd: sd.__setitem__("ln_final.w", [1.0] * D_MODEL),
        TypeError,
        "torch.Tensors; got these types instead: {'ln_final.w': 'list'}",
    ),
}


@pytest.mark.parametrize(
    "kind, strict",
    [(kind, True) for kind in STATE_DICT_EDITS] + [("wrong_shape", False), ("not_a_tensor", False)],
)
def test_refused_state_dict_leaves_every_weight_unchanged(model, kind, strict):
    edit, error, fragment = STATE_DICT_EDITS[kind]
    before = {key: value.clone() for key, value in model.state_dict().items()}
    state_dict = other_weights(model)
    edit(state_dict)
    with pytest.raises(error) as raised:
        model.load_state_dict(state_dict, strict=strict)
    assert_message(raised, fragment)
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[key], after[key]) for key in before)


# ----- hooks that cannot fire under the current flags -------------------------------------------
FLAGGED = [
    ("blocks.0.hook_q_input", "use_split_qkv_input"),
    ("blocks.1.hook_v_input", "use_split_qkv_input"),
    ("blocks.0.attn.hook_result", "use_attn_result"),
    ("blocks.1.hook_mlp_in", "use_hook_mlp_in"),
    ("blocks.0.hook_attn_in", "use_attn_in"),
    ("hook_tokens", "use_hook_tokens"),
]
ADD_VALID_THEN_FLAGGED = {
    "hooks": lambda m, name: enter_hooks(m, fwd_hooks=[(VALID, zero), (name, zero)]),
    "names_filter_list": lambda m, name: m.run_with_cache(TOKENS, names_filter=[VALID, name]),
    "add_perma_hook": lambda m, name: m.add_perma_hook(name, zero),
}


@pytest.mark.parametrize("entry", list(ADD_VALID_THEN_FLAGGED))
@pytest.mark.parametrize("hook_name, flag", FLAGGED)
def test_hook_that_cannot_fire_is_refused_naming_its_flag(model, entry, hook_name, flag):
    before = logits(model)
    with pytest.raises(ValueError) as raised:
        ADD_VALID_THEN_FLAGGED[entry](model, hook_name)
    assert_message(raised, hook_name, f"cfg.{flag} is True")
    assert_unchanged(model, before)


def test_hook_mlp_in_on_an_attention_only_model_is_refused():
    model = build(GPT2_LIKE, attn_only=True)
    before = logits(model)
    with pytest.raises(ValueError) as raised:
        model.run_with_hooks(TOKENS, fwd_hooks=[("blocks.0.hook_mlp_in", zero)])
    assert_message(raised, "blocks.0.hook_mlp_in never fires on an attention-only model")
    with pytest.raises(ValueError, match="attention-only"):
        model.set_use_hook_mlp_in(True)
    assert not model.cfg.use_hook_mlp_in
    assert_unchanged(model, before)


def test_hook_mlp_out_on_an_attention_only_model_is_refused():
    model = build(GPT2_LIKE, attn_only=True)
    with pytest.raises(ValueError, match="attn"):
        model.add_hook("blocks.0.hook_mlp_out", zero)


# ----- names_filter of the wrong type ----------------------------------------------------------
KINDS = "None, a hook name (str), a list or tuple of hook names, or a callable"
# Under the runtime type checker (pyproject addopts) the annotation refuses these first; its
# message names the parameter and its expected type as well. (beartype checks one random item
# of a list, so the refusal may come from any of the annotated functions on the way.)
CHECKER_FRAGMENTS = ("'names_filter': ", "names_filter: str | collections.abc.Sequence[str]")


@pytest.mark.parametrize(
    "names_filter, fragments",
    [
        (3, (KINDS, "got int")),
        ({VALID}, (KINDS, "got set")),
        (b"hook_embed", (KINDS, "got bytes")),
        ([VALID, 3], ("must hold hook names (str)", "got 3 of type int")),
    ],
    ids=["int", "set", "bytes", "list_with_int"],
)
def test_names_filter_of_the_wrong_type_names_the_accepted_kinds(model, names_filter, fragments):
    from jaxtyping import TypeCheckError

    before = logits(model)
    with pytest.raises(TypeError) as raised:
        model.run_with_cache(TOKENS, names_filter=names_filter)
    assert_message(raised, *(CHECKER_FRAGMENTS if raised.type is TypeCheckError else fragments))
    assert_unchanged(model, before)


# ----- paths -----------------------------------------------------------------------------------
@pytest.mark.parametrize("relative", [False, True], ids=["absolute", "relative"])
def test_config_of_a_directory_that_does_not_exist_raises_file_not_found(
    tmp_path, monkeypatch, relative
):
    monkeypatch.chdir(tmp_path)
    path = "./no-such-model" if relative else str(tmp_path / "no-such-model")
    with pytest.raises(FileNotFoundError, match=re.escape(f"No such model directory: {path!r}")):
        loading_from_pretrained.get_pretrained_model_config(path)
