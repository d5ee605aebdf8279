"""generate (API.md §4): greedy generation equals Hugging Face on the same weights for a
grouped Llama (8 query / 2 key-value heads) and GPT-2; cache on or off, batched or alone,
the same tokens; eos, return types, hooks and low precision."""

import copy

import pytest
import torch

from tests.tiny_hf import tiny_hf
from tests.tokenizers import load_tokenizer, save_tokenizers
from transformer_lens import HookedTransformer, HookedTransformerKeyValueCache
from transformer_lens.generation import Sampler

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*official.*:UserWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
]

N_NEW = 40
PROMPTS = ["the cat sat on the mat", "hello", "once upon a time there was"]
OFFICIAL_NAMES = {"llama": "meta-llama/Llama-3.2-1B", "gpt2": "gpt2"}
# Llama pairs with a tokenizer that adds BOS itself; GPT-2 with one that does not and
# whose pad is also BOS and eos.
TOKENIZERS = {"llama": "bos_adding", "gpt2": "plain"}
# No special token ids on the HF side: its generate must not stop at, or suppress, an eos.
NO_SPECIAL_IDS = dict(bos_token_id=None, eos_token_id=None, pad_token_id=None)


def hf_for(family: str) -> torch.nn.Module:
    # A wider init than HF's default spreads the logits, so greedy choices are not near-ties.
    if family == "llama":
        return tiny_hf(
            "llama",
            random_norms=False,
            vocab_size=400,
            intermediate_size=128,
            max_position_embeddings=128,
            initializer_range=0.1,
            **NO_SPECIAL_IDS,
        )
    return tiny_hf(
        "gpt2",
        random_norms=False,
        vocab_size=400,
        n_positions=128,
        initializer_range=0.1,
        **NO_SPECIAL_IDS,
    )


def load(family: str, hf: torch.nn.Module, dirs, dtype: torch.dtype = torch.float32):
    tokenizer = load_tokenizer(dirs[TOKENIZERS[family]])
    return HookedTransformer.from_pretrained_no_processing(
        OFFICIAL_NAMES[family], hf_model=hf, tokenizer=tokenizer, dtype=dtype
    )


@pytest.fixture(scope="module")
def tokenizer_dirs(tmp_path_factory):
    return save_tokenizers(tmp_path_factory.mktemp("tokenizers"))


@pytest.fixture(scope="module", params=list(OFFICIAL_NAMES))
def pair(request, tokenizer_dirs):
    hf = hf_for(request.param)
    return request.param, hf, load(request.param, hf, tokenizer_dirs)


@pytest.fixture(scope="module")
def llama(tokenizer_dirs):
    return load("llama", hf_for("llama"), tokenizer_dirs)


def greedy(model, input, n=N_NEW, **kwargs):
    kwargs = dict(max_new_tokens=n, do_sample=False, stop_at_eos=False, verbose=False) | kwargs
    return model.generate(input, **kwargs)


def hf_greedy(hf, tokens, mask, n=N_NEW):
    from transformers import GenerationConfig

    config = GenerationConfig(
        do_sample=False, max_new_tokens=n, min_new_tokens=n, **NO_SPECIAL_IDS | {"pad_token_id": 0}
    )
    with torch.no_grad():
        return hf.generate(tokens, attention_mask=mask, generation_config=config)


# ----- parity with Hugging Face, cache, batches -----------------------------------------------
@pytest.mark.parametrize("use_cache", [True, False], ids=["cached", "uncached"])
@pytest.mark.parametrize("prompt", PROMPTS)
def test_greedy_generation_equals_hugging_face(pair, prompt, use_cache):
    _, hf, model = pair
    tokens = model.to_tokens(prompt)
    ours = greedy(model, tokens, use_past_kv_cache=use_cache)
    theirs = hf_greedy(hf, tokens, torch.ones_like(tokens))
    assert ours.shape == theirs.shape == (1, tokens.shape[1] + N_NEW)
    assert ours.tolist() == theirs.tolist()


