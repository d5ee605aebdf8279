"""Weight processing keeps log-probs: checked on tiny random models run by a reference forward.

The forward below is plain torch on the state-dict layout of API.md §5, independent of the
library's components, so these tests pin down the maths of each step on its own.
"""

import dataclasses
import types
import warnings

import pytest
import torch
import torch.nn.functional as F

from transformer_lens import weight_processing as wp

D_VOCAB, N_CTX, D_MLP = 23, 8, 12


@dataclasses.dataclass(frozen=True)
class Variant:
    name: str
    overrides: dict


def make_cfg(**overrides) -> types.SimpleNamespace:
    fields = dict(
        n_layers=2,
        n_heads=4,
        n_key_value_heads=None,
        d_model=16,
        d_head=4,
        normalization_type="LN",
        final_rms=False,
        gated_mlp=False,
        attn_only=False,
        parallel_attn_mlp=False,
        act_fn="gelu",
        positional_embedding_type="standard",
        num_experts=None,
        use_normalization_before_and_after=False,
        output_logits_soft_cap=-1.0,
    )
    fields.update(overrides)
    return types.SimpleNamespace(**fields)


def folded_cfg(cfg: types.SimpleNamespace) -> types.SimpleNamespace:
    pre = {"LN": "LNPre", "RMS": "RMSPre"}.get(cfg.normalization_type, cfg.normalization_type)
    return types.SimpleNamespace(**{**vars(cfg), "normalization_type": pre})


# ---------------------------------------------------------------- random tiny model


def _norm_params(sd, generator, name, cfg, size):
    if cfg.normalization_type not in ("LN", "RMS"):
        return
    sd[f"{name}.w"] = 1 + 0.3 * torch.randn(size, generator=generator)
    layer_norm = cfg.normalization_type == "LN" and not (name == "ln_final" and cfg.final_rms)
    if layer_norm:
        sd[f"{name}.b"] = 0.3 * torch.randn(size, generator=generator)


def random_state_dict(cfg, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=None):
        scale = scale if scale is not None else shape[-2] ** -0.5 if len(shape) > 1 else 0.2
        return scale * torch.randn(*shape, generator=generator)

    d_model, n_heads, d_head = cfg.d_model, cfg.n_heads, cfg.d_head
    n_kv = cfg.n_key_value_heads or n_heads
    kv = "_" if cfg.n_key_value_heads is not None else ""
    sd = {"embed.W_E": rand(D_VOCAB, d_model, scale=1.0)}
    if cfg.positional_embedding_type in ("standard", "shortformer"):
        sd["pos_embed.W_pos"] = rand(N_CTX, d_model, scale=0.5)
    for layer in range(cfg.n_layers):
        p = f"blocks.{layer}."
        _norm_params(sd, generator, p + "ln1", cfg, d_model)
        sd[p + "attn.W_Q"], sd[p + "attn.b_Q"] = (
            rand(n_heads, d_model, d_head),
            rand(n_heads, d_head),
        )
        for name in ("K", "V"):
            sd[f"{p}attn.{kv}W_{name}"] = rand(n_kv, d_model, d_head)
            sd[f"{p}attn.{kv}b_{name}"] = rand(n_kv, d_head)
        sd[p + "attn.W_O"], sd[p + "attn.b_O"] = rand(n_heads, d_head, d_model), rand(d_model)
        sd[p + "attn.rotary_sin"] = torch.randn(N_CTX, d_head, generator=generator)
        if cfg.use_normalization_before_and_after:
            sd[p + "ln1_post.w"] = 1 + 0.3 * torch.randn(d_model, generator=generator)
            sd[p + "ln2_post.w"] = 1 + 0.3 * torch.randn(d_model, generator=generator)
        if cfg.attn_only:
            continue
        _norm_params(sd, generator, p + "ln2", cfg, d_model)
        sd[p + "mlp.W_in"], sd[p + "mlp.b_in"] = rand(d_model, D_MLP), rand(D_MLP)
        if cfg.gated_mlp:
            sd[p + "mlp.W_gate"] = rand(d_model, D_MLP)
        if cfg.act_fn == "solu_ln":
            sd[p + "mlp.ln.w"] = 1 + 0.3 * torch.randn(D_MLP, generator=generator)
            sd[p + "mlp.ln.b"] = 0.3 * torch.randn(D_MLP, generator=generator)
        sd[p + "mlp.W_out"], sd[p + "mlp.b_out"] = rand(D_MLP, d_model), rand(d_model)
    _norm_params(sd, generator, "ln_final", cfg, d_model)
    sd["unembed.W_U"], sd["unembed.b_U"] = rand(d_model, D_VOCAB), rand(D_VOCAB)
    return sd


