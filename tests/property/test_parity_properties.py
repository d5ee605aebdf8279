"""Parity properties over random small configurations (issue 7; DESIGN.md, "Invariants we test").

Hypothesis draws tiny models: n_heads in {1, 2, 4, 6}, n_key_value_heads a divisor of it or
None, d_head in {4, 8}, standard / rotary (any even rotary_dim, both pairings) / shortformer
positions, every normalization type, gated or not, parallel attention or not, every act_fn,
fused or eager attention, plus some family features (sliding-window layers, qk-norm,
post-norms, soft caps, attention-only models). Weights are random and so are norm weights and
every bias, so a dropped one shows.

Properties: the fused attention kernel equals the eager path; split Q/K/V input, ungrouping,
use_attn_result, use_hook_mlp_in and (ungrouped) use_attn_in leave the logits unchanged; a
grouped model equals the multi-head model with its key/value heads repeated; process_weights_
keeps the log-probs; the key/value cache (prompt, then token by token) gives the logits of one
uncached forward; configurations that map onto a Hugging Face class give HF's eager logits.

Examples per property: TL_HYPOTHESIS_EXAMPLES, default 10 so CI stays fast. A deeper run:
    TL_HYPOTHESIS_EXAMPLES=200 pytest tests/property
"""

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import assert_close
from tests.tiny_hf import model_class_name, tiny_hf
from transformer_lens import (
    HookedTransformer,
    HookedTransformerConfig,
    HookedTransformerKeyValueCache,
)
from transformer_lens.HookedTransformerConfig import NORMALIZATION_TYPES, SUPPORTED_ACTIVATIONS

EXAMPLES = int(os.environ.get("TL_HYPOTHESIS_EXAMPLES", "10"))
PROPERTY = settings(max_examples=EXAMPLES, deadline=None)

ATOL = 1e-5
D_VOCAB, N_CTX, BATCH, POS = 40, 16, 2, 7
# Activations that Hugging Face's ACT2FN and our act_fn both know under the same name.
HF_ACTIVATIONS = ("silu", "gelu", "gelu_new", "gelu_fast", "gelu_pytorch_tanh", "relu")


@pytest.fixture(scope="module", autouse=True)
def no_grad():
    with torch.no_grad():
        yield


# ----- random configurations ---------------------------------------------------------------
@dataclass
class Spec:
    """A drawn configuration: HookedTransformerConfig fields and the seed of its weights."""

    fields: dict[str, Any]
    seed: int

    @property
    def grouped(self) -> bool:
        return self.fields["n_key_value_heads"] is not None

    def build(self, **overrides: Any) -> HookedTransformer:
        cfg = HookedTransformerConfig(**{**self.fields, **overrides}, seed=self.seed)
        model = HookedTransformer(cfg)
        randomize_norms_and_biases(model, self.seed)
        return model

    def tokens(self) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed)
        return torch.randint(0, D_VOCAB, (BATCH, POS), generator=generator)


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


@torch.no_grad()
def randomize_norms_and_biases(model: torch.nn.Module, seed: int) -> None:
    """init_weights sets norm weights to 1 and biases to 0; make them matter."""
    generator = torch.Generator().manual_seed(seed + 1)
    for name, param in model.named_parameters():
        leaf = name.rsplit(".", 1)[-1].lstrip("_")
        if leaf == "w":
            param.copy_(1 + 0.5 * torch.randn(param.shape, generator=generator))
        elif leaf.startswith("b"):
            param.copy_(0.5 * torch.randn(param.shape, generator=generator))


