"""State dict keys and shapes (API.md §5), strict loading with named problems, and the weight
layouts that let the forward use parameters without copying them."""

import pytest
import torch

from tests.tiny_hf import tiny_hf
from transformer_lens import HookedTransformer, HookedTransformerConfig
from transformer_lens.components._layout import linear_weight_from_heads

N_LAYERS, D_MODEL, N_CTX, D_HEAD, N_HEADS, N_KV, D_VOCAB = 2, 32, 16, 8, 4, 2, 50
D_MLP = 4 * D_MODEL
# rotary_base is a float only to dodge the annotation bug pinned down in test_config.py.
COMMON = dict(
    n_layers=N_LAYERS,
    d_model=D_MODEL,
    n_ctx=N_CTX,
    d_head=D_HEAD,
    d_vocab=D_VOCAB,
    rotary_base=10000.0,
)
GROUPED = dict(
    COMMON,
    n_heads=N_HEADS,
    n_key_value_heads=N_KV,
    act_fn="silu",
    normalization_type="RMS",
    positional_embedding_type="rotary",
    gated_mlp=True,
)
GPT2_LIKE = dict(COMMON, act_fn="gelu_new", normalization_type="LN")
TOKENS = torch.tensor([[1, 7, 3, 9, 22, 4, 0, 49]])


def build(fields: dict, seed: int = 0, **overrides) -> HookedTransformer:
    return HookedTransformer(HookedTransformerConfig(**{**fields, **overrides}, seed=seed))


def shapes(model: HookedTransformer) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def storage(tensor: torch.Tensor) -> int:
    return tensor.untyped_storage().data_ptr()


@pytest.fixture(autouse=True)
def no_grad():
    with torch.no_grad():
        yield


# ----- keys and shapes --------------------------------------------------------------------------
def test_grouped_rms_rotary_gated_model_state_dict():
    expected = {
        "embed.W_E": (D_VOCAB, D_MODEL),
        "ln_final.w": (D_MODEL,),
        "unembed.W_U": (D_MODEL, D_VOCAB),
        "unembed.b_U": (D_VOCAB,),
    }
    for layer in range(N_LAYERS):
        block = f"blocks.{layer}."
        expected |= {
            block + "ln1.w": (D_MODEL,),
            block + "ln2.w": (D_MODEL,),
            block + "attn.W_Q": (N_HEADS, D_MODEL, D_HEAD),
            block + "attn.b_Q": (N_HEADS, D_HEAD),
            block + "attn._W_K": (N_KV, D_MODEL, D_HEAD),
            block + "attn._b_K": (N_KV, D_HEAD),
            block + "attn._W_V": (N_KV, D_MODEL, D_HEAD),
            block + "attn._b_V": (N_KV, D_HEAD),
            block + "attn.W_O": (N_HEADS, D_HEAD, D_MODEL),
            block + "attn.b_O": (D_MODEL,),
            block + "attn.rotary_sin": (N_CTX, D_HEAD),
            block + "attn.rotary_cos": (N_CTX, D_HEAD),
            block + "mlp.W_in": (D_MODEL, D_MLP),
            block + "mlp.W_gate": (D_MODEL, D_MLP),
            block + "mlp.b_in": (D_MLP,),
            block + "mlp.W_out": (D_MLP, D_MODEL),
            block + "mlp.b_out": (D_MODEL,),
        }
    assert shapes(build(GROUPED)) == expected


def test_rotary_buffers_have_rotary_dim_columns():
    model = build(GROUPED, rotary_dim=4)
    assert shapes(model)["blocks.0.attn.rotary_sin"] == (N_CTX, 4)
    assert shapes(model)["blocks.1.attn.rotary_cos"] == (N_CTX, 4)
    assert "blocks.0.attn.rotary_sin" in dict(model.named_buffers())


def test_gpt2_like_model_state_dict():
    expected = {
        "embed.W_E": (D_VOCAB, D_MODEL),
        "pos_embed.W_pos": (N_CTX, D_MODEL),
        "ln_final.w": (D_MODEL,),
        "ln_final.b": (D_MODEL,),
        "unembed.W_U": (D_MODEL, D_VOCAB),
        "unembed.b_U": (D_VOCAB,),
    }
    for layer in range(N_LAYERS):
        block = f"blocks.{layer}."
        expected |= {
            block + "ln1.w": (D_MODEL,),
            block + "ln1.b": (D_MODEL,),
            block + "ln2.w": (D_MODEL,),
            block + "ln2.b": (D_MODEL,),
            block + "mlp.W_in": (D_MODEL, D_MLP),
            block + "mlp.b_in": (D_MLP,),
            block + "mlp.W_out": (D_MLP, D_MODEL),
            block + "mlp.b_out": (D_MODEL,),
        }
        for name in ("Q", "K", "V"):
            expected[block + f"attn.W_{name}"] = (N_HEADS, D_MODEL, D_HEAD)
            expected[block + f"attn.b_{name}"] = (N_HEADS, D_HEAD)
        expected[block + "attn.W_O"] = (N_HEADS, D_HEAD, D_MODEL)
        expected[block + "attn.b_O"] = (D_MODEL,)
    assert shapes(build(GPT2_LIKE)) == expected