# ---------------------------------------------------------------- reference forward


def normalize(x, sd, name, kind, eps=1e-5):
    if kind in ("LN", "LNPre"):
        x = x - x.mean(-1, keepdim=True)
    if kind is not None:
        x = x * (x.pow(2).mean(-1, keepdim=True) + eps).rsqrt()
    if kind in ("LN", "RMS"):
        x = x * sd[f"{name}.w"] + sd.get(f"{name}.b", 0.0)
    return x


def attention(x, sd, p, cfg):
    kv = "_" if cfg.n_key_value_heads is not None else ""
    group = cfg.n_heads // (cfg.n_key_value_heads or cfg.n_heads)

    def project(weight, bias, repeat):
        out = torch.einsum("bpd,hde->bhpe", x, weight) + bias[:, None, :]
        return out.repeat_interleave(repeat, dim=1)

    q = project(sd[p + "attn.W_Q"], sd[p + "attn.b_Q"], 1)
    k = project(sd[f"{p}attn.{kv}W_K"], sd[f"{p}attn.{kv}b_K"], group)
    v = project(sd[f"{p}attn.{kv}W_V"], sd[f"{p}attn.{kv}b_V"], group)
    scores = q @ k.transpose(-2, -1) / cfg.d_head**0.5
    pos = x.shape[1]
    causal = torch.ones(pos, pos, dtype=torch.bool).tril()
    pattern = scores.masked_fill(~causal, float("-inf")).softmax(-1)
    z = pattern @ v
    return torch.einsum("bhpe,hed->bpd", z, sd[p + "attn.W_O"]) + sd[p + "attn.b_O"]


def mlp(x, sd, p, cfg):
    pre = x @ sd[p + "mlp.W_in"] + sd[p + "mlp.b_in"]
    if cfg.gated_mlp:
        post = F.silu(x @ sd[p + "mlp.W_gate"]) * pre
    elif cfg.act_fn == "solu_ln":
        post = pre * pre.softmax(-1)
        mlp_norm = "LN" if cfg.normalization_type == "LN" else "LNPre"
        post = normalize(post, sd, p + "mlp.ln", mlp_norm)
    else:
        post = F.gelu(pre)
    return post @ sd[p + "mlp.W_out"] + sd[p + "mlp.b_out"]


def post_norm(x, sd, name, cfg):
    if not cfg.use_normalization_before_and_after:
        return x
    return normalize(x, sd, name, "RMS")


def forward(sd, cfg, tokens):
    norm = cfg.normalization_type
    x = sd["embed.W_E"][tokens]
    if "pos_embed.W_pos" in sd:
        x = x + sd["pos_embed.W_pos"][: tokens.shape[1]]
    for layer in range(cfg.n_layers):
        p = f"blocks.{layer}."
        attn_out = post_norm(
            attention(normalize(x, sd, p + "ln1", norm), sd, p, cfg), sd, p + "ln1_post", cfg
        )
        if cfg.attn_only:
            x = x + attn_out
            continue
        mlp_in = x if cfg.parallel_attn_mlp else x + attn_out
        mlp_out = post_norm(
            mlp(normalize(mlp_in, sd, p + "ln2", norm), sd, p, cfg), sd, p + "ln2_post", cfg
        )
        x = x + attn_out + mlp_out
    final = {"LN": "RMS", "LNPre": "RMSPre"}.get(norm, norm) if cfg.final_rms else norm
    logits = normalize(x, sd, "ln_final", final) @ sd["unembed.W_U"] + sd["unembed.b_U"]
    cap = cfg.output_logits_soft_cap
    return cap * torch.tanh(logits / cap) if cap > 0 else logits


def log_probs(sd, cfg):
    tokens = torch.randint(0, D_VOCAB, (3, N_CTX), generator=torch.Generator().manual_seed(1))
    return forward(sd, cfg, tokens).log_softmax(-1)


def assert_close(actual, expected, atol=1e-5):
    diff = (actual - expected).abs()
    assert diff.max() <= atol, (
        f"max abs diff {diff.max().item():.3g} at {divmod(int(diff.argmax()), diff.shape[-1])}"
    )


# ---------------------------------------------------------------- variants

