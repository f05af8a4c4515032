"""frs_ros.perf: the decode-floor arithmetic on hand numbers, the bandwidth and RSS probes,
parameter counts of the real Qwen3 sizes (meta device, no memory)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from frs_ros import perf  # noqa: E402


def test_decode_floor_on_hand_numbers():
    # 596e6 fp32 weights, no KV: 2.384 GB per token; at 20 GB/s -> 119.2 ms
    b = perf.decode_bytes_per_token(596_000_000, 4.0)
    assert b == pytest.approx(2.384e9)
    assert perf.decode_floor_s(b, 20e9) == pytest.approx(0.1192)
    # int8: a quarter of the bytes
    assert perf.decode_floor_s(perf.decode_bytes_per_token(596_000_000, 1.0), 20e9) == pytest.approx(0.0298)
    # KV read: 2 (K and V) * 28 layers * 8 heads * 128 dims * 500 tokens * 4 B = 114.688 MB
    kv = perf.decode_bytes_per_token(0, 4.0, n_layers=28, n_kv_heads=8, head_dim=128, context_tokens=500)
    assert kv == pytest.approx(114.688e6)
    # embedding lookup reads one row of hidden_size values
    assert perf.decode_bytes_per_token(0, 4.0, hidden_size=1024) == 4096
    # 100 ms floor, 125 ms measured -> 80 % of the floor
    assert perf.floor_fraction(0.125, 0.100) == pytest.approx(0.8)


def test_floor_rejects_bad_inputs():
    with pytest.raises(ValueError):
        perf.decode_floor_s(1.0, 0.0)
    with pytest.raises(ValueError):
        perf.floor_fraction(0.0, 1.0)
    with pytest.raises(ValueError):
        perf.decode_bytes_per_token(-1, 4.0)
    with pytest.raises(ValueError):
        perf.measure_memory_bandwidth(nbytes=1024)


def test_bandwidth_probe_returns_positive_rates():
    bw = perf.measure_memory_bandwidth(nbytes=16 * 2**20, repeats=1)
    assert bw.read_bps > 0 and bw.copy_bps > 0
    assert bw.read_bps == max(v for k, v in bw.probes.items() if k != "torch_copy_rw")


def test_read_probe_measures_the_same_reads_as_the_full_probe():
    probe = perf.ReadProbe(nbytes=16 * 2**20)
    a, b = probe.read_bps(repeats=1), probe.read_bps(repeats=2)
    assert a > 0 and b > 0
    # the same array each call (allocated once), the same rate within this machine's drift
    full = perf.measure_memory_bandwidth(nbytes=16 * 2**20, repeats=2)
    assert 0.1 < max(a, b) / full.read_bps < 10
    with pytest.raises(ValueError, match="too small"):
        perf.ReadProbe(nbytes=2**16)


def test_parameter_count_of_real_qwen3_configs():
    # Qwen/Qwen3-0.6B: 596,049,920 parameters (tied head); per-layer count from 1- and 2-layer
    # models on the meta device (no memory), extrapolated to the real 28 layers
    from transformers import Qwen3Config, Qwen3ForCausalLM

    def count(layers, hidden, inter):
        cfg = Qwen3Config(vocab_size=151936, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                          num_attention_heads=16, num_key_value_heads=8, head_dim=128, tie_word_embeddings=True)
        with torch.device("meta"):
            return perf.count_parameters(Qwen3ForCausalLM(cfg))

    one, two = count(1, 1024, 3072), count(2, 1024, 3072)
    assert one + 27 * (two - one) == 596_049_920
    one, two = count(1, 2048, 6144), count(2, 2048, 6144)  # Qwen/Qwen3-1.7B
    assert one + 27 * (two - one) == 1_720_574_976


def test_rss_is_reported():
    assert perf.peak_rss_bytes() >= perf.rss_bytes() > 0
