"""The query API: ``ReasonSegEngine(config).answer(query, twin, frame) -> Answer``.

The engine serialises the twin, runs the configured backend (``hf`` LM or ``oracle`` teacher)
under a lock, turns the answered track ids into :class:`Target` s (mask, box, depth, centroid)
and fills timings, token counts, status and error. It never imports ROS; the reasoner node
wraps it.
"""

from __future__ import annotations

import threading
import time
import unicodedata
from typing import Any, Callable, Mapping, Optional, Union

import numpy as np

from frs_ros.camera import Frame
from frs_ros.masks import rle_decode
from frs_ros.reasoning.base import FeedbackCallback, Reasoner, ReasonerOutput, ToolExecutor
from frs_ros.reasoning.config import InvalidQueryError, ReasonerConfig
from frs_ros.reasoning.outcome import Outcome
from frs_ros.reasoning.rollout import UnknownTrackIdError, check_answer_ids
from frs_ros.reasoning.types import Answer, Target, ToolCall
from frs_ros.twin.types import DigitalTwin

#: Order of stages in ``Answer.timings_s`` (and the action's ``stage_names``).
STAGE_ORDER = ("serialise", "prefill", "decode", "tools", "resume", "masks")


def build_reasoner(config: ReasonerConfig, *, truth: Any = None) -> Reasoner:
    """Factory: the backend named by ``config.backend`` ('hf' loads the model now and runs it on
    ``config.runtime``, see :func:`frs_ros.reasoning.lm.build_lm`; a lean runtime keeps its own
    copy of the weights, so the loaded HF model is freed when this returns).

    truth: the oracle's ground truth (a ``frs_ros.sim.types.QueryBook``); other backends ignore it.
    """
    if config.backend == "hf":
        from frs_ros.reasoning.hf_backend import HFReasoner

        return HFReasoner(config)
    if config.backend == "oracle":
        from frs_ros.reasoning.oracle import OracleReasoner

        return OracleReasoner(config, truth=truth)
    raise ValueError(f"unknown reasoner backend {config.backend!r}")


def default_twin_serialiser(twin: DigitalTwin) -> str:
    """The twin module's compact text (``frs_ros.twin.serialize.twin_to_text``)."""
    from frs_ros.twin.serialize import twin_to_text

    return twin_to_text(twin)


def default_tool_executor(twin: DigitalTwin, frame: Optional[Frame]) -> ToolExecutor:
    """Tools over this twin and frame (``frs_ros.twin.tools.run_tool``; no labeler, so
    ``detect`` reports that it needs one). Nodes pass an executor bound to their tracker."""
    from frs_ros.twin.tools import run_tool

    def execute(call: ToolCall) -> str:
        return run_tool(call, twin, frame)

    return execute


def validate_query(query: Any, max_chars: int) -> str:
    """Return the query or raise :class:`InvalidQueryError` with what to change."""
    if not isinstance(query, str):
        raise InvalidQueryError(f"the query must be a str, got {type(query).__name__}")
    # Blank = whitespace and invisible format characters (Unicode Cf: U+200B zero-width space, U+FEFF, U+2060, ...).
    if not "".join(c for c in query if unicodedata.category(c) != "Cf").strip():
        raise InvalidQueryError("the query is empty (only blanks or invisible characters such as U+200B): describe the "
                                "object(s) to find, e.g. 'the red mug'")
    if len(query) > max_chars:
        raise InvalidQueryError(
            f"the query has {len(query)} characters, more than max_query_chars={max_chars}: shorten it"
        )
    return query


def target_from_object(twin: DigitalTwin, track_id: int) -> Target:
    """A :class:`Target` from the twin object ``track_id`` (mask decoded to ``(H, W)`` bool)."""
    obj = twin.get(track_id)
    return Target(
        track_id=obj.track_id,
        label=obj.label,
        score=float(obj.score),
        mask=rle_decode(obj.mask),
        box=tuple(int(v) for v in obj.box),  # type: ignore[arg-type]
        depth=obj.depth,
        centroid_m=np.asarray(obj.centroid_m, dtype=float).copy(),
    )