VARIANTS = [
    Variant("ln", {}),
    Variant("ln_grouped", {"n_key_value_heads": 2}),
    Variant("ln_kv_equal_heads", {"n_key_value_heads": 4, "parallel_attn_mlp": True}),
    Variant("ln_attn_only", {"attn_only": True}),
    Variant("ln_solu", {"act_fn": "solu_ln"}),
    Variant("ln_final_rms", {"final_rms": True}),
    Variant(
        "rms_gated_grouped",
        {"normalization_type": "RMS", "final_rms": True, "gated_mlp": True, "n_key_value_heads": 2},
    ),
    Variant("rms_ungrouped", {"normalization_type": "RMS"}),
    Variant(
        "rms_post_norms_soft_cap",
        {
            "normalization_type": "RMS",
            "gated_mlp": True,
            "n_key_value_heads": 2,
            "use_normalization_before_and_after": True,
            "output_logits_soft_cap": 3.0,
        },
    ),
]


@pytest.fixture(autouse=True)
def _float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def _quiet(step, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return step(*args, **kwargs)


def _refactorable(cfg) -> bool:
    n_kv = cfg.n_key_value_heads
    return cfg.positional_embedding_type != "rotary" and (n_kv is None or n_kv == cfg.n_heads)


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.name)
def test_each_step_in_sequence_keeps_log_probs(variant):
    cfg = make_cfg(**variant.overrides)
    sd = random_state_dict(cfg)
    expected = log_probs(sd, cfg)
    sd = wp.fold_layer_norm(sd, cfg)
    pre_cfg = folded_cfg(cfg)
    assert_close(log_probs(sd, pre_cfg), expected)
    steps = [wp.center_writing_weights, wp.center_unembed, wp.fold_value_biases]
    if _refactorable(cfg):
        steps.append(wp.refactor_factored_attn_matrices)
    for step in steps:
        sd = _quiet(step, sd, pre_cfg)
        assert_close(log_probs(sd, pre_cfg), expected)


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.name)
def test_each_step_alone_on_unfolded_weights_keeps_log_probs(variant):
    cfg = make_cfg(**variant.overrides)
    sd = random_state_dict(cfg)
    expected = log_probs(sd, cfg)
    steps = [wp.center_writing_weights, wp.center_unembed, wp.fold_value_biases]
    if _refactorable(cfg):
        steps.append(wp.refactor_factored_attn_matrices)
    for step in steps:
        assert_close(log_probs(_quiet(step, sd, cfg), cfg), expected)


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.name)
def test_process_weights_keeps_log_probs(variant):
    cfg = make_cfg(**variant.overrides)
    sd = random_state_dict(cfg)
    refactor = _refactorable(cfg)
    flags = wp.ProcessingFlags(refactor_factored_attn_matrices=refactor)
    processed = _quiet(wp.process_weights, sd, cfg, flags)
    assert_close(log_probs(processed, folded_cfg(cfg)), log_probs(sd, cfg))


def test_fold_layer_norm_removes_norm_keys_and_centres_reading_weights():
    cfg = make_cfg(n_key_value_heads=2, act_fn="solu_ln")
    folded = wp.fold_layer_norm(random_state_dict(cfg), cfg)
    assert not [
        key for key in folded if ".ln" in key and "post" not in key or key.startswith("ln_final")
    ]
    for key in (
        "blocks.0.attn.W_Q",
        "blocks.0.attn._W_K",
        "blocks.1.attn._W_V",
        "blocks.0.mlp.W_in",
        "unembed.W_U",
    ):
        assert folded[key].mean(-2).abs().max() < 1e-12, key


def test_rms_fold_only_scales():
    cfg = make_cfg(normalization_type="RMS", gated_mlp=True, n_key_value_heads=2)
    sd = random_state_dict(cfg)
    folded = wp.fold_layer_norm(sd, cfg)
    w = sd["blocks.0.ln2.w"]
    assert torch.equal(folded["blocks.0.mlp.W_gate"], w[:, None] * sd["blocks.0.mlp.W_gate"])
    assert torch.equal(folded["blocks.0.mlp.b_in"], sd["blocks.0.mlp.b_in"])
    assert torch.equal(folded["blocks.1.attn._b_K"], sd["blocks.1.attn._b_K"])


def test_layer_norm_with_gated_mlp_raises():
    cfg = make_cfg(gated_mlp=True)
    with pytest.raises(ValueError, match="LayerNorm with a gated MLP cannot be folded exactly"):
        wp.fold_layer_norm(random_state_dict(cfg), cfg)


