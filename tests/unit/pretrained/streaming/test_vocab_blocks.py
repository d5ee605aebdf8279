"""Loading the vocabulary matrices block by block gives the same weights as one block.

Real vocabularies (Gemma: 256k rows) are read in blocks of a few MiB; tiny test
vocabularies fit in one. Here the block size is shrunk so that a 101-token vocabulary is
read in many blocks with a short last one, through every path: Gemma's scaled W_E written
straight into the parameter, the folded and centred row-major W_U (RMSNorm), and GPT-2's
LayerNorm, whose bias folds into b_U block by block beside W_U. center_unembed's mean is
summed during W_E's pass when the embeddings are tied, and checked against HF's matrix."""

import warnings

import pytest
import torch

from tests.helpers import pretrained_loader, randomize_norms, tiny_gemma_config
from transformer_lens import HookedTransformer
from transformer_lens.pretrained.streaming import vocab_blocks

VOCAB = 101
BLOCK_ROWS = 7  # 101 = 14 * 7 + 3: many blocks and a short last one


@pytest.fixture(autouse=True)
def quiet_and_no_grad():
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tiny configs differ from official; no tokenizer
        yield


def saved_random_model(path, model_class, config):
    """A random HF model of this class and config (norms randomized too), saved at path."""
    torch.manual_seed(0)
    model = model_class(config).eval()
    randomize_norms(model)
    model.save_pretrained(path)
    return path


def gemma_checkpoint(path):
    from transformers import GemmaForCausalLM

    return saved_random_model(path, GemmaForCausalLM, tiny_gemma_config(vocab_size=VOCAB))


def gpt2_checkpoint(path):
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=VOCAB, n_embd=64, n_layer=2, n_head=4, n_positions=64)
    return saved_random_model(path, GPT2LMHeadModel, config)


