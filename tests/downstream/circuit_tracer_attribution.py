"""circuit-tracer (circuit-tracer==0.5.0, nnsight==0.7.0) runs unchanged on the fork: its
TransformerLens backend builds a ReplacementModel from a tiny random Gemma-2-like and a
Llama-like HookedTransformerConfig with random transcoders, and `attribute()`'s adjacency
matrix matches gradients taken with plain torch autograd on the same model.

Run in a virtual environment holding circuit-tracer and the fork (see .ci/downstream):

    python tests/downstream/circuit_tracer_attribution.py

circuit-tracer pins transformers<=4.57.3, so this also runs the fork on the 4.x line.
Everything is built from random weights; nothing is downloaded. No fork behaviour is patched
here: a failure is a fork incompatibility (or a client change).

What an edge is (circuit_tracer/attribution/attribute.py and context_transformerlens.py): the
model is linearised by freezing attention patterns and norm scales (detached) and by
detaching each MLP's output except for the transcoder skip path. For a target node with
"input direction" v read at activation x_t (a logit: the demeaned unembedding column at the
final normalised residual, last position; a feature: its encoder row at the transcoder's
input hook), and a source node with "output vector" w written at activation x_s (a token:
its embedding at hook_embed; a feature: activation * decoder row at the MLP output; an error:
MLP output minus the transcoder's reconstruction), the edge is d(v . x_t)/d(x_s) . w.
circuit-tracer gets these rows with backward hooks that fire during an injected backward
pass; here each row is recomputed with torch.autograd.grad and compared entry by entry.
"""

import contextlib
import io
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from _common import Checks, make_tokenizer

checks = Checks()
D_MODEL = 64
D_TRANSCODER = 32
N_LAYERS = 2
PROMPT = "the cat sat on the mat"


def import_circuit_tracer() -> Any:
    import circuit_tracer
    from circuit_tracer.replacement_model import replacement_model_transformerlens

    return circuit_tracer, replacement_model_transformerlens


imported = checks.run("import circuit_tracer (TransformerLens backend)", import_circuit_tracer)
if imported is None:
    checks.finish()

from circuit_tracer import ReplacementModel, attribute  # noqa: E402
from circuit_tracer.transcoder import SingleLayerTranscoder, TranscoderSet  # noqa: E402
from circuit_tracer.transcoder.activation_functions import JumpReLU  # noqa: E402

from transformer_lens import HookedTransformerConfig  # noqa: E402

workdir = Path(tempfile.mkdtemp(prefix="circuit_tracer_attribution_"))
tokenizer_dir = workdir / "tokenizer"
tokenizer = make_tokenizer(tokenizer_dir)


def gemma2_like() -> HookedTransformerConfig:
    # tokenizer_name is a local directory: HookedTransformer(cfg) must load it, as classic
    # does for a hub name (circuit-tracer's own tests rely on that).
    return HookedTransformerConfig(
        n_layers=N_LAYERS,
        d_model=D_MODEL,
        d_head=16,
        n_heads=4,
        n_key_value_heads=2,
        d_mlp=128,
        n_ctx=64,
        d_vocab=len(tokenizer),
        act_fn="gelu_pytorch_tanh",
        normalization_type="RMS",
        positional_embedding_type="rotary",
        rotary_dim=16,
        gated_mlp=True,
        final_rms=True,
        use_normalization_before_and_after=True,
        attn_types=["global", "local"],
        window_size=4,
        attn_scores_soft_cap=50.0,
        output_logits_soft_cap=30.0,
        original_architecture="Gemma2ForCausalLM",
        tokenizer_name=str(tokenizer_dir),
        model_name="tiny-gemma-2",
        seed=0,
        device="cpu",
    )


def llama_like() -> HookedTransformerConfig:
    return HookedTransformerConfig(
        n_layers=N_LAYERS,
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
        original_architecture="LlamaForCausalLM",
        model_name="tiny-llama",
        seed=0,
        device="cpu",
    )


def make_transcoders(
    seed: int, input_hook: str, output_hook: str, skip: bool, jump_relu: bool
) -> TranscoderSet:
    """Random per-layer transcoders; a negative encoder bias keeps a minority firing, so the
    graph has a few dozen feature nodes (attribution runs one backward pass per batch)."""
    generator = torch.Generator().manual_seed(seed)
    transcoders = {}
    for layer in range(N_LAYERS):
        activation = (
            JumpReLU(threshold=torch.full((D_TRANSCODER,), 0.05)) if jump_relu else torch.nn.ReLU()
        )
        transcoder = SingleLayerTranscoder(
            D_MODEL,
            D_TRANSCODER,
            activation,
            layer_idx=layer,
            skip_connection=skip,
            device=torch.device("cpu"),
            dtype=torch.float32,
        )
        with torch.no_grad():
            transcoder.W_enc.copy_(
                torch.randn(D_TRANSCODER, D_MODEL, generator=generator) / D_MODEL**0.5
            )
            transcoder.b_enc.copy_(torch.full((D_TRANSCODER,), -1.5))
            transcoder.W_dec.copy_(torch.randn(D_TRANSCODER, D_MODEL, generator=generator) * 0.1)
            transcoder.b_dec.copy_(torch.randn(D_MODEL, generator=generator) * 0.01)
            if skip:
                transcoder.W_skip.copy_(torch.randn(D_MODEL, D_MODEL, generator=generator) * 0.05)
        transcoders[layer] = transcoder
    return TranscoderSet(
        transcoders, feature_input_hook=input_hook, feature_output_hook=output_hook
    )


