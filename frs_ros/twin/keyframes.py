"""Keyframe runners: where the heavy models of the twin (segmentation + labels) run.

``BackgroundKeyframes`` is a worker thread with one keyframe in flight at a time: ``submit`` hands
it a frame and returns at once, ``poll`` returns the finished result (or None) without waiting.
The tracker's per-frame path therefore never waits for a model; it only merges a result when one
has landed. ``DelayedKeyframes`` computes the keyframe at ``submit`` but releases it only
``delay_frames`` polls later: the same merge, with a model latency expressed in frames, for
deterministic evaluation (``frs_ros.twin.report --jf``) and tests.

``BackgroundKeyframes`` also runs depth from colour (``depth_runs: background``): the same one-job
worker with ``run=depth_run(estimator)``, whose result is a ``DepthResult``.

ROS-free; threads only.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from frs_ros.camera import Frame

#: what a keyframe computes from its frame: (masks (H, W) bool, per-mask label candidates or None),
#: or for a video refresh (masks, None, the track id of each mask)
KeyframeWork = Callable[[Frame], tuple[list[np.ndarray], Optional[list[list[tuple[str, float]]]]]]


@dataclass
class KeyframeResult:
    """One finished keyframe.

    frame: the keyframe (frame k); masks: ``(H, W)`` bool masks of frame k (no identities);
    labels: per mask, labeler ``(label, score)`` candidates best first, None without a labeler;
    model_s [s]: wall time of the models; submitted_s / landed_s [s]: ``time.monotonic()`` at
    submit and when the result was ready; error: the exception text when the models failed.
    """

    frame: Frame
    masks: list[np.ndarray]
    labels: Optional[list[list[tuple[str, float]]]]
    model_s: float
    submitted_s: float
    landed_s: float
    error: Optional[str] = None
    track_ids: Optional[list[int]] = None  # a video refresh: the track of each mask (None: segmentation)

    @property
    def latency_s(self) -> float:
        """Submit -> result ready [s] (queueing + models)."""
        return self.landed_s - self.submitted_s


def _run(work: KeyframeWork, frame: Frame, submitted: float) -> KeyframeResult:
    t0 = time.monotonic()
    ids = None
    try:
        out = work(frame)
        masks, labels = out[0], out[1]
        ids = out[2] if len(out) > 2 else None  # (masks, None, track ids): a video refresh
        err = None
    except Exception as exc:  # noqa: BLE001 - reported through the result, the tracker keeps tracking
        masks, labels, err = [], None, f"{type(exc).__name__}: {exc}"
    t1 = time.monotonic()
    return KeyframeResult(frame=frame, masks=masks, labels=labels, model_s=t1 - t0, submitted_s=submitted,
                          landed_s=t1, error=err, track_ids=ids)


@dataclass
class DepthResult:
    """One finished depth-from-colour estimate (``depth_runs: background``).

    frame: the frame it was estimated on (frame j); depth: ``(H, W)`` float32 [m, or relative
    units when ``kind`` is "relative"], None when the model failed; kind: the estimator's
    "metric" / "relative"; model_s / submitted_s / landed_s / error as in ``KeyframeResult``.
    """

    frame: Frame
    depth: Optional[np.ndarray]
    kind: str
    model_s: float
    submitted_s: float
    landed_s: float
    error: Optional[str] = None

    @property
    def latency_s(self) -> float:
        """Submit -> result ready [s] (queueing + model)."""
        return self.landed_s - self.submitted_s


def depth_run(estimator) -> Callable[[Frame, float], DepthResult]:
    """The job of a depth worker: ``estimator.estimate(frame)`` -> ``(depth, kind)``, timed; an
    exception becomes ``DepthResult.error`` (the tracker keeps tracking without depth)."""

    def run(frame: Frame, submitted: float) -> DepthResult:
        t0 = time.monotonic()
        try:
            d, kind = estimator.estimate(frame)
            d, err = np.asarray(d, np.float32), None
        except Exception as exc:  # noqa: BLE001 - reported through the result
            d, kind, err = None, "", f"{type(exc).__name__}: {exc}"
        t1 = time.monotonic()
        return DepthResult(frame=frame, depth=d, kind=kind, model_s=t1 - t0, submitted_s=submitted, landed_s=t1,
                           error=err)

    return run


class BackgroundKeyframes:
    """One worker thread; one job in flight (``submit`` refuses a second one).

    work: the keyframe models (``KeyframeWork``; results are ``KeyframeResult``), or ``run``: any
    job ``(frame, submitted monotonic s) -> result`` (``depth_run``). name: the thread's name.
    nice: niceness added to the worker thread (Linux; ``os.setpriority`` on its thread id) so that
    the per-frame path gets the CPU first; threads the models start from the worker inherit it.
    """

    def __init__(self, work: Optional[KeyframeWork] = None, nice: int = 0, *,
                 run: Optional[Callable[[Frame, float], object]] = None, name: str = "frs_twin_keyframes") -> None:
        if (work is None) == (run is None):
            raise ValueError("BackgroundKeyframes needs exactly one of work= (keyframe models) or run= (any job)")
        self._run = run if run is not None else (lambda frame, submitted: _run(work, frame, submitted))
        self._nice = int(nice)
        self._cv = threading.Condition()
        self._job: Optional[tuple[Frame, float]] = None
        self._done = None  # the finished result (KeyframeResult, or what ``run`` returns)
        self._in_flight: Optional[Frame] = None
        self._in_flight_since = 0.0
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    @property
    def busy(self) -> bool:
        """A keyframe is queued or computing, or finished and not yet polled."""
        with self._cv:
            return self._in_flight is not None or self._done is not None

    def in_flight(self) -> tuple[Optional[Frame], float]:
        """(the frame being computed or None, seconds since it was submitted)."""
        with self._cv:
            f = self._in_flight
            return f, (time.monotonic() - self._in_flight_since) if f is not None else 0.0

    def submit(self, frame: Frame) -> bool:
        """Start a keyframe of ``frame``; False (nothing started) while one is in flight."""
        with self._cv:
            if self._closed or self._in_flight is not None or self._done is not None:
                return False
            now = time.monotonic()
            self._job, self._in_flight, self._in_flight_since = (frame, now), frame, now
            self._cv.notify_all()
            return True

    def poll(self):
        """The finished result (``KeyframeResult`` / ``DepthResult``), once (None while computing or
        idle). Never waits."""
        with self._cv:
            done, self._done = self._done, None
            return done

    def wait(self, timeout_s: float) -> bool:
        """Block until the keyframe in flight has finished (tests, benchmarks); True if it has."""
        with self._cv:
            return self._cv.wait_for(lambda: self._in_flight is None or self._closed, timeout=timeout_s)

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the worker (a keyframe computing finishes first, up to ``timeout_s``)."""
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        self._thread.join(timeout=timeout_s)

    def _loop(self) -> None:
        if self._nice > 0:
            try:  # Linux: niceness is per thread; this thread's id is its own "process" id here
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), os.getpriority(os.PRIO_PROCESS, 0) + self._nice)
            except (OSError, AttributeError):
                pass  # not Linux / not permitted: same priority as the per-frame path
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._job is not None or self._closed)
                if self._closed:
                    return
                (frame, submitted), self._job = self._job, None
            result = self._run(frame, submitted)
            with self._cv:
                self._done, self._in_flight = result, None
                self._cv.notify_all()