def test_mixture_of_experts_fold_raises():
    cfg = make_cfg(normalization_type="RMS", num_experts=4)
    with pytest.raises(ValueError, match="mixture-of-experts"):
        wp.fold_layer_norm(random_state_dict(make_cfg(normalization_type="RMS")), cfg)


def test_refactor_rejects_rotary():
    cfg = make_cfg(positional_embedding_type="rotary")
    with pytest.raises(ValueError, match="rotary"):
        wp.refactor_factored_attn_matrices(random_state_dict(cfg), cfg)


def test_refactor_rejects_grouped_attention():
    cfg = make_cfg(n_key_value_heads=2)
    with pytest.raises(ValueError, match="grouped"):
        wp.refactor_factored_attn_matrices(random_state_dict(cfg), cfg)
    with pytest.raises(ValueError, match="grouped"):
        flags = wp.ProcessingFlags(refactor_factored_attn_matrices=True)
        wp.process_weights(random_state_dict(cfg), cfg, flags)


def test_refactor_puts_ov_in_svd_form():
    cfg = make_cfg()
    refactored = wp.refactor_factored_attn_matrices(random_state_dict(cfg), cfg)
    W_O = refactored["blocks.0.attn.W_O"]
    eye = torch.eye(cfg.d_head).expand(cfg.n_heads, -1, -1)
    assert_close(W_O @ W_O.transpose(-2, -1), eye, atol=1e-10)
    assert not refactored["blocks.0.attn.b_V"].any()


def test_input_dict_and_tensors_are_not_mutated():
    cfg = make_cfg(act_fn="solu_ln")
    sd = random_state_dict(cfg)
    snapshot = {key: value.clone() for key, value in sd.items()}
    keys = list(sd)
    ids = {key: id(value) for key, value in sd.items()}
    _quiet(wp.process_weights, sd, cfg, wp.ProcessingFlags(refactor_factored_attn_matrices=True))
    assert list(sd) == keys
    for key, value in sd.items():
        assert id(value) == ids[key] and torch.equal(value, snapshot[key]), key


def test_second_fold_on_pre_config_is_a_no_op():
    cfg = make_cfg(n_key_value_heads=2)
    folded = wp.fold_layer_norm(random_state_dict(cfg), cfg)
    again = wp.process_weights(folded, folded_cfg(cfg), wp.ProcessingFlags.none())
    assert again is not folded
    assert again.keys() == folded.keys()
    assert all(again[key] is folded[key] for key in folded)


def test_fold_on_already_folded_dict_with_ln_config_raises():
    cfg = make_cfg()
    folded = wp.fold_layer_norm(random_state_dict(cfg), cfg)
    with pytest.raises(ValueError, match="already folded"):
        wp.fold_layer_norm(folded, cfg)


def test_soft_cap_skips_center_unembed_with_warning():
    cfg = make_cfg(normalization_type="RMS", output_logits_soft_cap=30.0)
    sd = random_state_dict(cfg)
    with pytest.warns(UserWarning, match="center_unembed skipped"):
        result = wp.center_unembed(sd, cfg)
    assert result["unembed.W_U"] is sd["unembed.W_U"]
    with pytest.warns(UserWarning, match="center_unembed skipped"):
        only_center_unembed = dataclasses.replace(wp.ProcessingFlags.none(), center_unembed=True)
        processed = wp.process_weights(sd, cfg, only_center_unembed)
    assert processed["unembed.W_U"] is sd["unembed.W_U"]


def test_center_unembed_without_cfg_centres_vocab():
    sd = random_state_dict(make_cfg())
    centred = wp.center_unembed(sd)
    assert centred["unembed.W_U"].mean(-1).abs().max() < 1e-12
    assert abs(centred["unembed.b_U"].mean()) < 1e-12


@pytest.mark.parametrize(
    "overrides", [{"normalization_type": "RMS"}, {"final_rms": True}, {"normalization_type": None}]
)
def test_center_writing_weights_skips_without_layer_norm_readers(overrides):
    cfg = make_cfg(**overrides)
    sd = random_state_dict(cfg)
    with pytest.warns(UserWarning, match="center_writing_weights skipped"):
        result = wp.center_writing_weights(sd, cfg)
    assert all(result[key] is sd[key] for key in sd)


def test_center_writing_weights_centres_writers():
    cfg = make_cfg()
    centred = wp.center_writing_weights(random_state_dict(cfg), cfg)
    for key in (
        "embed.W_E",
        "pos_embed.W_pos",
        "blocks.1.attn.W_O",
        "blocks.1.attn.b_O",
        "blocks.0.mlp.W_out",
        "blocks.0.mlp.b_out",
    ):
        assert centred[key].mean(-1).abs().max() < 1e-12, key


