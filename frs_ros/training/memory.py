"""Training memory, computed from the architecture: params x bytes for weights, grads, Adam.

Parameter counts come from building the model on the ``meta`` device (no memory, exact
shapes), so the numbers are those of the real ``Qwen3ForCausalLM``. Activations and the KV
cache depend on batch and sequence length and are reported separately.

    python -m frs_ros.training.memory        # prints the table used in docs/training.md
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

GiB = 1024**3


def qwen3_8b_config():
    """The Qwen3-8B architecture (36 layers, hidden 4096, GQA 32/8 heads, untied embeddings)."""
    from transformers import Qwen3Config

    return Qwen3Config(
        vocab_size=151936, hidden_size=4096, intermediate_size=12288, num_hidden_layers=36,
        num_attention_heads=32, num_key_value_heads=8, head_dim=128, max_position_embeddings=40960,
        rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=False,
    )


def count_params(config: Any) -> int:
    """Exact parameter count of ``Qwen3ForCausalLM(config)`` (built on the meta device)."""
    import torch
    from transformers import Qwen3ForCausalLM

    with torch.device("meta"):
        model = Qwen3ForCausalLM(config)
    return sum(p.numel() for p in model.parameters())


def lora_params(config: Any, r: int, targets: tuple = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")) -> int:
    """LoRA parameters: r x (in + out) per adapted linear layer, summed over layers."""
    h = config.hidden_size
    hd = getattr(config, "head_dim", None) or h // config.num_attention_heads
    q_out = config.num_attention_heads * hd
    kv_out = config.num_key_value_heads * hd
    inter = config.intermediate_size
    shapes = {"q_proj": (h, q_out), "k_proj": (h, kv_out), "v_proj": (h, kv_out), "o_proj": (q_out, h),
              "gate_proj": (h, inter), "up_proj": (h, inter), "down_proj": (inter, h)}
    per_layer = sum(r * (shapes[t][0] + shapes[t][1]) for t in targets)
    return per_layer * config.num_hidden_layers


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes of one training (or inference) setup, excluding activations and KV cache."""

    name: str
    params: int
    trainable: int
    weights_bytes: int
    grads_bytes: int
    adam_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.weights_bytes + self.grads_bytes + self.adam_bytes

    def row(self) -> str:
        g = lambda b: f"{b / GiB:.2f}"  # noqa: E731
        return (f"| {self.name} | {self.params / 1e6:.1f} M | {self.trainable / 1e6:.1f} M | {g(self.weights_bytes)} | "
                f"{g(self.grads_bytes)} | {g(self.adam_bytes)} | {g(self.total_bytes)} |")


def estimate(name: str, params: int, mode: str, lora: int = 0, weight_bytes: int = 2) -> MemoryEstimate:
    """mode: 'inference' (weights only), 'full' (fp32 master weights + fp32 grads + Adam m, v:
    16 bytes/param, the bf16 autocast copy is transient), 'lora' (frozen base in
    ``weight_bytes`` + fp32 LoRA weights, grads, Adam: 16 bytes per LoRA param)."""
    if mode == "inference":
        return MemoryEstimate(name, params, 0, params * weight_bytes, 0, 0)
    if mode == "full":
        return MemoryEstimate(name, params, params, params * 4, params * 4, params * 8)
    if mode == "lora":
        return MemoryEstimate(name, params + lora, lora, params * weight_bytes + lora * 4, lora * 4, lora * 8)
    raise ValueError(f"mode must be 'inference', 'full' or 'lora', got {mode!r}")


def kv_cache_bytes(config: Any, tokens: int, bytes_per: int = 2) -> int:
    """KV cache of ``tokens`` tokens: 2 (K, V) x layers x kv heads x head_dim x bytes."""
    hd = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return 2 * config.num_hidden_layers * config.num_key_value_heads * hd * bytes_per * tokens


def table(lora_r: int = 64) -> str:
    from frs_ros.reasoning.tiny import qwen3_0_6b_config

    c8, c06 = qwen3_8b_config(), qwen3_0_6b_config()
    p8, p06 = count_params(c8), count_params(c06)
    rows = [
        estimate("Qwen3-8B teacher, bf16 inference (chains)", p8, "inference"),
        estimate(f"Qwen3-0.6B student, LoRA r={lora_r} (bf16 base)", p06, "lora", lora_params(c06, lora_r)),
        estimate("Qwen3-0.6B student, full FT (fp32 master + Adam)", p06, "full"),
        estimate(f"Qwen3-8B student, LoRA r={lora_r} (bf16 base)", p8, "lora", lora_params(c8, lora_r)),
    ]
    head = ("| setup | params | trainable | weights GiB | grads GiB | Adam GiB | total GiB |\n"
            "|---|---:|---:|---:|---:|---:|---:|")
    kv = (f"\nKV cache per 1k tokens (bf16): Qwen3-8B {kv_cache_bytes(c8, 1000) / GiB:.3f} GiB, "
          f"Qwen3-0.6B {kv_cache_bytes(c06, 1000) / GiB:.3f} GiB.")
    return head + "\n" + "\n".join(r.row() for r in rows) + kv


if __name__ == "__main__":
    print(table())
