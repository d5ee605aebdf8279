"""Tokenizer helpers of `transformer_lens.utils`: attention masks, BOS handling and the
position ids of left-padded batches."""

from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Int
from torch import Tensor


def get_attention_mask(
    tokenizer: Any, tokens: Int[Tensor, "batch pos"], prepend_bos: bool
) -> Int[Tensor, "batch pos"]:
    """1 for real tokens and 0 for padding.

    Padding is the run of pad tokens at the start of each row when any row starts with one
    (left padding), else the run at the end; pad ids elsewhere (e.g. an EOS that doubles as
    pad) stay real. When the pad token is also BOS and BOS was prepended, each row's BOS
    is real.
    """
    if tokenizer is None:
        return torch.ones_like(tokens)
    is_pad = tokens == tokenizer.pad_token_id
    if prepend_bos and tokenizer.bos_token_id == tokenizer.pad_token_id:
        is_pad &= ~_bos_positions(is_pad, getattr(tokenizer, "padding_side", "right"))
    is_real = (~is_pad).long()
    if is_pad[:, 0].any():
        return (is_real.cumsum(dim=1) > 0).long()
    return (is_real.flip(1).cumsum(dim=1).flip(1) > 0).long()


def _bos_positions(
    is_pad: Bool[Tensor, "batch pos"], padding_side: str
) -> Bool[Tensor, "batch pos"]:
    """Where each row's BOS sits when BOS shares the pad id: just before its first other token."""
    has_real = (~is_pad).any(dim=1)
    first_real = (~is_pad).long().argmax(dim=1)
    # A row holding only BOS and pads: BOS is the last token under left padding, else the first.
    only_bos = is_pad.shape[1] - 1 if padding_side == "left" else 0
    bos = torch.where(has_real, (first_real - 1).clamp(min=0), only_bos)
    return F.one_hot(bos, is_pad.shape[1]).bool()


def get_offset_position_ids(
    past_kv_pos_offset: int, attention_mask: Int[Tensor, "batch offset_pos"]
) -> Int[Tensor, "batch pos"]:
    """Position ids that count only attended tokens: 0 at each row's first real token, the
    left padding before it also 0. The first past_kv_pos_offset columns (positions already
    in the key/value cache) are dropped."""
    position_ids = attention_mask.long().cumsum(dim=1) - 1
    return position_ids.clamp(min=0)[:, past_kv_pos_offset:]


def get_tokenizer_with_bos(tokenizer: Any) -> Any:
    """`tokenizer` if it already puts BOS in front of every text, else the same tokenizer
    loaded again from its `name_or_path` with add_bos_token=True.

    Some tokenizers (Llama's) split the start of a text differently when they add BOS
    themselves, so a model's default tokenizer should be one that does. Reloading reads
    the tokenizer's directory, or the hub when name_or_path is a repo id.
    """
    init_kwargs = dict(tokenizer.init_kwargs)
    name_or_path = init_kwargs.pop("name_or_path", "") or getattr(tokenizer, "name_or_path", "")
    add_bos_token = init_kwargs.pop("add_bos_token", None)
    if add_bos_token is None:
        add_bos_token = getattr(tokenizer, "add_bos_token", False)
    if add_bos_token or _adds_bos(tokenizer):
        return tokenizer
    if not name_or_path:
        raise ValueError(
            "get_tokenizer_with_bos reloads the tokenizer with add_bos_token=True, but this "
            "one has no name_or_path; save it with save_pretrained(directory) and load it "
            "from that directory first"
        )
    # Imported here: transformers is slow to import and only this reload needs it.
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name_or_path, add_bos_token=True, **init_kwargs)
    except OSError as error:
        raise OSError(
            f"Could not reload the tokenizer {name_or_path!r} with add_bos_token=True: "
            f"{error}. Offline, load it from a local directory (tokenizer.save_pretrained)."
        ) from error


def _adds_bos(tokenizer: Any) -> bool:
    bos = tokenizer.bos_token_id
    return bos is not None and tokenizer.encode("")[:1] == [bos]


def get_input_with_manually_prepended_bos(
    tokenizer: Any, input: str | list[str]
) -> str | list[str]:
    """`input` with the tokenizer's BOS string put in front of the text, or of each text."""
    if isinstance(input, str):
        return tokenizer.bos_token + input
    return [tokenizer.bos_token + text for text in input]


def get_tokens_with_bos_removed(
    tokenizer: Any, tokens: Int[Tensor, "batch pos"]
) -> Int[Tensor, "batch pos-1"]:
    """`tokens` with each row's BOS removed.

    With right padding BOS is the first token. With left padding it is the first token
    after the padding: the last of the leading pad ids when BOS and pad share an id, else
    the first BOS id of the row.
    """
    if tokenizer.padding_side == "right":
        return tokens[:, 1:]
    batch, pos = tokens.shape
    if tokenizer.bos_token_id == tokenizer.pad_token_id:
        leading_pads = (tokens != tokenizer.pad_token_id).long().cumsum(dim=1) == 0
        bos_position = leading_pads.sum(dim=1) - 1
        if (bos_position < 0).any():
            rows = (bos_position < 0).nonzero().flatten().tolist()
            raise ValueError(f"Rows {rows} do not start with BOS/pad ({tokenizer.pad_token_id})")
    else:
        is_bos = tokens == tokenizer.bos_token_id
        if not is_bos.any(dim=1).all():
            rows = (~is_bos.any(dim=1)).nonzero().flatten().tolist()
            raise ValueError(f"Rows {rows} hold no BOS token ({tokenizer.bos_token_id})")
        bos_position = is_bos.long().argmax(dim=1)
    keep = torch.arange(pos, device=tokens.device) != bos_position[:, None]
    return tokens[keep].view(batch, pos - 1)
