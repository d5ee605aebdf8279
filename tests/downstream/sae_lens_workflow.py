"""SAELens (sae-lens==6.54.12) runs unchanged on the fork: HookedSAETransformer, SAEs and a
transcoder spliced into a tiny random model, and a few steps of SAELens's own training runner.

Run in a virtual environment holding sae-lens and the fork (see .ci/downstream):

    python tests/downstream/sae_lens_workflow.py

Everything is built from random weights and in-memory data; nothing is downloaded. No fork
behaviour is patched here: a failure is a fork incompatibility (or a client change).
"""

import tempfile
from pathlib import Path
from typing import Any

import torch
from _common import Checks, make_tokenizer

checks = Checks()
HOOK = "blocks.0.hook_resid_pre"
SAE_HOOKS = ["hook_sae_input", "hook_sae_acts_pre", "hook_sae_acts_post", "hook_sae_recons"]
D_MODEL = 64
CONTEXT = 16


def import_sae_lens() -> Any:
    import sae_lens

    return sae_lens


sae_lens = checks.run("import sae_lens", import_sae_lens)
if sae_lens is None:
    checks.finish()

from sae_lens import (  # noqa: E402
    HookedSAETransformer,
    LanguageModelSAERunnerConfig,
    LanguageModelSAETrainingRunner,
    LoggingConfig,
    StandardSAE,
    StandardSAEConfig,
    StandardTrainingSAEConfig,
    Transcoder,
    TranscoderConfig,
)
from sae_lens.evals import get_eval_everything_config, run_evals  # noqa: E402
from sae_lens.saes.sae import SAEMetadata, TrainStepInput  # noqa: E402
from sae_lens.training.activation_scaler import ActivationScaler  # noqa: E402

from transformer_lens import HookedTransformerConfig  # noqa: E402

workdir = Path(tempfile.mkdtemp(prefix="sae_lens_workflow_"))
tokenizer = make_tokenizer(workdir / "tokenizer")


def gpt2_like() -> HookedTransformerConfig:
    return HookedTransformerConfig(
        n_layers=2,
        d_model=D_MODEL,
        d_head=16,
        n_heads=4,
        d_mlp=128,
        n_ctx=64,
        d_vocab=len(tokenizer),
        act_fn="gelu",
        normalization_type="LN",
        positional_embedding_type="standard",
        seed=0,
        device="cpu",
    )


def llama_like() -> HookedTransformerConfig:
    # Grouped-query attention, RMSNorm, rotary, gated MLP: the shapes the fork exists for.
    return HookedTransformerConfig(
        n_layers=2,
        d_model=D_MODEL,
        d_head=16,
        n_heads=4,
        n_key_value_heads=2,
        d_mlp=128,
        n_ctx=64,
        d_vocab=len(tokenizer),
        act_fn="silu",
        normalization_type="RMS",
        positional_embedding_type="rotary",
        rotary_dim=16,
        gated_mlp=True,
        final_rms=True,
        seed=0,
        device="cpu",
    )


def make_sae(seed: int) -> StandardSAE:
    torch.manual_seed(seed)
    return StandardSAE(
        StandardSAEConfig(d_in=D_MODEL, d_sae=128, metadata=SAEMetadata(hook_name=HOOK))
    )


def make_transcoder(seed: int) -> Transcoder:
    # Reads the MLP input SAELens adds as blocks.0.mlp.hook_in, writes hook_mlp_out.
    torch.manual_seed(seed)
    metadata = SAEMetadata(hook_name="blocks.0.mlp.hook_in", hook_name_out="blocks.0.hook_mlp_out")
    config = TranscoderConfig(
        d_in=D_MODEL, d_sae=128, d_out=D_MODEL, apply_b_dec_to_input=False, metadata=metadata
    )
    return Transcoder(config)


