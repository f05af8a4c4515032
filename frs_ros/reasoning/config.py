"""Configuration of the reasoner (one frozen dataclass, read once) and its errors."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, Mapping

from frs_ros.config_util import dataclass_from_mapping
from frs_ros.knobs import check_knobs, knob

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
    """Every knob of the reasoner: each field's doc, unit, range and choices are in its ``knob(...)``
    (:mod:`frs_ros.knobs`; ``config/frs.yaml`` lists them under ``reasoner.``).

    runtime: how the 'hf' model runs (:mod:`frs_ros.reasoning.lm`): 'transformers' (its own
    forward; any architecture, any device) | 'lean-int8' (CPU, Qwen3 and Llama families:
    :class:`frs_ros.reasoning.lm.lean.LeanDecoder` with int8 weights, the native C kernel where a C
    compiler is present) | 'lean-fp32' (the same decode loop, float weights). When
    ``reasoning_budgets`` is reached, ``</reason>`` is forced (PixelThink-style); when
    ``max_plan_tokens`` is, ``</plan>``; after ``max_tool_rounds``, ``<answer>``.
    """

    backend: str = knob("hf", doc="hf (causal LM student) | oracle (ground-truth teacher, simulated scenes only)",
                        choices=BACKENDS)
    model: str = knob("Qwen/Qwen3-0.6B", doc="causal LM: built-in name (smollm2-135m: the pip-packaged base of the "
                      "shipped student), hub id or local directory")
    adapter: str = knob("", doc="LoRA adapter directory merged at load time ('' = none; the shipped student: "
                        "<share>/models/smollm2_student)")
    local_files_only: bool = knob(False, doc="never try the hub (offline robots)")
    device: str = knob("cpu", doc="torch device of the LM (cpu, cuda, cuda:0)")
    dtype: str = knob("float32", doc="LM weights dtype: float32 | bfloat16 | float16", choices=DTYPES)
    runtime: str = knob("transformers", doc="how the LM runs; lean-int8 = CPU, Qwen3 and Llama families, int8 weights "
                        "on the native kernel (the fast edge path)", choices=RUNTIMES)
    max_new_tokens: int = knob(256, doc="hard cap on generated tokens of one rollout", unit="tokens", range=(8, 100000))
    reasoning_budgets: tuple[int, ...] = knob((24, 40, 64), doc="<reason> token budget per estimated difficulty 1, 2, 3",
                                              unit="tokens")
    max_plan_tokens: int = knob(48, doc="cap of one <plan>", unit="tokens", range=(4, None))
    max_tool_rounds: int = knob(2, doc="at most this many <plan> rounds before <answer> is forced", range=(0, None))
    use_tools: bool = knob(True, doc="pause for tools; false = never (no <plan>; the oracle answers without them)")
    temperature: float = knob(0.0, doc="sampling temperature; 0 = greedy (> 0 samples, as in GRPO)", range=(0.0, 10.0))
    top_p: float = knob(1.0, doc="nucleus mass when sampling", range=(0.0, 1.0), min_exclusive=True)
    seed: int = knob(0, doc="RNG seed of sampling")
    use_cache_reuse: bool = knob(True, doc="reuse KV caches of the prompt prefix and the twin across queries")
    cache_entries: int = knob(4, doc="prefix KV caches kept (LRU)", range=(1, 1024))
    constrain_answer: bool = knob(True, doc="inside <answer> allow only valid twin ids, 'none' and separators")
    max_query_chars: int = knob(512, doc="longer goal queries are rejected (InvalidQueryError)", unit="chars",
                                range=(1, 100000))
    chat_markers: bool = knob(True, doc="wrap the prompt in Qwen chat markers (see prompt.build_prompt)")

    def __post_init__(self) -> None:
        check_knobs(self, "reasoner", ReasonerConfigError)
        if self.runtime != "transformers" and (self.device != "cpu" or self.dtype != "float32"):
            raise ReasonerConfigError(
                f"reasoner.runtime={self.runtime!r} runs on the CPU from float32 weights: set device: cpu and "
                f"dtype: float32, or runtime: transformers (got device={self.device!r}, dtype={self.dtype!r})"
            )
        if not self.reasoning_budgets or any(int(b) < 1 for b in self.reasoning_budgets):
            raise ReasonerConfigError(
                f"reasoner.reasoning_budgets must list positive token budgets per difficulty, got {self.reasoning_budgets}"
            )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> "ReasonerConfig":
        """Build from a plain mapping (YAML/ROS parameters); unknown keys are an error."""
        config = dataclass_from_mapping(cls, d, ReasonerConfigError, "reasoner")
        # ROS integer-array parameters may arrive as floats from some YAML writers: budgets are token counts.
        return replace(config, reasoning_budgets=tuple(int(b) for b in config.reasoning_budgets))

    def to_dict(self) -> dict:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}