class DelayedKeyframes:
    """Evaluation runner: the keyframe is computed at ``submit`` and lands ``delay_frames`` polls
    later (one poll per tracker update), i.e. a model latency of ``delay_frames`` camera frames;
    a video refresh (``keyframe_video``) lands ``video_delay_frames`` later (default: the same)."""

    def __init__(self, work: KeyframeWork, delay_frames: int, video_delay_frames: Optional[int] = None) -> None:
        for name, d in (("delay_frames", delay_frames), ("video_delay_frames", video_delay_frames)):
            if d is not None and d < 1:
                raise ValueError(f"{name} must be >= 1 (a result lands at the earliest on the next frame), got {d}")
        self._work = work
        self.delay_frames = int(delay_frames)
        self.video_delay_frames = int(video_delay_frames) if video_delay_frames is not None else self.delay_frames
        self._pending: Optional[KeyframeResult] = None
        self._polls = 0

    @property
    def busy(self) -> bool:
        return self._pending is not None

    def in_flight(self) -> tuple[Optional[Frame], float]:
        return (self._pending.frame if self._pending is not None else None), 0.0

    def submit(self, frame: Frame) -> bool:
        if self._pending is not None:
            return False
        self._pending, self._polls = _run(self._work, frame, time.monotonic()), 0
        return True

    def poll(self) -> Optional[KeyframeResult]:
        if self._pending is None:
            return None
        self._polls += 1
        delay = self.video_delay_frames if self._pending.track_ids is not None else self.delay_frames
        if self._polls < delay:
            return None
        done, self._pending = self._pending, None
        return done

    def wait(self, timeout_s: float) -> bool:
        return True

    def close(self, timeout_s: float = 5.0) -> None:
        self._pending = None