@pytest.mark.parametrize("use_cache", [True, False], ids=["cached", "uncached"])
def test_left_padded_batch_generates_what_each_prompt_generates_alone(pair, use_cache):
    _, hf, model = pair
    batch = greedy(model, PROMPTS, use_past_kv_cache=use_cache, return_type="tokens")
    mask = torch.zeros_like(batch[:, :-N_NEW])
    for row, prompt in enumerate(PROMPTS):
        alone = greedy(model, prompt, use_past_kv_cache=use_cache, return_type="tokens")[0]
        n_pad = batch.shape[1] - len(alone)
        assert batch[row, n_pad:].tolist() == alone.tolist(), prompt
        assert (batch[row, :n_pad] == model.tokenizer.pad_token_id).all()
        mask[row, n_pad:] = 1
    assert batch.tolist() == hf_greedy(hf, batch[:, :-N_NEW], mask).tolist()


def test_left_padded_token_input_is_recognised_as_padding(pair):
    _, _, model = pair
    tokens = model.to_tokens(PROMPTS, padding_side="left")
    assert torch.equal(greedy(model, tokens), greedy(model, PROMPTS, return_type="tokens"))


def test_cached_and_uncached_sampling_agree(pair):
    _, _, model = pair
    outputs = []
    for use_cache in (True, False):
        torch.manual_seed(1)
        outputs.append(
            model.generate(
                PROMPTS,
                max_new_tokens=20,
                top_k=50,
                temperature=0.8,
                use_past_kv_cache=use_cache,
                return_type="tokens",
                verbose=False,
            )
        )
    assert torch.equal(*outputs)


def test_generation_without_a_tokenizer_works_on_token_ids(pair):
    _, _, model = pair
    bare = HookedTransformer(model.cfg)
    bare.load_state_dict(model.state_dict())
    tokens = model.to_tokens(PROMPTS[0])
    # No eos is known, so stop_at_eos (the default) never stops.
    out = bare.generate(tokens, max_new_tokens=N_NEW, do_sample=False, verbose=False)
    assert torch.equal(out, greedy(model, tokens))
    with pytest.raises(ValueError, match="tokenizer"):
        bare.generate(tokens, return_type="str", verbose=False)
    with pytest.raises(ValueError, match="tokenizer"):
        bare.generate(PROMPTS[0], verbose=False)


# ----- eos ------------------------------------------------------------------------------------
def expected_with_eos(free: torch.Tensor, n_prompt: int, eos_ids: list[int]) -> torch.Tensor:
    """What stopping at eos must give, derived from a free run: each row keeps its tokens up
    to its first eos, then gets eos_ids[0]; the output ends when every row has stopped."""
    new = free[:, n_prompt:].clone()
    is_eos = torch.isin(new, torch.tensor(eos_ids))
    stops = [int(row.nonzero()[0, 0]) if row.any() else new.shape[1] - 1 for row in is_eos]
    for row, stop in enumerate(stops):
        new[row, stop + 1 :] = eos_ids[0]
    return torch.cat([free[:, :n_prompt], new[:, : max(stops) + 1]], dim=1)


def test_stop_at_eos_stops_each_sequence_at_its_own_eos(llama):
    tokens = llama.to_tokens(PROMPTS[:2], padding_side="left")
    free = greedy(llama, tokens, n=12)
    new = free[:, tokens.shape[1] :]
    eos_ids = [int(new[0, 2]), int(new[1, 5])]
    got = greedy(llama, tokens, n=12, stop_at_eos=True, eos_token_id=eos_ids)
    expected = expected_with_eos(free, tokens.shape[1], eos_ids)
    assert got.shape[1] < free.shape[1]
    assert got.tolist() == expected.tolist()
    single = greedy(llama, tokens, n=12, stop_at_eos=True, eos_token_id=eos_ids[0])
    assert single.tolist() == expected_with_eos(free, tokens.shape[1], eos_ids[:1]).tolist()


