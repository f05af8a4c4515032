"""frs_ros.native: the C int8 causal-LM kernel behind LeanDecoder (kernel='native'/'portable').

Checked against the float model (transformers) on tiny random Qwen3s and Llamas (SmolLM2's family:
no q/k norm, 3 query heads per KV head, tied head) whose sizes hit every tail path (rows not a
multiple of 16, head_dim not a multiple of 16, prompts longer and shorter than the token tile,
caches that grow, decode attention split into position chunks), against each other (SIMD vs
portable C: the same integer arithmetic), across thread counts (identical bits), and for the
errors a user without a compiler gets. The kernel is compiled once per machine into the user
cache (a few seconds)."""

from __future__ import annotations

import copy
import mmap
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from frs_ros.native import NativeKernelError, load_causal_lm_int8  # noqa: E402
from frs_ros.reasoning.lm.int8 import HUGE_PAGE, PackedInt8Matrix, hugepage_arena  # noqa: E402
from frs_ros.reasoning.lm.lean import LeanDecoder  # noqa: E402

FAMILIES = ("qwen3", "llama")


def _qwen3(vocab=300, hidden=96, inter=200, layers=2, heads=4, kv=2, head_dim=24, seed=0, std=0.08):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(seed)
    cfg = Qwen3Config(vocab_size=vocab, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                      num_attention_heads=heads, num_key_value_heads=kv, head_dim=head_dim,
                      tie_word_embeddings=True, max_position_embeddings=1024)
    return _randomise(Qwen3ForCausalLM(cfg).eval(), std)


