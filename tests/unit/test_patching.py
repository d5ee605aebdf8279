"""transformer_lens.patching: documented shapes (key/value heads on grouped models), a zero
effect when the clean run is patched with its own cache, and real effects otherwise."""

import numpy as np
import pytest
import torch

from tests.analysis_models import KINDS, N_HEADS, N_KV, N_LAYERS, build, tokens
from transformer_lens import patching

POS = 4
CORRUPTED_POSITION = 2


def logit_metric(logits):
    return logits[:, -1, 3].sum() - logits[:, -1, 7].sum()


@pytest.fixture(scope="module", params=KINDS)
def setup(request):
    model = build(request.param)
    clean_tokens = tokens(2, POS)
    corrupted_tokens = clean_tokens.clone()
    corrupted_tokens[:, CORRUPTED_POSITION] = (corrupted_tokens[:, CORRUPTED_POSITION] + 1) % 61
    clean_logits, clean_cache = model.run_with_cache(clean_tokens)
    with torch.no_grad():
        corrupted_value = float(logit_metric(model(corrupted_tokens)))
    clean_value = float(logit_metric(clean_logits.detach()))
    assert abs(clean_value - corrupted_value) > 1e-3, "the corruption must matter"
    return model, clean_tokens, corrupted_tokens, clean_cache, clean_value, corrupted_value


def kv_heads(model):
    return N_KV if model.cfg.n_key_value_heads is not None else N_HEADS


def expected_shapes(model):
    kv = kv_heads(model)
    return {
        "get_act_patch_resid_pre": (N_LAYERS, POS),
        "get_act_patch_resid_mid": (N_LAYERS, POS),
        "get_act_patch_attn_out": (N_LAYERS, POS),
        "get_act_patch_mlp_out": (N_LAYERS, POS),
        "get_act_patch_attn_head_out_by_pos": (N_LAYERS, POS, N_HEADS),
        "get_act_patch_attn_head_q_by_pos": (N_LAYERS, POS, N_HEADS),
        "get_act_patch_attn_head_k_by_pos": (N_LAYERS, POS, kv),
        "get_act_patch_attn_head_v_by_pos": (N_LAYERS, POS, kv),
        "get_act_patch_attn_head_pattern_by_pos": (N_LAYERS, N_HEADS, POS),
        "get_act_patch_attn_head_pattern_dest_src_pos": (N_LAYERS, N_HEADS, POS, POS),
        "get_act_patch_attn_head_out_all_pos": (N_LAYERS, N_HEADS),
        "get_act_patch_attn_head_q_all_pos": (N_LAYERS, N_HEADS),
        "get_act_patch_attn_head_k_all_pos": (N_LAYERS, kv),
        "get_act_patch_attn_head_v_all_pos": (N_LAYERS, kv),
        "get_act_patch_attn_head_pattern_all_pos": (N_LAYERS, N_HEADS),
        "get_act_patch_block_every": (3, N_LAYERS, POS),
        "get_act_patch_attn_head_all_pos_every": (5, N_LAYERS, N_HEADS),
        "get_act_patch_attn_head_by_pos_every": (5, N_LAYERS, POS, N_HEADS),
    }


HELPERS = list(expected_shapes(build("gpt2_like", n_layers=1)))


@pytest.fixture(scope="module")
def clean_into_clean(setup):
    """Every helper, run on the clean tokens with the clean cache."""
    model, clean_tokens, _, clean_cache, _, _ = setup
    return {
        name: getattr(patching, name)(model, clean_tokens, clean_cache, logit_metric)
        for name in HELPERS
    }


@pytest.mark.parametrize("name", HELPERS)
def test_clean_cache_into_clean_run_changes_nothing(setup, clean_into_clean, name):
    model, _, _, _, clean_value, _ = setup
    result = clean_into_clean[name]
    assert tuple(result.shape) == expected_shapes(model)[name]
    finite = ~torch.isnan(result)
    torch.testing.assert_close(
        result[finite], torch.full_like(result[finite], clean_value), atol=1e-4, rtol=0
    )


def test_every_helpers_pad_key_value_rows_with_nan(setup, clean_into_clean):
    model = setup[0]
    kv = kv_heads(model)
    for name in ("get_act_patch_attn_head_all_pos_every", "get_act_patch_attn_head_by_pos_every"):
        nan = torch.isnan(clean_into_clean[name])
        assert nan[2:4, ..., kv:].all()
        assert not nan[..., :kv].any()
        assert not nan[[0, 1, 4]].any()


def test_key_value_helpers_docstrings_state_the_head_axis():
    for name in HELPERS:
        if "_k_" in name or "_v_" in name:
            doc = getattr(patching, name).__doc__
            assert "kv_head_index (n_key_value_heads) for k/v on grouped models" in doc, name
    for name in ("get_act_patch_attn_head_all_pos_every", "get_act_patch_attn_head_by_pos_every"):
        assert "NaN" in getattr(patching, name).__doc__


