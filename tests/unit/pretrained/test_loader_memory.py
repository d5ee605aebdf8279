"""Which memory loaded weights own: copy-on-write views of a checkpoint file where the
transform only views a tensor, copies of an in-memory HF model's tensors (or its very
tensors, for verify), distinct storage per parameter, and float32 processing buffers reused
layer by layer in half precision, with the bits of a load that makes fresh ones."""

import copy
import dataclasses
import warnings

import pytest
import torch

from tests.helpers import assert_close, pretrained_loader
from tests.unit.pretrained.loading import LOADING_MARKS, TOKENS
from transformer_lens import HookedTransformer
from transformer_lens.pretrained.streaming import float32_buffers, pieces

pytestmark = LOADING_MARKS


def mapped_keys(monkeypatch) -> list[str]:
    """Record the HF keys whose parameters the loader makes views of the mapped file."""
    keys: list[str] = []
    original = pieces._StreamingLoader.read_in_place

    def recording(self, weight):
        mapped = original(self, weight)
        if mapped:
            keys.append(weight.hf_key)
        return mapped

    monkeypatch.setattr(pieces._StreamingLoader, "read_in_place", recording)
    return keys


def test_unprocessed_load_maps_view_weights_from_the_file(checkpoint_dir, hf_gemma, monkeypatch):
    """Weights whose transform only views them (projections, MLP, W_U: the transposed tied
    embedding) become copy-on-write views of the checkpoint file, as HF's loader makes
    them; Gemma's scaled W_E and 1 + w norms need arithmetic and are copied. Either way
    the logits are HF's, and the parameters keep the layout the matmuls use."""
    keys = mapped_keys(monkeypatch)
    model = HookedTransformer.from_pretrained_no_processing(str(checkpoint_dir))
    projections = {
        f"model.layers.{i}.{name}.weight"
        for i in range(2)
        for name in (
            "self_attn.q_proj",
            "self_attn.k_proj",
            "self_attn.v_proj",
            "self_attn.o_proj",
            "mlp.gate_proj",
            "mlp.up_proj",
            "mlp.down_proj",
        )
    }
    assert projections <= set(keys)
    assert keys.count("model.embed_tokens.weight") == 1  # for W_U only
    assert not any("norm" in key for key in keys)
    assert_layouts_feed_the_matmuls(model)
    assert_close(model(TOKENS), hf_gemma(TOKENS).logits, 1e-5, "logits from mapped weights")


def assert_layouts_feed_the_matmuls(model) -> None:
    """Every parameter has the layout of a fresh model's (no copy per forward), except
    W_U, which may also keep HF's transposed layout (F.linear reads both in place)."""
    from transformer_lens.components.unembed import Unembed

    fresh = HookedTransformer(model.cfg)
    for name, parameter in model.named_parameters():
        if name == "unembed.W_U":
            assert Unembed.accepts_layout(parameter)
        else:
            assert parameter.stride() == fresh.get_parameter(name).stride(), name


def test_editing_a_mapped_weight_leaves_the_checkpoint_alone(checkpoint_dir, hf_gemma):
    """Interpretability edits weights in place (ablations): the mapping is copy-on-write."""
    file = checkpoint_dir / "model.safetensors"
    before = file.read_bytes()
    model = HookedTransformer.from_pretrained_no_processing(str(checkpoint_dir))
    model.blocks[0].attn.W_O.zero_()
    assert file.read_bytes() == before
    again = HookedTransformer.from_pretrained_no_processing(str(checkpoint_dir))
    assert_close(again(TOKENS), hf_gemma(TOKENS).logits, 1e-5, "a second load")
    assert not torch.equal(model(TOKENS), again(TOKENS))


def output_projection_keys(n_layers: int) -> list[str]:
    names = ("self_attn.o_proj.weight", "mlp.down_proj.weight")
    return sorted(f"model.layers.{i}.{name}" for i in range(n_layers) for name in names)


