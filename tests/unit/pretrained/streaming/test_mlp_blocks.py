"""The RMSNorm fold into a half-precision model's MLP input matrices, block by block, gives
the weights of the whole-matrix fold, bit for bit."""

import warnings

import pytest
import torch

from tests.unit.pretrained.streaming.test_vocab_blocks import (
    gemma_checkpoint,
    gpt2_checkpoint,
    llama_checkpoint,
)
from transformer_lens import HookedTransformer
from transformer_lens.pretrained.streaming import mlp_blocks

COLUMNS = 3  # many blocks and a short last one for any d_mlp that 3 does not divide


@pytest.fixture(autouse=True)
def quiet_and_no_grad():
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tiny configs differ from official; no tokenizer
        yield


def load_counting_blocks(path, dtype, monkeypatch) -> tuple[HookedTransformer, list[str]]:
    """Load with blocks of COLUMNS columns, recording the keys folded by blocks."""
    folded: list[str] = []
    fold_into = mlp_blocks.fold_into

    def recording(targets, tensors, keys, layer):
        folded.extend(keys)
        d_model = tensors[keys[0]].shape[0]
        assert -(-tensors[keys[0]].shape[1] // COLUMNS) > 1  # really several blocks
        monkeypatch.setattr(mlp_blocks, "_BLOCK_BYTES", COLUMNS * 4 * d_model)
        return fold_into(targets, tensors, keys, layer)

    with monkeypatch.context() as patch:
        patch.setattr(mlp_blocks, "fold_into", recording)
        model = HookedTransformer.from_pretrained(str(path), dtype=dtype)
    return model, folded


@pytest.mark.parametrize(
    ("family", "dtype"),
    [("gemma", torch.bfloat16), ("llama", torch.float16), ("llama", torch.bfloat16)],
    ids=["gemma-bfloat16", "llama-float16", "llama-bfloat16"],
)
def test_blocked_fold_gives_the_weights_of_the_whole_fold(family, dtype, tmp_path, monkeypatch):
    path = (
        gemma_checkpoint(tmp_path / "checkpoint")
        if family == "gemma"
        else llama_checkpoint(tmp_path / "checkpoint", tied=False)
    )
    blocked, folded = load_counting_blocks(path, dtype, monkeypatch)
    n_layers = blocked.cfg.n_layers
    expected = [f"blocks.{i}.mlp.{k}" for i in range(n_layers) for k in ("W_in", "W_gate")]
    assert sorted(folded) == sorted(expected)
    monkeypatch.setattr(mlp_blocks, "keys_folded_by_blocks", lambda *args: [])
    whole = HookedTransformer.from_pretrained(str(path), dtype=dtype).state_dict()
    for key, value in blocked.state_dict().items():
        assert value.dtype == whole[key].dtype and torch.equal(value, whole[key]), key


@pytest.mark.parametrize(
    ("family", "dtype"),
    [("gemma", torch.float32), ("gpt2", torch.bfloat16)],
    ids=["float32-parameters", "layer-norm"],
)
def test_no_blocks_where_the_fold_is_not_all_or_is_not_rounded(family, dtype, tmp_path):
    """float32 parameters adopt the whole fold's result (no rounding copy to save);
    LayerNorm's fold also centres the matrix over its rows and adds to the bias."""
    make = gemma_checkpoint if family == "gemma" else gpt2_checkpoint
    path = make(tmp_path / "checkpoint")
    folded: list[str] = []
    fold_into = mlp_blocks.fold_into
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            mlp_blocks, "fold_into", lambda *args: folded.append("called") or fold_into(*args)
        )
        HookedTransformer.from_pretrained(str(path), dtype=dtype)
    assert folded == []
