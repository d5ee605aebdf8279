"""Loading pretrained models: family adapters, the official-name table, the loader."""