def test_processed_load_maps_what_processing_leaves_unchanged(
    checkpoint_dir, hf_gemma, monkeypatch
):
    """fold_ln rewrites the weights that read a norm (Q, K, V, the MLP's gate and input,
    W_U): they are copied. Gemma's output projections (W_O, W_out) come out of processing
    as they went in and stay views of the file, as without processing."""
    keys = mapped_keys(monkeypatch)
    processed = HookedTransformer.from_pretrained(str(checkpoint_dir))
    assert sorted(keys) == output_projection_keys(processed.cfg.n_layers)
    logprobs = processed(TOKENS).log_softmax(-1)
    assert_close(logprobs, hf_gemma(TOKENS).logits.log_softmax(-1), 1e-5, "processed log-probs")
    assert_layouts_feed_the_matmuls(processed)


def test_processed_bfloat16_load_maps_a_bfloat16_checkpoint(hf_gemma, tmp_path, monkeypatch):
    """Processing runs in float32, so everything it reads is converted, and only that: what
    it leaves unchanged is never converted, stays mapped from a bfloat16 file instead of
    being rounded back and copied, and equals the weights of a load that copies everything."""
    path = tmp_path / "tiny-gemma-bf16"
    copy.deepcopy(hf_gemma).to(torch.bfloat16).save_pretrained(path)
    keys = mapped_keys(monkeypatch)
    converted: list[int] = []
    float32 = float32_buffers.Float32Buffers.float32

    def recording(self, tensor):
        converted.append(tensor.data_ptr())
        return float32(self, tensor)

    monkeypatch.setattr(float32_buffers.Float32Buffers, "float32", recording)
    mapped = HookedTransformer.from_pretrained(str(path), dtype=torch.bfloat16)
    assert sorted(keys) == output_projection_keys(mapped.cfg.n_layers)
    projections = [b.attn.W_O.data_ptr() for b in mapped.blocks]
    projections += [b.mlp.W_out.data_ptr() for b in mapped.blocks]
    assert converted and not set(converted) & set(projections)
    monkeypatch.setattr(pieces._StreamingLoader, "read_in_place", lambda self, weight: False)
    copied = HookedTransformer.from_pretrained(str(path), dtype=torch.bfloat16).state_dict()
    for key, value in mapped.state_dict().items():
        assert value.dtype == copied[key].dtype and torch.equal(value, copied[key]), key


def test_cast_load_copies_every_weight(checkpoint_dir, monkeypatch):
    """A dtype change needs a cast: nothing is mapped."""
    keys = mapped_keys(monkeypatch)
    HookedTransformer.from_pretrained_no_processing(str(checkpoint_dir), dtype=torch.bfloat16)
    assert keys == []


@pytest.mark.parametrize("processed", [True, False], ids=["processed", "unprocessed"])
def test_weights_from_hf_model_share_no_memory_with_it(hf_gemma, processed):
    """Tensors of an in-memory HF model belong to it: they are copied, never adopted."""
    load = pretrained_loader(processed)
    model = load("google/gemma-2b", hf_model=hf_gemma)
    theirs = {p.untyped_storage().data_ptr() for p in hf_gemma.parameters()}
    shared = [n for n, p in model.named_parameters() if p.untyped_storage().data_ptr() in theirs]
    assert shared == []


def test_verify_s_shared_load_aliases_the_hf_model_s_matrices(hf_gemma):
    """share_hf_tensors (verify's option): every weight the model takes as it is, in the
    same layout, is the HF tensor itself; what the transform changes (Gemma's scaled W_E,
    its 1 + w norms) is computed; and the forward is HF's, bit for bit (W_U keeps HF's
    layout, so the unembedding runs HF's very matmul)."""
    copied = HookedTransformer.from_pretrained_no_processing("google/gemma-2b", hf_model=hf_gemma)
    shared = HookedTransformer.from_pretrained_no_processing(
        "google/gemma-2b", hf_model=hf_gemma, share_hf_tensors=True
    )
    theirs = {p.untyped_storage().data_ptr() for p in hf_gemma.parameters()}
    aliased = {n for n, p in shared.named_parameters() if p.untyped_storage().data_ptr() in theirs}
    matrices = {n for n, _ in shared.named_parameters() if ".W_" in n or "._W_" in n}
    matrices.remove("embed.W_E")  # scaled: a new tensor
    assert matrices and aliased == matrices
    assert_layouts_feed_the_matmuls(shared)
    tokens = torch.arange(10)[None] % shared.cfg.d_vocab
    assert torch.equal(shared(tokens), hf_gemma(tokens).logits)
    # A copying load stores W_U row-major (faster on CPU in float32): within rounding.
    torch.testing.assert_close(copied(tokens), shared(tokens), atol=1e-5, rtol=0)


