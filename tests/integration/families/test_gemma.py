"""Gemma-1 parity with Hugging Face on tiny random models: multi-query, grouped and multi-head.

The HF reference is `GemmaForCausalLM` with eager attention (tests/conftest.py). Besides the
logits, the hook flags (split Q/K/V input, attn_in, attn_result, mlp_in, ungrouping) must
leave the maths unchanged, expose API.md §3's shapes, and patch exactly what they name.
"""

import copy
import os

import pytest
import torch

from tests.helpers import assert_close, pretrained_loader
from transformer_lens import HookedTransformer

pytestmark = [
    # Expected on every load of a tiny model under an official name, offline.
    pytest.mark.filterwarnings("ignore:hf_model's config differs from the official:UserWarning"),
    pytest.mark.filterwarnings("ignore:Could not load a tokenizer:UserWarning"),
    pytest.mark.filterwarnings("ignore:center_writing_weights skipped:UserWarning"),
]

N_KV = pytest.mark.parametrize("n_kv", [1, 2, 8], ids=["mqa", "gqa", "mha"])
PROCESSED = pytest.mark.parametrize("processed", [False, True], ids=["raw", "processed"])
N_LAYERS, N_HEADS, D_MODEL, D_HEAD = 2, 8, 64, 16
BATCH, POS = 2, 11
# float32 on both sides: the two implementations only sum in different orders. Measured max
# abs diffs are <= 5e-7 on logits of magnitude ~1.5 (<= 1e-6 on any hook), so 1e-5 is
# generous yet far below what a wrong operation (a norm weight, a mis-grouped head) produces.
ATOL = 1e-5
SPLIT_INPUTS = ("hook_q_input", "hook_k_input", "hook_v_input")


@pytest.fixture(autouse=True)
def _no_grad():
    with torch.no_grad():
        yield


def tokens(seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 101, (BATCH, POS), generator=torch.Generator().manual_seed(seed))


def load(hf, processed: bool = False, **kwargs) -> HookedTransformer:
    # processed: fold_ln, center_unembed, fold_value_biases (centring writes is skipped)
    return pretrained_loader(processed)("google/gemma-2b", hf_model=hf, **kwargs)


def is_split_input(name: str) -> bool:
    return name.endswith(SPLIT_INPUTS)


def materialise(x: torch.Tensor, hook) -> torch.Tensor:
    """An identity hook whose output is a real per-head tensor, not a broadcast view."""
    return x.clone()


def run_cached(model, toks, names, fwd_hooks=()):
    with model.hooks(fwd_hooks=list(fwd_hooks)):
        return model.run_with_cache(toks, names_filter=names, return_cache_object=False)


# ------------------------------------------------------------------ parity with HF


@N_KV
def test_logits_match_hf_eager(tiny_gemma_factory, n_kv):
    hf = tiny_gemma_factory(n_kv)
    with pytest.warns(UserWarning, match="differs from the official google/gemma-2b"):
        raw = load(hf)
    processed = load(hf, processed=True)
    toks = tokens()
    expected = hf(toks).logits
    assert_close(raw(toks), expected, ATOL, "unprocessed logits")
    # center_unembed shifts every logit of a position equally: compare log-probs.
    assert_close(
        processed(toks).log_softmax(-1), expected.log_softmax(-1), ATOL, "processed log_softmax"
    )


@N_KV
@PROCESSED
def test_residual_stream_and_patterns_match_hf(tiny_gemma_factory, n_kv, processed):
    hf = tiny_gemma_factory(n_kv)
    model = load(hf, processed)
    toks = tokens()
    out = hf(toks, output_hidden_states=True, output_attentions=True)
    _, cache = model.run_with_cache(toks)
    # HF's last hidden state is after the final norm: apply HF's own norm to ours.
    final = hf.model.norm(cache[f"blocks.{N_LAYERS - 1}.hook_resid_post"])
    assert len(out.hidden_states) == N_LAYERS + 1
    assert_close(cache["hook_embed"], out.hidden_states[0], ATOL, "hook_embed")
    for layer in range(N_LAYERS - 1):
        name = f"blocks.{layer}.hook_resid_post"
        assert_close(cache[name], out.hidden_states[layer + 1], ATOL, name)
    assert_close(final, out.hidden_states[-1], ATOL, "final norm of the last resid_post")
    for layer in range(N_LAYERS):
        name = f"blocks.{layer}.attn.hook_pattern"
        assert_close(cache[name], out.attentions[layer], ATOL, name)


