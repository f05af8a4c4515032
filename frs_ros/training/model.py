"""Model factory and checkpoints for the student (nano Qwen3 from scratch, or a HF LLM + LoRA).

A checkpoint directory is a normal ``save_pretrained`` directory (``model.safetensors``,
``config.json``, tokenizer files) plus ``training_state.json``: the resolved training config,
the stage and the optimizer step. So ``AutoModelForCausalLM.from_pretrained(dir)`` loads it,
and :func:`read_training_state` tells how it was made. LoRA checkpoints are merged before
saving (``merge_and_unload`` on a copy), so every checkpoint loads without peft.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Optional

import torch

from frs_ros.training.config import NanoModelConfig, config_to_dict

TRAINING_STATE = "training_state.json"
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class CheckpointError(RuntimeError):
    """A checkpoint directory is missing files or was written by something else."""


def nano_qwen3_config(cfg: NanoModelConfig, tokenizer: Any):
    """``Qwen3Config`` of the nano student; vocabulary and special ids from ``tokenizer``."""
    from transformers import Qwen3Config

    vocab = cfg.vocab_size or len(tokenizer)
    if vocab < len(tokenizer):
        raise ValueError(f"vocab_size {vocab} is smaller than the tokenizer's {len(tokenizer)} tokens")
    if cfg.hidden_size % cfg.num_attention_heads:
        raise ValueError(f"hidden_size {cfg.hidden_size} is not divisible by {cfg.num_attention_heads} heads")
    return Qwen3Config(
        vocab_size=vocab,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        num_key_value_heads=cfg.num_key_value_heads,
        head_dim=cfg.hidden_size // cfg.num_attention_heads,
        max_position_embeddings=cfg.max_position_embeddings,
        rope_theta=cfg.rope_theta,
        tie_word_embeddings=cfg.tie_word_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        use_cache=True,
    )


def build_nano_student(cfg: NanoModelConfig, tokenizer: Any, seed: int = 0):
    """A randomly initialised ``Qwen3ForCausalLM`` of the nano size (fp32)."""
    from transformers import Qwen3ForCausalLM

    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(nano_qwen3_config(cfg, tokenizer))
    return model


def count_parameters(model: torch.nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def load_student(path: str, dtype: torch.dtype = torch.float32, adapter: str = ""):
    """``(model, tokenizer)`` from a built-in name (``smollm2-135m``, see
    :mod:`frs_ros.reasoning.base_models`), a HF id or a local checkpoint directory (fp32 for
    training). ``adapter``: a peft LoRA directory loaded *trainable* on top (to continue training
    it, e.g. GRPO after LoRA SFT); the result is then a ``PeftModel``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from frs_ros.reasoning.base_models import resolve_model

    path = resolve_model(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter, is_trainable=True)
    return model, tokenizer


def apply_lora(model: torch.nn.Module, r: int, alpha: int, dropout: float = 0.05):
    """Wrap ``model`` with LoRA adapters on every attention and MLP projection (peft)."""
    from peft import LoraConfig, get_peft_model

    lcfg = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(LORA_TARGETS), task_type="CAUSAL_LM")
    return get_peft_model(model, lcfg)


def is_peft(model: torch.nn.Module) -> bool:
    try:
        from peft import PeftModel
    except ImportError:
        return False
    return isinstance(model, PeftModel)


def _plain_model(model: torch.nn.Module) -> torch.nn.Module:
    """The model to save: LoRA merged into a copy (the training model keeps its adapters)."""
    try:
        from peft import PeftModel
    except ImportError:  # peft missing: nothing can be a PeftModel
        return model
    if isinstance(model, PeftModel):
        return copy.deepcopy(model).merge_and_unload()
    return model


def save_checkpoint(
    model: torch.nn.Module,
    tokenizer: Any,
    out_dir: str | Path,
    config: Any,
    step: int,
    stage: str,
    extra: Optional[dict] = None,
    dtype: Optional[torch.dtype] = None,
    adapter_only: bool = False,
) -> Path:
    """Write ``out_dir`` = save_pretrained(model, tokenizer) + ``training_state.json``.

    dtype: storage dtype (e.g. ``torch.float16`` for the shipped nano student); the training
        model itself is not changed.
    adapter_only: for a LoRA (peft) model, write only the adapter (``adapter_config.json`` +
        ``adapter_model.safetensors``, ~10 MB at r=16 on SmolLM2-135M instead of 538 MB merged);
        load it with ``reasoner.adapter`` over the base model.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if adapter_only and is_peft(model):
        model.save_pretrained(out, safe_serialization=True)
        if dtype is not None:  # re-save the adapter tensors in the storage dtype
            from safetensors.torch import load_file, save_file

            f = out / "adapter_model.safetensors"
            save_file({k: v.to(dtype) for k, v in load_file(str(f)).items()}, str(f))
        plain = None
    else:
        plain = _plain_model(model)
        if dtype is not None:
            plain = copy.deepcopy(plain).to(dtype)
    if plain is not None:
        plain.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    state = {"stage": stage, "step": int(step), "config": config_to_dict(config)}
    if extra:
        state.update(extra)
    (out / TRAINING_STATE).write_text(json.dumps(state, indent=2))
    return out


def read_training_state(path: str | Path) -> dict:
    """The ``training_state.json`` of a checkpoint (raises :class:`CheckpointError` if absent)."""
    p = Path(path) / TRAINING_STATE
    if not p.exists():
        raise CheckpointError(f"{path} has no {TRAINING_STATE}: not a checkpoint written by frs_ros.training")
    return json.loads(p.read_text())
