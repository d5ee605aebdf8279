from types import SimpleNamespace

import pytest
import torch

from transformer_lens.ActivationCache import ActivationCache
from transformer_lens.utils import Slice

N_LAYERS, BATCH, POS, D_MODEL, N_HEADS, D_HEAD = 2, 3, 4, 8, 2, 4


def _cache_dict(batch=BATCH):
    torch.manual_seed(0)
    cache = {
        "hook_embed": torch.randn(batch, POS, D_MODEL),
        "hook_pos_embed": torch.randn(batch, POS, D_MODEL),
        "ln_final.hook_scale": torch.rand(batch, POS, 1),
    }
    for layer in range(N_LAYERS):
        prefix = f"blocks.{layer}"
        cache[f"{prefix}.hook_resid_pre"] = torch.randn(batch, POS, D_MODEL)
        cache[f"{prefix}.ln2.hook_scale"] = torch.rand(batch, POS, 1)
        cache[f"{prefix}.attn.hook_q"] = torch.randn(batch, POS, N_HEADS, D_HEAD)
        cache[f"{prefix}.attn.hook_k"] = torch.randn(batch, POS, N_HEADS, D_HEAD)
        cache[f"{prefix}.attn.hook_pattern"] = torch.rand(batch, N_HEADS, POS, POS)
        cache[f"{prefix}.mlp.hook_post"] = torch.randn(batch, POS, 16)
    return cache


def _model():
    return SimpleNamespace(cfg=SimpleNamespace(n_layers=N_LAYERS))


@pytest.fixture
def cache():
    return ActivationCache(_cache_dict(), _model())


def test_attributes(cache):
    assert cache.has_batch_dim
    assert cache.has_embed and cache.has_pos_embed
    bare = ActivationCache({"blocks.0.hook_resid_pre": torch.zeros(1)}, _model())
    assert not bare.has_embed and not bare.has_pos_embed


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("hook_embed", "hook_embed"),
        ("embed", "hook_embed"),
        ("scale", "ln_final.hook_scale"),
        ("k1", "blocks.1.attn.hook_k"),
        (("q", 0), "blocks.0.attn.hook_q"),
        (("pattern", 0, "attn"), "blocks.0.attn.hook_pattern"),
        (("attn", 0), "blocks.0.attn.hook_pattern"),
        (("resid_pre", -1), "blocks.1.hook_resid_pre"),
        (("resid_pre", -2), "blocks.0.hook_resid_pre"),
        (("scale", 1, "ln2"), "blocks.1.ln2.hook_scale"),
        (("post", 1), "blocks.1.mlp.hook_post"),
    ],
)
def test_indexing_shortcuts(cache, key, name):
    assert cache[key] is cache.cache_dict[name]
    assert key in cache


def test_missing_key_names_the_resolved_key_and_close_matches(cache):
    with pytest.raises(KeyError) as error:
        cache["resid_post", 0]
    message = str(error.value)
    assert "blocks.0.hook_resid_post" in message
    assert "blocks.0.hook_resid_pre" in message
    assert ("resid_post", 0) not in cache
    assert 3 not in cache


def test_mapping_interface(cache):
    assert len(cache) == len(cache.cache_dict)
    assert list(cache) == list(cache.cache_dict)
    assert list(cache.keys()) == list(cache.cache_dict.keys())
    assert list(cache.values())[0] is cache.cache_dict["hook_embed"]
    assert dict(cache.items()) == cache.cache_dict
    assert repr(cache).startswith("ActivationCache with keys ['hook_embed', 'hook_pos_embed'")


def test_to_warns_and_moves(cache):
    with pytest.warns(DeprecationWarning):
        moved = cache.to("cpu")
    assert moved is cache
    assert cache["embed"].device == torch.device("cpu")


def test_to_moves_the_model_when_asked():
    calls = []
    model = SimpleNamespace(cfg=SimpleNamespace(n_layers=N_LAYERS), to=calls.append)
    cache = ActivationCache(_cache_dict(), model)
    with pytest.warns(DeprecationWarning):
        cache.to("cpu", move_model=True)
    assert calls == ["cpu"]


def test_toggle_autodiff_sets_global_grad_mode(cache):
    try:
        cache.toggle_autodiff(False)
        assert not torch.is_grad_enabled()
        cache.toggle_autodiff(True)
        assert torch.is_grad_enabled()
    finally:
        torch.set_grad_enabled(True)


def test_remove_batch_dim():
    cache = ActivationCache(_cache_dict(batch=1), _model())
    expected = cache["q", 0][0]
    cache.remove_batch_dim()
    assert not cache.has_batch_dim
    assert torch.equal(cache["q", 0], expected)
    assert cache["embed"].shape == (POS, D_MODEL)
    with pytest.raises(ValueError, match="no batch dimension"):
        cache.remove_batch_dim()


def test_remove_batch_dim_needs_batch_of_one(cache):
    with pytest.raises(ValueError, match="size 1"):
        cache.remove_batch_dim()
    assert cache.has_batch_dim
    assert cache["embed"].shape == (BATCH, POS, D_MODEL)


def test_apply_slice_to_batch_dim_int_drops_batch(cache):
    sliced = cache.apply_slice_to_batch_dim(1)
    assert sliced is not cache
    assert not sliced.has_batch_dim
    assert torch.equal(sliced["pattern", 0], cache["pattern", 0][1])
    assert cache.has_batch_dim


@pytest.mark.parametrize("batch_slice", [(0, 2), [0, 2], Slice([0, 2])])
def test_apply_slice_to_batch_dim_keeps_batch(cache, batch_slice):
    sliced = cache.apply_slice_to_batch_dim(batch_slice)
    assert sliced.has_batch_dim
    assert sliced["embed"].shape == (2, POS, D_MODEL)
    assert torch.equal(sliced["embed"][0], cache["embed"][0])


def test_apply_slice_to_batch_dim_needs_batch(cache):
    unbatched = cache.apply_slice_to_batch_dim(0)
    with pytest.raises(ValueError, match="no batch dimension"):
        unbatched.apply_slice_to_batch_dim(0)


def test_stack_activation(cache):
    stacked = cache.stack_activation("resid_pre")
    assert stacked.shape == (N_LAYERS, BATCH, POS, D_MODEL)
    assert torch.equal(stacked[1], cache["resid_pre", 1])
    assert cache.stack_activation("q", layer=1).shape == (1, BATCH, POS, N_HEADS, D_HEAD)
    scales = cache.stack_activation("scale", sublayer_type="ln2")
    assert torch.equal(scales[0], cache["scale", 0, "ln2"])