# ------------------------------------------------------------------ flags keep the maths


@N_KV
@PROCESSED
def test_split_qkv_input_matches_fused(tiny_gemma_factory, n_kv, processed):
    model = load(tiny_gemma_factory(n_kv), processed)
    toks = tokens()
    expected = model(toks)
    model.set_use_split_qkv_input(True)
    assert_close(model(toks), expected, ATOL, "split qkv input")


@N_KV
@PROCESSED
def test_split_qkv_input_per_head_projection_matches_fused(
    tiny_gemma_factory, request, n_kv, processed
):
    model = load(tiny_gemma_factory(n_kv), processed)
    toks = tokens()
    expected = model(toks)
    model.set_use_split_qkv_input(True)
    ln1_shapes: list[tuple[int, ...]] = []
    hooks = [
        (is_split_input, materialise),
        ("blocks.0.ln1.hook_normalized", lambda x, hook: ln1_shapes.append(tuple(x.shape))),
    ]
    logits, _ = run_cached(model, toks, [], hooks)
    # ln1 normalised the query input per head: proof the general projection ran. (A K/V
    # input with a single head, as under MQA, is normalised as [batch, pos, d_model].)
    assert (BATCH, POS, N_HEADS, D_MODEL) in ln1_shapes, ln1_shapes
    assert_close(logits, expected, ATOL, "split qkv input, per-head path")


@N_KV
def test_attn_result_and_hook_mlp_in_leave_logits_unchanged(tiny_gemma_factory, n_kv):
    model = load(tiny_gemma_factory(n_kv))
    toks = tokens()
    expected = model(toks)
    model.set_use_attn_result(True)
    logits, cache = run_cached(model, toks, None)
    assert_close(logits, expected, ATOL, "use_attn_result logits")
    for layer, block in enumerate(model.blocks):
        heads_sum = cache[f"blocks.{layer}.attn.hook_result"].sum(dim=2) + block.attn.b_O
        attn_out = cache[f"blocks.{layer}.hook_attn_out"]
        assert_close(heads_sum, attn_out, ATOL, f"layer {layer} result summed over heads")
    model.set_use_attn_result(False)
    model.set_use_hook_mlp_in(True)
    logits, cache = run_cached(model, toks, lambda n: n.endswith(("hook_mlp_in", "resid_mid")))
    assert_close(logits, expected, ATOL, "use_hook_mlp_in logits")
    for layer in range(N_LAYERS):
        assert torch.equal(
            cache[f"blocks.{layer}.hook_mlp_in"], cache[f"blocks.{layer}.hook_resid_mid"]
        )


@N_KV
def test_ungrouped_matches_grouped(tiny_gemma_factory, n_kv):
    model = load(tiny_gemma_factory(n_kv))
    toks = tokens()
    expected, grouped = run_cached(model, toks, None)
    model.set_ungroup_grouped_query_attention(True)
    logits, _ = run_cached(model, toks, None)
    assert_close(logits, expected, ATOL, "ungrouped logits")
    group = N_HEADS // n_kv
    for layer in range(N_LAYERS):
        names = [f"blocks.{layer}.attn.hook_{kind}" for kind in "kv"]
        # Start each layer from the grouped run's residual: after layer 0 the two runs differ
        # by float rounding (different matmul shapes), and k/v must be equal bit for bit.
        resid = grouped[f"blocks.{layer}.hook_resid_pre"]
        _, ungrouped = model.run_with_cache(
            resid, start_at_layer=layer, stop_at_layer=layer + 1, names_filter=names
        )
        for name in names:
            assert grouped[name].shape == (BATCH, POS, n_kv, D_HEAD)
            assert ungrouped[name].shape == (BATCH, POS, N_HEADS, D_HEAD)
            assert torch.equal(ungrouped[name], grouped[name].repeat_interleave(group, dim=2)), name


