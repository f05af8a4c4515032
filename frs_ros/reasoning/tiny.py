"""Tiny random Qwen3 or Llama + byte-level BPE tokenizer, saved like a real checkpoint.

No machine here can download weights, so tests and smoke runs build a miniature model of the
real architecture (``Qwen3ForCausalLM``, or ``LlamaForCausalLM`` like SmolLM2), save it with
``save_pretrained`` and load it back through the same ``from_pretrained`` path as
``Qwen/Qwen3-0.6B``. ``qwen3_0_6b_config()`` and ``smollm2_135m_config()`` give the real-size
configs for timing with random weights (speed does not depend on weights).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from frs_ros.reasoning.prompt import IM_END, IM_START, INSTRUCTION

SPECIAL_TOKENS = ("<|endoftext|>", IM_START, IM_END)

_CORPUS = (
    INSTRUCTION,
    "<reason>The query asks for the red mug; object 3 is a mug.</reason>",
    "<plan>describe(3); relation(3, 7); history(2); detect(\"cup\")</plan>",
    "<results>describe(3): red ceramic mug</results><answer>3, 7</answer><answer>none</answer>",
    "Scene:\n1 mug box=10,20,30,40 z=0.85m\n2 bowl\n12 plate\nQuery: the cup I drink from",
    "0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20",
)


def build_tokenizer(corpus: Iterable[str] = (), vocab_size: int = 600):
    """A small byte-level BPE tokenizer (Qwen-style: every byte is a token, so any text encodes)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(_CORPUS) + list(corpus), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=[IM_START, IM_END],
        clean_up_tokenization_spaces=False,
    )


def tiny_qwen3_config(vocab_size: int, layers: int = 2, hidden: int = 64):
    from transformers import Qwen3Config

    return Qwen3Config(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=hidden // 4,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
    )


def tiny_llama_config(vocab_size: int, layers: int = 2, hidden: int = 64):
    """A miniature SmolLM2 (``LlamaForCausalLM``): grouped-query attention, no q/k norm, tied head."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=hidden // 4,
        max_position_embeddings=4096,
        rope_theta=100000.0,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
    )


def smollm2_135m_config():
    """The SmolLM2-135M architecture (``LlamaForCausalLM``, 134.5 M parameters with tied embeddings)."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=49152,
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        head_dim=64,
        max_position_embeddings=8192,
        rope_theta=100000.0,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
    )


def qwen3_0_6b_config():
    """The Qwen3-0.6B architecture (596 M parameters with tied embeddings)."""
    from transformers import Qwen3Config

    return Qwen3Config(
        vocab_size=151936,
        hidden_size=1024,
        intermediate_size=3072,
        num_hidden_layers=28,
        num_attention_heads=16,
        num_key_value_heads=8,
        head_dim=128,
        max_position_embeddings=40960,
        rope_theta=1000000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
    )


def save_tiny_model(path: str | Path, corpus: Iterable[str] = (), seed: int = 0, layers: int = 2, hidden: int = 64,
                    family: str = "qwen3") -> Path:
    """Build a tiny random model (``family`` 'qwen3' or 'llama') + tokenizer and ``save_pretrained``
    both into ``path``."""
    import torch
    from transformers import LlamaForCausalLM, Qwen3ForCausalLM

    builders = {"qwen3": (Qwen3ForCausalLM, tiny_qwen3_config), "llama": (LlamaForCausalLM, tiny_llama_config)}
    if family not in builders:
        raise ValueError(f"family must be one of {sorted(builders)}, got {family!r}")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(corpus)
    torch.manual_seed(seed)
    cls, make_config = builders[family]
    model = cls(make_config(len(tokenizer), layers, hidden))
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
