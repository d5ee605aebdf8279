"""ActivationCache analysis: every decomposition sums to the residual it decomposes, head and
neuron results rebuild the sublayer outputs, and logit attributions explain logit
differences. Run on a GPT-2-like model and on a grouped (RMS, rotary, gated, GQA) model."""

import pytest
import torch

from tests.analysis_models import D_MLP, D_MODEL, KINDS, N_HEADS, N_LAYERS, build, tokens
from tests.helpers import assert_close

ATOL = 1e-5
BATCH, POS = 2, 7


@pytest.fixture(scope="module", params=KINDS)
def run(request):
    model = build(request.param)
    logits, cache = model.run_with_cache(tokens(BATCH, POS))
    return model, logits, cache


@pytest.fixture(scope="module", params=KINDS)
def processed_run(request):
    model = build(request.param, processed=True)
    logits, cache = model.run_with_cache(tokens(BATCH, POS))
    return model, logits, cache


def residual(cache, layer, mlp_input=False):
    if layer == N_LAYERS:
        return cache["resid_post", N_LAYERS - 1]
    return cache["resid_mid" if mlp_input else "resid_pre", layer]


POINTS = [(layer, False) for layer in range(N_LAYERS + 1)] + [
    (layer, True) for layer in range(N_LAYERS)
]


@pytest.mark.parametrize(("layer", "mlp_input"), POINTS)
def test_decompose_resid_sums_to_residual(run, layer, mlp_input):
    _, _, cache = run
    stack, labels = cache.decompose_resid(layer, mlp_input=mlp_input, return_labels=True)
    assert len(labels) == stack.shape[0]
    assert_close(stack.sum(0), residual(cache, layer, mlp_input), ATOL, "decompose_resid")


def test_decompose_resid_labels_and_modes(run):
    model, _, cache = run
    _, labels = cache.decompose_resid(return_labels=True)
    embeds = (
        ["embed", "pos_embed"] if model.cfg.positional_embedding_type == "standard" else ["embed"]
    )
    assert labels == [*embeds, "0_attn_out", "0_mlp_out", "1_attn_out", "1_mlp_out"]
    _, attn_labels = cache.decompose_resid(mode="attn", incl_embeds=False, return_labels=True)
    assert attn_labels == ["0_attn_out", "1_attn_out"]
    _, mlp_labels = cache.decompose_resid(1, mlp_input=True, mode="mlp", return_labels=True)
    assert mlp_labels == [*embeds, "0_mlp_out"]
    with pytest.raises(ValueError, match="mode"):
        cache.decompose_resid(mode="heads")


@pytest.mark.parametrize(("layer", "mlp_input"), POINTS)
def test_accumulated_resid_ends_with_the_residual(run, layer, mlp_input):
    _, _, cache = run
    stack, labels = cache.accumulated_resid(
        layer, incl_mid=True, mlp_input=mlp_input, return_labels=True
    )
    assert len(labels) == stack.shape[0]
    assert torch.equal(stack[-1], residual(cache, layer, mlp_input))
    assert labels[0] == "0_pre"


def test_accumulated_resid_labels():
    model = build("gpt2_like")
    _, cache = model.run_with_cache(tokens(BATCH, POS))
    _, labels = cache.accumulated_resid(return_labels=True)
    assert labels == ["0_pre", "1_pre", "final_post"]
    _, labels = cache.accumulated_resid(-1, incl_mid=True, return_labels=True)
    assert labels == ["0_pre", "0_mid", "1_pre", "1_mid", "final_post"]
    _, labels = cache.accumulated_resid(1, mlp_input=True, return_labels=True)
    assert labels == ["0_pre", "1_pre", "1_mid"]
    with pytest.raises(ValueError, match="mlp_input"):
        cache.accumulated_resid(N_LAYERS, mlp_input=True)
    with pytest.raises(ValueError, match="layer"):
        cache.accumulated_resid(N_LAYERS + 1)


