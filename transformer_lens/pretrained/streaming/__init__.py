"""How bytes move: weights streamed from a source into a model's parameters, processed on
the way. The declarations of what to load (adapters, transforms, the weight plan) live one
floor up in `pretrained/`; nothing here names a model family.

- `pieces.stream_and_process`: the entry point, the piece loop (embedding, each layer,
  unembedding) and what it does to one piece;
- `sources`: where tensors come from (a checkpoint directory, an HF model, a model's own
  weights, which `pretrained/processing.py` streams for `process_weights_`), read through `safetensors_reader` (mapped copy-on-write, or read by rows);
- `adopt_or_copy`: putting a tensor into its parameter without a copy where it may;
- `vocab_blocks`, `block_threads`: the vocabulary matrices by blocks of rows, on threads;
- `mlp_blocks`: a half-precision RMSNorm fold into the MLP matrices by blocks of columns;
- `float32_buffers`: the reused float32 copies half-precision processing works in;
- `target`: what the streamer asks of the model it fills (`LoadTarget`, which
  HookedTransformer provides): parameters, the config, and the changes only the model makes.
"""