@pytest.mark.parametrize("processed", [True, False], ids=["processed", "unprocessed"])
def test_parameters_loaded_from_a_directory_own_distinct_memory(checkpoint_dir, processed):
    """Adopting processed tensors (or mapping the file) never makes two parameters alias."""
    load = pretrained_loader(processed)
    model = load(str(checkpoint_dir))
    pointers = [p.untyped_storage().data_ptr() for p in model.parameters()]
    assert len(pointers) == len(set(pointers))
    assert_layouts_feed_the_matmuls(model)


@pytest.mark.parametrize(
    ("family", "dtype"),
    [("gemma", torch.bfloat16), ("gpt2", torch.float16)],
    ids=["gemma-bfloat16", "gpt2-float16"],
)
def test_half_precision_processing_reuses_float32_buffers_with_the_same_bits(
    family, dtype, tmp_path, monkeypatch
):
    """Each layer's float32 copies, and the matrices the fold writes, are made in the
    previous layer's buffers. The weights equal a load that makes fresh ones, bit for bit,
    and no parameter keeps a buffer's memory (GPT-2: centring the writes reads W_O and
    W_out too)."""
    from tests.unit.pretrained.streaming.test_vocab_blocks import gemma_checkpoint, gpt2_checkpoint

    make = gemma_checkpoint if family == "gemma" else gpt2_checkpoint
    path = make(tmp_path / "checkpoint")
    # (piece, buffer) of every buffer handed out; holding them keeps a freed buffer's address
    # from being handed out again, so that a shared address means a reused buffer
    handed_out: list[tuple[int, torch.Tensor]] = []
    fold_results: list[torch.Tensor] = []
    empty_like = float32_buffers.Float32Buffers.empty_like
    next_piece = float32_buffers.Float32Buffers.next_piece
    workspace_of = pieces._StreamingLoader._workspace

    def counted_next_piece(self):
        self.piece = getattr(self, "piece", -1) + 1
        next_piece(self)

    def counted(self, tensor, dtype):
        buffer = empty_like(self, tensor, dtype)
        handed_out.append((self.piece, buffer))
        return buffer

    def recording_results(self, tensors, buffers):
        workspace = workspace_of(self, tensors, buffers)
        allocate = workspace.allocate
        if allocate is None:
            return workspace

        def allocate_and_record(like, dtype):
            fold_results.append(allocate(like, dtype))
            return fold_results[-1]

        return dataclasses.replace(workspace, allocate=allocate_and_record)

    with monkeypatch.context() as patch, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tiny configs differ from official; no tokenizer
        patch.setattr(float32_buffers.Float32Buffers, "next_piece", counted_next_piece)
        patch.setattr(float32_buffers.Float32Buffers, "empty_like", counted)
        patch.setattr(pieces._StreamingLoader, "_workspace", recording_results)
        reused = HookedTransformer.from_pretrained(str(path), dtype=dtype)
        patch.setattr(pieces._StreamingLoader, "_workspace", workspace_of)
        patch.setattr(
            float32_buffers.Float32Buffers,
            "empty_like",
            lambda self, tensor, dtype: torch.empty_like(tensor, dtype=dtype),
        )
        fresh = HookedTransformer.from_pretrained(str(path), dtype=dtype).state_dict()
    pieces_by_storage: dict[int, set[int]] = {}
    for piece, buffer in handed_out:
        pieces_by_storage.setdefault(buffer.untyped_storage().data_ptr(), set()).add(piece)
    reused_storages = {ptr for ptr, seen in pieces_by_storage.items() if len(seen) > 1}
    assert reused_storages, "no buffer was reused"
    result_storages = {t.untyped_storage().data_ptr() for t in fold_results}
    assert result_storages & reused_storages, "no fold result was written into a reused buffer"
    assert result_storages <= set(pieces_by_storage)
    parameters = {p.untyped_storage().data_ptr() for p in reused.parameters()}
    assert not parameters & set(pieces_by_storage)
    for key, value in reused.state_dict().items():
        assert value.dtype == fresh[key].dtype and torch.equal(value, fresh[key]), key