def load(path, processed: bool, block_rows: int | None, monkeypatch) -> HookedTransformer:
    """Load with blocks of `block_rows` vocabulary rows (None: the default, one block here),
    checking that the requested number of blocks is really what the loader read."""
    blocks_seen: list[int] = []
    row_blocks = vocab_blocks.row_blocks

    def counted(source, hf_key):
        blocks = row_blocks(source, hf_key)
        blocks_seen.append(len(blocks))
        return blocks

    with monkeypatch.context() as patch:
        patch.setattr(vocab_blocks, "row_blocks", counted)
        if block_rows is not None:
            d_model = 64
            patch.setattr(vocab_blocks, "_BLOCK_BYTES", block_rows * d_model * 4)
        model = pretrained_loader(processed)(str(path))
    expected = 1 if block_rows is None else -(-VOCAB // block_rows)
    assert blocks_seen and set(blocks_seen) == {expected}
    return model


# GPT-2 without processing reads nothing by blocks: W_E maps the file and W_U is tied to it.
CASES = [(gemma_checkpoint, True), (gemma_checkpoint, False), (gpt2_checkpoint, True)]


@pytest.mark.parametrize(
    ("make_checkpoint", "processed"),
    CASES,
    ids=["gemma-processed", "gemma-unprocessed", "gpt2-processed"],
)
def test_many_vocabulary_blocks_give_the_weights_of_one(
    make_checkpoint, processed, tmp_path, monkeypatch
):
    path = make_checkpoint(tmp_path / "checkpoint")
    whole = load(path, processed, None, monkeypatch).state_dict()
    blocked = load(path, processed, BLOCK_ROWS, monkeypatch).state_dict()
    assert whole.keys() == blocked.keys()
    for key, value in whole.items():
        if processed:
            # Identical except for center_unembed's mean over the vocabulary, which is
            # summed block by block: float32 summation order, a few ulp of |W_U| ~ 1.
            torch.testing.assert_close(blocked[key], value, atol=1e-6, rtol=0, msg=key)
        else:
            assert torch.equal(blocked[key], value), key


def gemma_untied_checkpoint(path):
    from transformers import GemmaForCausalLM

    config = tiny_gemma_config(vocab_size=VOCAB, tie_word_embeddings=False)
    return saved_random_model(path, GemmaForCausalLM, config)


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_center_unembed_mean_is_summed_once(tied, tmp_path, monkeypatch):
    """With tied embeddings, W_U's mean over the vocabulary is summed from the rows W_E's
    pass reads (no separate pass over the matrix); untied, W_U's own pass sums it. Either
    way the processed W_U is the HF matrix with ln_final folded in, centred over the
    vocabulary."""
    from transformers import GemmaForCausalLM

    make = gemma_checkpoint if tied else gemma_untied_checkpoint
    path = make(tmp_path / "checkpoint")
    separate_passes: list[str] = []
    vocab_mean = vocab_blocks.vocab_mean

    def counted(weight, *args):
        separate_passes.append(weight.key)
        return vocab_mean(weight, *args)

    monkeypatch.setattr(vocab_blocks, "vocab_mean", counted)
    model = load(path, True, BLOCK_ROWS, monkeypatch)
    assert separate_passes == ([] if tied else ["unembed.W_U"])

    hf = GemmaForCausalLM.from_pretrained(str(path)).eval()
    folded = hf.lm_head.weight.T * (1 + hf.model.norm.weight)[:, None]  # Gemma's 1 + w
    expected = folded - folded.mean(1, keepdim=True)
    # float32: the fold is one rounding per entry, the block-summed mean a few ulp of ~1
    torch.testing.assert_close(model.W_U, expected, atol=1e-6, rtol=0)
    assert float(model.W_U.mean(1).abs().max()) < 1e-6


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
def test_mean_summed_during_embedding_pass_is_bit_identical(dtype, tmp_path, monkeypatch):
    """Summing the mean on W_E's pass reads the same rows in the same blocks as a
    separate pass over W_U would: the processed weights agree bit for bit."""
    from transformer_lens.pretrained.streaming import pieces

    path = gemma_checkpoint(tmp_path / "checkpoint")
    with monkeypatch.context() as patch:
        patch.setattr(vocab_blocks, "_BLOCK_BYTES", BLOCK_ROWS * 64 * 4)
        riding = HookedTransformer.from_pretrained(str(path), dtype=dtype).state_dict()
        patch.setattr(pieces, "_unembedding_sum_during_embedding", lambda *args: None)
        separate = HookedTransformer.from_pretrained(str(path), dtype=dtype).state_dict()
    assert riding.keys() == separate.keys()
    assert riding["unembed.W_U"].dtype == riding["embed.W_E"].dtype == dtype
    for key, value in riding.items():
        assert torch.equal(value, separate[key]), key


def test_vocab_sum_refuses_rows_that_are_not_a_block_and_a_mean_with_blocks_missing(
    tmp_path, monkeypatch
):
    """The sum is fed block by block, possibly from several threads: a block it does not
    know, or a mean asked for before every block was added, is an error, not a wrong mean."""
    from transformer_lens.pretrained.convert import plan_state_dict
    from transformer_lens.pretrained.loader import get_pretrained_model_config
    from transformer_lens.pretrained.registry import adapter_for
    from transformer_lens.pretrained.streaming import sources

    path = gemma_checkpoint(tmp_path / "checkpoint")
    monkeypatch.setattr(vocab_blocks, "_BLOCK_BYTES", BLOCK_ROWS * 64 * 4)
    cfg = get_pretrained_model_config(str(path))
    with sources.from_directory(str(path)) as source:
        from transformers import AutoConfig

        hf_config = AutoConfig.from_pretrained(str(path))
        planned = plan_state_dict(adapter_for(hf_config), cfg, source.keys())
        unembed = next(w for w in planned if w.key == "unembed.W_U")
        running = vocab_blocks.VocabSum(unembed, 1, cfg, source)
        assert unembed.hf_key is not None
        with pytest.raises(ValueError, match=r"rows \(0, 5\) are not one of its blocks"):
            running.add(0, source.get_rows(unembed.hf_key, 0, 5))
        for start, stop in running.blocks[:-1]:
            running.add(start, source.get_rows(unembed.hf_key, start, stop))
        with pytest.raises(RuntimeError, match="1 of its row blocks were not summed"):
            running.mean()
        start, stop = running.blocks[-1]
        running.add(start, source.get_rows(unembed.hf_key, start, stop))
        expected = source.get(unembed.hf_key).T.mean(1, keepdim=True)
        torch.testing.assert_close(running.mean(), expected, atol=1e-7, rtol=0)


def llama_checkpoint(path, tied: bool):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=tied,
    )
    return saved_random_model(path, LlamaForCausalLM, config)


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_processed_load_maps_an_embedding_processing_leaves_alone(tied, tmp_path, monkeypatch):
    """An RMSNorm model's W_E passes through processing unchanged: it stays a view of the
    file, as without processing, instead of being copied block by block. Tied, its rows
    are still read once, block by block, for W_U's mean over the vocabulary. The weights
    equal a load that copies everything, bit for bit."""
    from transformer_lens.pretrained.streaming import pieces
    from transformer_lens.pretrained.streaming.sources import TensorSource

    path = llama_checkpoint(tmp_path / "checkpoint", tied)
    mapped: list[str] = []
    rows_read: list[str] = []
    read_in_place = pieces._StreamingLoader.read_in_place
    get_rows = TensorSource.get_rows

    def recording(self, weight):
        if read_in_place(self, weight):
            mapped.append(weight.key)
            return True
        return False

    def counted_get_rows(self, key, start, stop):
        rows_read.append(key)
        return get_rows(self, key, start, stop)

    with monkeypatch.context() as patch:
        patch.setattr(vocab_blocks, "_BLOCK_BYTES", BLOCK_ROWS * 64 * 4)
        patch.setattr(pieces._StreamingLoader, "read_in_place", recording)
        patch.setattr(TensorSource, "get_rows", counted_get_rows)
        model = HookedTransformer.from_pretrained(str(path))
        patch.setattr(TensorSource, "get_rows", get_rows)
        patch.setattr(pieces._StreamingLoader, "read_in_place", lambda self, weight: False)
        copied = HookedTransformer.from_pretrained(str(path)).state_dict()
    assert "embed.W_E" in mapped and "unembed.W_U" not in mapped
    blocks = -(-VOCAB // BLOCK_ROWS)
    # tied: the embedding's rows are read for W_U's mean, then for W_U itself; untied: not
    # at all, and lm_head's twice (its mean, then W_U)
    assert rows_read.count("model.embed_tokens.weight") == (2 * blocks if tied else 0)
    assert rows_read.count("lm_head.weight") == (0 if tied else 2 * blocks)
    for key, value in model.state_dict().items():
        assert value.dtype == copied[key].dtype and torch.equal(value, copied[key]), key
