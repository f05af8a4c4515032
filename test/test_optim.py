"""frs_ros.optim and frs_ros.export: lean decoder exactness, int8 closeness, floor arithmetic,
ONNX export round trips. Tiny models only; no timed assertions."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from frs_ros import optim  # noqa: E402


def _tiny_qwen3(seed: int = 0, std: float = 0.15):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(seed)
    cfg = Qwen3Config(
        vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, tie_word_embeddings=True, max_position_embeddings=512,
    )
    model = Qwen3ForCausalLM(cfg).eval()
    with torch.no_grad():  # larger weights than the default init so greedy outputs are not trivial
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, std)
    return model


def _tiny_llama(seed: int = 0, std: float = 0.15, **overrides):
    """SmolLM2's family in miniature: no q/k norm, 3 query heads per KV head, tied head, theta 1e5."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    kw = dict(vocab_size=256, hidden_size=96, intermediate_size=128, num_hidden_layers=2, num_attention_heads=6,
              num_key_value_heads=2, head_dim=16, tie_word_embeddings=True, max_position_embeddings=512,
              rope_theta=1e5, rms_norm_eps=1e-5)
    kw.update(overrides)
    model = LlamaForCausalLM(LlamaConfig(**kw)).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, std)
    return model


_TINY = {"qwen3": _tiny_qwen3, "llama": _tiny_llama}


def _hf_greedy(model, ids, n):
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=n, min_new_tokens=n, do_sample=False)
    return out[0, len(ids):].tolist()


# ----------------------------------------------------------------- bandwidth floor arithmetic
def test_decode_floor_on_hand_numbers():
    # 596e6 fp32 weights, no KV: 2.384 GB per token; at 20 GB/s -> 119.2 ms
    b = optim.decode_bytes_per_token(596_000_000, 4.0)
    assert b == pytest.approx(2.384e9)
    assert optim.decode_floor_s(b, 20e9) == pytest.approx(0.1192)
    # int8: a quarter of the bytes
    assert optim.decode_floor_s(optim.decode_bytes_per_token(596_000_000, 1.0), 20e9) == pytest.approx(0.0298)
    # KV read: 2 (K and V) * 28 layers * 8 heads * 128 dims * 500 tokens * 4 B = 114.688 MB
    kv = optim.decode_bytes_per_token(0, 4.0, n_layers=28, n_kv_heads=8, head_dim=128, context_tokens=500)
    assert kv == pytest.approx(114.688e6)
    # embedding lookup reads one row of hidden_size values
    assert optim.decode_bytes_per_token(0, 4.0, hidden_size=1024) == 4096
    # 100 ms floor, 125 ms measured -> 80 % of the floor
    assert optim.floor_fraction(0.125, 0.100) == pytest.approx(0.8)


def test_floor_rejects_bad_inputs():
    with pytest.raises(ValueError):
        optim.decode_floor_s(1.0, 0.0)
    with pytest.raises(ValueError):
        optim.floor_fraction(0.0, 1.0)
    with pytest.raises(ValueError):
        optim.decode_bytes_per_token(-1, 4.0)
    with pytest.raises(ValueError):
        optim.measure_memory_bandwidth(nbytes=1024)


def test_bandwidth_probe_returns_positive_rates():
    bw = optim.measure_memory_bandwidth(nbytes=16 * 2**20, repeats=1)
    assert bw.read_bps > 0 and bw.copy_bps > 0
    assert bw.read_bps == max(v for k, v in bw.probes.items() if k != "torch_copy_rw")


def test_parameter_count_of_real_qwen3_configs():
    # Qwen/Qwen3-0.6B: 596,049,920 parameters (tied head); per-layer count from 1- and 2-layer
    # models on the meta device (no memory), extrapolated to the real 28 layers
    from transformers import Qwen3Config, Qwen3ForCausalLM

    def count(layers, hidden, inter):
        cfg = Qwen3Config(vocab_size=151936, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                          num_attention_heads=16, num_key_value_heads=8, head_dim=128, tie_word_embeddings=True)
        with torch.device("meta"):
            return optim.count_parameters(Qwen3ForCausalLM(cfg))

    one, two = count(1, 1024, 3072), count(2, 1024, 3072)
    assert one + 27 * (two - one) == 596_049_920
    one, two = count(1, 2048, 6144), count(2, 2048, 6144)  # Qwen/Qwen3-1.7B
    assert one + 27 * (two - one) == 1_720_574_976


# ----------------------------------------------------------------- lean decoder
@pytest.mark.parametrize("family", sorted(_TINY))
def test_lean_decoder_matches_hf_greedy_and_logits(family):
    model = _TINY[family]()
    ids = list(range(3, 40))
    dec = optim.LeanDecoder(model, max_len=256)
    assert dec.generate(ids, 12) == _hf_greedy(model, ids, 12)
    dec.reset()
    with torch.no_grad():
        ref = model(torch.tensor([ids])).logits[0]
    got = dec.forward(ids, logits_for="all")
    assert torch.allclose(got, ref, atol=1e-4)