def test_processed_half_precision_load_imports_no_symbolic_shapes(tmp_path):
    """Asking torch for a layout on the meta device imports its symbolic-shape machinery and
    sympy, 0.4 s: more than a whole Gemma-2b layer takes to load. A fresh process loading
    a bfloat16 checkpoint with processing must not pull them in."""
    import subprocess
    import sys

    from tests.unit.pretrained.streaming.test_vocab_blocks import gemma_checkpoint

    path = gemma_checkpoint(tmp_path / "checkpoint")
    code = (
        "import sys, warnings, torch\n"
        "warnings.simplefilter('ignore')\n"
        "from transformer_lens import HookedTransformer\n"
        f"HookedTransformer.from_pretrained({str(path)!r}, dtype=torch.bfloat16)\n"
        "print(sorted(m for m in ('sympy', 'torch.fx.experimental.symbolic_shapes')"
        " if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize(
    ("family", "checkpoint_dtype"),
    [("gemma", torch.bfloat16), ("gpt2", torch.float16)],
    ids=["gemma-bfloat16", "gpt2-float16"],
)
def test_half_precision_checkpoint_widened_to_float32_keeps_views_and_the_same_bits(
    family, checkpoint_dtype, tmp_path, monkeypatch
):
    """A half-precision checkpoint processed into float32 parameters hands processing its
    view-only weights unconverted (processing converts what it uses, the copy into the
    parameter the rest), with the bits of converting every weight first."""
    from transformers import AutoModelForCausalLM

    from tests.unit.pretrained.streaming.test_vocab_blocks import gemma_checkpoint, gpt2_checkpoint

    make = gemma_checkpoint if family == "gemma" else gpt2_checkpoint
    float32_path = make(tmp_path / "float32")
    path = tmp_path / "half"
    AutoModelForCausalLM.from_pretrained(float32_path, dtype=checkpoint_dtype).save_pretrained(path)
    handed: dict[str, torch.dtype] = {}
    buffers: list[torch.Tensor] = []  # held, so that no address is handed out twice
    load_for_processing = pieces._StreamingLoader.load_for_processing
    empty_like = float32_buffers.Float32Buffers.empty_like

    def recording(self, weight):
        tensor = load_for_processing(self, weight)
        handed[weight.key] = tensor.dtype
        return tensor

    def recorded_buffer(self, tensor, dtype):
        buffers.append(empty_like(self, tensor, dtype))
        return buffers[-1]

    with monkeypatch.context() as patch, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tiny configs differ from official; no tokenizer
        patch.setattr(pieces._StreamingLoader, "load_for_processing", recording)
        patch.setattr(float32_buffers.Float32Buffers, "empty_like", recorded_buffer)
        widened = HookedTransformer.from_pretrained(str(path), dtype=torch.float32)
        patch.setattr(float32_buffers.Float32Buffers, "empty_like", empty_like)
        patch.setattr(
            pieces._StreamingLoader,
            "load_for_processing",
            lambda self, weight: weight.load(self.cfg, self.source.get),
        )
        converted_first = HookedTransformer.from_pretrained(str(path), dtype=torch.float32)
    assert handed["blocks.0.mlp.W_in"] == checkpoint_dtype
    assert handed["blocks.1.mlp.W_out"] == checkpoint_dtype
    # processing's float32 copies were made in reused buffers, and none became a parameter
    buffer_storages = {b.untyped_storage().data_ptr() for b in buffers}
    assert buffer_storages
    assert not buffer_storages & {p.untyped_storage().data_ptr() for p in widened.parameters()}
    expected = converted_first.state_dict()
    for key, value in widened.state_dict().items():
        assert value.dtype == expected[key].dtype and torch.equal(value, expected[key]), key
