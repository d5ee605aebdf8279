"""Helpers kept at classic TransformerLens's `transformer_lens.utilities` paths:
`activation_functions`, `addmm` and `attention`."""
