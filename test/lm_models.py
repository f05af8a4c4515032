"""Tiny random causal LMs of the two families the lean runtime runs, for the LM tests (not a test module)."""

from __future__ import annotations

import torch


def tiny_qwen3(seed: int = 0, std: float = 0.15):
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


def tiny_llama(seed: int = 0, std: float = 0.15, **overrides):
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


TINY = {"qwen3": tiny_qwen3, "llama": tiny_llama}


def hf_greedy(model, ids, n):
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=n, min_new_tokens=n, do_sample=False)
    return out[0, len(ids):].tolist()