def workflow(label: str, cfg: HookedTransformerConfig) -> None:
    def build() -> HookedSAETransformer:
        model = HookedSAETransformer(cfg, tokenizer=tokenizer)
        model.eval()
        return model

    model = checks.run(f"{label}: HookedSAETransformer(cfg, tokenizer)", build)
    if model is None:
        return
    tokens = tokenizer(SENTENCE, return_tensors="pt").input_ids
    with torch.no_grad():
        plain, plain_cache = model.run_with_cache(tokens)
    plain_resid = plain_cache[HOOK]
    sae = make_sae(1)

    def mlp_hook_in() -> None:
        # SAELens wraps mlp.forward so its input passes a hook_in it adds (for transcoders).
        _, cache = model.run_with_cache(tokens, names_filter="blocks.0.mlp.hook_in")
        assert "blocks.0.mlp.hook_in" in cache, sorted(cache.keys())
        assert cache["blocks.0.mlp.hook_in"].shape == (1, tokens.shape[1], D_MODEL)

    checks.run(f"{label}: SAELens's blocks.N.mlp.hook_in fires", mlp_hook_in)

    def cache_with_saes(use_error_term: bool) -> None:
        with torch.no_grad():
            logits, cache = model.run_with_cache_with_saes(
                tokens, saes=[sae], use_error_term=use_error_term
            )
        expected = [*SAE_HOOKS, "hook_sae_output"] + (["hook_sae_error"] if use_error_term else [])
        missing = [name for name in expected if f"{HOOK}.{name}" not in cache]
        assert not missing, f"missing {missing}; sae keys: {[k for k in cache if 'sae' in k]}"
        assert cache[f"{HOOK}.hook_sae_acts_post"].shape == (1, tokens.shape[1], 128)
        # The SAE reads the residual the plain model has there.
        torch.testing.assert_close(cache[f"{HOOK}.hook_sae_input"], plain_resid)
        if use_error_term:
            torch.testing.assert_close(logits, plain, atol=1e-4, rtol=1e-4)
        else:
            # A random SAE reconstructs badly: its output must really replace the residual.
            assert not torch.allclose(logits, plain, atol=1e-3), "SAE had no effect on logits"
        # reset_saes_end=True (the default): the model is plain again afterwards.
        assert not model.acts_to_saes, model.acts_to_saes
        with torch.no_grad():
            assert torch.equal(model(tokens), plain)

    checks.run(
        f"{label}: run_with_cache_with_saes caches every hook_sae_* key",
        lambda: cache_with_saes(False),
    )
    checks.run(
        f"{label}: run_with_cache_with_saes(use_error_term=True) adds hook_sae_error",
        lambda: cache_with_saes(True),
    )

    def hooks_with_saes() -> None:
        seen: list[tuple[int, ...]] = []

        def zero_features(acts: torch.Tensor, hook: Any) -> torch.Tensor:
            seen.append(tuple(acts.shape))
            return torch.zeros_like(acts)

        with torch.no_grad():
            replaced = model.run_with_saes(tokens, saes=[sae])
            zeroed = model.run_with_hooks_with_saes(
                tokens, saes=[sae], fwd_hooks=[(f"{HOOK}.hook_sae_acts_post", zero_features)]
            )
        assert seen == [(1, tokens.shape[1], 128)], seen
        assert not torch.allclose(zeroed, replaced), "zeroing SAE features changed nothing"
        assert not model.acts_to_saes

    checks.run(f"{label}: run_with_hooks_with_saes runs the hook on SAE features", hooks_with_saes)

    def add_sae_transparent() -> None:
        model.add_sae(sae, use_error_term=True)
        assert HOOK in model.acts_to_saes, model.acts_to_saes
        with torch.no_grad():
            logits, cache = model.run_with_cache(tokens)
        assert f"{HOOK}.hook_sae_error" in cache
        # The error term adds back exactly what the SAE missed, so the model is unchanged.
        torch.testing.assert_close(logits, plain, atol=1e-4, rtol=1e-4)

    checks.run(f"{label}: add_sae(use_error_term=True) keeps the logits", add_sae_transparent)

    def reset_restores() -> None:
        model.reset_saes()
        assert not model.acts_to_saes
        assert not [name for name in model.hook_dict if "hook_sae" in name]
        with torch.no_grad():
            assert torch.equal(model(tokens), plain), "reset_saes did not restore the logits"

    checks.run(f"{label}: reset_saes() restores the logits bit for bit", reset_restores)

    def transcoder_transparent() -> None:
        transcoder = make_transcoder(2)
        model.add_sae(transcoder, use_error_term=True)
        with torch.no_grad():
            logits, cache = model.run_with_cache(tokens)
        assert "blocks.0.hook_mlp_out.hook_sae_acts_post" in cache, [k for k in cache if "sae" in k]
        torch.testing.assert_close(logits, plain, atol=1e-4, rtol=1e-4)
        model.reset_saes()
        with torch.no_grad():
            assert torch.equal(model(tokens), plain)

    checks.run(
        f"{label}: transcoder mlp.hook_in -> hook_mlp_out, error term", transcoder_transparent
    )

    trained: dict[str, Any] = {}
    checks.run(f"{label}: LanguageModelSAETrainingRunner trains", lambda: train(model, trained))
    if trained:
        checks.run(f"{label}: run_evals (CE loss, KL, sparsity, variance)", lambda: evals(trained))


