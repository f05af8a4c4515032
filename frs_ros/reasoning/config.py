"""Configuration of the reasoner (one frozen dataclass, read once) and its errors."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, Mapping

from frs_ros.config_util import dataclass_from_mapping

BACKENDS = ("hf", "oracle")
DTYPES = ("float32", "bfloat16", "float16")
RUNTIMES = ("transformers", "lean-fp32", "lean-int8")


class ReasonerConfigError(ValueError):
    """A reasoner configuration key or value is invalid."""


class ReasonerLoadError(RuntimeError):
    """The language model, tokenizer or adapter could not be loaded."""


class InvalidQueryError(ValueError):
    """The query text is not usable (not a str, empty, or too long)."""


@dataclass(frozen=True)
class ReasonerConfig:
    """Every knob of the reasoner. Units in brackets.

    backend: 'hf' (Hugging Face causal LM) | 'oracle' (ground-truth teacher, sim only).
    model: HF hub id or local directory of the causal LM; adapter: optional LoRA dir (peft),
        merged into the weights at load time ('' = none).
    local_files_only: never try the hub (these machines have no hub access).
    device: torch device ('cpu', 'cuda', 'cuda:0'); dtype: 'float32' | 'bfloat16' | 'float16'.
    runtime: how the 'hf' model runs (:mod:`frs_ros.reasoning.lm`): 'transformers' (its own
        forward; any architecture, any device) | 'lean-int8' (CPU, Qwen3 and Llama families:
        :class:`frs_ros.reasoning.lm.lean.LeanDecoder` with int8 weights, the native C kernel
        where a C compiler is present — the fast edge path) | 'lean-fp32' (the same decode loop,
        float weights).
    max_new_tokens [tokens]: hard cap on model-chosen tokens of one rollout.
    reasoning_budgets [tokens]: ``<reason>`` budget per estimated difficulty 1, 2, 3
        (PixelThink-style); when reached, ``</reason>`` is forced.
    max_plan_tokens [tokens]: cap of one ``<plan>`` (then ``</plan>`` is forced).
    max_tool_rounds: at most this many ``<plan>`` rounds, then ``<answer>`` is forced.
    use_tools: False = never pause for tools (no ``<plan>``; the oracle answers without them).
    temperature: 0 = greedy; > 0 samples (GRPO); top_p: nucleus mass when sampling.
    seed: RNG seed of sampling.
    use_cache_reuse: reuse KV caches of [prefix] and [prefix + twin] across queries.
    cache_entries: how many prefix KV caches to keep (LRU).
    constrain_answer: inside ``<answer>`` only valid twin ids, ", ", "none", ``</answer>``.
    max_query_chars [chars]: longer queries are rejected (InvalidQueryError).
    chat_markers: wrap the prompt in Qwen chat markers (see ``prompt.build_prompt``).
    """

    backend: str = "hf"
    model: str = "Qwen/Qwen3-0.6B"
    adapter: str = ""
    local_files_only: bool = False
    device: str = "cpu"
    dtype: str = "float32"
    runtime: str = "transformers"
    max_new_tokens: int = 256
    reasoning_budgets: tuple[int, ...] = (24, 40, 64)
    max_plan_tokens: int = 48
    max_tool_rounds: int = 2
    use_tools: bool = True
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    use_cache_reuse: bool = True
    cache_entries: int = 4
    constrain_answer: bool = True
    max_query_chars: int = 512
    chat_markers: bool = True

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ReasonerConfigError(f"reasoner.backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.dtype not in DTYPES:
            raise ReasonerConfigError(f"reasoner.dtype must be one of {DTYPES}, got {self.dtype!r}")
        if self.runtime not in RUNTIMES:
            raise ReasonerConfigError(f"reasoner.runtime must be one of {RUNTIMES}, got {self.runtime!r}")
        if self.runtime != "transformers" and (self.device != "cpu" or self.dtype != "float32"):
            raise ReasonerConfigError(
                f"reasoner.runtime={self.runtime!r} runs on the CPU from float32 weights: set device: cpu and "
                f"dtype: float32, or runtime: transformers (got device={self.device!r}, dtype={self.dtype!r})"
            )
        if self.max_new_tokens < 8:
            raise ReasonerConfigError(f"reasoner.max_new_tokens must be >= 8, got {self.max_new_tokens}")
        if not self.reasoning_budgets or any(int(b) < 1 for b in self.reasoning_budgets):
            raise ReasonerConfigError(
                f"reasoner.reasoning_budgets must list positive token budgets per difficulty, got {self.reasoning_budgets}"
            )
        if self.max_plan_tokens < 4 or self.max_tool_rounds < 0:
            raise ReasonerConfigError("reasoner.max_plan_tokens must be >= 4 and max_tool_rounds >= 0")
        if self.temperature < 0 or not (0 < self.top_p <= 1):
            raise ReasonerConfigError(
                f"reasoner.temperature must be >= 0 and top_p in (0, 1], got {self.temperature}, {self.top_p}"
            )
        if self.cache_entries < 1:
            raise ReasonerConfigError(f"reasoner.cache_entries must be >= 1, got {self.cache_entries}")
        if self.max_query_chars < 1:
            raise ReasonerConfigError(f"reasoner.max_query_chars must be >= 1, got {self.max_query_chars}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> "ReasonerConfig":
        """Build from a plain mapping (YAML/ROS parameters); unknown keys are an error."""
        config = dataclass_from_mapping(cls, d, ReasonerConfigError, "reasoner")
        # ROS integer-array parameters may arrive as floats from some YAML writers: budgets are token counts.
        return replace(config, reasoning_budgets=tuple(int(b) for b in config.reasoning_budgets))

    def to_dict(self) -> dict:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}