def test_patching_the_corrupted_token_restores_the_clean_metric(setup):
    model, _, corrupted_tokens, clean_cache, clean_value, corrupted_value = setup
    result = patching.get_act_patch_resid_pre(model, corrupted_tokens, clean_cache, logit_metric)
    # Layer 0: only the corrupted position differs, so patching it restores the clean run.
    assert result[0, CORRUPTED_POSITION] == pytest.approx(clean_value, abs=1e-4)
    for pos in range(POS):
        if pos != CORRUPTED_POSITION:
            assert result[0, pos] == pytest.approx(corrupted_value, abs=1e-4)


def test_key_value_patching_matters_from_the_corrupted_position_on(setup):
    model, _, corrupted_tokens, clean_cache, _, corrupted_value = setup
    for helper in (
        patching.get_act_patch_attn_head_k_by_pos,
        patching.get_act_patch_attn_head_v_by_pos,
    ):
        result = helper(model, corrupted_tokens, clean_cache, logit_metric)
        assert result.shape == (N_LAYERS, POS, kv_heads(model))
        # Keys and values before the corrupted position are identical in both runs.
        before = result[:, :CORRUPTED_POSITION]
        torch.testing.assert_close(
            before, torch.full_like(before, corrupted_value), atol=1e-4, rtol=0
        )
        assert (result[0, CORRUPTED_POSITION] - corrupted_value).abs().max() > 1e-4


def test_ungrouped_model_patches_per_query_head():
    model = build("grouped")
    model.set_ungroup_grouped_query_attention(True)
    clean_tokens = tokens(2, POS)
    _, clean_cache = model.run_with_cache(clean_tokens)
    result = patching.get_act_patch_attn_head_k_all_pos(
        model, clean_tokens, clean_cache, logit_metric
    )
    assert result.shape == (N_LAYERS, N_HEADS)


class FakeFrame:
    """The two DataFrame features generic_activation_patch reads."""

    def __init__(self, rows, columns):
        self.columns = columns
        self._rows = np.array(rows)

    def to_numpy(self):
        return self._rows


def test_generic_patch_with_index_df(setup):
    model, _, corrupted_tokens, clean_cache, _, _ = setup
    frame = FakeFrame([[0, CORRUPTED_POSITION, 1], [1, 0, 0]], ["layer", "pos", "kv_head_index"])
    values, returned = patching.generic_activation_patch(
        model,
        corrupted_tokens,
        clean_cache,
        logit_metric,
        patching.layer_pos_head_vector_patch_setter,
        "v",
        index_df=frame,
        return_index_df=True,
    )
    assert returned is frame
    full = patching.get_act_patch_attn_head_v_by_pos(
        model, corrupted_tokens, clean_cache, logit_metric
    )
    torch.testing.assert_close(values, torch.stack([full[0, CORRUPTED_POSITION, 1], full[1, 0, 0]]))


def test_generic_patch_return_index_df_needs_pandas(setup):
    model, _, corrupted_tokens, clean_cache, _, _ = setup
    args = (model, corrupted_tokens, clean_cache, logit_metric, patching.layer_pos_patch_setter)
    try:
        import pandas  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pandas"):
            patching.generic_activation_patch(
                *args, "resid_pre", index_axis_names=["layer", "pos"], return_index_df=True
            )
        return
    values, frame = patching.generic_activation_patch(
        *args, "resid_pre", index_axis_names=["layer", "pos"], return_index_df=True
    )
    assert list(frame.columns) == ["layer", "pos"] and len(frame) == values.numel()


def test_generic_patch_rejects_bad_indices(setup):
    model, _, corrupted_tokens, clean_cache, _, _ = setup
    args = (model, corrupted_tokens, clean_cache, logit_metric, patching.layer_pos_patch_setter)
    with pytest.raises(ValueError, match="exactly one"):
        patching.generic_activation_patch(*args, "resid_pre")
    with pytest.raises(ValueError, match="exactly one"):
        frame = FakeFrame([[0, 0]], ["layer", "pos"])
        patching.generic_activation_patch(*args, "resid_pre", ["layer", "pos"], frame)
    with pytest.raises(ValueError, match="Unknown index axis"):
        patching.generic_activation_patch(*args, "resid_pre", ["layer", "position"])
    with pytest.raises(ValueError, match="first index axis"):
        patching.generic_activation_patch(*args, "resid_pre", ["pos", "layer"])
    with pytest.raises(ValueError, match="equal batch and length"):
        patching.get_act_patch_resid_pre(model, corrupted_tokens[:, :-1], clean_cache, logit_metric)
