"""`test_prompt` of `transformer_lens.utils`: how highly a model ranks an answer's tokens."""

from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from transformer_lens._utils_defaults import USE_DEFAULT_VALUE


def test_prompt(
    prompt: str,
    answer: str,
    model: Any,
    prepend_space_to_answer: bool = True,
    print_details: bool = True,
    prepend_bos: bool | None = USE_DEFAULT_VALUE,
    top_k: int = 10,
) -> None:
    """Print how highly the model ranks each token of `answer` after `prompt`.

    Its output is the point of this function, so it prints rather than logs.
    """
    if prepend_space_to_answer and not answer.startswith(" "):
        answer = " " + answer
    prompt_tokens = model.to_tokens(prompt, prepend_bos=prepend_bos)
    answer_tokens = model.to_tokens(answer, prepend_bos=False)
    tokens = torch.cat([prompt_tokens, answer_tokens.to(prompt_tokens.device)], dim=1)
    answer_str_tokens = model.to_str_tokens(answer, prepend_bos=False)
    if print_details:
        print("Tokenized prompt:", model.to_str_tokens(prompt, prepend_bos=prepend_bos))
        print("Tokenized answer:", answer_str_tokens)
    logits = model(tokens)[0].float()  # the one row of a batch of one
    ranks = []
    for offset, answer_str_token in enumerate(answer_str_tokens):
        position = prompt_tokens.shape[1] + offset - 1
        answer_token = int(tokens[0, position + 1])
        rank = _print_token_prediction(model, logits[position], answer_token, print_details, top_k)
        ranks.append((answer_str_token, rank))
    print(f"Ranks of the answer tokens: {ranks}")


test_prompt.__test__ = False  # type: ignore[attr-defined]  # pytest would collect it on import


def _print_token_prediction(
    model: Any,
    logits: Float[Tensor, " d_vocab"],
    answer_token: int,
    print_details: bool,
    top_k: int,
) -> int:
    """Print the answer token's rank, logit and probability and the top_k tokens; return the rank."""
    probs = logits.softmax(dim=-1)
    order = logits.argsort(descending=True)
    rank = int((order == answer_token).nonzero()[0, 0])
    if print_details:
        print(
            f"Performance on answer token:\nRank: {rank: <8} Logit: {logits[answer_token]:5.2f}"
            f" Prob: {probs[answer_token]:6.2%} Token: |{model.to_single_str_token(answer_token)}|"
        )
        for i, token in enumerate(order[:top_k].tolist()):
            print(
                f"Top {i}th token. Logit: {logits[token]:5.2f} Prob: {probs[token]:6.2%}"
                f" Token: |{model.to_single_str_token(token)}|"
            )
    return rank
