"""The Transform value: a named function that carries the properties the streaming loader
relies on (view-only, row-local axis, writes out)."""

import pytest
import torch

from transformer_lens import HookedTransformerConfig
from transformer_lens.pretrained.adapter import (
    Transform,
    as_transform,
    heads_in,
    hf,
    plus_one,
    times_sqrt_d_model,
    transposed,
    unchanged,
)

CFG = HookedTransformerConfig(
    n_layers=1, d_model=8, n_ctx=4, d_head=2, n_heads=4, d_vocab=5, act_fn="relu"
)


def test_views_and_row_axes_are_declared_on_the_transforms():
    weight = torch.arange(40.0).reshape(5, 8)
    assert unchanged.is_view and unchanged.row_axis == 0
    assert transposed.is_view and transposed.row_axis == 1
    assert transposed(weight, CFG).data_ptr() == weight.data_ptr()
    assert torch.equal(transposed(weight, CFG), weight.T)
    q = heads_in("n_heads")
    assert q.is_view and q.row_axis is None and q.name == "heads_in(n_heads)"
    assert not plus_one.is_view and plus_one.row_axis is None


def test_only_a_transform_that_writes_out_takes_out():
    weight = torch.ones(5, 8)
    rows = torch.empty(5, 8)
    times_sqrt_d_model(weight, CFG, out=rows)
    assert torch.equal(rows, torch.full((5, 8), 8**0.5))
    with pytest.raises(TypeError, match="plus_one cannot write"):
        plus_one(weight, CFG, out=rows)


def test_a_plain_function_becomes_a_transform_without_properties():
    def doubled(weight: torch.Tensor, cfg: HookedTransformerConfig) -> torch.Tensor:
        return weight * 2

    source = hf("some.weight", transform=doubled)
    assert isinstance(source.transform, Transform) and source.transform.name == "doubled"
    assert not source.transform.is_view and source.transform.row_axis is None
    assert as_transform(unchanged) is unchanged
    assert hf("other.weight").transform is unchanged