@st.composite
def specs(draw: st.DrawFn, kv: str = "any") -> Spec:
    """kv: "any" (None or a divisor), "set" (a divisor of n_heads)."""
    n_heads = draw(st.sampled_from([1, 2, 4, 6]))
    kv_choices: list[int | None] = list(divisors(n_heads))
    if kv == "any":
        kv_choices = [None, *kv_choices]
    d_head = draw(st.sampled_from([4, 8]))
    n_layers = draw(st.integers(1, 2))
    attn_only = draw(st.sampled_from([False, False, False, True]))
    positions = draw(st.sampled_from(["standard", "rotary", "shortformer"]))
    fields: dict[str, Any] = dict(
        n_layers=n_layers,
        d_model=draw(st.sampled_from([n_heads * d_head, 12])),
        n_ctx=N_CTX,
        d_head=d_head,
        n_heads=n_heads,
        n_key_value_heads=draw(st.sampled_from(kv_choices)),
        d_vocab=D_VOCAB,
        act_fn=draw(st.sampled_from(SUPPORTED_ACTIVATIONS)),
        d_mlp=None if attn_only else draw(st.sampled_from([8, 20])),
        attn_only=attn_only,
        normalization_type=draw(st.sampled_from(NORMALIZATION_TYPES)),
        final_rms=draw(st.booleans()),
        positional_embedding_type=positions,
        gated_mlp=draw(st.booleans()),
        parallel_attn_mlp=draw(st.booleans()),
        use_qk_norm=draw(st.booleans()),
        use_normalization_before_and_after=draw(st.booleans()),
        scale_attn_by_inverse_layer_idx=draw(st.booleans()),
        attn_scores_soft_cap=draw(st.sampled_from([-1.0, 2.0])),
        output_logits_soft_cap=draw(st.sampled_from([-1.0, 3.0])),
        use_fused_attention=draw(st.booleans()),
        rotary_base=10000.0,
        device="cpu",
    )
    if positions == "rotary":
        fields["rotary_dim"] = draw(st.sampled_from(list(range(2, d_head + 1, 2))))
        fields["rotary_adjacent_pairs"] = draw(st.booleans())
    if draw(st.booleans()):
        fields.update(
            use_local_attn=True,
            window_size=draw(st.integers(1, POS - 1)),
            attn_types=draw(
                st.lists(st.sampled_from(["local", "global"]), min_size=n_layers, max_size=n_layers)
            ),
        )
    return Spec(fields, draw(st.integers(0, 2**16)))


# ----- hook-mode parity ----------------------------------------------------------------------
def pass_through(tensor: torch.Tensor, hook: Any) -> None:
    """Returns nothing; being attached makes per-head inputs real copies (the per-head path)."""


def ends_with(*suffixes: str) -> Callable[[str], bool]:
    return lambda name: name.endswith(suffixes)


@PROPERTY
@given(spec=specs())
def test_split_qkv_input_leaves_logits_unchanged(spec):
    model = spec.build()
    tokens = spec.tokens()
    expected = model(tokens)
    model.set_use_split_qkv_input(True)
    assert_close(model(tokens), expected, ATOL, "split input, unhooked")
    hooked = [(ends_with("hook_q_input", "hook_k_input", "hook_v_input"), pass_through)]
    assert_close(model.run_with_hooks(tokens, fwd_hooks=hooked), expected, ATOL, "split, hooked")


@PROPERTY
@given(spec=specs(), left_pads=st.integers(0, 3))
def test_fused_attention_equals_the_eager_path(spec, left_pads):
    model = spec.build(use_fused_attention=True)
    tokens = spec.tokens()
    mask = torch.ones_like(tokens)
    mask[0, :left_pads] = 0
    fused = model(tokens, attention_mask=mask)
    model.cfg.use_fused_attention = False
    assert_close(fused, model(tokens, attention_mask=mask), ATOL, "fused vs eager")


@PROPERTY
@given(spec=specs(kv="set"))
def test_ungrouping_leaves_logits_unchanged(spec):
    model = spec.build()
    tokens = spec.tokens()
    expected, grouped_cache = model.run_with_cache(tokens, names_filter=ends_with("attn.hook_k"))
    model.set_ungroup_grouped_query_attention(True)
    logits, cache = model.run_with_cache(tokens, names_filter=ends_with("attn.hook_k"))
    assert_close(logits, expected, ATOL, "ungrouped")
    group = spec.fields["n_heads"] // spec.fields["n_key_value_heads"]
    for name, keys in grouped_cache.items():  # later layers see rounding-level differences
        assert_close(cache[name], keys.repeat_interleave(group, dim=2), ATOL, name)


@PROPERTY
@given(spec=specs(kv="set"))
def test_grouped_model_equals_multi_head_model_with_repeated_kv_heads(spec):
    grouped = spec.build()
    multi_head = spec.build(n_key_value_heads=None)
    state_dict = {}
    for key, value in grouped.state_dict().items():
        if ".attn._" in key:  # _W_K, _b_K, _W_V, _b_V: take the per-query-head property
            layer, name = int(key.split(".")[1]), key.rsplit("._", 1)[1]
            key, value = key.replace("._", "."), getattr(grouped.blocks[layer].attn, name)
        state_dict[key] = value
    multi_head.load_state_dict(state_dict)
    tokens = spec.tokens()
    assert_close(multi_head(tokens), grouped(tokens), ATOL, "multi-head with repeated K/V")


