"""patching.make_df_from_ranges and the classic type aliases; an index frame built by it
drives generic_activation_patch to the same values as the full grid."""

import sys
import typing

import pandas as pd
import pytest
import torch

from tests.analysis_models import KINDS, build, tokens
from transformer_lens import patching


def test_make_df_from_ranges_lists_every_combination_last_column_fastest():
    frame = patching.make_df_from_ranges([2, 3], ["layer", "pos"])
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == ["layer", "pos"]
    assert frame.values.tolist() == [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2]]


def test_make_df_from_ranges_with_three_columns_has_the_product_of_sizes():
    frame = patching.make_df_from_ranges([2, 1, 2], ["layer", "pos", "head"])
    assert frame.values.tolist() == [[0, 0, 0], [0, 0, 1], [1, 0, 0], [1, 0, 1]]


def test_make_df_from_ranges_needs_one_name_per_range():
    with pytest.raises(ValueError, match="2 ranges for 1 columns"):
        patching.make_df_from_ranges([2, 3], ["layer"])


def test_make_df_from_ranges_without_pandas_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match=r"transformer-lens\[pandas\]"):
        patching.make_df_from_ranges([2], ["layer"])


def test_classic_type_aliases():
    assert patching.Logits is torch.Tensor
    assert patching.CorruptedActivation is torch.Tensor
    assert patching.PatchedActivation is torch.Tensor
    classic_axes = {"layer", "pos", "head_index", "head", "src_pos", "dest_pos"}
    assert classic_axes <= set(typing.get_args(patching.AxisNames))


def test_index_frame_from_ranges_matches_the_grid():
    model = build(KINDS[0])
    clean = tokens(1, 3)
    corrupted = clean.clone()
    corrupted[:, 1] = (corrupted[:, 1] + 1) % 61
    _, clean_cache = model.run_with_cache(clean)

    def metric(logits: torch.Tensor) -> torch.Tensor:
        return logits[0, -1, 3] - logits[0, -1, 7]

    n_layers = model.cfg.n_layers
    args = (model, corrupted, clean_cache, metric, patching.layer_pos_patch_setter, "resid_pre")
    grid = patching.generic_activation_patch(*args, index_axis_names=["layer", "pos"])
    frame = patching.make_df_from_ranges([n_layers, 3], ["layer", "pos"])
    values = patching.generic_activation_patch(*args, index_df=frame)
    assert grid.shape == (n_layers, 3)
    torch.testing.assert_close(values, grid.flatten())
    assert not torch.allclose(grid, grid[0, 0])  # the patches differ, so the order matters