@pytest.mark.parametrize("expand_neurons", [True, False])
@pytest.mark.parametrize(("layer", "mlp_input"), POINTS)
def test_full_resid_decomposition_sums_to_residual(run, layer, mlp_input, expand_neurons):
    _, _, cache = run
    stack, labels = cache.get_full_resid_decomposition(
        layer, mlp_input=mlp_input, expand_neurons=expand_neurons, return_labels=True
    )
    assert len(labels) == stack.shape[0] == len(set(labels))
    assert labels[-1] == "bias"
    head_layers = layer + 1 if mlp_input else layer
    n_mlp = layer * (D_MLP if expand_neurons else 1)
    n_embeds = stack.shape[0] - head_layers * N_HEADS - n_mlp - 1
    assert n_embeds in (1, 2)
    assert_close(stack.sum(0), residual(cache, layer, mlp_input), ATOL, "full decomposition")


def test_full_resid_decomposition_pos_slice(run):
    _, _, cache = run
    stack = cache.get_full_resid_decomposition(pos_slice=-1, expand_neurons=False)
    assert stack.shape[1:] == (BATCH, D_MODEL)
    assert_close(stack.sum(0), cache["resid_post", -1][:, -1], ATOL, "pos_slice=-1")
    stack = cache.get_full_resid_decomposition(pos_slice=[0, 3])
    assert_close(stack.sum(0), cache["resid_post", -1][:, [0, 3]], ATOL, "pos_slice=[0, 3]")


def test_compute_head_results_rebuild_attn_out(run):
    model, _, cache = run
    cache = type(cache)(dict(cache.cache_dict), model)
    assert "blocks.0.attn.hook_result" not in cache
    cache.compute_head_results()
    for layer in range(N_LAYERS):
        results = cache["result", layer]
        assert results.shape == (BATCH, POS, N_HEADS, D_MODEL)
        rebuilt = results.sum(-2) + model.blocks[layer].attn.b_O.detach()
        assert_close(rebuilt, cache["attn_out", layer], ATOL, f"layer {layer}")


def test_stack_head_results_match_hook_result(run):
    model, _, cache = run
    stack, labels = cache.stack_head_results(return_labels=True)
    assert stack.shape == (N_LAYERS * N_HEADS, BATCH, POS, D_MODEL)
    assert labels == [f"L{layer}H{head}" for layer in range(N_LAYERS) for head in range(N_HEADS)]
    model.set_use_attn_result(True)
    try:
        _, hooked = model.run_with_cache(tokens(BATCH, POS))
    finally:
        model.set_use_attn_result(False)
    from_hook = torch.cat([hooked["result", layer].movedim(-2, 0) for layer in range(N_LAYERS)])
    assert_close(stack, from_hook, ATOL, "computed vs hook_result")
    assert_close(hooked.stack_head_results(), from_hook, 0.0, "cached hook_result")


def test_stack_head_results_layer_zero_and_remainder(run):
    _, _, cache = run
    empty, labels = cache.stack_head_results(0, return_labels=True)
    assert empty.shape == (0, BATCH, POS, D_MODEL) and labels == []
    only_remainder = cache.stack_head_results(0, incl_remainder=True)
    assert_close(only_remainder[0], cache["resid_pre", 0], 0.0, "layer-0 remainder")
    stack, labels = cache.stack_head_results(
        1, incl_remainder=True, return_labels=True, pos_slice=2
    )
    assert stack.shape == (N_HEADS + 1, BATCH, D_MODEL)
    assert labels[-1] == "remainder"
    assert_close(stack.sum(0), cache["resid_pre", 1][:, 2], ATOL, "heads + remainder")


@pytest.mark.parametrize("layer", range(N_LAYERS))
def test_neuron_results_rebuild_mlp_out(run, layer):
    model, _, cache = run
    neurons = cache.get_neuron_results(layer)
    assert neurons.shape == (BATCH, POS, D_MLP, D_MODEL)
    rebuilt = neurons.sum(-2) + model.blocks[layer].mlp.b_out.detach()
    assert_close(rebuilt, cache["mlp_out", layer], ATOL, "neurons + b_out")