@PROPERTY
@given(spec=specs(), use_attn_result=st.booleans(), use_hook_mlp_in=st.booleans())
def test_attn_result_and_hook_mlp_in_leave_logits_unchanged(spec, use_attn_result, use_hook_mlp_in):
    model = spec.build()
    tokens = spec.tokens()
    expected = model(tokens)
    use_hook_mlp_in = use_hook_mlp_in and not spec.fields["attn_only"]
    use_attn_result = use_attn_result or not use_hook_mlp_in
    model.set_use_attn_result(use_attn_result)
    model.set_use_hook_mlp_in(use_hook_mlp_in)
    logits, cache = model.run_with_cache(tokens)
    assert_close(logits, expected, ATOL, f"attn_result={use_attn_result}, mlp_in={use_hook_mlp_in}")
    assert ("blocks.0.attn.hook_result" in cache) == use_attn_result
    assert ("blocks.0.hook_mlp_in" in cache) == use_hook_mlp_in
    if use_attn_result and not spec.fields["use_normalization_before_and_after"]:
        for layer in range(spec.fields["n_layers"]):
            summed = cache[f"blocks.{layer}.attn.hook_result"].sum(dim=2)
            summed = summed + model.blocks[layer].attn.b_O
            assert_close(summed, cache[f"blocks.{layer}.hook_attn_out"], ATOL, "sum of results")


@PROPERTY
@given(spec=specs())
def test_attn_in_on_an_ungrouped_model_leaves_logits_unchanged(spec):
    model = spec.build()
    tokens = spec.tokens()
    expected = model(tokens)
    if model.cfg.is_grouped:
        model.set_ungroup_grouped_query_attention(True)
    model.set_use_attn_in(True)
    assert_close(model(tokens), expected, ATOL, "attn_in, unhooked")
    hooked = [(ends_with("hook_attn_in"), pass_through)]
    assert_close(model.run_with_hooks(tokens, fwd_hooks=hooked), expected, ATOL, "attn_in, hooked")


@pytest.mark.filterwarnings(
    "ignore:center_writing_weights skipped:UserWarning",
    "ignore:center_unembed skipped:UserWarning",
)
@PROPERTY
@given(spec=specs().filter(lambda spec: spec.fields["act_fn"] != "solu_ln"))
def test_process_weights_keeps_log_probs_or_refuses_before_changing_anything(spec):
    """DESIGN.md: weight processing changes logits only by a per-position constant. LayerNorm
    with a gated MLP cannot be folded exactly and is refused. (solu_ln is left out: see
    test_no_leaks.py::test_failed_process_weights_leaves_the_model_unchanged.)"""
    model = spec.build()
    tokens = spec.tokens()
    before = model(tokens)
    try:
        model.process_weights_()
    except ValueError as error:
        assert "cannot be folded exactly" in str(error)
        assert torch.equal(model(tokens), before)
        return
    assert_close(model(tokens).log_softmax(-1), before.log_softmax(-1), ATOL, "processed")


def test_shortformer_position_embeddings_change_the_logits():
    fields = dict(n_layers=1, d_model=16, n_ctx=N_CTX, d_head=8, d_vocab=D_VOCAB, act_fn="gelu")
    spec = Spec(dict(fields, positional_embedding_type="shortformer", device="cpu"), seed=0)
    model = spec.build()
    tokens = spec.tokens()
    before = model(tokens)
    model.pos_embed.W_pos.mul_(3.0)
    assert (model(tokens) - before).abs().max() > 1e-3


