"""`verify`: load a model both ways, run every comparison, return a report."""

from __future__ import annotations

import contextlib
import gc
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from tqdm import tqdm

from transformer_lens.HookedTransformer import HookedTransformer
from transformer_lens.HookedTransformerConfig import resolve_dtype
from transformer_lens.verification import checks
from transformer_lens.verification.checks import Prompts, Row, Tokens
from transformer_lens.verification.reference import Reference, load_reference
from transformer_lens.verification.report import Report

DEFAULT_MODEL = "google/gemma-2b"
DEFAULT_PROMPTS = (
    "The capital of France is Paris, and the capital of Italy is",
    "def fibonacci(n):\n    return n if n < 2 else",
    "Grouped-query attention lets several query heads share one key and value head.",
)
# Token ids stand in for text when no tokenizer can be loaded (offline, random weights).
_RANDOM_PROMPT_LENGTH = 12
_STAGES = 7  # the `_stage`s of `verify`, for the progress bar


@dataclass(frozen=True)
class VerifyOptions:
    """What `verify` checks and how; the command line fills one of these."""

    model: str = DEFAULT_MODEL
    random_weights: bool = False
    layers: int | None = None
    dtype: str = "float32"
    device: str = "cpu"
    prompts: tuple[str, ...] = DEFAULT_PROMPTS
    relative_tolerance: float | None = None
    progress: bool = True
    seed: int = 0


def verify(options: VerifyOptions) -> Report:
    """Compare a HookedTransformer with Hugging Face on the same weights, row by row."""
    dtype = resolve_dtype(options.dtype)
    _check_device(options.device)
    rtol = options.relative_tolerance
    if rtol is None:
        rtol = checks.RELATIVE_TOLERANCE[dtype]
    show_progress = options.progress and sys.stderr.isatty()
    with tqdm(total=_STAGES, disable=not show_progress, leave=False, unit="step") as bar:
        with _stage(bar, "loading the Hugging Face reference"):
            reference = load_reference(
                options.model, options.random_weights, options.layers, dtype, options.device
            )
        with _stage(bar, "loading the HookedTransformer"):
            model = _load_model(reference, options, dtype, show_progress)
        prompts, texts = _prompts(model, options)
        report = Report(
            model=options.model,
            origin=reference.origin,
            dtype=options.dtype,
            device=options.device,
            n_layers=model.cfg.n_layers,
            relative_tolerance=rtol,
            prompts=[p[0].tolist() for p in prompts],
            prompt_texts=texts,
        )
        batches = _batched(prompts)
        with _stage(bar, "logits"):
            expected = checks.hf_outputs(reference.hf_model, batches)
            plain = checks.plain_logits(model, batches)
            report.rows += checks.logits_vs_hf(plain, expected, batches, rtol)
        with _stage(bar, "residual stream"):
            report.rows += checks.residual_stream_vs_hf(model, expected, batches, rtol)
            del expected
        with _stage(bar, "hook modes"):
            report.rows += _hook_mode_rows(model, batches, plain, rtol)
        with _stage(bar, "timing"):
            timings = _timing_rows(model, reference.hf_model, prompts[0])
        # Processing changes our weights in place and needs memory for new ones: the
        # reference's weights (about 3 GB at official width) go first.
        reference.hf_model = None
        gc.collect()
        with _stage(bar, "processed weights"):
            report.rows.append(_processing_row(model, batches, plain, rtol))
        report.rows += timings
    return report


def _check_device(device: str) -> None:
    """A clear error for a device this machine does not have, before anything is built."""
    try:
        kind = torch.device(device).type
    except RuntimeError as error:
        raise ValueError(f"--device {device!r} is not a torch device: {error}") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device!r}: CUDA is not available on this machine")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"--device {device!r}: MPS is not available on this machine")


def _load_model(
    reference: Reference, options: VerifyOptions, dtype: torch.dtype, show_progress: bool
) -> HookedTransformer:
    """Ours from the same weights: streamed from the checkpoint directory when there is
    one (so the loader itself is verified), else read from the reference model."""
    n_layers = reference.hf_model.config.num_hidden_layers
    with warnings.catch_warnings():
        # Expected here: fewer layers than the official model, no tokenizer offline.
        warnings.simplefilter("ignore")
        if reference.directory is not None:
            return HookedTransformer.from_pretrained_no_processing(
                reference.directory,
                dtype=dtype,
                device=options.device,
                first_n_layers=n_layers if n_layers != reference.full_layers else None,
                progress_bar=show_progress,
            )
        # The reference's own tensors, not copies: one model's memory for both (the
        # processing row, which changes weights in place, runs after the reference is gone).
        return HookedTransformer.from_pretrained_no_processing(
            reference.official or options.model,
            hf_model=reference.hf_model,
            dtype=dtype,
            device=options.device,
            progress_bar=show_progress,
            share_hf_tensors=True,
        )


