"""Classic TransformerLens's factories: pick a config's activation function and MLP class."""
