"""frs_ros.reasoning.lm: the lean runtime (LeanDecoder fp32 exact against transformers, int8
close, prefix reuse, the architectures it refuses), the reasoner on it, the runtime protocol and
factory, and the frs_ros.optim compatibility names. Tiny models only; no timed assertions."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

from conftest import TORCH_MISSING  # noqa: E402

torch = pytest.importorskip("torch", reason=TORCH_MISSING)
transformers = pytest.importorskip("transformers", reason=TORCH_MISSING)

from lm_models import TINY, hf_greedy, tiny_llama, tiny_qwen3  # noqa: E402

from frs_ros import perf  # noqa: E402
from frs_ros.reasoning.lm.int8 import quantize_dynamic_int8  # noqa: E402
from frs_ros.reasoning.lm.lean import LeanCausalLM, LeanDecoder  # noqa: E402


@pytest.mark.parametrize("family", sorted(TINY))
def test_lean_decoder_matcheshf_greedy_and_logits(family):
    model = TINY[family]()
    ids = list(range(3, 40))
    dec = LeanDecoder(model, max_len=256)
    assert dec.generate(ids, 12) == hf_greedy(model, ids, 12)
    dec.reset()
    with torch.no_grad():
        ref = model(torch.tensor([ids])).logits[0]
    got = dec.forward(ids, logits_for="all")
    assert torch.allclose(got, ref, atol=1e-4)


@pytest.mark.parametrize("family", sorted(TINY))
def test_lean_cache_prefix_reuse_is_exact_and_copies_are_independent(family):
    model = TINY[family](1)
    ids = list(np.random.default_rng(0).integers(0, 256, 300))  # crosses the initial capacity (256)
    with torch.no_grad():
        ref = model(torch.tensor([ids])).logits[0]
    dec = LeanDecoder(model, max_len=512)
    dec.prefill(ids[:100])
    snap = copy.deepcopy(dec.cache)
    a = dec.forward(ids[100:], logits_for="all")
    dec.cache.crop(100)  # reuse the 100-token prefix
    b = dec.forward(ids[100:], logits_for="all")
    c = dec.forward(ids[100:], cache=snap, logits_for="all")
    for x in (a, b, c):
        assert torch.allclose(x, ref[100:], atol=1e-4)
    dec.cache.crop(-50)  # HF semantics: negative removes tokens
    assert dec.cache.get_seq_length() == 250
    with pytest.raises(ValueError):
        dec.cache.crop(400)


def test_lean_decoder_rejects_other_architectures_and_overflow():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    model = tiny_qwen3()
    with pytest.raises(ValueError):
        LeanDecoder(model, weights="int4")
    qwen2 = Qwen2ForCausalLM(Qwen2Config(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1))
    with pytest.raises(ValueError, match="runs model_type 'qwen3' or 'llama', got 'qwen2'"):
        LeanDecoder(qwen2)
    with pytest.raises(ValueError, match="attention_bias=True"):
        LeanDecoder(tiny_llama(attention_bias=True))
    with pytest.raises(ValueError, match="rope_type='llama3'"):
        LeanDecoder(tiny_llama(rope_parameters={"rope_type": "llama3", "rope_theta": 5e5, "factor": 8.0,
                                                       "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                                       "original_max_position_embeddings": 64}))
    dec = LeanDecoder(model, max_len=8)
    with pytest.raises(ValueError):
        dec.forward(list(range(9)))


def test_lean_hf_reasoner_gives_the_same_rollouts_as_hf(tmp_path):
    pytest.importorskip("tokenizers")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from frs_ros.camera import CameraIntrinsics, Frame
    from frs_ros.masks import rle_encode
    from frs_ros.reasoning.api import ReasonSegEngine
    from frs_ros.reasoning.config import ReasonerConfig
    from frs_ros.reasoning.hf_backend import HFReasoner
    from frs_ros.reasoning.tiny import save_tiny_model
    from frs_ros.twin.types import DigitalTwin, TwinObject

    save_tiny_model(tmp_path)
    tok = AutoTokenizer.from_pretrained(tmp_path)
    model = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    K = CameraIntrinsics.from_fov(64, 48, 60.0)
    objs = []
    for i, lab in enumerate(["mug", "bowl", "plate"], start=1):
        m = np.zeros((48, 64), bool)
        m[5 * i : 5 * i + 4, 10 * i : 10 * i + 6] = True
        objs.append(TwinObject(track_id=i, mask=rle_encode(m), box=(10 * i, 5 * i, 10 * i + 6, 5 * i + 4),
                               area_px=24, label=lab, score=0.9))
    twin = DigitalTwin(stamp_ns=0, frame_id="cam", intrinsics=K, objects=objs)
    frame = Frame(rgb=np.zeros((48, 64, 3), np.uint8), intrinsics=K)
    cfg = ReasonerConfig(model=str(tmp_path), max_new_tokens=24)
    hf = ReasonSegEngine(cfg, reasoner=HFReasoner(cfg, model=model, tokenizer=tok))
    lean = ReasonSegEngine(cfg, reasoner=HFReasoner(cfg, model=LeanCausalLM(LeanDecoder(model)), tokenizer=tok))
    for q in ["the red mug", "the plate on the left"]:
        a, b = hf.answer(q, twin, frame), lean.answer(q, twin, frame)
        assert (a.status, a.reasoning, a.target_ids) == (b.status, b.reasoning, b.target_ids)
        assert a.cached_tokens == b.cached_tokens


# ----------------------------------------------------------------- int8
@pytest.mark.parametrize("family", sorted(TINY))
def test_int8_keeps_logits_close_and_greedy_tokens(family):
    model = TINY[family](2, std=0.05)
    ids = list(range(5, 45))
    q = quantize_dynamic_int8(model)
    with torch.no_grad():
        ref = model(torch.tensor([ids])).logits[0]
        got = q(torch.tensor([ids])).logits[0]
    rel = (got - ref).norm() / ref.norm()
    assert rel < 0.1, f"int8 relative logit error {rel:.3f}"
    assert (got.argmax(-1) == ref.argmax(-1)).float().mean() >= 0.9
    dec8 = LeanDecoder(model, weights="int8")
    out8 = dec8.generate(ids, 8)
    assert out8[:4] == hf_greedy(model, ids, 8)[:4]
    # ~4x fewer weight bytes (+ 16 B of scale and zero point per output row)
    dec32 = LeanDecoder(model)
    assert dec8.linear_weight_bytes() < 0.5 * dec32.linear_weight_bytes()  # tiny: scales weigh in
    assert dec32.linear_weight_bytes() == 4 * dec32.linear_params()


def test_quantize_returns_copy_by_default():
    model = tiny_qwen3()
    q = quantize_dynamic_int8(model)
    assert isinstance(model.model.layers[0].mlp.down_proj, torch.nn.Linear)
    assert not isinstance(q.model.layers[0].mlp.down_proj, torch.nn.Linear) or q is not model
    assert perf.model_weight_bytes(q) < perf.model_weight_bytes(model)


def test_bytes_per_token_math_matches_lean_decoder_count():
    model = tiny_qwen3()
    dec = LeanDecoder(model)
    n = dec.linear_params()
    # 2 layers * (64*(64+2*32) + 64*64 + 3*64*128) + 256*64 head
    assert n == 2 * (64 * 128 + 64 * 64 + 3 * 64 * 128) + 256 * 64
    assert math.isclose(perf.decode_bytes_per_token(n, 4.0), dec.linear_weight_bytes())


# ----------------------------------------------------------------- protocol, factory, layering
def test_runtimes_implement_the_protocol_and_the_factory_covers_every_runtime():
    from frs_ros.reasoning.config import RUNTIMES, ReasonerConfig, ReasonerLoadError
    from frs_ros.reasoning.lm import LM_RUNTIMES, CausalLM, LMCache, build_lm
    from frs_ros.reasoning.lm.transformers_lm import TransformersLM

    assert set(LM_RUNTIMES) == set(RUNTIMES)
    model = tiny_llama()
    ids = list(range(3, 30))
    with torch.no_grad():
        ref = model(torch.tensor([ids])).logits[0, -1]
    assert not isinstance(model, CausalLM)  # an HF model is wrapped, not used as a runtime
    for runtime, kind in [("transformers", TransformersLM), ("lean-fp32", LeanCausalLM), ("lean-int8", LeanCausalLM)]:
        lm = build_lm(ReasonerConfig(model="tiny", runtime=runtime), model)
        assert isinstance(lm, kind) and isinstance(lm, CausalLM)
        assert lm.runtime.startswith(runtime) and lm.runtime_warning == ""
        cache = lm.new_cache()
        assert isinstance(cache, LMCache)
        a = lm.forward(ids[:20], cache)
        b = lm.forward(ids[20:], cache)  # appends to the cache in place
        assert a.shape == b.shape == (256,) and a.dtype == torch.float32 and cache.get_seq_length() == len(ids)
        assert (b - ref).abs().max() < (0.5 if runtime == "lean-int8" else 1e-4)
    with pytest.raises(TypeError, match="KVCache"):
        build_lm(ReasonerConfig(model="tiny", runtime="lean-fp32"), model).forward([1], object())
    qwen2 = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1))
    with pytest.raises(ReasonerLoadError, match="use runtime: transformers"):
        build_lm(ReasonerConfig(model="qwen2-dir", runtime="lean-int8"), qwen2)


def test_runtime_package_does_not_import_the_reasoner_or_the_compat_module():
    """The layering: reasoning.lm is below the reasoner (hf_backend) and knows nothing of
    frs_ros.optim (compatibility names for bench/); the engine does not go through optim."""
    import subprocess
    import sys

    code = ("import sys, frs_ros.reasoning.lm, frs_ros.reasoning.lm.lean, frs_ros.reasoning.lm.transformers_lm; "
            "assert 'frs_ros.reasoning.hf_backend' not in sys.modules; assert 'frs_ros.optim' not in sys.modules; "
            "import frs_ros.reasoning.api, frs_ros.reasoning.hf_backend; assert 'frs_ros.optim' not in sys.modules")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_optim_keeps_the_names_bench_imports():
    from frs_ros import optim
    from frs_ros.reasoning.config import ReasonerConfig
    from frs_ros.reasoning.hf_backend import HFReasoner
    from frs_ros.reasoning.tiny import build_tokenizer

    for name in ("BandwidthResult", "measure_memory_bandwidth", "decode_bytes_per_token", "decode_floor_s",
                 "floor_fraction", "count_parameters", "model_weight_bytes", "rss_bytes", "peak_rss_bytes",
                 "quantize_dynamic_int8", "LeanDecoder", "LeanCausalLM", "KVCache", "lean_hf_reasoner"):
        assert hasattr(optim, name), name
    assert optim.LeanDecoder is LeanDecoder and optim.rss_bytes is perf.rss_bytes
    lm = optim.LeanCausalLM(optim.LeanDecoder(tiny_qwen3(), weights="int8"))
    r = optim.lean_hf_reasoner(ReasonerConfig(model="tiny"), lm, build_tokenizer())
    assert isinstance(r, HFReasoner) and r.model is lm and r.model.decoder.linear_weight_bytes() > 0
    assert r.runtime == "lean-int8 (native kernel)"
