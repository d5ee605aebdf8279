"""`python -m transformer_lens verify`: real weights from a directory, random weights with
an official configuration, truncated layers, JSON output, and exit statuses that fail when
a row is over its tolerance."""

import json
import subprocess
import sys

import pytest
import torch

from tests.tiny_hf import tiny_hf
from tests.tokenizers import make_bos_adding_tokenizer
from transformer_lens import HookedTransformer
from transformer_lens.cli import EXIT_ERROR, EXIT_FAILED, EXIT_PASSED, main
from transformer_lens.verification import VerifyOptions, checks, verify
from transformer_lens.verification.reference import load_reference

EXPECTED_CHECKS = {
    "logits vs HF: max |diff|",
    "logits vs HF: mean |diff|",
    "embedding (resid_pre 0) vs HF",
    "resid_post 0 vs HF",
    "ln_final(resid_post 1) vs HF",
    "split input on vs off",
    "split input, per-head copies edited vs off",
    "attn_result on vs off",
    "hook_mlp_in on vs off",
    "ungrouped vs grouped",
    "fused (opt-in) vs eager attention",
    "processed vs unprocessed (log-probs)",
    "forward time: Hugging Face (eager attention)",
    "forward time: HookedTransformer",
}


@pytest.fixture(scope="module")
def gemma_dir(tmp_path_factory):
    """A saved 2-layer grouped Gemma (2 key/value heads for 8 query heads) with a tokenizer."""
    directory = tmp_path_factory.mktemp("gemma")
    tiny_hf("gemma", num_key_value_heads=2, vocab_size=400).save_pretrained(directory)
    make_bos_adding_tokenizer(directory)
    return directory


def run_json(capsys, *argv: str) -> tuple[int, dict]:
    status = main(["verify", *argv, "--json", "--no-progress"])
    return status, json.loads(capsys.readouterr().out, parse_constant=reject_non_standard)


def reject_non_standard(name: str) -> None:
    raise AssertionError(f"--json printed {name}, which strict JSON parsers refuse")


def test_real_weights_from_a_directory_pass_every_row(gemma_dir, capsys):
    status, report = run_json(capsys, str(gemma_dir))
    assert status == EXIT_PASSED and report["passed"] is True
    assert report["origin"] == f"real weights from {gemma_dir}"
    assert {row["check"] for row in report["rows"]} == EXPECTED_CHECKS
    assert report["prompt_texts"] is not None  # the checkpoint's tokenizer was used
    assert all(prompt[0] == 1 for prompt in report["prompts"])  # <bos> once, in front
    rows = {row["check"]: row for row in report["rows"]}
    # float32 tolerance: 1e-4 of the largest reference logit; the eager path mirrors HF
    # eager op by op, so the measured difference is far below it.
    assert rows["logits vs HF: max |diff|"]["value"] <= 1e-5
    assert rows["ungrouped vs grouped"]["passed"] is True
    assert rows["forward time: HookedTransformer"]["passed"] is None  # informational
    assert rows["forward time: HookedTransformer"]["value"] > 0


def test_layers_keeps_the_first_layers_of_a_real_checkpoint(gemma_dir, capsys):
    status, report = run_json(capsys, str(gemma_dir), "--layers", "1")
    assert status == EXIT_PASSED
    assert report["n_layers"] == 1 and "first 1 of 2 layers" in report["origin"]
    checks = {row["check"] for row in report["rows"]}
    assert "ln_final(resid_post 0) vs HF" in checks and "resid_post 0 vs HF" not in checks


def test_random_weights_use_the_official_configuration(capsys):
    status, report = run_json(capsys, "pythia-70m", "--layers", "1", "--prompt", "hello")
    assert status == EXIT_PASSED
    assert report["origin"] == "random weights, official configuration, 1 of 6 layers"
    assert report["prompt_texts"] is None  # no tokenizer offline: token ids instead
    assert len(report["prompts"]) == 1
    rows = {row["check"]: row for row in report["rows"]}
    assert rows["ungrouped vs grouped"]["value"] is None  # multi-head: not applicable
    assert "n/a" in rows["ungrouped vs grouped"]["note"]


def test_random_flag_ignores_real_weights(gemma_dir, capsys):
    status, report = run_json(capsys, str(gemma_dir), "--random")
    assert status == EXIT_PASSED
    assert report["origin"] == "random weights, its configuration"


def test_text_table_names_every_row_and_the_verdict(gemma_dir, capsys):
    assert main(["verify", str(gemma_dir), "--no-progress"]) == EXIT_PASSED
    out = capsys.readouterr().out
    for check in EXPECTED_CHECKS:
        assert check in out
    assert "PASSED" in out