def test_n_key_value_heads_equal_to_n_heads_still_uses_grouped_keys():
    keys = shapes(build(GROUPED, n_key_value_heads=N_HEADS))
    assert keys["blocks.0.attn._W_K"] == (N_HEADS, D_MODEL, D_HEAD)
    assert keys["blocks.0.attn._b_V"] == (N_HEADS, D_HEAD)
    assert "blocks.0.attn.W_K" not in keys and "blocks.0.attn.b_V" not in keys


# ----- stacked weight properties --------------------------------------------------------------
@pytest.mark.parametrize("n_kv", [1, 2, 4])
def test_stacked_W_K_and_W_V_expand_kv_heads_with_repeat_interleave(n_kv):
    model = build(GROUPED, n_key_value_heads=n_kv)
    group = N_HEADS // n_kv
    for name in ("K", "V"):
        stacked = getattr(model, f"W_{name}")
        assert stacked.shape == (N_LAYERS, N_HEADS, D_MODEL, D_HEAD)
        expected = torch.stack(
            [
                getattr(block.attn, f"_W_{name}").repeat_interleave(group, dim=0)
                for block in model.blocks
            ]
        )
        assert torch.equal(stacked, expected)
        bias = getattr(model, f"b_{name}")
        assert bias.shape == (N_LAYERS, N_HEADS, D_HEAD)
        assert torch.equal(
            bias[1], getattr(model.blocks[1].attn, f"_b_{name}").repeat_interleave(group, dim=0)
        )


def test_stacked_W_K_of_a_gpt2_like_model_is_the_stored_weight():
    model = build(GPT2_LIKE)
    assert model.W_K.shape == (N_LAYERS, N_HEADS, D_MODEL, D_HEAD)
    assert torch.equal(model.W_K, torch.stack([block.attn.W_K for block in model.blocks]))


# ----- round trip and strict loading -------------------------------------------------------------
@pytest.mark.parametrize("fields", [GROUPED, GPT2_LIKE], ids=["grouped", "gpt2_like"])
def test_state_dict_round_trip_gives_identical_logits(fields):
    source, target = build(fields, seed=0), build(fields, seed=1)
    assert not torch.equal(source(TOKENS), target(TOKENS))
    target.load_state_dict(source.state_dict())
    assert torch.equal(source(TOKENS), target(TOKENS))


def test_missing_unexpected_and_wrongly_shaped_keys_are_all_named():
    model = build(GROUPED)
    state_dict = build(GROUPED, seed=1).state_dict()
    del state_dict["blocks.0.attn._W_K"]
    state_dict["blocks.0.attn.W_K"] = torch.zeros(N_HEADS, D_MODEL, D_HEAD)
    state_dict["blocks.1.mlp.W_in"] = torch.zeros(D_MLP, D_MODEL)
    with pytest.raises(ValueError) as raised:
        model.load_state_dict(state_dict)
    message = str(raised.value)
    assert "missing" in message and "blocks.0.attn._W_K" in message
    assert "unexpected" in message and "blocks.0.attn.W_K" in message
    assert "blocks.1.mlp.W_in" in message
    assert str((D_MLP, D_MODEL)) in message and str((D_MODEL, D_MLP)) in message


@pytest.mark.parametrize(
    "edit, fragment",
    [
        (lambda sd: sd.pop("unembed.b_U"), "unembed.b_U"),
        (lambda sd: sd.__setitem__("blocks.0.attn.hook_q", torch.zeros(1)), "blocks.0.attn.hook_q"),
        (lambda sd: sd.__setitem__("embed.W_E", torch.zeros(D_VOCAB + 1, D_MODEL)), "(51, 32)"),
    ],
    ids=["missing", "unexpected", "wrong_shape"],
)
def test_each_kind_of_mismatch_raises_value_error(edit, fragment):
    model = build(GPT2_LIKE)
    state_dict = model.state_dict()
    edit(state_dict)
    with pytest.raises(ValueError, match="State dict does not match") as raised:
        model.load_state_dict(state_dict)
    assert fragment in str(raised.value)