# ----- key/value cache -------------------------------------------------------------------------
@PROPERTY
@given(
    spec=specs(),
    prompt_length=st.integers(1, POS - 1),
    ungroup=st.booleans(),
    split=st.booleans(),
    left_pads=st.integers(0, 3),
)
def test_kv_cache_prompt_then_token_by_token_equals_uncached_logits(
    spec, prompt_length, ungroup, split, left_pads
):
    model = spec.build()
    model.set_ungroup_grouped_query_attention(ungroup)
    model.set_use_split_qkv_input(split)
    tokens = spec.tokens()
    mask = torch.ones_like(tokens)
    mask[0, :left_pads] = 0
    expected = model(tokens, attention_mask=mask)
    cache = HookedTransformerKeyValueCache.init_cache(model.cfg, model.cfg.device, BATCH)
    steps = [(0, prompt_length), *((i, i + 1) for i in range(prompt_length, POS))]
    logits = torch.cat(
        [
            model(tokens[:, start:stop], attention_mask=mask[:, start:stop], past_kv_cache=cache)
            for start, stop in steps
        ],
        dim=1,
    )
    real = mask.bool()  # what a pad position predicts is nobody's concern
    assert_close(logits[real], expected[real], ATOL, "cached logits")


# ----- Hugging Face parity ---------------------------------------------------------------------
@dataclass
class HFCase:
    family: str  # a tiny_hf family
    fields: dict[str, Any]  # its config fields, over tiny_hf's defaults
    seed: int


@st.composite
def hf_cases(draw: st.DrawFn) -> HFCase:
    """Configurations our random specs share with a Hugging Face class: Llama (RMS, full
    rotary, gated, grouped), Mistral (+ sliding window), GPT-2 (LN, standard positions) and
    GPT-NeoX (LN, partial rotary, parallel or sequential blocks)."""
    family = draw(st.sampled_from(["llama", "mistral", "gpt2", "neox"]))
    n_heads = draw(st.sampled_from([1, 2, 4, 6]))
    d_head = draw(st.sampled_from([4, 8]))
    n_layers = draw(st.integers(1, 2))
    d_mlp = draw(st.sampled_from([8, 20]))
    seed = draw(st.integers(0, 2**16))
    if family in ("llama", "mistral"):
        variant = dict(
            vocab_size=D_VOCAB,
            hidden_size=draw(st.sampled_from([n_heads * d_head, 12])),
            intermediate_size=d_mlp,
            num_hidden_layers=n_layers,
            num_attention_heads=n_heads,
            num_key_value_heads=draw(st.sampled_from(divisors(n_heads))),
            head_dim=d_head,
            max_position_embeddings=N_CTX,
            hidden_act=draw(st.sampled_from(HF_ACTIVATIONS)),
            rms_norm_eps=draw(st.sampled_from([1e-5, 1e-6])),
        )
        if family == "llama":
            variant["attention_bias"] = draw(st.booleans())
            return HFCase("llama", variant, seed)
        variant["sliding_window"] = draw(st.integers(2, POS))
        return HFCase("mistral", variant, seed)
    activation = draw(st.sampled_from([*HF_ACTIVATIONS, "swish"]))
    if family == "gpt2":
        config = dict(
            vocab_size=D_VOCAB,
            n_embd=n_heads * d_head,
            n_layer=n_layers,
            n_head=n_heads,
            n_inner=d_mlp,
            n_positions=N_CTX,
            activation_function=activation,
            scale_attn_by_inverse_layer_idx=draw(st.booleans()),
        )
        return HFCase("gpt2", config, seed)
    config = dict(
        vocab_size=D_VOCAB,
        hidden_size=n_heads * d_head,
        num_hidden_layers=n_layers,
        num_attention_heads=n_heads,
        intermediate_size=d_mlp,
        max_position_embeddings=N_CTX,
        rotary_pct=draw(st.sampled_from(list(range(2, d_head + 1, 2)))) / d_head,
        use_parallel_residual=draw(st.booleans()),
        hidden_act=activation,
    )
    return HFCase("neox", config, seed)


@pytest.mark.filterwarnings("ignore:Could not load a tokenizer:UserWarning")
@PROPERTY
@given(case=hf_cases())
def test_configurations_that_map_onto_hugging_face_match_its_logits(case):
    hf_model = tiny_hf(case.family, seed=case.seed, **case.fields)
    model = HookedTransformer.from_pretrained_no_processing(
        f"tiny-{model_class_name(case.family)}", hf_model=hf_model, device="cpu"
    )
    tokens = torch.randint(0, D_VOCAB, (BATCH, POS), generator=torch.Generator().manual_seed(0))
    assert_close(model(tokens), hf_model(tokens).logits, ATOL, model_class_name(case.family))
