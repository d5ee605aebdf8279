"""utils.Slice with a 0-d index (a 0-d tensor, a 0-d array or a numpy integer): it picks one
position and drops the axis, like the int it holds, as classic TransformerLens's Slice does."""

import numpy as np
import pytest
import torch

from transformer_lens.utils import Slice

TABLE = torch.arange(24).reshape(4, 6)

# utils.py is edited elsewhere at the moment; the change these tests need is in the report
# that added them. Remove the mark once Slice accepts 0-d indices.


@pytest.mark.parametrize(
    "index", [torch.tensor(2), np.array(2), np.int64(2)], ids=["tensor", "array", "np_int64"]
)
def test_zero_d_index_selects_like_an_int(index):
    picked = Slice(index).apply(TABLE, dim=1)
    assert picked.tolist() == [2, 8, 14, 20]
    assert Slice(index).indices(6).tolist() == [2]


def test_negative_zero_d_index_counts_from_the_end():
    assert Slice(torch.tensor(-1)).apply(TABLE, dim=0).tolist() == [18, 19, 20, 21, 22, 23]


def test_two_d_index_is_still_refused():
    with pytest.raises((ValueError, TypeError)):
        Slice(torch.zeros(2, 2, dtype=torch.long))
