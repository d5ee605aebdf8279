"""Token salience for LIT: the gradient of one next-token logit with respect to the token
embeddings, taken at `hook_embed` so that positional embeddings (standard, shortformer,
rotary) stay exactly as in an ordinary forward pass."""

import torch
from jaxtyping import Float, Int
from torch import Tensor

from transformer_lens.hook_points import HookPoint
from transformer_lens.HookedTransformer import HookedTransformer


def explained_position(n_tokens: int, position: int | None) -> int:
    """The position whose next-token logit is explained, as an index from the start.

    `position` None is the second-to-last one (it predicts the last token); a negative one
    counts from the end. It must have a token after it."""
    if position is None:
        resolved = n_tokens - 2
    else:
        resolved = position + n_tokens if position < 0 else position
    if not 0 <= resolved < n_tokens - 1:
        raise ValueError(
            f"token gradients explain the logit a position gives the next token: position "
            f"{position} has no next token in a sequence of {n_tokens} token(s)"
        )
    return resolved


def embedding_gradients(
    model: HookedTransformer, tokens: Int[Tensor, " pos"], position: int | None = None
) -> tuple[Float[Tensor, "pos d_model"], Float[Tensor, "pos d_model"]]:
    """(gradient, embeddings): d logits[position, tokens[position + 1]] / d hook_embed, and
    hook_embed itself, for one sequence. No parameter's `.grad` is touched."""
    target_pos = explained_position(tokens.shape[0], position)
    leaves: list[Tensor] = []

    def as_leaf(embed: Tensor, hook: HookPoint) -> Tensor:
        leaves.append(embed.detach().requires_grad_(True))
        return leaves[-1]

    with torch.enable_grad():
        logits = model.run_with_hooks(tokens[None], fwd_hooks=[("hook_embed", as_leaf)])
        target_logit = logits[0, target_pos, tokens[target_pos + 1]]
        # autograd.grad, not backward(): backward would also fill every weight's .grad.
        (gradient,) = torch.autograd.grad(target_logit, leaves[0])
    return gradient[0], leaves[0][0].detach()