@pytest.mark.parametrize("n_kv", [1, 2], ids=["mqa", "gqa"])
def test_attn_in_on_grouped_model_needs_ungrouping(tiny_gemma_factory, n_kv):
    model = load(tiny_gemma_factory(n_kv))
    toks = tokens()
    expected = model(toks)
    with pytest.raises(ValueError, match="use_split_qkv_input"):
        model.set_use_attn_in(True)
    assert not model.cfg.use_attn_in
    model.cfg.use_attn_in = True  # bypassing the setter: forward refuses as well
    with pytest.raises(ValueError, match="use_split_qkv_input"):
        model(toks)
    model.cfg.use_attn_in = False
    model.set_ungroup_grouped_query_attention(True)
    model.set_use_attn_in(True)
    assert_close(model(toks), expected, ATOL, "attn_in logits")


@N_KV
def test_hook_attn_in_is_per_query_head(tiny_gemma_factory, request, n_kv):
    model = load(tiny_gemma_factory(n_kv))
    toks = tokens()
    expected = model(toks)
    if n_kv != N_HEADS:
        model.set_ungroup_grouped_query_attention(True)
    model.set_use_attn_in(True)  # a multi-head model needs no ungrouping
    assert_close(model(toks), expected, ATOL, "attn_in logits (broadcast input)")
    logits, cache = run_cached(model, toks, lambda n: n.endswith("hook_attn_in"))
    assert_close(logits, expected, ATOL, "attn_in logits (hooked)")
    for layer in range(N_LAYERS):
        assert cache[f"blocks.{layer}.hook_attn_in"].shape == (BATCH, POS, N_HEADS, D_MODEL)


# ------------------------------------------------------------------ hook shapes (API.md §3)


def expected_shapes(n_kv: int, split: bool, ungroup: bool) -> dict[str, tuple[int, ...]]:
    kv = N_HEADS if ungroup else n_kv
    shapes = {f"attn.hook_{n}": (BATCH, POS, N_HEADS, D_HEAD) for n in ("q", "rot_q", "z")}
    shapes |= {f"attn.hook_{n}": (BATCH, POS, kv, D_HEAD) for n in ("k", "v", "rot_k")}
    shapes |= {f"attn.hook_{n}": (BATCH, N_HEADS, POS, POS) for n in ("attn_scores", "pattern")}
    shapes["attn.hook_result"] = (BATCH, POS, N_HEADS, D_MODEL)
    if split:
        shapes["hook_q_input"] = (BATCH, POS, N_HEADS, D_MODEL)
        shapes["hook_k_input"] = shapes["hook_v_input"] = (BATCH, POS, kv, D_MODEL)
    return shapes


@N_KV
@pytest.mark.parametrize(
    "split, ungroup",
    [(False, False), (True, False), (False, True), (True, True)],
    ids=["default", "split", "ungroup", "split+ungroup"],
)
def test_hook_shapes_follow_gqa_table(tiny_gemma_factory, request, n_kv, split, ungroup):
    # Caching copies the split inputs into real per-head tensors (MQA's single K/V head is
    model = load(tiny_gemma_factory(n_kv))
    model.set_use_attn_result(True)
    model.set_use_split_qkv_input(split)
    model.set_ungroup_grouped_query_attention(ungroup)
    _, cache = run_cached(model, tokens(), None)
    shapes = expected_shapes(n_kv, split, ungroup)
    for layer in range(N_LAYERS):
        for suffix, shape in shapes.items():
            name = f"blocks.{layer}.{suffix}"
            assert tuple(cache[name].shape) == shape, f"{name}: {tuple(cache[name].shape)}"
        fired = {
            name for name in cache if name.startswith(f"blocks.{layer}.") and is_split_input(name)
        }
        assert len(fired) == (3 if split else 0), fired


# ------------------------------------------------------------------ patching per-head inputs