def test_stack_neuron_results(run):
    model, _, cache = run
    stack, labels = cache.stack_neuron_results(-1, return_labels=True)
    assert stack.shape == (N_LAYERS * D_MLP, BATCH, POS, D_MODEL)
    assert labels[:2] == ["L0N0", "L0N1"] and labels[-1] == f"L1N{D_MLP - 1}"
    expected = sum(
        cache["mlp_out", layer] - model.blocks[layer].mlp.b_out.detach() for layer in range(2)
    )
    assert_close(stack.sum(0), expected, ATOL, "stacked neurons")
    sliced, labels = cache.stack_neuron_results(2, neuron_slice=5, pos_slice=-1, return_labels=True)
    assert sliced.shape == (N_LAYERS, BATCH, D_MODEL) and labels == ["L0N5", "L1N5"]
    assert_close(sliced[1], cache.get_neuron_results(1, 5)[:, -1], 0.0, "neuron 5")
    with_remainder = cache.stack_neuron_results(1, incl_remainder=True)
    assert_close(with_remainder.sum(0), cache["resid_pre", 1], ATOL, "neurons + remainder")


def test_apply_ln_to_stack_matches_the_norm_on_folded_models(processed_run):
    _, _, cache = processed_run
    final = cache.apply_ln_to_stack(cache["resid_post", -1][None])[0]
    assert_close(final, cache["ln_final.hook_normalized"], ATOL, "ln_final")
    for layer in range(N_LAYERS):
        for mlp_input, norm in ((False, "ln1"), (True, "ln2")):
            resid = residual(cache, layer, mlp_input)
            normalised = cache.apply_ln_to_stack(resid[None], layer, mlp_input)[0]
            expected = cache[f"blocks.{layer}.{norm}.hook_normalized"]
            assert_close(normalised, expected, ATOL, f"{norm} of layer {layer}")
            recomputed = cache.apply_ln_to_stack(resid[None], layer, mlp_input, recompute_ln=True)
            assert_close(recomputed[0], expected, ATOL, f"recomputed {norm} of layer {layer}")


def test_apply_ln_to_stack_slices_the_cached_scale(processed_run):
    _, _, cache = processed_run
    expected = cache["ln_final.hook_normalized"][1, 3]
    stack = cache["resid_post", -1][1, 3][None]
    out = cache.apply_ln_to_stack(stack, pos_slice=3, batch_slice=1)
    assert_close(out[0], expected, ATOL, "int slices")
    no_batch = cache.apply_ln_to_stack(
        cache["resid_post", -1][1][None], batch_slice=1, has_batch_dim=False
    )
    assert_close(no_batch[0], cache["ln_final.hook_normalized"][1], ATOL, "has_batch_dim=False")
    with pytest.raises(ValueError, match="does not fit"):
        cache.apply_ln_to_stack(cache["resid_post", -1][:, :3][None])
    with pytest.raises(ValueError, match="batch"):
        cache.apply_ln_to_stack(cache["resid_post", -1][0][None], has_batch_dim=False)


def test_apply_ln_is_a_no_op_without_norms():
    model = build("gpt2_like", normalization_type=None)
    _, cache = model.run_with_cache(tokens(BATCH, POS))
    stack = cache.decompose_resid()
    assert torch.equal(cache.apply_ln_to_stack(stack), stack)


def test_accumulated_resid_apply_ln_final_is_the_logit_lens(processed_run):
    model, _, cache = processed_run
    lens = cache.accumulated_resid(apply_ln=True)
    assert_close(lens[-1], cache["ln_final.hook_normalized"], ATOL, "final component")
    expected = model.ln_final(cache["resid_pre", 0])
    assert_close(lens[0], expected, ATOL, "first component, own statistics")


def logit_difference(model, logits, correct, incorrect):
    bias = model.b_U[correct] - model.b_U[incorrect]
    return (logits[..., correct] - logits[..., incorrect] - bias).detach()