class Activations:
    """One forward pass of the replacement model (its permanent linearising hooks in place)
    holding the activations every edge is a derivative with respect to."""

    def __init__(self, model: Any, tokens: torch.Tensor) -> None:
        self.embed: torch.Tensor | None = None
        self.inputs: dict[int, torch.Tensor] = {}
        self.outputs: dict[int, torch.Tensor] = {}

        def grab(store: dict[int, torch.Tensor], layer: int) -> Callable[..., None]:
            def hook(acts: torch.Tensor, hook: Any) -> None:
                store[layer] = acts

            return hook

        def grab_embed(acts: torch.Tensor, hook: Any) -> None:
            self.embed = acts

        fwd_hooks: list[tuple[str, Callable[..., None]]] = [("hook_embed", grab_embed)]
        for layer in range(N_LAYERS):
            fwd_hooks.append(
                (f"blocks.{layer}.{model.feature_input_hook}", grab(self.inputs, layer))
            )
            fwd_hooks.append(
                (f"blocks.{layer}.{model.feature_output_hook}", grab(self.outputs, layer))
            )
        # Logit nodes are read before the soft cap (circuit-tracer injects at ln_final's output).
        with model.zero_softcap():
            self.logits = model.run_with_hooks(tokens[None], fwd_hooks=fwd_hooks)
        assert self.embed is not None and self.embed.requires_grad, "hook_embed is no grad leaf"


def expected_row(
    model: Any, acts: Activations, graph: Any, tokens: torch.Tensor, target: torch.Tensor
) -> torch.Tensor:
    """The adjacency row of `target` (a scalar of the forward above), by plain autograd, in
    circuit-tracer's node order: features, errors (layer-major), tokens, logits."""
    n_pos = len(tokens)
    layers = list(range(N_LAYERS))
    grads = torch.autograd.grad(
        target,
        [acts.embed] + [acts.outputs[layer] for layer in layers],
        retain_graph=True,
        allow_unused=True,
    )
    grad_embed = grads[0][0]
    grad_out = [g[0] if g is not None else torch.zeros(n_pos, D_MODEL) for g in grads[1:]]

    n_features = len(graph.active_features)
    n_logits = len(graph.logit_targets)
    row = torch.zeros(n_features + (N_LAYERS + 1) * n_pos + n_logits)
    for i, ((layer, pos, feature), value) in enumerate(
        zip(graph.active_features.tolist(), graph.activation_values, strict=True)
    ):
        decoder = value * model.transcoders[layer].W_dec[feature]
        row[i] = grad_out[layer][pos] @ decoder
    with torch.no_grad():
        for layer in layers:
            # Error node: what the MLP wrote minus the transcoder's reconstruction of its input;
            # the first position (the <bos>) is zeroed, as circuit-tracer does.
            error = acts.outputs[layer][0] - model.transcoders[layer](acts.inputs[layer][0])
            error[0] = 0
            start = n_features + layer * n_pos
            row[start : start + n_pos] = (grad_out[layer] * error).sum(-1)
        start = n_features + N_LAYERS * n_pos
        row[start : start + n_pos] = (grad_embed * model.W_E[tokens]).sum(-1)
    return row