def _llama(vocab=300, hidden=108, inter=204, layers=2, heads=6, kv=2, head_dim=20, seed=0, std=0.08, tied=True):
    """SmolLM2's shape in miniature; o/down (108 rows), q|k|v (200), gate|up (408) and the head
    (300) are not multiples of 16 rows, head_dim 20 is not a multiple of the 16-lane dot."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                      num_attention_heads=heads, num_key_value_heads=kv, head_dim=head_dim, rope_theta=1e5,
                      rms_norm_eps=1e-5, tie_word_embeddings=tied, max_position_embeddings=1024)
    return _randomise(LlamaForCausalLM(cfg).eval(), std)


def _randomise(model, std):
    with torch.no_grad():  # larger weights than the default init so greedy outputs are not trivial
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, std)
    return model


_BUILD = {"qwen3": _qwen3, "llama": _llama}


@pytest.fixture(scope="module", params=FAMILIES)
def model(request):
    return _BUILD[request.param]()


@pytest.fixture(scope="module")
def ids():
    return [int(i) for i in np.random.default_rng(0).integers(0, 300, 290)]  # > 256: the cache grows


def _ref_logits(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0]


def _rel(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("kernel", ["native", "portable"])
def test_native_forward_is_close_to_the_float_model(model, ids, kernel):
    ref = _ref_logits(model, ids)
    dec = LeanDecoder(model, weights="int8", kernel=kernel, max_len=512)
    assert dec.kernel == kernel
    got = dec.forward(ids, logits_for="all")
    assert got.shape == ref.shape
    assert _rel(got, ref) < 0.05, f"relative logit error {_rel(got, ref):.4f}"
    # Random tiny models have near-tied logits (median top-1/top-2 gap ~0.004, logit std ~0.8) and
    # int8 moves single logits by up to ~0.18: only near-ties may change the greedy token.
    top2 = ref.topk(2, -1).values
    clear = top2[:, 0] - top2[:, 1] > 0.1
    assert torch.equal(got.argmax(-1)[clear], ref.argmax(-1)[clear])
    assert (got.argmax(-1) == ref.argmax(-1)).float().mean() >= 0.9
    # no worse than torch's dynamic int8 (fbgemm) on the same model
    tq = LeanDecoder(model, weights="int8", kernel="torch", max_len=512).forward(ids, logits_for="all")
    assert _rel(got, ref) <= _rel(tq, ref) * 1.1


def test_prefill_in_chunks_then_decode_equals_one_pass(model, ids):
    dec = LeanDecoder(model, weights="int8", kernel="native", max_len=512)
    full = dec.forward(ids, logits_for="all")
    dec.reset()
    parts = [dec.forward(ids[:3], logits_for="all"),  # < 4 tokens (the AVX2 tile): one-token products
             dec.forward(ids[3:8], logits_for="all"),  # 5 < 8 tokens (the VNNI/portable tile)
             dec.forward(ids[8:150], logits_for="all")]  # tiles of 4/8 plus a remainder
    parts += [dec.forward([t])[None] for t in ids[150:170]]  # single-token decode
    parts.append(dec.forward(ids[170:], logits_for="all"))  # crosses the initial capacity
    assert dec.cache.length == len(ids)
    # the same sums in the same order however the tokens are batched: identical bits
    assert torch.equal(torch.cat(parts), full)


def test_prefix_reuse_and_cache_copies(model, ids):
    dec = LeanDecoder(model, weights="int8", kernel="native", max_len=512)
    dec.prefill(ids[:100])
    snap = copy.deepcopy(dec.cache)
    # the native kernel keeps K and V in fp16: half the bytes of the torch kernels' fp32 cache
    assert snap.dtype == dec.cache.dtype == torch.float16
    fp32 = LeanDecoder(model, weights="int8", kernel="torch").new_cache(snap.capacity)
    assert fp32.nbytes() == 2 * snap.nbytes()
    with pytest.raises(TypeError, match="new_cache"):
        dec.forward([1], cache=fp32)
    a = dec.forward(ids[100:120], logits_for="all")
    dec.cache.crop(100)
    b = dec.forward(ids[100:120], logits_for="all")
    c = dec.forward(ids[100:120], cache=snap, logits_for="all")
    assert torch.equal(a, b) and torch.equal(a, c)


def test_simd_and_portable_builds_agree_and_threads_do_not_change_bits(model, ids):
    nat = LeanDecoder(model, weights="int8", kernel="native", max_len=512)
    por = LeanDecoder(model, weights="int8", kernel="portable", max_len=512)
    a = nat.forward(ids[:40], logits_for="all")
    b = por.forward(ids[:40], logits_for="all")
    # The same integer products; the float code (dot products, exp) differs in order, which can move
    # an activation across an int8 rounding boundary now and then (measured: 1 of 40 rows, 0.018).
    assert _rel(a, b) < 5e-3 and ((a - b).abs().amax(-1) > 1e-4).float().mean() <= 0.1
    prev = torch.get_num_threads()
    outs = []
    try:
        for th in (1, 2, 3):
            torch.set_num_threads(th)
            nat.reset()
            outs.append(torch.cat([nat.forward(ids[:40], logits_for="all"), nat.forward([7])[None]]))
    finally:
        torch.set_num_threads(prev)
    assert all(torch.equal(outs[0], o) for o in outs[1:])  # every output row is computed by one thread


def test_vnni_path_gives_the_avx2_bits(model, ids, monkeypatch):
    """The AVX512-VNNI matrix products, built with plain-C lanes (this CPU may lack AVX-512), give
    exactly the AVX2 build's logits: both sum each 32-column block exactly in int32 and add it
    times its scale with one fused multiply-add per block, and share the float code."""
    import frs_ros.native as native

    avx2 = LeanDecoder(model, weights="int8", kernel="native", max_len=512)
    if avx2.simd_level() < 1:
        pytest.skip("no AVX2 here: the native build is plain C")
    real = native.load_causal_lm_int8
    monkeypatch.setattr(native, "load_causal_lm_int8", lambda portable=False: real(emulate_vnni=True))
    emu = LeanDecoder(model, weights="int8", kernel="native", max_len=512)
    assert emu.simd_level() == 2
    for dec in (avx2, emu):
        dec.outs = [dec.forward(ids[:5], logits_for="all"), dec.forward(ids[5:45], logits_for="all"),
                    dec.forward(ids[45:46], logits_for="all")]  # T < 8, tiles of 8 (VNNI) and 2 (AVX2), decode
    for a, b in zip(avx2.outs, emu.outs):
        assert torch.equal(a, b)


@pytest.mark.parametrize("family", FAMILIES)
def test_greedy_generation_follows_the_float_model(family):
    model = _BUILD[family](vocab=256, hidden=96 if family == "llama" else 64, inter=128, head_dim=16, seed=3, std=0.05)
    prompt = list(range(5, 45))
    with torch.no_grad():
        ref = model.generate(torch.tensor([prompt]), max_new_tokens=8, min_new_tokens=8, do_sample=False)[0, 40:]
    got = LeanDecoder(model, weights="int8", kernel="native").generate(prompt, 8)
    assert got[:4] == ref.tolist()[:4]


def test_decode_attention_chunks_match_one_pass():
    """One decoded token over a long cache: its attention is split into (KV head, position chunk)
    items, spread over the threads and merged; the logits are those of the same position in a
    multi-token pass, bit for bit."""
    model = _llama(kv=1, heads=3, hidden=96, head_dim=32, seed=5)  # 1 KV head: up to 4 chunks of the cache
    ids = [int(i) for i in np.random.default_rng(2).integers(0, 300, 200)]
    dec = LeanDecoder(model, weights="int8", kernel="native", max_len=256)
    full = dec.forward(ids, logits_for="all")
    for n in (199, 65, 64, 32, 31, 1):  # 4, 2, 2, 1, 1 and 1 chunks
        dec.cache.crop(n)
        assert torch.equal(dec.forward([ids[n]]), full[n]), n


@pytest.mark.parametrize("kernel", ["native", "portable", "torch"])
def test_tied_head_is_one_int8_copy_and_untied_heads_work(kernel):
    tied, untied = _llama(seed=1), _llama(seed=1, tied=False)
    ids = list(range(3, 60))
    for m in (tied, untied):
        dec = LeanDecoder(m, weights="int8", kernel=kernel, max_len=128)
        assert dec.tied == (m is tied)
        # native: a tied model looks its embeddings up in the packed head (no second table)
        assert (dec.embed is None) == (m is tied and kernel != "torch")
        ref = _ref_logits(m, ids)
        # fbgemm's dynamic int8 (kernel='torch') measured 0.10-0.15 relative error on these models
        assert _rel(dec.forward(ids, logits_for="all"), ref) < (0.2 if kernel == "torch" else 0.05)


def test_packed_matrix_round_trip():
    w = torch.randn(37, 20)  # rows padded to 48 in the packed layout
    m = PackedInt8Matrix(w)
    assert tuple(m.w.shape) == (3, 5, 16, 4)
    deq = m.dequantize()
    assert deq.shape == w.shape
    assert torch.all((deq - w).abs() <= m.scale[:, None] / 2 + 1e-6)
    assert m.nbytes() == 3 * 5 * 64 + 37 * 4
    with pytest.raises(ValueError, match="divisible by 4"):
        PackedInt8Matrix(torch.randn(8, 10))


def test_weights_in_the_hugepage_arena_give_the_same_bits(model, ids, monkeypatch):
    dec = LeanDecoder(model, weights="int8", kernel="native", max_len=512)
    monkeypatch.setattr(LeanDecoder, "huge_pages", False)
    plain = LeanDecoder(model, weights="int8", kernel="native", max_len=512)
    assert plain._arena is None
    mats = [m for L in dec.layers for m in (L.qkv, L.o, L.gate_up, L.down)] + [dec.lm_head]
    if dec._arena is not None:  # Linux: every packed matrix is a view into the one buffer, 2 MB-aligned
        base = dec._arena.data_ptr()
        assert all(base <= m.w.data_ptr() < base + dec._arena.numel() for m in mats)
        assert base % HUGE_PAGE == 0
    for a, b in zip(mats, [m for L in plain.layers for m in (L.qkv, L.o, L.gate_up, L.down)] + [plain.lm_head]):
        assert torch.equal(a.w, b.w)
    got = dec.forward(ids[:100], logits_for="all")
    assert torch.equal(got, plain.forward(ids[:100], logits_for="all"))
    assert torch.equal(dec.forward([ids[100]]), plain.forward([ids[100]]))
    assert hugepage_arena([]) is None


def test_kv_cache_buffers_of_a_huge_page_or_more_are_in_their_own_aligned_mapping():
    from frs_ros.reasoning.lm.lean import KVCache

    small = KVCache(2, 2, 24, capacity=256, dtype=torch.float16)  # 49 KB: torch's allocation
    big = KVCache(30, 3, 64, capacity=600, dtype=torch.float16)  # SmolLM2's shape: 6.9 MB each
    for c in (small, big):
        assert c.k.is_contiguous() and not c.k.any() and not c.v.any()
    if hasattr(mmap, "MADV_HUGEPAGE"):  # Linux: each buffer starts on a 2 MB boundary
        assert big.k.data_ptr() % HUGE_PAGE == 0 and big.v.data_ptr() % HUGE_PAGE == 0
    big.k[:, :, :10] = 1.5
    big.v[:, :, :10] = -2.0
    big.length = 10
    big.reserve(700)  # grows into a new buffer, keeps the valid part, zeros the rest
    assert big.capacity == 1200 and big.k.shape == (30, 3, 1200, 64)
    assert bool((big.k[:, :, :10] == 1.5).all()) and bool((big.v[:, :, :10] == -2.0).all()) and not big.k[:, :, 10:].any()
    twin = copy.deepcopy(big)
    twin.k.fill_(0)
    assert bool((big.k[:, :, :10] == 1.5).all()) and twin.length == 10


def test_nan_input_gives_nan_logits_not_a_crash(model):
    dec = LeanDecoder(model, weights="int8", kernel="native")
    with torch.no_grad():
        dec.layers[0].ln1[0] = float("nan")
    try:
        assert torch.isnan(dec.forward([1, 2, 3])).all()
    finally:
        with torch.no_grad():
            dec.layers[0].ln1[0] = 1.0


def test_bad_arguments_are_refused(model):
    with pytest.raises(ValueError, match="kernel must be"):
        LeanDecoder(model, weights="int8", kernel="cuda")
    with pytest.raises(ValueError, match="int8"):
        LeanDecoder(model, weights="fp32", kernel="native")
    dec = LeanDecoder(model, weights="int8", kernel="native", max_len=16)
    with pytest.raises(ValueError, match="max_len"):
        dec.forward(list(range(17)))
    with pytest.raises(IndexError):  # tied models look embeddings up in the kernel, which checks the ids too
        dec.forward([1, model.config.vocab_size])
    assert dec.cache.length == 0


def test_without_a_compiler_native_raises_and_auto_falls_back(model, tmp_path, monkeypatch):
    monkeypatch.setenv("FRS_NATIVE_CACHE", str(tmp_path / "native"))
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    with pytest.raises(NativeKernelError, match="building the native kernel failed"):
        load_causal_lm_int8()
    with pytest.raises(NativeKernelError):
        LeanDecoder(model, weights="int8", kernel="native")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dec = LeanDecoder(model, weights="int8")  # auto
    assert dec.kernel == "torch" and "no-such-cc" in dec.kernel_note
    assert any("native int8 kernel unavailable" in str(w.message) for w in caught)
    assert dec.forward([1, 2, 3]).shape == (300,)
    monkeypatch.setenv("CC", "false")  # a compiler that fails: its exit status is reported
    with pytest.raises(NativeKernelError, match="use kernel='torch'"):
        load_causal_lm_int8()
    assert not list((tmp_path / "native").glob("*.so"))  # nothing half-built is left to load


def test_odd_widths_fall_back_to_torch():
    model = _qwen3(hidden=90, inter=202, heads=3, kv=1, head_dim=30)  # 90 % 4 != 0
    with pytest.raises(NativeKernelError, match="divisible by 4"):
        LeanDecoder(model, weights="int8", kernel="native")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        dec = LeanDecoder(model, weights="int8")
    assert dec.kernel == "torch"


def test_kernel_is_built_once_and_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("FRS_NATIVE_CACHE", str(tmp_path))
    lib = load_causal_lm_int8(portable=True)
    built = list(tmp_path.glob("causal_lm_int8-portable-*.so"))
    assert len(built) == 1 and lib.frs_abi_version() == 5
    assert load_causal_lm_int8(portable=True) is lib
    assert lib.frs_simd_level() == 0


def test_unwritable_cache_dir_is_a_clear_error(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("FRS_NATIVE_CACHE", str(blocker / "native"))
    with pytest.raises(NativeKernelError, match="FRS_NATIVE_CACHE"):
        load_causal_lm_int8(portable=True)


@pytest.mark.slow
def test_real_smollm2_greedy_tokens_follow_the_float_model():
    """On SmolLM2-135M's real weights (the built-in base model, converted once from its pip
    package) the int8 kernel writes the fp32 model's answer. Its projection inputs carry outliers
    (down_proj up to ~40x the RMS): with one activation scale per row instead of per 32 columns
    the first greedy token here already differed."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from frs_ros.reasoning.base_models import BaseModelError, resolve_model

    try:
        path = resolve_model("smollm2-135m")
    except BaseModelError as e:
        pytest.skip(f"the built-in SmolLM2 is not available here: {e}")
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    ids = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                  add_generation_prompt=True, return_dict=True)["input_ids"]
    with torch.no_grad():
        ref = model.generate(torch.tensor([ids]), max_new_tokens=8, do_sample=False)[0, len(ids):].tolist()
    got = LeanDecoder(model, weights="int8", kernel="native", max_len=256).generate(ids, len(ref))
    assert got == ref, (tok.decode(got), tok.decode(ref))
