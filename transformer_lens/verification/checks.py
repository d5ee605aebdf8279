"""The comparisons `verify` makes, each returning rows of a report.

Every comparison reads the reference on the same token ids and measures the largest
absolute difference. A row's tolerance scales with the reference's own magnitude
(`relative_tolerance * max(1, max |reference|)`), so one setting per dtype serves logits,
log-probabilities and residual streams alike.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from transformer_lens.HookedTransformer import HookedTransformer

Tokens = Int[Tensor, "batch pos"]
Logits = Float[Tensor, "batch pos d_vocab"]
# Prompts of different lengths: each one is Tokens, but one shape cannot bind them all.
Prompts = Sequence[Tensor]

# Relative tolerances: a few hundred float32 epsilons leave room for rounding that grows
# with depth; in 16-bit types, about eight units in the last place of the largest value.
RELATIVE_TOLERANCE = {
    torch.float32: 1e-4,
    torch.float64: 1e-9,
    torch.bfloat16: 6e-2,
    torch.float16: 8e-3,
}


@dataclass(frozen=True)
class Row:
    """One line of the report. A row without a tolerance is informational (a timing, or a
    check that does not apply to this model, with the reason in `note`)."""

    check: str
    value: float | None
    tolerance: float | None = None
    unit: str = ""
    note: str = ""

    @property
    def passed(self) -> bool | None:
        """True or False against the tolerance; None for an informational row."""
        if self.value is None or self.tolerance is None:
            return None
        return self.value <= self.tolerance


@dataclass
class Comparison:
    """Largest and mean absolute difference over several prompts, and the reference scale."""

    max_diff: float = 0.0
    total_diff: float = 0.0
    count: int = 0
    scale: float = 1.0

    def add(self, actual: Tensor, reference: Tensor) -> None:
        if actual.shape != reference.shape:
            raise ValueError(f"shape {tuple(actual.shape)} != reference {tuple(reference.shape)}")
        diff = (actual.double() - reference.double()).abs()
        self.max_diff = max(self.max_diff, float(diff.max()))
        self.total_diff += float(diff.sum())
        self.count += diff.numel()
        self.scale = max(self.scale, float(reference.double().abs().max()))

    @property
    def mean_diff(self) -> float:
        return self.total_diff / max(self.count, 1)

    def row(self, check: str, relative_tolerance: float, note: str = "") -> Row:
        return Row(check, self.max_diff, relative_tolerance * self.scale, note=note)


def compare(
    prompts: Prompts,
    actual: Callable[[Tokens], Tensor],
    reference: Callable[[Tokens], Tensor],
) -> Comparison:
    comparison = Comparison()
    with torch.no_grad():
        for tokens in prompts:
            comparison.add(actual(tokens), reference(tokens))
    return comparison


@dataclass
class HfOutputs:
    """Hugging Face's logits and hidden states for each prompt, from one forward each."""

    logits: list[Tensor]
    hidden_states: list[tuple[Tensor, ...]]


def hf_outputs(hf_model: torch.nn.Module, prompts: Prompts) -> HfOutputs:
    """One HF forward per prompt gives both references: the logits rows and the residual
    rows read the same run (a forward costs about a second at official width)."""
    outputs = HfOutputs([], [])
    with torch.no_grad():
        for tokens in prompts:
            output = hf_model(tokens, output_hidden_states=True)
            outputs.logits.append(output.logits)
            outputs.hidden_states.append(output.hidden_states)
    return outputs


def plain_logits(model: HookedTransformer, prompts: Prompts) -> list[Logits]:
    """Our plain forward per prompt: the logits rows, every hook mode and weight processing
    compare against these, so each is computed once."""
    with torch.no_grad(), eager_attention(model):
        return [model(tokens) for tokens in prompts]


def logits_vs_hf(
    plain: Sequence[Tensor], reference: HfOutputs, prompts: Prompts, rtol: float
) -> list[Row]:
    """Our plain forward's logits (eager attention, which mirrors HF eager op by op)
    against HF eager attention's."""
    comparison = Comparison()
    for actual, expected in zip(plain, reference.logits, strict=True):
        comparison.add(actual, expected)
    return [
        comparison.row("logits vs HF: max |diff|", rtol),
        Row("logits vs HF: mean |diff|", comparison.mean_diff, rtol * comparison.scale),
    ]


def residual_stream_vs_hf(
    model: HookedTransformer, reference: HfOutputs, prompts: Prompts, rtol: float
) -> list[Row]:
    """The residual stream entering layer 0 and leaving every layer, against HF's hidden
    states (HF's last hidden state is after the final norm, so ours goes through ln_final)."""
    n_layers = model.cfg.n_layers
    names = ["blocks.0.hook_resid_pre"] + [f"blocks.{i}.hook_resid_post" for i in range(n_layers)]
    comparisons = [Comparison() for _ in names]
    with torch.no_grad(), eager_attention(model):
        for tokens, hidden in zip(prompts, reference.hidden_states, strict=True):
            _, cache = model.run_with_cache(tokens, names_filter=names)
            ours = [cache[name] for name in names]
            ours[-1] = model.ln_final(ours[-1])
            for comparison, actual, expected in zip(comparisons, ours, hidden, strict=True):
                comparison.add(actual, expected)
    labels = ["embedding (resid_pre 0)"] + [f"resid_post {i}" for i in range(n_layers - 1)]
    labels.append(f"ln_final(resid_post {n_layers - 1})")
    return [c.row(f"{label} vs HF", rtol) for c, label in zip(comparisons, labels, strict=True)]


def mode_vs_plain(
    model: HookedTransformer,
    prompts: Prompts,
    plain: Sequence[Tensor],
    check: str,
    rtol: float,
    hooks: list[tuple[Callable[[str], bool], Callable[..., Tensor]]] | None = None,
) -> Row:
    """Logits with a hook mode on (set by the caller) against the plain forward's."""
    references = iter(plain)
    comparison = compare(
        prompts,
        lambda tokens: model.run_with_hooks(tokens, fwd_hooks=hooks or []),
        lambda _: next(references),
    )
    return comparison.row(check, rtol)


def timed_ms(forward: Callable[[], object], repeats: int = 3) -> float:
    """Median wall time of a forward, in milliseconds, after one warm-up run (the
    comparisons ran batched prompts: the first single-prompt run allocates anew)."""
    times = []
    with torch.no_grad():
        forward()
        for _ in range(repeats):
            _synchronize()
            start = time.perf_counter()
            forward()
            _synchronize()
            times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


@contextlib.contextmanager
def eager_attention(model: HookedTransformer) -> Iterator[None]:
    """Run a model with the fused attention kernel off, restoring the setting afterwards."""
    with _fused_attention_set(model, False):
        yield


@contextlib.contextmanager
def fused_attention(model: HookedTransformer) -> Iterator[None]:
    """Run a model with the opt-in fused attention kernel on, restoring the setting."""
    with _fused_attention_set(model, True):
        yield


@contextlib.contextmanager
def _fused_attention_set(model: HookedTransformer, fused: bool) -> Iterator[None]:
    previous = model.cfg.use_fused_attention
    model.cfg.use_fused_attention = fused
    try:
        yield
    finally:
        model.cfg.use_fused_attention = previous


def _synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