def test_stop_at_eos_defaults_to_the_tokenizers_eos(llama, tokenizer_dirs):
    tokens = llama.to_tokens(PROMPTS[0])
    free = greedy(llama, tokens, n=12)
    eos = int(free[0, tokens.shape[1] + 3])
    tokenizer = load_tokenizer(tokenizer_dirs["bos_adding"])
    tokenizer.eos_token = tokenizer.convert_ids_to_tokens(eos)
    model = HookedTransformer(llama.cfg, tokenizer=tokenizer)
    model.load_state_dict(llama.state_dict())
    got = greedy(model, tokens, n=12, stop_at_eos=True)
    assert got.tolist() == expected_with_eos(free, tokens.shape[1], [eos]).tolist()


# ----- return types and refusals ----------------------------------------------------------
def test_return_types_follow_the_input(llama):
    text = greedy(llama, PROMPTS[0], n=8)
    assert isinstance(text, str) and text.startswith(PROMPTS[0]) and len(text) > len(PROMPTS[0])
    texts = greedy(llama, PROMPTS, n=8)
    assert isinstance(texts, list) and [
        t.startswith(p) for t, p in zip(texts, PROMPTS, strict=True)
    ] == [True] * len(PROMPTS)
    tokens = greedy(llama, PROMPTS[0], n=8, return_type="tokens")
    assert tokens.shape == (1, llama.to_tokens(PROMPTS[0]).shape[1] + 8)
    assert torch.equal(greedy(llama, llama.to_tokens(PROMPTS[0]), n=8), tokens)
    assert greedy(llama, llama.to_tokens(PROMPTS[0])[0], n=8, return_type="str") == text
    assert llama.to_string(tokens[0, 1:]) == text
    # Returned tokens are ordinary tensors: the model runs on them with autograd on.
    assert llama(tokens).requires_grad


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(input=PROMPTS[0], return_type="embeds"), ValueError, "return_type"),
        (dict(input=torch.zeros(1, 3, 64)), NotImplementedError, "embeddings"),
        (dict(input=PROMPTS, padding_side="right"), ValueError, "left-padded"),
        (dict(input=PROMPTS[0], max_new_tokens=200), ValueError, "n_ctx"),
        (dict(input=PROMPTS[0], eos_token_id=[]), ValueError, "eos_token_id"),
    ],
)
def test_generate_refuses_what_it_cannot_do(llama, kwargs, error, match):
    with pytest.raises(error, match=match):
        llama.generate(**{"verbose": False, **kwargs})


def test_verbose_shows_a_progress_bar(llama, capsys):
    greedy(llama, PROMPTS[0], n=5, verbose=True)
    assert "5/5" in capsys.readouterr().err
    greedy(llama, PROMPTS[0], n=5, verbose=False)
    assert capsys.readouterr().err == ""


# ----- hooks ---------------------------------------------------------------------------------
def test_hooks_added_with_hooks_apply_during_generation(llama):
    baseline = greedy(llama, PROMPTS[0], n=12, return_type="tokens")
    zero = ("blocks.0.hook_attn_out", lambda x, hook: torch.zeros_like(x))
    with llama.hooks(fwd_hooks=[zero]):
        hooked = greedy(llama, PROMPTS[0], n=12, return_type="tokens")
    assert not torch.equal(hooked, baseline)
    assert torch.equal(greedy(llama, PROMPTS[0], n=12, return_type="tokens"), baseline)


@pytest.mark.parametrize("use_cache", [True, False], ids=["cached", "uncached"])
def test_generation_runs_on_tokens_so_token_and_embed_hooks_fire(llama, use_cache):
    cfg = llama.cfg.copy()
    cfg.use_hook_tokens = True
    model = HookedTransformer(cfg, tokenizer=llama.tokenizer)
    model.load_state_dict(llama.state_dict())
    seen: dict[str, list] = {"hook_tokens": [], "hook_embed": [], "inference": []}

    def record(x, hook):
        seen[hook.name].append(tuple(x.shape))
        seen["inference"].append(torch.is_inference_mode_enabled())

    n_prompt = model.to_tokens(PROMPTS[0]).shape[1]
    with model.hooks(fwd_hooks=[("hook_tokens", record), ("hook_embed", record)]):
        greedy(model, PROMPTS[0], n=4, use_past_kv_cache=use_cache)
    lengths = [n_prompt, 1, 1, 1] if use_cache else [n_prompt + i for i in range(4)]
    assert [shape[1] for shape in seen["hook_tokens"]] == lengths
    assert [shape[1] for shape in seen["hook_embed"]] == lengths
    assert all(seen["inference"])