class ReasonSegEngine:
    """Thread-safe reasoning-segmentation engine.

    config: :class:`ReasonerConfig` or a mapping for ``ReasonerConfig.from_dict``.
    reasoner: an already built backend (tests, a shared model); default ``build_reasoner(config)``.
    twin_serialiser: twin -> text for the prompt; default the twin module's ``twin_to_text``.
    """

    def __init__(
        self,
        config: Union[ReasonerConfig, Mapping[str, Any], None] = None,
        *,
        reasoner: Optional[Reasoner] = None,
        twin_serialiser: Optional[Callable[[DigitalTwin], str]] = None,
    ) -> None:
        if not isinstance(config, ReasonerConfig):
            config = ReasonerConfig.from_dict(config)
        self.config = config
        self.reasoner = reasoner if reasoner is not None else build_reasoner(config)
        # The two optional Reasoner attributes, read once here so that callers (the node) do not
        # probe the reasoner: backends without an LM (the oracle, test stubs) have neither.
        #: how the reasoner runs, for logs ('' for backends without an LM runtime)
        self.runtime: str = str(getattr(self.reasoner, "runtime", ""))
        #: why that runtime is not the configured one ('' when it is)
        self.runtime_warning: str = str(getattr(self.reasoner, "runtime_warning", ""))
        self.serialise = twin_serialiser or default_twin_serialiser
        self._lock = threading.Lock()
        if config.backend in ("hf", "oracle") and config.use_tools:
            # the match() tool's sentence embedder (~1 s, ~90 MB; 12.8 s once on a loaded 2-core
            # machine) and its reference texts: loaded now, not inside the first goal that asks for
            # a use (the oracle teacher calls match() too)
            from frs_ros.twin.tools import warm_match

            try:
                warm_match()
            except Exception:  # noqa: BLE001 - no embedder (the core install): the oracle answers without match()
                if config.backend == "hf":
                    raise

    def answer(
        self,
        query: str,
        twin: DigitalTwin,
        frame: Optional[Frame],
        *,
        max_targets: int = 0,
        cancel: Optional[threading.Event] = None,
        on_feedback: Optional[FeedbackCallback] = None,
        tool_executor: Optional[ToolExecutor] = None,
    ) -> Answer:
        """Answer ``query`` about ``twin`` (and the ``frame`` it was built from).

        max_targets: keep at most this many targets (0 = no limit).
        cancel: set it from another thread to stop between tokens (status 'cancelled').
        on_feedback: streaming callback (stage, rollout so far, generated tokens).
        tool_executor: runs ``<plan>`` calls; default ``run_tool`` on this twin and frame.
        Raises :class:`InvalidQueryError` for a bad query and ``ValueError`` for a frame that
        does not belong to the twin; every other failure comes back as ``Answer.status``.
        """
        validate_query(query, self.config.max_query_chars)
        if max_targets < 0:
            raise ValueError(f"max_targets must be >= 0 (0 = no limit), got {max_targets}")
        if frame is not None and frame.shape != twin.image_size:
            raise ValueError(f"the frame is {frame.shape} but the twin's masks are {twin.image_size}: use the twin's frame")
        t_start = time.perf_counter()
        empty = np.zeros(twin.image_size, dtype=bool)
        if not self._acquire(cancel):
            return Answer(query=query, targets=[], mask=empty, reasoning="", status=Outcome.CANCELLED,
                          error="the query was cancelled while waiting for the reasoner", timings_s={"total": time.perf_counter() - t_start})
        try:
            t = time.perf_counter()
            twin_text = self.serialise(twin)
            t_serialise = time.perf_counter() - t
            if not self.config.use_tools:
                tools = None
            else:
                tools = tool_executor if tool_executor is not None else _try_default_tools(twin, frame)
            out: ReasonerOutput = self.reasoner.reason(
                query, twin, twin_text, frame, tools,
                max_targets=max_targets, cancel=cancel, on_feedback=on_feedback,
            )
        finally:
            self._lock.release()
        timings = {"serialise": t_serialise}
        timings.update(out.timings_s)
        ans = Answer(
            query=query, targets=[], mask=empty, reasoning=out.text, rollout=out.rollout,
            prompt_tokens=out.prompt_tokens, generated_tokens=out.generated_tokens, cached_tokens=out.cached_tokens,
            status=out.status, error=out.error, warnings=list(out.warnings),
        )
        if out.status is Outcome.OK and out.rollout is not None:
            t = time.perf_counter()
            try:
                ids = list(out.rollout.answer_ids)
                check_answer_ids(ids, twin.ids())
                if max_targets and len(ids) > max_targets:
                    ids = ids[:max_targets]
                ans.targets = [target_from_object(twin, i) for i in ids]
                for tg in ans.targets:
                    ans.mask |= tg.mask
            except UnknownTrackIdError as e:
                ans.status, ans.error, ans.targets = Outcome.UNKNOWN_ID, str(e), []
            timings["masks"] = time.perf_counter() - t
        timings["total"] = time.perf_counter() - t_start
        ans.timings_s = timings
        return ans

    def _acquire(self, cancel: Optional[threading.Event]) -> bool:
        while not self._lock.acquire(timeout=0.05):
            if cancel is not None and cancel.is_set():
                return False
        return True


def _try_default_tools(twin: DigitalTwin, frame: Optional[Frame]) -> Optional[ToolExecutor]:
    try:
        return default_tool_executor(twin, frame)
    except ImportError:  # twin tools need OpenCV; without it the reasoner answers without tools
        return None