@pytest.mark.parametrize("family", sorted(_TINY))
def test_lean_cache_prefix_reuse_is_exact_and_copies_are_independent(family):
    model = _TINY[family](1)
    ids = list(np.random.default_rng(0).integers(0, 256, 300))  # crosses the initial capacity (256)
    with torch.no_grad():
        ref = model(torch.tensor([ids])).logits[0]
    dec = optim.LeanDecoder(model, max_len=512)
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

    model = _tiny_qwen3()
    with pytest.raises(ValueError):
        optim.LeanDecoder(model, weights="int4")
    qwen2 = Qwen2ForCausalLM(Qwen2Config(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1))
    with pytest.raises(ValueError, match="runs model_type 'qwen3' or 'llama', got 'qwen2'"):
        optim.LeanDecoder(qwen2)
    with pytest.raises(ValueError, match="attention_bias=True"):
        optim.LeanDecoder(_tiny_llama(attention_bias=True))
    with pytest.raises(ValueError, match="rope_type='llama3'"):
        optim.LeanDecoder(_tiny_llama(rope_parameters={"rope_type": "llama3", "rope_theta": 5e5, "factor": 8.0,
                                                       "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                                       "original_max_position_embeddings": 64}))
    dec = optim.LeanDecoder(model, max_len=8)
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
    lean = ReasonSegEngine(cfg, reasoner=optim.lean_hf_reasoner(cfg, optim.LeanCausalLM(optim.LeanDecoder(model)), tok))
    for q in ["the red mug", "the plate on the left"]:
        a, b = hf.answer(q, twin, frame), lean.answer(q, twin, frame)
        assert (a.status, a.reasoning, a.target_ids) == (b.status, b.reasoning, b.target_ids)
        assert a.cached_tokens == b.cached_tokens


# ----------------------------------------------------------------- int8
@pytest.mark.parametrize("family", sorted(_TINY))
def test_int8_keeps_logits_close_and_greedy_tokens(family):
    model = _TINY[family](2, std=0.05)
    ids = list(range(5, 45))
    q = optim.quantize_dynamic_int8(model)
    with torch.no_grad():
        ref = model(torch.tensor([ids])).logits[0]
        got = q(torch.tensor([ids])).logits[0]
    rel = (got - ref).norm() / ref.norm()
    assert rel < 0.1, f"int8 relative logit error {rel:.3f}"
    assert (got.argmax(-1) == ref.argmax(-1)).float().mean() >= 0.9
    dec8 = optim.LeanDecoder(model, weights="int8")
    out8 = dec8.generate(ids, 8)
    assert out8[:4] == _hf_greedy(model, ids, 8)[:4]
    # ~4x fewer weight bytes (+ 16 B of scale and zero point per output row)
    dec32 = optim.LeanDecoder(model)
    assert dec8.linear_weight_bytes() < 0.5 * dec32.linear_weight_bytes()  # tiny: scales weigh in
    assert dec32.linear_weight_bytes() == 4 * dec32.linear_params()


def test_quantize_returns_copy_by_default():
    model = _tiny_qwen3()
    q = optim.quantize_dynamic_int8(model)
    assert isinstance(model.model.layers[0].mlp.down_proj, torch.nn.Linear)
    assert not isinstance(q.model.layers[0].mlp.down_proj, torch.nn.Linear) or q is not model
    assert optim.model_weight_bytes(q) < optim.model_weight_bytes(model)


def test_rss_is_reported():
    assert optim.peak_rss_bytes() >= optim.rss_bytes() > 0


# ----------------------------------------------------------------- export
@pytest.mark.slow
def test_onnx_full_forward_round_trip(tmp_path):
    pytest.importorskip("onnxscript")
    pytest.importorskip("onnxruntime")
    from frs_ros.export import export_onnx, onnx_logits, onnx_session

    model = _tiny_qwen3(3)
    path = export_onnx(model, tmp_path / "student.onnx", max_len=128)
    ids = np.random.default_rng(1).integers(0, 256, (1, 17))
    with torch.no_grad():
        ref = model(torch.tensor(ids)).logits.numpy()
    got = onnx_logits(onnx_session(path), ids)
    assert np.abs(got - ref).max() < 1e-3


def test_onnx_step_graph_decodes_like_the_model(tmp_path):
    pytest.importorskip("onnxscript")
    pytest.importorskip("onnxruntime")
    from frs_ros.export import export_onnx_step, onnx_session

    model = _tiny_qwen3(4)
    sess = onnx_session(export_onnx_step(model, tmp_path / "step.onnx", max_len=128))
    ids = list(range(7, 27))
    with torch.no_grad():
        ref = model(torch.tensor([ids])).logits[0].numpy()
    L, KV, hd = 2, 2, 16
    k = v = np.zeros((L, KV, 0, hd), np.float32)
    logits, k, v = sess.run(None, {"input_ids": np.array([ids[:12]]), "past_k": k, "past_v": v})
    assert np.abs(logits[0] - ref[11]).max() < 1e-3
    for t in range(12, 20):  # token-by-token decode through the explicit cache
        logits, k, v = sess.run(None, {"input_ids": np.array([[ids[t]]]), "past_k": k, "past_v": v})
        assert np.abs(logits[0] - ref[t]).max() < 1e-3
    assert k.shape == (L, KV, 20, hd)


def test_tensorrt_path_reports_when_unavailable(tmp_path):
    from frs_ros.export import ExportUnavailableError, build_tensorrt_engine, tensorrt_available

    if tensorrt_available():
        pytest.skip("TensorRT and a GPU are present; the engine build is exercised on the GPU machine")
    with pytest.raises(ExportUnavailableError, match="TensorRT"):
        build_tensorrt_engine(tmp_path / "x.onnx", tmp_path / "x.engine")


def test_bytes_per_token_math_matches_lean_decoder_count():
    model = _tiny_qwen3()
    dec = optim.LeanDecoder(model)
    n = dec.linear_params()
    # 2 layers * (64*(64+2*32) + 64*64 + 3*64*128) + 256*64 head
    assert n == 2 * (64 * 128 + 64 * 64 + 3 * 64 * 128) + 256 * 64
    assert math.isclose(optim.decode_bytes_per_token(n, 4.0), dec.linear_weight_bytes())