def _prompts(
    model: HookedTransformer, options: VerifyOptions
) -> tuple[list[Tensor], list[str] | None]:
    """Tokenized prompts, or seeded random token ids when the model has no tokenizer."""
    device = model.cfg.device
    if model.tokenizer is not None:
        return [model.to_tokens(text).to(device) for text in options.prompts], list(options.prompts)
    generator = torch.Generator().manual_seed(options.seed)
    shape = (1, _RANDOM_PROMPT_LENGTH)
    return [
        torch.randint(0, model.cfg.d_vocab, shape, generator=generator).to(device)
        for _ in options.prompts
    ], None


def _batched(prompts: Prompts) -> list[Tensor]:
    """Prompts of one length as one batch: a forward's cost at official width is mostly the
    d_model x d_vocab unembedding, which a batch of three multiplies barely slower than
    one prompt. Prompts of different lengths stay apart (padding would change the maths)."""
    if len({tokens.shape[1:] for tokens in prompts}) == 1:
        return [torch.cat(list(prompts))]
    return list(prompts)


def _hook_mode_rows(
    model: HookedTransformer, prompts: Prompts, plain: Sequence[Tensor], rtol: float
) -> list[Row]:
    """Every hook mode against the plain (eager) forward, then the opt-in fused attention
    kernel against it."""
    rows = [
        _with_flag(
            model, model.set_use_split_qkv_input, prompts, plain, "split input on vs off", rtol
        )
    ]
    rows.append(
        _with_flag(
            model,
            model.set_use_split_qkv_input,
            prompts,
            plain,
            "split input, per-head copies edited vs off",
            rtol,
            hooks=[(_is_split_input, lambda x, hook: x.clone())],
        )
    )
    rows.append(
        _with_flag(model, model.set_use_attn_result, prompts, plain, "attn_result on vs off", rtol)
    )
    rows.append(
        _with_flag(model, model.set_use_hook_mlp_in, prompts, plain, "hook_mlp_in on vs off", rtol)
    )
    n_kv = model.cfg.n_key_value_heads
    if n_kv is not None and n_kv != model.cfg.n_heads:
        rows.append(
            _with_flag(
                model,
                model.set_ungroup_grouped_query_attention,
                prompts,
                plain,
                "ungrouped vs grouped",
                rtol,
            )
        )
    else:
        rows.append(
            Row(
                "ungrouped vs grouped",
                None,
                note="n/a: every query head has its own key/value head",
            )
        )
    with checks.fused_attention(model):
        rows.append(
            checks.mode_vs_plain(model, prompts, plain, "fused (opt-in) vs eager attention", rtol)
        )
    return rows


def _with_flag(
    model: HookedTransformer,
    set_flag: Callable[[bool], None],
    prompts: Prompts,
    plain: Sequence[Tensor],
    check: str,
    rtol: float,
    hooks: list[tuple[Callable[[str], bool], Callable[..., Tensor]]] | None = None,
) -> Row:
    set_flag(True)
    try:
        return checks.mode_vs_plain(model, prompts, plain, check, rtol, hooks)
    finally:
        set_flag(False)


@contextlib.contextmanager
def _stage(bar: tqdm, description: str) -> Iterator[None]:
    bar.set_description(description)
    bar.refresh()
    yield
    bar.update(1)


def _is_split_input(name: str) -> bool:
    return name.endswith(("hook_q_input", "hook_k_input", "hook_v_input"))


def _timing_rows(model: HookedTransformer, hf_model: torch.nn.Module, tokens: Tokens) -> list[Row]:
    hf_ms = checks.timed_ms(lambda: hf_model(tokens))
    ours_ms = checks.timed_ms(lambda: model(tokens))
    return [
        Row("forward time: Hugging Face (eager attention)", hf_ms, unit="ms"),
        Row(
            "forward time: HookedTransformer", ours_ms, unit="ms", note=f"{ours_ms / hf_ms:.2f}x HF"
        ),
    ]


def _processing_row(
    model: HookedTransformer, prompts: Prompts, plain: Sequence[Tensor], rtol: float
) -> Row:
    """Weight processing (fold_ln, centering, value-bias folding) keeps log-probabilities.
    It runs in place and last, so that no second copy of the model is needed."""
    unprocessed = [logits.log_softmax(-1) for logits in plain]
    check = "processed vs unprocessed (log-probs)"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # a step that does not apply says so: keep it as a note
        try:
            model.process_weights_(fold_ln=True, center_writing_weights=True, center_unembed=True)
        except (ValueError, NotImplementedError) as error:  # a failed row, not a crash
            return Row(check, float("inf"), 0.0, note=f"processing raised: {error}")
    references = iter(unprocessed)
    comparison = checks.compare(
        prompts, lambda tokens: model(tokens).log_softmax(-1), lambda _: next(references)
    )
    skipped = "; ".join(str(w.message).split(":")[0] for w in caught)
    return comparison.row(check, rtol, note=skipped)
