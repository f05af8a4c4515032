"""Reasoner domain types: tool calls, parsed rollouts, targets and the answer of a query."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from frs_ros.twin.types import DepthStats
from frs_ros.reasoning.outcome import Outcome


@dataclass(frozen=True)
class ToolCall:
    """One call in a ``<plan>``: ``name(args...)``, e.g. ``describe(3)``, ``detect("mug")``."""

    name: str
    args: tuple = ()

    def render(self) -> str:
        def fmt(a):
            return f'"{a}"' if isinstance(a, str) else str(a)

        return f"{self.name}({', '.join(fmt(a) for a in self.args)})"


@dataclass
class Rollout:
    """A parsed rollout ``<reason>..</reason>[<plan>..</plan><results>..</results>]*<answer>..</answer>``.

    answer_ids: track ids named in ``<answer>``; an empty list means the explicit answer "none".
    text: the raw rollout text as generated (with tool results spliced in).
    """

    reason: str
    plans: list[list[ToolCall]] = field(default_factory=list)
    results: list[str] = field(default_factory=list)
    answer_ids: list[int] = field(default_factory=list)
    text: str = ""


@dataclass
class Target:
    """One answered target, ready for manipulation.

    mask: ``(H, W)`` bool visible mask; box: (x0, y0, x1, y1) [px];
    centroid_m: ``(3,)`` [m] camera optical frame (NaN where depth is missing).
    """

    track_id: int
    label: str
    score: float
    mask: np.ndarray
    box: tuple[int, int, int, int]
    depth: DepthStats
    centroid_m: np.ndarray


@dataclass
class Answer:
    """Result of ``answer(query, twin, frame)``.

    status: :class:`~frs_ros.reasoning.outcome.Outcome` (a ``str`` enum; a plain string is
        converted): ``ok``, or ``cancelled`` / ``parse_error`` / ``max_tokens`` / ``unknown_id`` /
        ``error`` with ``error`` saying what went wrong in a sentence a user can act on.
    mask: union of target masks ``(H, W)`` bool (all False when the answer is "none").
    timings_s: per-stage wall time [s], e.g. {'serialise':..,'prefill':..,'decode':..,'tools':..}.
    warnings: recoveries and caveats of the backend (a malformed plan dropped, an oracle target
        missing from the twin, ...); empty when none.
    """

    query: str
    targets: list[Target]
    mask: np.ndarray
    reasoning: str
    rollout: Optional[Rollout] = None
    prompt_tokens: int = 0
    generated_tokens: int = 0
    cached_tokens: int = 0
    timings_s: dict = field(default_factory=dict)
    status: Outcome = Outcome.OK
    error: str = ""
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.status = Outcome(self.status)

    @property
    def ok(self) -> bool:
        return self.status is Outcome.OK

    @property
    def target_ids(self) -> list[int]:
        return [t.track_id for t in self.targets]
