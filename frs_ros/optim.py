"""Compatibility names: the LM runtime and the performance probes that used to live here.

``bench/`` imports ``from frs_ros import optim``; new code imports the homes directly:

- the lean runtime (``LeanDecoder``, ``KVCache``, ``LeanCausalLM``, ``check_architecture``):
  :mod:`frs_ros.reasoning.lm.lean`; int8 weights (``quantize_dynamic_int8``):
  :mod:`frs_ros.reasoning.lm.int8`; the runtime protocol and factory: :mod:`frs_ros.reasoning.lm`;
- the probes (``measure_memory_bandwidth``, ``decode_bytes_per_token``, ``decode_floor_s``,
  ``floor_fraction``, ``count_parameters``, ``model_weight_bytes``, ``rss_bytes``,
  ``peak_rss_bytes``): :mod:`frs_ros.perf`.

ROS-free; imports torch.
"""

from __future__ import annotations

from typing import Any

from frs_ros.perf import (
    BandwidthResult,
    count_parameters,
    decode_bytes_per_token,
    decode_floor_s,
    floor_fraction,
    measure_memory_bandwidth,
    model_weight_bytes,
    peak_rss_bytes,
    rss_bytes,
)
from frs_ros.reasoning.lm.int8 import quantize_dynamic_int8
from frs_ros.reasoning.lm.lean import KERNELS, KVCache, LeanCausalLM, LeanDecoder, check_architecture

__all__ = [
    "BandwidthResult",
    "measure_memory_bandwidth",
    "decode_bytes_per_token",
    "decode_floor_s",
    "floor_fraction",
    "quantize_dynamic_int8",
    "count_parameters",
    "model_weight_bytes",
    "KERNELS",
    "KVCache",
    "LeanDecoder",
    "LeanCausalLM",
    "check_architecture",
    "lean_hf_reasoner",
    "rss_bytes",
    "peak_rss_bytes",
]


def lean_hf_reasoner(config: Any, lean_model: LeanCausalLM, tokenizer: Any) -> Any:
    """The reasoner (prefix cache, tool pauses, constrained answers) on a lean runtime; the same as
    ``HFReasoner(config, model=lean_model, tokenizer=tokenizer)``."""
    from frs_ros.reasoning.hf_backend import HFReasoner

    return HFReasoner(config, model=lean_model, tokenizer=tokenizer)
