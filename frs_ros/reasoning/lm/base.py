"""The causal-LM protocol every runtime implements, and the cache it hands out.

A runtime turns token ids into next-token logits and keeps the KV cache that makes the next call
cheap. The reasoner (:class:`frs_ros.reasoning.hf_backend.HFReasoner`: prompts, prefix-cache
reuse, tool pauses, grammar) is written against this protocol only, so a new runtime is one file
in :mod:`frs_ros.reasoning.lm` and one entry in its factory.

ROS-free; imports nothing heavy (the runtimes import torch).
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence, runtime_checkable

__all__ = ["LMCache", "CausalLM"]


@runtime_checkable
class LMCache(Protocol):
    """A KV cache: the tokens a runtime has seen, in place. ``copy.deepcopy`` gives an independent
    copy (the prefix cache stores and restores them)."""

    def get_seq_length(self, layer_idx: int = 0) -> int:
        """Tokens held [tokens]."""
        ...

    def crop(self, max_length: int) -> None:
        """Keep the first ``max_length`` tokens; a negative value removes ``-max_length`` tokens
        (the transformers ``Cache.crop`` semantics)."""
        ...


@runtime_checkable
class CausalLM(Protocol):
    """A causal LM behind one call: ``forward(ids, cache)``.

    runtime: how it runs, for logs and the node's status (``'transformers'``,
        ``'lean-int8 (native kernel)'``, ...).
    runtime_warning: why it is not the runtime that was asked for (``''`` when it is; e.g. no C
        compiler, so ``lean-int8`` runs on torch's int8 kernel).
    config: the HF config of the model (``vocab_size``, ``num_hidden_layers``, ...).
    """

    runtime: str
    runtime_warning: str
    config: Any

    def new_cache(self) -> LMCache:
        """An empty KV cache for this model."""
        ...

    def forward(self, ids: Sequence[int], cache: LMCache) -> Any:
        """Append ``ids`` (T >= 1 token ids) to ``cache`` in place and return the logits of the
        last position: a float32 ``torch.Tensor`` of shape ``(vocab_size,)``."""
        ...
