"""Scale-path memory arithmetic (params x bytes) on exact meta-device parameter counts."""

import pytest

from frs_ros.training.memory import count_params, estimate, kv_cache_bytes, lora_params


@pytest.mark.torch
def test_counts_and_lora_hand_computed():
    from frs_ros.reasoning.tiny import qwen3_0_6b_config, tiny_qwen3_config

    cfg = tiny_qwen3_config(vocab_size=100, layers=2, hidden=64)   # 4 heads x 16, 2 kv heads, inter 128
    # q 64x64, k 64x32, v 64x32, o 64x64, gate/up 64x128, down 128x64 ; r*(in+out) per module
    per_layer = 8 * ((64 + 64) + (64 + 32) * 2 + (64 + 64) + (64 + 128) * 2 + (128 + 64))
    assert lora_params(cfg, 8) == 2 * per_layer
    assert abs(count_params(qwen3_0_6b_config()) - 596_049_920) < 1e6       # ENVIRONMENT.md: 596 M


def test_estimates_bytes():
    e = estimate("x", 1000, "full")
    assert (e.weights_bytes, e.grads_bytes, e.adam_bytes, e.total_bytes) == (4000, 4000, 8000, 16000)
    e = estimate("x", 1000, "lora", lora=10)
    assert e.trainable == 10 and e.total_bytes == 2000 + 40 + 40 + 80
    assert estimate("x", 1000, "inference").total_bytes == 2000
    with pytest.raises(ValueError):
        estimate("x", 1, "qlora")


@pytest.mark.torch
def test_kv_cache():
    from frs_ros.reasoning.tiny import qwen3_0_6b_config

    # 2 x 28 layers x 8 kv heads x 128 x 2 bytes = 114688 bytes per token
    assert kv_cache_bytes(qwen3_0_6b_config(), 1) == 114688