def test_fold_value_biases_keeps_grouped_shape():
    cfg = make_cfg(n_key_value_heads=2)
    sd = random_state_dict(cfg)
    folded = wp.fold_value_biases(sd, cfg)
    assert folded["blocks.0.attn._b_V"].shape == (2, cfg.d_head)
    assert not folded["blocks.0.attn._b_V"].any()
    expanded = sd["blocks.0.attn._b_V"].repeat_interleave(2, dim=0)
    expected = sd["blocks.0.attn.b_O"] + torch.einsum(
        "he,hed->d", expanded, sd["blocks.0.attn.W_O"]
    )
    assert_close(folded["blocks.0.attn.b_O"], expected, atol=1e-12)


def test_post_norms_qk_norms_and_buffers_pass_through():
    cfg = make_cfg(
        normalization_type="RMS",
        gated_mlp=True,
        n_key_value_heads=2,
        use_normalization_before_and_after=True,
    )
    sd = random_state_dict(cfg)
    sd["blocks.0.attn.q_norm.w"] = torch.randn(cfg.d_head)
    sd["blocks.0.attn.k_norm.w"] = torch.randn(cfg.d_head)
    sd["blocks.0.attn.some_unknown_buffer"] = torch.randn(3)
    processed = _quiet(wp.process_weights, sd, cfg)
    for key in (
        "ln1_post.w",
        "ln2_post.w",
        "attn.q_norm.w",
        "attn.k_norm.w",
        "attn.rotary_sin",
        "attn.some_unknown_buffer",
    ):
        assert processed[f"blocks.0.{key}"] is sd[f"blocks.0.{key}"], key
    with pytest.raises(ValueError, match="q/k norms"):
        wp.refactor_factored_attn_matrices(sd, make_cfg(normalization_type="RMS"))


def test_fold_value_biases_leaves_a_layer_without_value_bias_alone():
    """A zero b_V adds nothing to b_O, so W_O is not read (a streamed half-precision load
    then never converts it): a W_O full of NaN would poison b_O if it were."""
    cfg = make_cfg()
    sd = random_state_dict(cfg)
    sd["blocks.0.attn.b_V"] = torch.zeros_like(sd["blocks.0.attn.b_V"])
    sd["blocks.0.attn.W_O"] = torch.full_like(sd["blocks.0.attn.W_O"], float("nan"))
    folded = wp.fold_value_biases(sd, cfg)
    for key in ("b_V", "b_O", "W_O"):
        assert folded[f"blocks.0.attn.{key}"] is sd[f"blocks.0.attn.{key}"], key
    expected = sd["blocks.1.attn.b_O"] + torch.einsum(
        "he,hed->d", sd["blocks.1.attn.b_V"], sd["blocks.1.attn.W_O"]
    )
    assert_close(folded["blocks.1.attn.b_O"], expected, atol=1e-12)


@pytest.mark.parametrize("normalization_type", ["LN", "RMS"])
def test_a_workspace_allocate_receives_each_folded_matrix(normalization_type):
    """With a Workspace's allocate, every weight a norm folds into is written into a tensor
    of the allocator's, in the weight's own layout, with the same values as a plain fold."""
    cfg = make_cfg(normalization_type=normalization_type, gated_mlp=normalization_type == "RMS")
    sd = random_state_dict(cfg)
    sd["blocks.0.attn.W_Q"] = sd["blocks.0.attn.W_Q"].transpose(-1, -2).contiguous().mT
    given: list[torch.Tensor] = []

    def allocate(like: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        given.append(torch.empty_like(like, dtype=dtype))
        return given[-1]

    plain = wp.fold_layer_norm(sd, cfg)
    into_given = wp.fold_layer_norm(sd, cfg, workspace=wp.Workspace(allocate=allocate))
    folded_keys = [k for k in into_given if k.endswith(("W_Q", "W_K", "W_V", "W_in", "W_gate"))]
    folded_keys.append("unembed.W_U")
    pointers = {t.data_ptr() for t in given}
    assert len(given) == len(folded_keys)
    for key in folded_keys:
        assert into_given[key].data_ptr() in pointers, key
        assert into_given[key].stride() == sd[key].stride(), key
    for key, value in plain.items():
        assert torch.equal(into_given[key], value), key
    assert all(t.data_ptr() not in pointers for t in wp.fold_layer_norm(sd, cfg).values())