# ----- sampling -----------------------------------------------------------------------------
def test_sampling_limits_reduce_to_greedy(llama):
    expected = greedy(llama, PROMPTS, n=10)
    for kwargs in (dict(top_k=1), dict(top_p=1e-6), dict(temperature=0.0)):
        got = llama.generate(PROMPTS, max_new_tokens=10, stop_at_eos=False, verbose=False, **kwargs)
        assert got == expected, kwargs


def test_a_large_freq_penalty_never_repeats_a_real_token(llama):
    tokens = llama.to_tokens(PROMPTS, padding_side="left")
    out = llama.generate(
        tokens,
        max_new_tokens=20,
        freq_penalty=1e3,
        temperature=0.5,
        stop_at_eos=False,
        verbose=False,
    )
    for prompt, row in zip(PROMPTS, out, strict=True):
        real_prompt = llama.to_tokens(prompt)[0].tolist()
        new = row[tokens.shape[1] :].tolist()
        assert len(set(new)) == len(new) and not set(new) & set(real_prompt), prompt


def test_freq_penalty_does_not_count_padding():
    sampler = Sampler(True, None, None, temperature=1.0, freq_penalty=1e3)
    logits = torch.zeros(1, 50)
    logits[0, 7] = 12.0  # the pad id, by far the likeliest token
    tokens, mask = torch.tensor([[7, 7, 3]]), torch.tensor([[0, 0, 1]])
    torch.manual_seed(0)
    draws = torch.cat([sampler(logits, tokens, mask) for _ in range(20)])
    assert (draws == 7).float().mean() > 0.9 and not (draws == 3).any()


# ----- low precision ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_low_precision_generation_runs_and_matches_hugging_face_greedy(pair, dtype, tokenizer_dirs):
    family, hf, _ = pair
    model = load(family, hf, tokenizer_dirs, dtype=dtype)
    tokens = model.to_tokens(PROMPTS[0])
    n_prompt = tokens.shape[1]
    for use_cache in (True, False):
        sampled = model.generate(
            PROMPTS,
            max_new_tokens=8,
            top_k=20,
            top_p=0.9,
            freq_penalty=0.5,
            use_past_kv_cache=use_cache,
            return_type="tokens",
            verbose=False,
        )
        assert sampled.dtype == torch.long and sampled.max() < model.cfg.d_vocab
    # Few tokens: in low precision both sides round differently and may drift later.
    ours = greedy(model, tokens, n=8)
    theirs = hf_greedy(copy.deepcopy(hf).to(dtype), tokens, torch.ones_like(tokens), n=8)
    assert ours[0, n_prompt:].tolist() == theirs[0, n_prompt:].tolist()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_kv_cache_entries_have_the_kv_heads_in_the_models_dtype(llama, dtype):
    model = copy.deepcopy(llama).to(dtype)
    tokens = model.to_tokens(PROMPTS, padding_side="left")
    cache = HookedTransformerKeyValueCache.init_cache(model.cfg, model.cfg.device, len(PROMPTS))
    with torch.inference_mode():
        model(
            tokens,
            attention_mask=(tokens != model.tokenizer.pad_token_id).long(),
            past_kv_cache=cache,
        )
    assert model.cfg.n_key_value_heads == 2 and model.cfg.n_heads == 8
    for entry in cache.entries:
        for stored in (entry.past_keys, entry.past_values):
            assert stored.shape == (len(PROMPTS), tokens.shape[1], 2, model.cfg.d_head)
            assert stored.dtype == dtype
