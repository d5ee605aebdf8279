"""Resolve a config's act_fn name to a function, mirroring HF's activation choices."""

from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor

from transformer_lens import activation_functions as act


def resolve_activation(name: str) -> Callable[[Tensor], Tensor]:
    table: dict[str, Callable[[Tensor], Tensor]] = {
        "relu": F.relu,
        "silu": F.silu,
        "gelu": F.gelu,
        "gelu_pytorch_tanh": act.gelu_pytorch_tanh,
        "gelu_new": act.gelu_new,
        "gelu_fast": act.gelu_fast,
        "solu": act.solu,
        "solu_ln": act.solu,
        "xielu": act.xielu,
    }
    if name not in table:
        raise ValueError(f"Unknown act_fn {name!r}; expected one of {sorted(table)}")
    return table[name]