def test_failed_load_leaves_the_weights_untouched():
    model = build(GPT2_LIKE)
    before = model(TOKENS)
    state_dict = build(GPT2_LIKE, seed=1).state_dict()
    del state_dict["unembed.b_U"]
    with pytest.raises(ValueError):
        model.load_state_dict(state_dict)
    assert torch.equal(model(TOKENS), before)


def test_classic_mask_and_ignore_buffers_are_accepted_and_ignored():
    source, target = build(GPT2_LIKE, seed=0), build(GPT2_LIKE, seed=1)
    state_dict = source.state_dict()
    for layer in range(N_LAYERS):
        state_dict[f"blocks.{layer}.attn.mask"] = torch.zeros(N_CTX, N_CTX, dtype=torch.bool)
        state_dict[f"blocks.{layer}.attn.IGNORE"] = torch.tensor(0.0)
    target.load_state_dict(state_dict)
    assert torch.equal(source(TOKENS), target(TOKENS))
    assert "blocks.0.attn.mask" not in target.state_dict()


def test_rotary_buffers_may_be_left_out():
    source, target = build(GROUPED, seed=0), build(GROUPED, seed=1)
    state_dict = {k: v for k, v in source.state_dict().items() if "rotary" not in k}
    target.load_state_dict(state_dict)
    assert torch.equal(source(TOKENS), target(TOKENS))


def test_load_state_dict_reports_what_torch_reports_and_never_the_rotary_tables():
    """Classic's result: nothing missing for a full state dict (with or without the rotary
    tables), and exactly the absent parameters with strict=False."""
    source, target = build(GROUPED, seed=0), build(GROUPED, seed=1)
    full = source.state_dict()
    assert target.load_state_dict(full) == ([], [])
    without_tables = {k: v for k, v in full.items() if "rotary" not in k}
    assert target.load_state_dict(without_tables) == ([], [])
    del without_tables["embed.W_E"]
    result = target.load_state_dict(without_tables, strict=False)
    assert result.missing_keys == ["embed.W_E"] and result.unexpected_keys == []


@pytest.fixture
def restore_rotary_tables():
    """The bug below writes into the process-wide rotary tables; put the values back so that
    later tests are not affected."""
    from transformer_lens.components import rotary

    saved = {key: (sin.clone(), cos.clone()) for key, (sin, cos) in rotary._TABLES.items()}
    yield
    for key, (sin, cos) in rotary._TABLES.items():
        if key in saved:
            sin.copy_(saved[key][0])
            cos.copy_(saved[key][1])
    for key in set(rotary._TABLES) - set(saved):
        del rotary._TABLES[key]


@pytest.mark.usefixtures("restore_rotary_tables")
def test_loading_a_state_dict_never_changes_another_model():
    bystander = build(GROUPED, seed=0)
    before = bystander(TOKENS)
    bf16_state_dict = build(GROUPED, seed=1).to(torch.bfloat16).state_dict()
    build(GROUPED, seed=2).load_state_dict(bf16_state_dict)
    assert torch.equal(bystander(TOKENS), before)
    assert torch.equal(build(GROUPED, seed=0)(TOKENS), before)


# ----- weight layouts the forward uses without copying ---------------------------------------
def assert_forward_layouts(model: HookedTransformer) -> None:
    attn = model.blocks[0].attn
    for weight in (attn.W_Q, attn._W_K, attn._W_V):
        assert storage(linear_weight_from_heads(weight)) == storage(weight)
    mlp = model.blocks[0].mlp
    for weight in (mlp.W_in, mlp.W_gate, mlp.W_out):
        assert weight.T.is_contiguous()
        assert storage(weight.T) == storage(weight)
    # W_U: row-major in float32 on CPU, HF's transposed layout otherwise (the faster one).
    W_U = model.unembed.W_U
    assert W_U.is_contiguous() if W_U.dtype == torch.float32 else W_U.T.is_contiguous()


def test_fresh_model_weights_have_the_forward_layout():
    assert_forward_layouts(build(GROUPED))


def test_loaded_weights_keep_the_forward_layout():
    model = build(GROUPED)
    pointers = {name: storage(param) for name, param in model.named_parameters()}
    model.load_state_dict(build(GROUPED, seed=1).state_dict())
    assert_forward_layouts(model)
    assert pointers == {name: storage(param) for name, param in model.named_parameters()}


def test_loading_contiguous_classic_layout_tensors_keeps_the_forward_layout():
    model = build(GROUPED)
    state_dict = {k: v.contiguous() for k, v in build(GROUPED, seed=1).state_dict().items()}
    model.load_state_dict(state_dict)
    assert_forward_layouts(model)


