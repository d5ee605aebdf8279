"""The reused buffers of a streamed half-precision load, and the workspace `read` that
converts to float32 only what processing reads."""

import torch

from tests.unit.test_weight_processing import make_cfg, random_state_dict
from transformer_lens import weight_processing as wp
from transformer_lens.pretrained.streaming.float32_buffers import Float32Buffers, Float32OnRead


def recording_float32(converted: list[torch.Tensor]):
    def to_float32(tensor: torch.Tensor) -> torch.Tensor:
        converted.append(tensor)
        return tensor.float()

    return to_float32


def test_a_tensor_is_converted_once_however_often_it_is_read():
    half = torch.randn(3, 4).to(torch.bfloat16)
    converted: list[torch.Tensor] = []
    read = Float32OnRead(recording_float32(converted))
    first, second = read(half), read(half)
    assert first is second and first.dtype == torch.float32
    assert torch.equal(first, half.float())
    assert [id(t) for t in converted] == [id(half)]
    assert half.dtype == torch.bfloat16  # the tensor read is left as it is


def test_float32_and_integer_tensors_are_read_as_they_are():
    converted: list[torch.Tensor] = []
    read = Float32OnRead(recording_float32(converted))
    single, ids = torch.randn(3), torch.arange(3)
    assert read(single) is single and read(ids) is ids
    assert converted == []


def test_processing_through_the_workspace_converts_what_it_reads_and_passes_the_rest_through():
    """An RMSNorm model without value biases: the fold reads the norms and the weights
    that read them; W_O and W_out come out as the very tensors that went in, unconverted.
    Everything processing changes equals processing float32 copies, bit for bit."""
    cfg = make_cfg(normalization_type="RMS", gated_mlp=True, n_key_value_heads=2)
    sd = {k: v.to(torch.bfloat16) for k, v in random_state_dict(cfg).items()}
    for layer in range(cfg.n_layers):
        sd[f"blocks.{layer}.attn._b_V"] = torch.zeros_like(sd[f"blocks.{layer}.attn._b_V"])
    steps = wp.ProcessingFlags(center_writing_weights=False)
    converted: list[torch.Tensor] = []
    workspace = wp.Workspace(read=Float32OnRead(recording_float32(converted)))
    lazily = wp.process_weights(sd, cfg, steps, workspace=workspace)
    eagerly = wp.process_weights({k: v.float() for k, v in sd.items()}, cfg, steps)
    output_projections = [
        f"blocks.{i}.{k}" for i in range(cfg.n_layers) for k in ("attn.W_O", "mlp.W_out")
    ]
    converted_ids = {id(t) for t in converted}
    assert len(converted_ids) == len(converted)  # each tensor converted at most once
    for key in output_projections:
        assert lazily[key] is sd[key] and id(sd[key]) not in converted_ids, key
    for key in ("blocks.0.attn.W_Q", "blocks.1.mlp.W_gate", "blocks.0.ln1.w", "unembed.W_U"):
        assert id(sd[key]) in converted_ids, key
    assert lazily.keys() == eagerly.keys()
    for key, value in eagerly.items():
        if lazily[key] is sd[key]:  # passed through: the same values, still in bfloat16
            assert torch.equal(lazily[key].float(), value), key
        else:
            assert lazily[key].dtype == value.dtype and torch.equal(lazily[key], value), key


def test_float32_buffers_are_handed_out_again_only_after_the_next_piece():
    buffers = Float32Buffers()
    like = torch.empty(4, 6, dtype=torch.bfloat16).mT  # a transposed layout is kept
    first = buffers.empty_like(like, torch.float32)
    second = buffers.empty_like(like, torch.float32)
    assert first.stride() == like.stride() and first.dtype == torch.float32
    assert first.data_ptr() != second.data_ptr()
    buffers.next_piece()
    again = {buffers.empty_like(like, torch.float32).data_ptr() for _ in range(2)}
    assert again == {first.data_ptr(), second.data_ptr()}
    copy = buffers.float32(torch.ones(6, 4, dtype=torch.bfloat16))
    assert copy.dtype == torch.float32 and torch.equal(copy, torch.ones(6, 4))
    not_pooled = buffers.empty_like(like, torch.bfloat16)
    assert not_pooled.dtype == torch.bfloat16
    assert not_pooled.data_ptr() not in again | {copy.data_ptr()}