def test_a_row_over_its_tolerance_fails_the_run(gemma_dir, capsys, monkeypatch):
    """A loader that got one norm weight wrong must turn the run red (exit status 1)."""
    load = HookedTransformer.from_pretrained_no_processing

    def broken(*args, **kwargs):
        model = load(*args, **kwargs)
        with torch.no_grad():
            model.blocks[1].ln2.w.mul_(1.5)
        return model

    monkeypatch.setattr(HookedTransformer, "from_pretrained_no_processing", broken)
    status, report = run_json(capsys, str(gemma_dir))
    assert status == EXIT_FAILED and report["passed"] is False
    failed = {row["check"] for row in report["rows"] if row["passed"] is False}
    assert {"logits vs HF: max |diff|", "ln_final(resid_post 1) vs HF"} <= failed
    assert "resid_post 0 vs HF" not in failed  # the first layer is still right


def test_unknown_model_is_an_error_naming_it(capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    status = main(["verify", "no-such-model", "--no-progress"])
    assert status == EXIT_ERROR
    err = capsys.readouterr().err
    assert "no-such-model" in err and "official model name" in err


def test_too_many_layers_is_an_error(gemma_dir, capsys):
    assert main(["verify", str(gemma_dir), "--layers", "3", "--no-progress"]) == EXIT_ERROR
    assert "between 1 and 2" in capsys.readouterr().err


def test_bfloat16_uses_its_own_tolerance(gemma_dir):
    report = verify(VerifyOptions(model=str(gemma_dir), dtype="bfloat16", progress=False))
    assert report.passed and report.relative_tolerance == 6e-2
    logits = next(row for row in report.rows if row.check == "logits vs HF: max |diff|")
    assert logits.value == 0.0  # bit for bit: the eager path mirrors HF's bfloat16 ops


def test_module_entry_point_runs():
    result = subprocess.run(
        [sys.executable, "-m", "transformer_lens", "verify", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0 and "--layers" in result.stdout


def test_processing_that_raises_is_a_failed_row(gemma_dir, capsys, monkeypatch):
    def refuse(self, **kwargs):
        raise ValueError("fold_ln cannot fold this norm")

    monkeypatch.setattr(HookedTransformer, "process_weights_", refuse)
    status, report = run_json(capsys, str(gemma_dir))
    assert status == EXIT_FAILED
    row = next(r for r in report["rows"] if r["check"] == "processed vs unprocessed (log-probs)")
    assert row["passed"] is False and "fold_ln cannot fold this norm" in row["note"]
    assert row["value"] is None


def test_a_repo_id_in_the_local_hub_cache_uses_its_real_weights(
    gemma_dir, tmp_path, capsys, monkeypatch
):
    """A repo id that is no official name is looked up in the local Hugging Face cache."""
    import shutil

    from huggingface_hub import constants

    repo = tmp_path / "models--someone--tiny-gemma"
    snapshot = repo / "snapshots" / "0123abcd"
    shutil.copytree(gemma_dir, snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    status, report = run_json(capsys, "someone/tiny-gemma")
    assert status == EXIT_PASSED
    assert report["origin"] == f"real weights from {snapshot}"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_a_missing_device_is_an_error_naming_it(gemma_dir, capsys):
    assert main(["verify", str(gemma_dir), "--device", "cuda", "--no-progress"]) == EXIT_ERROR
    assert "CUDA is not available" in capsys.readouterr().err
    assert main(["verify", str(gemma_dir), "--device", "gpu9", "--no-progress"]) == EXIT_ERROR
    assert "is not a torch device" in capsys.readouterr().err


def test_fused_row_runs_the_opt_in_kernel_and_every_other_row_eager(gemma_dir, monkeypatch):
    """Eager is the default path; the fused row must be the only one that turns fused on."""
    seen: dict[str, bool] = {}
    compare = checks.mode_vs_plain

    def spy(model, prompts, plain, check, rtol, hooks=None):
        seen[check] = model.cfg.use_fused_attention
        return compare(model, prompts, plain, check, rtol, hooks)

    monkeypatch.setattr(checks, "mode_vs_plain", spy)
    report = verify(VerifyOptions(model=str(gemma_dir), progress=False))
    assert report.passed
    assert seen.pop("fused (opt-in) vs eager attention") is True
    assert seen and not any(seen.values())


def test_prompts_of_one_length_run_as_one_batch(capsys):
    """Random-weight prompts share a length and run batched; every prompt is still reported."""
    status, report = run_json(capsys, "pythia-70m", "--layers", "1")
    assert status == EXIT_PASSED
    assert len(report["prompts"]) == 3 and {len(p) for p in report["prompts"]} == {12}
    assert len({tuple(p) for p in report["prompts"]}) == 3


def test_random_reference_initialises_every_parameter():
    """Torch's default init is skipped while the model is built: HF's init must still
    reach every parameter (an untouched one would read as zeros or garbage)."""
    reference = load_reference("pythia-70m", True, 1, torch.float32, "cpu")
    for name, parameter in reference.hf_model.named_parameters():
        assert torch.isfinite(parameter).all(), name
        assert float(parameter.detach().std()) > 1e-3, name