SENTENCE = "the cat sat on the mat"


def train(model: HookedSAETransformer, trained: dict[str, Any]) -> str:
    from datasets import Dataset

    generator = torch.Generator().manual_seed(0)
    # Pretokenized rows of exactly context_size ids, as SAELens's pretokenize runner writes.
    rows = torch.randint(3, len(tokenizer), (64, CONTEXT), generator=generator)
    dataset = Dataset.from_dict({"input_ids": rows.tolist()})
    batch_tokens = 32
    steps = 5
    cfg = LanguageModelSAERunnerConfig(
        sae=StandardTrainingSAEConfig(d_in=D_MODEL, d_sae=128, l1_coefficient=1e-3),
        model_name="tiny-random",
        hook_name=HOOK,
        dataset_path="in-memory",
        is_dataset_tokenized=True,
        streaming=False,
        context_size=CONTEXT,
        prepend_bos=False,
        training_tokens=batch_tokens * steps,
        train_batch_size_tokens=batch_tokens,
        store_batch_size_prompts=4,
        n_batches_in_buffer=2,
        n_eval_batches=1,
        lr=1e-2,
        device="cpu",
        logger=LoggingConfig(log_to_wandb=False),
        output_path=None,
        checkpoint_path=str(workdir / "checkpoints"),
        n_checkpoints=0,
        verbose=False,
        seed=0,
    )
    runner = LanguageModelSAETrainingRunner(cfg, override_dataset=dataset, override_model=model)
    before = {name: p.detach().clone() for name, p in runner.sae.named_parameters()}
    sae = runner.run()
    changed = [name for name, p in sae.named_parameters() if not torch.equal(p, before[name])]
    assert "W_enc" in changed and "W_dec" in changed, f"changed parameters: {changed}"

    batch = runner.activations_store.next_batch()
    assert batch.shape[-1] == D_MODEL, batch.shape
    with torch.no_grad():
        out = sae.training_forward_pass(
            TrainStepInput(
                sae_in=batch.reshape(-1, D_MODEL),
                coefficients={"l1": 1e-3},
                dead_neuron_mask=None,
                n_training_steps=steps,
                is_logging_step=False,
            )
        )
    assert torch.isfinite(out.loss), out.loss
    trained.update(model=model, runner=runner, sae=sae)
    return f"loss {out.loss.item():.4f} after {steps} steps; changed {sorted(changed)}"


def evals(trained: dict[str, Any]) -> str:
    # SAELens's own eval suite: losses with the SAE spliced in and zero-ablated
    # (run_with_hooks, return_type="both", loss_per_token=True) and special-token handling.
    config = get_eval_everything_config(
        batch_size_prompts=4, n_eval_reconstruction_batches=2, n_eval_sparsity_variance_batches=1
    )
    metrics, _ = run_evals(
        trained["sae"],
        trained["runner"].activations_store,
        trained["model"],
        ActivationScaler(),
        eval_config=config,
        exclude_special_tokens=True,
    )
    wanted = ["ce_loss_with_sae", "ce_loss_without_sae", "kl_div_with_sae"]
    flat = {key: value for group in metrics.values() for key, value in group.items()}
    missing = [key for key in wanted if key not in flat]
    assert not missing, f"missing {missing} in {sorted(flat)}"
    for key in wanted:
        assert torch.isfinite(torch.tensor(flat[key])), (key, flat[key])
    # Without the SAE the model's own loss is that of a random model over the vocabulary.
    assert 0 < flat["ce_loss_without_sae"] < 2 * torch.log(torch.tensor(len(tokenizer)))
    return ", ".join(f"{key} {flat[key]:.3f}" for key in wanted)


workflow("gpt2-like", gpt2_like())
workflow("llama-like (GQA)", llama_like())
checks.finish()