def assert_rows_close(actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    scale = expected.abs().max().item()
    assert scale > 0, f"{what}: the autograd row is all zero"
    torch.testing.assert_close(
        actual, expected, rtol=1e-4, atol=1e-5 * scale, msg=lambda m: f"{what}: {m}"
    )


def workflow(label: str, build: Callable[[], Any], check_offload: bool) -> None:
    model = checks.run(f"{label}: ReplacementModel.from_config(cfg, transcoders)", build)
    if model is None:
        return
    tokens = tokenizer(PROMPT, return_tensors="pt").input_ids[0]

    def has_tokenizer() -> None:
        assert model.tokenizer is not None, "model.tokenizer is None"
        assert model.tokenizer.bos_token_id == tokenizer.bos_token_id
        assert model.tokenizer(PROMPT, return_tensors="pt").input_ids[0].tolist() == tokens.tolist()

    checks.run(f"{label}: model.tokenizer is the local tokenizer", has_tokenizer)

    def run_attribute() -> Any:
        return attribute(tokens, model, max_n_logits=3, desired_logit_prob=0.99, batch_size=64)

    graph = checks.run(f"{label}: attribute() builds a graph", run_attribute)
    if graph is None:
        return
    n_pos = len(tokens)
    n_features = len(graph.active_features)
    n_logits = len(graph.logit_targets)
    n_nodes = n_features + (N_LAYERS + 1) * n_pos + n_logits

    def adjacency_nonzero() -> str:
        adjacency = graph.adjacency_matrix
        assert adjacency.shape == (n_nodes, n_nodes), (adjacency.shape, n_nodes)
        assert torch.isfinite(adjacency).all()
        assert n_features > 0, "no transcoder feature fired"
        assert (adjacency[-n_logits:] != 0).any(), "logit rows are all zero"
        assert (adjacency[:n_features] != 0).any(), "feature rows are all zero"
        return f"{n_features} features, {n_logits} logits, {int((adjacency != 0).sum())} edges"

    checks.run(f"{label}: adjacency matrix is nonzero", adjacency_nonzero)

    def logit_rows_match_autograd() -> None:
        acts = Activations(model, tokens)
        unembed = model.W_U
        for k, target in enumerate(graph.logit_targets):
            # Demeaned logit: the bias and the mean over the vocabulary drop out of gradients
            # exactly as circuit-tracer's demeaned unembedding direction does.
            logits = acts.logits[0, -1]
            scalar = logits[target.vocab_idx] - logits.mean()
            expected = expected_row(model, acts, graph, tokens, scalar)
            assert_rows_close(
                graph.adjacency_matrix[n_nodes - n_logits + k], expected, f"logit {k}"
            )
        assert unembed.shape[-1] == len(tokenizer)

    checks.run(
        f"{label}: logit rows equal autograd (token, feature, error edges)",
        logit_rows_match_autograd,
    )

    def feature_rows_match_autograd() -> str:
        acts = Activations(model, tokens)
        features = graph.active_features.tolist()
        # Features in the last layer have the most upstream edges; check a few of them.
        targets = [i for i, (layer, _, _) in enumerate(features) if layer == N_LAYERS - 1][:3]
        assert targets, "no feature fired in the last layer"
        for i in targets:
            layer, pos, feature = features[i]
            encoder = model.transcoders[layer].W_enc[feature]
            scalar = acts.inputs[layer][0, pos] @ encoder
            expected = expected_row(model, acts, graph, tokens, scalar)
            assert_rows_close(graph.adjacency_matrix[i], expected, f"feature {i} {features[i]}")
        return f"{len(targets)} feature rows"

    checks.run(f"{label}: feature rows equal autograd", feature_rows_match_autograd)

    def offload_to_cpu_and_back() -> None:
        # offload="cpu" moves the MLPs, embed and unembed away and back between phases: the
        # wrapped modules must round-trip. offload="disk" is not checked: it saves each module
        # with safetensors, which refuses the fork's weight matrices (views in the layout
        # their matmul reads; MIGRATING.md, "State dicts").
        with torch.no_grad():
            before = model(tokens[None])
        again = attribute(
            tokens, model, max_n_logits=3, desired_logit_prob=0.99, batch_size=64, offload="cpu"
        )
        torch.testing.assert_close(again.adjacency_matrix, graph.adjacency_matrix)
        with torch.no_grad():
            assert torch.equal(model(tokens[None]), before), "logits changed after offload"

    if check_offload:
        checks.run(
            f"{label}: attribute(offload='cpu') round-trips the wrapped modules",
            offload_to_cpu_and_back,
        )

    def state_dict_and_to() -> None:
        with torch.no_grad():
            before = model(tokens[None])
        state = model.state_dict()
        assert any(key.startswith("unembed.old_unembed.") for key in state), sorted(state)[:8]
        model.load_state_dict(state)
        with contextlib.redirect_stdout(io.StringIO()):  # "Moving model to device" chatter
            model.to("cpu")
        with torch.no_grad():
            assert torch.equal(model(tokens[None]), before)

    checks.run(
        f"{label}: state_dict/load_state_dict/to with circuit-tracer's wrappers", state_dict_and_to
    )


def build_gemma() -> Any:
    transcoders = make_transcoders(
        1, "ln2.hook_normalized", "hook_mlp_out", skip=False, jump_relu=True
    )
    return ReplacementModel.from_config(gemma2_like(), transcoders, backend="transformerlens")


def build_llama() -> Any:
    # The tokenizer object goes through from_config's kwargs to HookedTransformer(cfg, tokenizer=).
    transcoders = make_transcoders(2, "mlp.hook_in", "mlp.hook_out", skip=True, jump_relu=False)
    return ReplacementModel.from_config(
        llama_like(), transcoders, backend="transformerlens", tokenizer=tokenizer
    )


workflow("gemma-2-like", build_gemma, check_offload=True)
# Not with skip transcoders: circuit-tracer 0.5.0 offloads the transcoders before the forward
# pass that still needs W_skip, and returns garbage edges on PyPI's transformer-lens too.
workflow("llama-like (skip transcoders)", build_llama, check_offload=False)
checks.finish()
