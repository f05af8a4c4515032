"""Teacher reasoning chains with rejection sampling (the data of stage 1, and the prompts of stage 2).

For each sim sample (a still image or a video episode) of a split: run the ``sim`` twin
backend over its frames, serialise the twin at each query's frame, let the teacher (any
``Reasoner``; the oracle by default) write a rollout with tools live, and keep the chain only
if the mask of its answer has IoU > ``iou_keep`` (0.7) with the ground truth.

Each kept chain is one JSONL record::

    id, split, sample ('image'|'episode'), seed, query_index, frame_index (resolved, >= 0),
    query, kind, difficulty, is_sentence, template_id, target_sim_ids,
    twin_text, rollout, reason, answer_ids (track ids), n_tool_rounds, iou,
    gt_mask (RLE json, the query frame), id_masks ({track id: RLE json} of the twin)

``gt_mask`` + ``id_masks`` are all a reward needs to score a new rollout later
(:func:`frs_ros.training.rewards.score_rollout`); ``seed``/``sample``/``frame_index`` rebuild the
frame and twin for tools (:func:`rebuild_context`). Statistics of what was kept and why go to
``<out>.stats.json``.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np

from frs_ros.masks import RLE, mask_iou, rle_encode
from frs_ros.reasoning.oracle import DO_NOT_TRAIN
from frs_ros.training.config import ChainsConfig

EPISODE_SEED_OFFSET = 100000


class ContextMismatchError(RuntimeError):
    """A chain record no longer matches what the sim + tracker rebuild from its seed."""


@dataclass
class QueryContext:
    """One query ready for a reasoner: the twin at the query's frame and its ground truth.

    frame: the camera frame the twin belongs to (tools read it); twin_text: ``twin_to_text``.
    id_masks: track id -> visible mask ``(H, W)`` bool of the twin at that frame.
    gt_mask: ``(H, W)`` bool union of the target instances' visible masks (empty = "none").
    video: for episodes, per frame ``(track id -> mask RLE, gt mask RLE)`` (for J&F), else None.
    history: ``(twin, frame)`` of every frame up to the query's (shared by the queries of an
        episode) when built with ``keep_history``; a teacher with ``observe`` sees them all.
    """

    sample: str
    seed: int
    split: str
    query_index: int
    frame_index: int
    query: Any
    frame: Any
    twin: Any
    twin_text: str
    backends: Any
    id_masks: dict[int, np.ndarray]
    gt_mask: np.ndarray
    video: Optional[list[tuple[dict[int, RLE], RLE]]] = None
    history: Optional[list[tuple[Any, Any]]] = None

    @property
    def id(self) -> str:
        return f"{self.split}-{self.sample}-{self.seed}-q{self.query_index}"

    def tool_executor(self, enabled: bool = True) -> Callable:
        """``ToolCall -> str`` on this twin and frame; ``enabled=False`` answers "tools disabled"."""
        from frs_ros.twin import run_tool

        if not enabled:
            return lambda call: "tools disabled"
        return lambda call: run_tool(call, self.twin, self.frame, backends=self.backends)

    def answer_mask(self, answer_ids) -> np.ndarray:
        from frs_ros.training.rewards import answer_mask

        return answer_mask(answer_ids, self.id_masks, self.gt_mask.shape)


def sample_seed(sample: str, seed0: int, i: int) -> int:
    """Sim seed of the i-th image/episode of a run (image and episode seeds never collide)."""
    return seed0 + i + (EPISODE_SEED_OFFSET if sample == "episode" else 0)


def load_sim_sample(sample: str, seed: int, split: str, n_frames: int = 30):
    """``frs_ros.sim.generate_image`` / ``generate_episode`` -> ``SimSample``."""
    import frs_ros.sim as sim

    if sample == "image":
        return sim.generate_image(seed, split)
    if sample == "episode":
        return sim.generate_episode(seed, split, n_frames=n_frames)
    raise ValueError(f"sample must be 'image' or 'episode', got {sample!r}")


def _twin_config(twin_backend: str):
    from frs_ros.twin import TwinConfig

    if twin_backend != "sim":
        raise ValueError(f"chain generation needs ground truth: twin_backend must be 'sim', got {twin_backend!r}")
    return TwinConfig(segmenter="sim", labeler="sim")


def contexts_of_sample(
    sample: str, seed: int, split: str, n_frames: int = 30, twin_backend: str = "sim", with_video: bool = False,
    keep_history: bool = False,
) -> list[QueryContext]:
    """All queries of one sim sample as :class:`QueryContext` (the tracker runs once over its frames)."""
    from frs_ros.twin import Tracker, twin_to_text

    sim_sample = load_sim_sample(sample, seed, split, n_frames)
    frames = list(sim_sample.frames)
    queries = list(sim_sample.queries)
    if not frames or not queries:
        return []
    tracker = Tracker(_twin_config(twin_backend))
    want = {len(frames) - 1 if q.frame_index < 0 else int(q.frame_index) for q in queries}
    snapshots: dict[int, Any] = {}
    per_frame: list[dict[int, RLE]] = []
    history: list[tuple[Any, Any]] = []
    for k, frame in enumerate(frames):
        twin = tracker.update(frame)
        if keep_history:
            history.append((twin, frame))
        if k in want:
            snapshots[k] = twin
        if with_video:
            per_frame.append({o.track_id: o.mask for o in twin.objects if o.visible})
    out = []
    for qi, q in enumerate(queries):
        k = len(frames) - 1 if q.frame_index < 0 else int(q.frame_index)
        twin = snapshots[k]
        frame = frames[k]
        id_masks = {o.track_id: o.mask.decode() for o in twin.objects if o.visible}
        gt = frame.gt.union_mask(list(q.target_ids))
        video = None
        if with_video and sample == "episode":
            video = [(per_frame[j], rle_encode(frames[j].gt.union_mask(list(q.target_ids)))) for j in range(len(frames))]
        out.append(
            QueryContext(
                sample=sample, seed=seed, split=split, query_index=qi, frame_index=k, query=q, frame=frame,
                twin=twin, twin_text=twin_to_text(twin), backends=tracker.backends, id_masks=id_masks,
                gt_mask=gt, video=video, history=history[: k + 1] if keep_history else None,
            )
        )
    return out


def iter_contexts(
    split: str, n_images: int, n_episodes: int, seed0: int = 0, n_frames: int = 30, twin_backend: str = "sim",
    with_video: bool = False, shard: tuple[int, int] = (0, 1), keep_history: bool = True,
) -> Iterator[QueryContext]:
    """Contexts of ``n_images`` images then ``n_episodes`` episodes; ``shard=(i, n)`` keeps every n-th sample."""
    jobs = [("image", i) for i in range(n_images)] + [("episode", i) for i in range(n_episodes)]
    for j, (sample, i) in enumerate(jobs):
        if j % shard[1] != shard[0]:
            continue
        yield from contexts_of_sample(sample, sample_seed(sample, seed0, i), split, n_frames, twin_backend, with_video,
                                      keep_history)


def rebuild_context(record: dict, n_frames: int = 30, twin_backend: str = "sim") -> QueryContext:
    """The :class:`QueryContext` of a chain record (sim and tracker are deterministic per seed)."""
    ctxs = contexts_of_sample(record["sample"], int(record["seed"]), record["split"], n_frames, twin_backend)
    ctx = ctxs[int(record["query_index"])]
    if ctx.twin_text != record["twin_text"]:
        raise ContextMismatchError(
            f"chain {record['id']}: the rebuilt twin differs from the recorded one (sim or twin code changed "
            "since the chains were generated); regenerate the chains"
        )
    return ctx


def record_masks(record: dict) -> tuple[dict[int, RLE], np.ndarray]:
    """``(id_masks, gt_mask)`` of a chain record (RLEs decoded lazily by the reward)."""
    id_masks = {int(k): RLE.from_json(v) for k, v in record["id_masks"].items()}
    return id_masks, RLE.from_json(record["gt_mask"]).decode()


def judge_chain(ctx: QueryContext, output: Any, iou_keep: float) -> tuple[Optional[str], float]:
    """``(rejection reason or None, IoU)`` of a teacher output (``ReasonerOutput``)."""
    if getattr(output, "status", "ok") != "ok" or output.rollout is None:
        return f"status_{getattr(output, 'status', 'error')}", 0.0
    try:
        pred = ctx.answer_mask(output.rollout.answer_ids)
    except ValueError:
        return "bad_answer_mask", 0.0
    iou = mask_iou(pred, ctx.gt_mask, empty=1.0)
    if not iou > iou_keep:
        return ("iou_le_%.2f" % iou_keep), iou
    return None, iou


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def causal_reason(reason: str, has_tools: bool) -> str:
    """The teacher's reasoning without conclusions it could not have drawn yet.

    The grammar has no reasoning after ``<results>``, so a chain that calls tools must not
    state, inside ``<reason>``, what only the tool results reveal (the oracle writes e.g.
    "...; check their colours. The blue one is #5." before ``describe``). With tools, the last
    sentence of such a reason is that conclusion and is dropped; the answer after the results
    still names the target. Without tools the reason is unchanged.
    """
    if not has_tools:
        return reason
    sentences = [x for x in _SENTENCE_END.split(reason.strip()) if x]
    if len(sentences) < 2:
        return reason
    return " ".join(sentences[:-1])


def clean_rollout(output: Any) -> tuple[str, str]:
    """``(rollout text, reason)`` with :func:`causal_reason` applied (re-rendered canonically)."""
    from dataclasses import replace as dc_replace

    from frs_ros.reasoning.rollout import render_rollout

    r = output.rollout
    reason = causal_reason(r.reason, bool(r.plans))
    if reason == r.reason:
        return output.text, r.reason
    return render_rollout(dc_replace(r, reason=reason)), reason


def make_record(ctx: QueryContext, output: Any, iou: float, clean: bool = True) -> dict:
    q = ctx.query
    r = output.rollout
    text, reason = clean_rollout(output) if clean else (output.text, r.reason)
    return {
        "id": ctx.id,
        "split": ctx.split,
        "sample": ctx.sample,
        "seed": ctx.seed,
        "query_index": ctx.query_index,
        "frame_index": ctx.frame_index,
        "query": q.text,
        "kind": q.kind,
        "difficulty": int(q.difficulty),
        "is_sentence": bool(q.is_sentence),
        "template_id": q.template_id,
        "target_sim_ids": [int(i) for i in q.target_ids],
        "twin_text": ctx.twin_text,
        "rollout": text,
        "reason": reason,
        "teacher_reason_raw": r.reason,
        "answer_ids": [int(i) for i in r.answer_ids],
        "n_tool_rounds": len(r.plans),
        "iou": round(float(iou), 4),
        "gt_mask": rle_encode(ctx.gt_mask).to_json(),
        "id_masks": {str(k): rle_encode(m).to_json() for k, m in ctx.id_masks.items()},
    }


@dataclass
class ChainStats:
    """What was kept and why: totals, per kind, per difficulty, rejection reasons."""

    seen: int = 0
    kept: int = 0
    per_kind: dict = field(default_factory=lambda: defaultdict(lambda: {"seen": 0, "kept": 0}))
    per_difficulty: dict = field(default_factory=lambda: defaultdict(lambda: {"seen": 0, "kept": 0}))
    per_sample: dict = field(default_factory=lambda: defaultdict(lambda: {"seen": 0, "kept": 0}))
    rejected: Counter = field(default_factory=Counter)
    tool_rounds: Counter = field(default_factory=Counter)
    wall_s: float = 0.0

    def add(self, ctx: QueryContext, reason: Optional[str], rounds: int = 0) -> None:
        self.seen += 1
        keys = ((self.per_kind, ctx.query.kind), (self.per_difficulty, str(ctx.query.difficulty)),
                (self.per_sample, ctx.sample))
        for table, key in keys:
            table[key]["seen"] += 1
        if reason is None:
            self.kept += 1
            for table, key in keys:
                table[key]["kept"] += 1
            self.tool_rounds[str(rounds)] += 1
        else:
            self.rejected[reason] += 1

    def to_json(self) -> dict:
        return {
            "seen": self.seen,
            "kept": self.kept,
            "kept_fraction": round(self.kept / self.seen, 4) if self.seen else None,
            "per_kind": {k: dict(v) for k, v in sorted(self.per_kind.items())},
            "per_difficulty": {k: dict(v) for k, v in sorted(self.per_difficulty.items())},
            "per_sample": {k: dict(v) for k, v in sorted(self.per_sample.items())},
            "rejected": dict(self.rejected.most_common()),
            "kept_tool_rounds": dict(sorted(self.tool_rounds.items())),
            "wall_s": round(self.wall_s, 1),
        }


def run_teacher(reasoner: Any, ctx: QueryContext, tools: bool = True) -> Any:
    """One rollout on a context (the ``Reasoner.reason`` protocol, tools live).

    A reasoner with ``observe``/``reset`` (the oracle) first sees every frame of the context's
    history, as it would live, so it can name tracks that are lost at query time; one with a
    ``truth`` book (the oracle) is given the context's query with its ground truth.
    """
    if ctx.history and hasattr(reasoner, "observe"):
        if hasattr(reasoner, "reset"):
            reasoner.reset()
        for twin, frame in ctx.history:
            reasoner.observe(twin, frame)
    truth = getattr(reasoner, "truth", None)
    if truth is not None:
        truth.update([ctx.query])
    return reasoner.reason(ctx.query.text, ctx.twin, ctx.twin_text, ctx.frame, ctx.tool_executor(tools))


def generate_chains(
    cfg: ChainsConfig, reasoner: Any = None, contexts: Optional[Iterator[QueryContext]] = None,
    log: Optional[Callable[[str], None]] = None,
) -> ChainStats:
    """Run the teacher over ``cfg.split`` and write kept chains to ``cfg.out`` (+ ``.stats.json``)."""
    if reasoner is None:
        from frs_ros.training.evaluate import build_system

        reasoner, _ = build_system(cfg.reasoner)
    if contexts is None:
        contexts = iter_contexts(cfg.split, cfg.n_images, cfg.n_episodes, cfg.seed0, cfg.episode_frames, cfg.twin_backend)
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    stats = ChainStats()
    t0 = time.time()
    with open(out, "w") as f:
        for ctx in contexts:
            try:
                output = run_teacher(reasoner, ctx)
            except Exception as e:  # noqa: BLE001 - one broken sample must not stop a long run; counted
                stats.add(ctx, f"teacher_exception_{type(e).__name__}")
                continue
            reason, iou = judge_chain(ctx, output, cfg.iou_keep)
            if reason is None and any(DO_NOT_TRAIN in w for w in getattr(output, "warnings", ())):
                reason = "twin_lacks_fact"  # right answer, but the twin text cannot justify it
            stats.add(ctx, reason, len(output.rollout.plans) if output.rollout else 0)
            if reason is None:
                f.write(json.dumps(make_record(ctx, output, iou, cfg.causal_clean)) + "\n")
            if stats.seen % 200 == 0:
                # stats are rewritten as the run goes, so an interrupted run still reports them
                stats.wall_s = time.time() - t0
                Path(str(out) + ".stats.json").write_text(json.dumps(stats.to_json(), indent=2))
                if log:
                    log(f"chains: {stats.seen} seen, {stats.kept} kept, {time.time() - t0:.0f} s")
    stats.wall_s = time.time() - t0
    Path(str(out) + ".stats.json").write_text(json.dumps(stats.to_json(), indent=2))
    return stats


class ContextCache:
    """record -> :class:`QueryContext`, rebuilding a sim sample once for all its queries.

    Keeps the contexts of the ``max_samples`` most recently used samples (a context holds a
    frame and a twin, ~1 MB at 320x240).
    """

    def __init__(self, n_frames: int = 30, twin_backend: str = "sim", max_samples: int = 256):
        self.n_frames = n_frames
        self.twin_backend = twin_backend
        self.max_samples = max_samples
        self._cache: "dict[tuple, list[QueryContext]]" = {}

    def __call__(self, record: dict) -> QueryContext:
        key = (record["sample"], int(record["seed"]), record["split"])
        if key not in self._cache:
            if len(self._cache) >= self.max_samples:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = contexts_of_sample(key[0], key[1], key[2], self.n_frames, self.twin_backend)
        else:
            self._cache[key] = self._cache.pop(key)  # most recently used last
        # The query is taken from the record (query wording may have changed since), the twin
        # and frame from the rebuild, which must show exactly the recorded twin text.
        same = [c for c in self._cache[key] if c.frame_index == int(record["frame_index"])]
        if not same or same[0].twin_text != record["twin_text"]:
            raise ContextMismatchError(
                f"chain {record['id']}: the rebuilt twin differs from the recorded one (sim or twin code "
                "changed since the chains were generated); regenerate the chains"
            )
        from dataclasses import replace

        from frs_ros.sim.types import Query

        q = Query(text=record["query"], kind=record["kind"], target_ids=list(record["target_sim_ids"]),
                  difficulty=int(record["difficulty"]), is_sentence=bool(record.get("is_sentence", False)),
                  template_id=record.get("template_id", ""), split=record["split"])
        id_masks, gt = record_masks(record)
        return replace(same[0], query=q, query_index=int(record["query_index"]), gt_mask=gt,
                       id_masks={k: v.decode() for k, v in id_masks.items()})