@pytest.mark.parametrize("decomposition", ["decompose_resid", "full", "heads", "accumulated"])
def test_logit_attrs_explain_the_logit_difference(processed_run, decomposition):
    model, logits, cache = processed_run
    if decomposition == "decompose_resid":
        stack = cache.decompose_resid(pos_slice=-1)
    elif decomposition == "full":
        stack = cache.get_full_resid_decomposition(pos_slice=-1)
    elif decomposition == "heads":
        stack = cache.stack_head_results(incl_remainder=True, pos_slice=-1)
    else:
        stack = cache.accumulated_resid(pos_slice=-1)[-1:]
    correct, incorrect = torch.tensor([3, 11]), torch.tensor([5, 7])
    attrs = cache.logit_attrs(stack, correct, incorrect, pos_slice=-1)
    assert attrs.shape == (stack.shape[0], BATCH)
    expected = logit_difference(model, logits[:, -1], correct, incorrect).diagonal()
    assert_close(attrs.sum(0), expected, 1e-4, decomposition)


def test_logit_attrs_token_forms(processed_run):
    model, logits, cache = processed_run
    stack = cache.decompose_resid()
    single = cache.logit_attrs(stack, 4, incorrect_tokens=torch.tensor(9))
    assert single.shape == (stack.shape[0], BATCH, cache["embed"].shape[1])
    assert_close(single.sum(0), logit_difference(model, logits, 4, 9), 1e-4, "one token pair")
    per_position = torch.full((BATCH, POS), 4)
    assert_close(cache.logit_attrs(stack, per_position), cache.logit_attrs(stack, 4), 0.0, "")
    with pytest.raises(ValueError, match="do not fit"):
        cache.logit_attrs(stack, torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="must match"):
        cache.logit_attrs(stack, torch.tensor([1, 2]), torch.tensor(3))
    with pytest.raises(ValueError, match="tokenizer"):
        cache.logit_attrs(stack, "hello")


def test_analysis_on_a_cache_without_batch_dim(processed_run):
    model, logits, _ = processed_run
    _, cache = model.run_with_cache(tokens(1, POS), remove_batch_dim=True)
    stack = cache.get_full_resid_decomposition()
    assert stack.shape[1:] == (POS, D_MODEL)
    assert_close(stack.sum(0), cache["resid_post", -1], ATOL, "no batch dim")
    attrs = cache.logit_attrs(stack, 3, has_batch_dim=False)
    assert attrs.shape == (stack.shape[0], POS)


def test_attn_only_model_decompositions():
    model = build("gpt2_like", attn_only=True)
    _, cache = model.run_with_cache(tokens(BATCH, POS))
    stack = cache.get_full_resid_decomposition()
    assert_close(stack.sum(0), cache["resid_post", -1], ATOL, "attn-only")
    assert_close(cache.decompose_resid().sum(0), cache["resid_post", -1], ATOL, "attn-only")
    with pytest.raises(ValueError, match="attention-only"):
        cache.stack_neuron_results(-1)
    with pytest.raises(ValueError, match="incl_mid"):
        cache.accumulated_resid(incl_mid=True)


@pytest.mark.parametrize(
    "overrides", [{"parallel_attn_mlp": True}, {"positional_embedding_type": "shortformer"}]
)
def test_decompositions_sum_on_parallel_and_shortformer_models(overrides):
    # Parallel blocks: the MLP reads resid_pre. Shortformer: hook_pos_embed is not added.
    model = build("gpt2_like", **overrides)
    _, cache = model.run_with_cache(tokens(BATCH, POS))
    for layer, mlp_input in POINTS:
        expected = residual(cache, layer, mlp_input and "parallel_attn_mlp" not in overrides)
        for stack in (
            cache.decompose_resid(layer, mlp_input),
            cache.get_full_resid_decomposition(layer, mlp_input),
            cache.get_full_resid_decomposition(layer, mlp_input, expand_neurons=False),
        ):
            assert_close(stack.sum(0), expected, ATOL, f"{overrides} at {layer}, {mlp_input}")


def test_apply_ln_does_not_centre_for_an_rms_final_norm():
    model = build("gpt2_like", processed=True, final_rms=True)
    _, cache = model.run_with_cache(tokens(BATCH, POS))
    final = cache.apply_ln_to_stack(cache["resid_post", -1][None])[0]
    assert_close(final, cache["ln_final.hook_normalized"], ATOL, "final_rms")
