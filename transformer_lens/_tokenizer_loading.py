"""Load the tokenizer a model names, or warn and go on without one (the model still works
on token ids)."""

from __future__ import annotations

import os
import warnings
from typing import Any

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")


def load_tokenizer(name_or_path: str | None, local_only: bool, stacklevel: int = 3) -> Any:
    """The Hugging Face tokenizer of a local directory or hub name, or None with a warning.

    The local cache is tried before the hub, so a cached tokenizer loads without a network
    call (offline, huggingface_hub would otherwise retry for about a minute); `local_only`
    (or HF_HUB_OFFLINE) never asks the hub."""
    if name_or_path is None:
        return None
    if os.path.isdir(name_or_path) and not any(
        os.path.exists(os.path.join(name_or_path, f)) for f in _TOKENIZER_FILES
    ):
        # transformers 5 would build an empty tokenizer that maps all text to <unk>.
        warnings.warn(
            f"No tokenizer files in {name_or_path!r}; the model works on token tensors. "
            "Pass tokenizer= or call model.set_tokenizer to add one.",
            stacklevel=stacklevel,
        )
        return None
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name_or_path, local_files_only=True)
    except Exception as error:  # not in the cache
        failure: Exception = error
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
    if not (local_only or offline or os.path.isdir(name_or_path)):
        try:
            return AutoTokenizer.from_pretrained(name_or_path)
        except Exception as error:  # no network, or no tokenizer on the hub
            failure = error
    warnings.warn(
        f"Could not load a tokenizer for {name_or_path!r} ({type(failure).__name__}); the model "
        "works on token tensors. Pass tokenizer= or call model.set_tokenizer to add one.",
        stacklevel=stacklevel,
    )
    return None