@pytest.mark.parametrize("g", [0, 1])
def test_patching_one_kv_head_key_input_changes_only_its_query_group(tiny_gemma_factory, g):
    model = load(tiny_gemma_factory(2))
    model.set_use_split_qkv_input(True)
    group = N_HEADS // 2
    _, cache_b = run_cached(model, tokens(1), ["blocks.1.hook_resid_pre"])
    other = cache_b["blocks.1.hook_resid_pre"]

    def replace(x, hook):
        patched = x.clone()
        patched[:, :, g] = other
        return patched

    def edit_in_place(x, hook):
        x[:, :, g] = other

    def z_of_layer1(hook_fn):
        _, cache = run_cached(
            model, tokens(0), ["blocks.1.attn.hook_z"], [("blocks.1.hook_k_input", hook_fn)]
        )
        return cache["blocks.1.attn.hook_z"]

    baseline = z_of_layer1(materialise)  # the same per-head code path, unpatched
    _, plain = run_cached(model, tokens(0), ["blocks.1.attn.hook_z"])
    assert_close(baseline, plain["blocks.1.attn.hook_z"], ATOL, "materialised k input")
    patched = z_of_layer1(replace)
    for head in range(N_HEADS):
        if head // group == g:
            changed = float((patched[:, :, head] - baseline[:, :, head]).abs().max())
            assert changed > 1e-3, f"query head {head} of kv head {g} unchanged ({changed:.1e})"
        else:
            assert torch.equal(patched[:, :, head], baseline[:, :, head]), f"query head {head}"
    assert torch.equal(z_of_layer1(edit_in_place), patched)


@N_KV
@pytest.mark.parametrize("materialised", [False, True], ids=["expanded", "cloned"])
def test_replacing_layer1_inputs_reproduces_other_prompt(
    tiny_gemma_factory, request, n_kv, materialised
):
    model = load(tiny_gemma_factory(n_kv))
    model.set_use_split_qkv_input(True)
    names = ["blocks.1.hook_resid_pre", "blocks.1.hook_attn_out"]
    _, cache_a = run_cached(model, tokens(0), names)
    _, cache_b = run_cached(model, tokens(1), names)
    b_resid = cache_b["blocks.1.hook_resid_pre"]

    def use_b(x, hook):
        patched = b_resid[:, :, None, :].expand_as(x)
        return patched.clone() if materialised else patched

    hooks = [(lambda n: n.startswith("blocks.1.") and is_split_input(n), use_b)]
    _, patched = run_cached(model, tokens(0), ["blocks.1.hook_attn_out"], hooks)
    target = cache_b["blocks.1.hook_attn_out"]
    assert float((cache_a["blocks.1.hook_attn_out"] - target).abs().max()) > 1e-2
    assert_close(patched["blocks.1.hook_attn_out"], target, ATOL, "patched attn_out")


# ------------------------------------------------------------------ loading


@N_KV
def test_loading_from_saved_directory_matches_hf_model(tiny_gemma_factory, n_kv, tmp_path):
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    hf = tiny_gemma_factory(n_kv)
    hf.save_pretrained(tmp_path)
    from_directory = HookedTransformer.from_pretrained_no_processing(str(tmp_path))
    assert from_directory.cfg.n_key_value_heads == n_kv
    toks = tokens()
    assert torch.equal(from_directory(toks), load(hf)(toks))


# bf16 keeps 8 significant bits; logits here are below 2, where one bf16 ulp is 2^-7 = 0.0078.
# Both sides round after every op, in different places (we store 1 + w rounded to bf16, HF adds
# the 1 in float32), so they disagree by about an ulp: measured max 0.0078 (one ulp) for every
# n_kv, while HF bf16 itself is 0.004-0.005 away from float32. 0.02 is ~2.5x that; a norm weight
# missing its 1 + shifts logits by ~0.1. Finer errors are the float32 tests' job.
BF16_ATOL = 0.02


@N_KV
def test_bfloat16_logits_match_hf_bfloat16(tiny_gemma_factory, n_kv):
    hf = tiny_gemma_factory(n_kv)
    model = load(hf, dtype=torch.bfloat16)
    hf_bf16 = copy.deepcopy(hf).to(torch.bfloat16)
    toks = tokens()
    logits, expected = model(toks), hf_bf16(toks).logits
    assert logits.dtype == torch.bfloat16
    assert_close(logits.float(), expected.float(), BF16_ATOL, "bf16 logits")