def test_bfloat16_model_weights_keep_the_forward_layout():
    model = build(GROUPED).to(torch.bfloat16)
    assert model.blocks[0].attn.W_Q.dtype == torch.bfloat16
    assert_forward_layouts(model)


def test_processed_weights_keep_the_forward_layout():
    model = build(GROUPED)
    model.process_weights_(center_writing_weights=False)
    assert model.cfg.normalization_type == "RMSPre"
    assert_forward_layouts(model)


def test_tied_embeddings_share_one_matrix_until_processing_unties_them():
    """GPT-2-style tied embeddings: unprocessed, W_U is W_E^T in the same storage (parameter
    memory as HF's); processing makes W_U differ, so it gets storage of its own."""
    import warnings

    hf = tiny_hf("gpt2", random_norms=False, n_layer=1, n_embd=16, n_head=2, vocab_size=50, n_positions=16)  # fmt: skip
    tokens = torch.randint(0, 50, (1, 6), generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = HookedTransformer.from_pretrained_no_processing("gpt2", hf_model=hf.eval())
    assert model.unembed.is_tied_to(model.embed)
    # HF's parameters plus our zero unembedding bias b_U, which GPT-2 does not have.
    assert model.n_params() == sum(p.numel() for p in hf.parameters()) + 50
    model.to(torch.float64)
    assert model.unembed.is_tied_to(model.embed)  # torch converts parameters one by one
    model.to(torch.float32)
    before = model(tokens).log_softmax(-1)
    model.process_weights_()
    assert not model.unembed.is_tied_to(model.embed)
    assert not torch.equal(model.W_U, model.W_E.T)
    assert (model(tokens).log_softmax(-1) - before).abs().max() < 1e-5


# ----- W_U's layout follows its dtype (row-major is faster in float32 on CPU only) -------
def w_u_is_row_major(model: HookedTransformer) -> bool:
    return model.unembed.W_U.is_contiguous()


def test_w_u_layout_follows_every_conversion_and_keeps_the_values():
    model = build(GROUPED)
    expected = model.W_U.detach().clone()
    parameter = model.unembed.W_U
    assert w_u_is_row_major(model)
    for dtype, convert in (
        (torch.bfloat16, lambda m: m.to(torch.bfloat16)),
        (torch.float32, lambda m: m.float()),
        (torch.float16, lambda m: m.half()),
        (torch.float32, lambda m: m.to(torch.float32)),
    ):
        convert(model)
        expected = expected.to(dtype)
        row_major = dtype == torch.float32
        assert w_u_is_row_major(model) is row_major
        assert model.unembed.W_U.T.is_contiguous() is not row_major
        assert model.unembed.W_U is parameter  # the same Parameter: optimizers keep it
        assert torch.equal(model.W_U, expected)


def test_both_w_u_layouts_give_the_same_logits():
    model, reference = build(GROUPED), build(GROUPED)
    reference.unembed.W_U.data = reference.W_U.detach().T.contiguous().T  # HF's layout
    assert not torch.equal(
        torch.tensor(model.unembed.W_U.stride()), torch.tensor(reference.unembed.W_U.stride())
    )
    # The GEMM may sum in another order for the other layout: float32 rounding only.
    assert torch.allclose(model(TOKENS), reference(TOKENS), rtol=0, atol=1e-6)


def test_tied_embeddings_stay_tied_through_every_conversion():
    model = build(GPT2_LIKE)
    model.unembed.tie_to(model.embed)
    for convert in (lambda m: m.half(), lambda m: m.float(), lambda m: m.to(torch.bfloat16)):
        convert(model)
        assert model.unembed.is_tied_to(model.embed)
        assert torch.equal(model.W_U, model.W_E.T)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_untie_gives_w_u_storage_of_its_own_in_the_fastest_layout(dtype):
    model = build(GPT2_LIKE, dtype=dtype)
    model.unembed.tie_to(model.embed)
    model.unembed.untie()
    assert not model.unembed.is_tied_to(model.embed)
    assert w_u_is_row_major(model) is (dtype == torch.float32)
    assert torch.equal(model.W_U, model.W_E.T)


def test_moving_to_where_the_model_already_is_copies_nothing():
    """A conversion that changes nothing keeps W_U's storage (a file-mapped W_U stays
    mapped after from_pretrained's move to its device)."""
    model = build(GROUPED)
    hf_layout = model.W_U.detach().T.contiguous().T
    model.unembed.W_U.data = hf_layout
    model.to("cpu")
    model.to(torch.float32)
    assert storage(model.unembed.W_U) == storage(hf_layout)
