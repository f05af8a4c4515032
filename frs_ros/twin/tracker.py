"""Incremental maintenance of the digital twin across frames.

Which model runs when (see also docs/twin.md):
- segmenter.propagate: every frame (cheap: SAM-2 video memory / sim ids); if the backend
  cannot propagate, segmenter.segment runs every frame and masks are associated to tracks
  by mask IoU + centroid distance.
- segmenter.segment (SAM-2 automatic masks, expensive): keyframes only — every
  ``keyframe_interval`` frames, on the first frame, when there are no tracks, or when the
  tracked visible area drops below ``coverage_drop`` x its value at the last keyframe, or on a
  scene event (``keyframe_events``: a hidden track uncovered, an object appearing; ``_scene_event``).
- labeler.label (OWLv2, expensive): keyframes (all visible tracks, votes accumulate) and
  any frame that creates new tracks (only those).
- depth estimator (DepthAnything V2): only for frames without a depth image, and only when
  ``config.depth == 'depth_anything_v2'``.
"""

from __future__ import annotations

import copy
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from frs_ros.camera import Frame
from frs_ros.masks import mask_box, mask_iou, rle_encode
from frs_ros.twin.backends import TwinBackends, build_twin_backends
from frs_ros.twin.config import TwinConfig
from frs_ros.twin.ego import apply as ego_apply
from frs_ros.twin.ego import ransac_rigid
from frs_ros.twin.keyframes import BackgroundKeyframes, depth_run
from frs_ros.twin.depth import METRIC_SOURCES, depth_stats, mask_centroid_m, velocity_from_history
from frs_ros.twin.types import DepthStats, DigitalTwin, TwinObject

#: label of a track no labeler has named (labeler 'none', or no detection overlapped it yet)
UNLABELED = "object"


def _mean_lab(rgb: Optional[np.ndarray], mask: np.ndarray) -> np.ndarray:
    """Mean colour ``(3,)`` of the masked pixels in CIE Lab (NaN without an image or pixels)."""
    if rgb is None or not mask.any():
        return np.full(3, np.nan)
    import cv2

    mean = rgb[mask].mean(axis=0).astype(np.float32) / 255.0
    return cv2.cvtColor(mean[None, None], cv2.COLOR_RGB2LAB)[0, 0].astype(float)


def _phys_size(area_px: int, z: float, intrinsics) -> float:
    """Area [m^2] a mask of ``area_px`` pixels covers at depth ``z`` [m] (NaN when z is unknown)."""
    if not (math.isfinite(z) and z > 0) or area_px <= 0:
        return math.nan
    return float(area_px) * z * z / (float(intrinsics.fx) * float(intrinsics.fy))


#: keyframe_events: depth change [m] that counts as "nearer" / "its own depth again"
_EVENT_DEPTH_M = 0.15


#: discover: at most this many provisional tracks at a time, visible or lost (the largest blobs
#: first); each costs the per-frame path a mask, and until a keyframe lands nothing else bounds them
_DISCOVER_MAX = 8
#: discover: how far [px, for a 320 px image side] a blob that touches no track may reach across an
#: occluder to join one (``Tracker._reach``); 16 spans the 14 px picture frame of val episode 10009
_REACH_PX = 16


def _z_of(o: TwinObject) -> float:
    """A track's depth [m]: its centroid's z (NaN without metric depth)."""
    return float(o.centroid_m[2])


@dataclass
class _Track:
    """Tracker-private state of one track; ``obj`` is the persistent public record."""

    obj: TwinObject
    mask: np.ndarray  # (H, W) bool, last visible mask
    votes: dict[str, float] = field(default_factory=dict)  # label -> summed score
    label_events: int = 0  # how many times a labeler looked at this track
    # appearance at the last keyframe that segmented it (re-identification cues, ``_reid``)
    lab: np.ndarray = field(default_factory=lambda: np.full(3, np.nan))  # mean CIE Lab colour
    key_size: float = math.nan  # largest physical area [m^2] at a keyframe (NaN without metric depth)
    key_area_px: int = 0  # largest keyframe area [px]



def _best_overlap(mask: np.ndarray, observed: dict) -> tuple[Optional[int], float]:
    """``(track id, IoU)`` of the mask in ``observed`` (track id -> mask) that ``mask`` overlaps
    most; ``(None, 0.0)`` when it overlaps none (first best wins a tie)."""
    best, best_iou = None, 0.0
    for tid, m in observed.items():
        iou = mask_iou(mask, m, empty=0.0)
        if iou > best_iou:
            best, best_iou = tid, iou
    return best, best_iou


def _median_z(d: np.ndarray, mask: np.ndarray) -> float:
    """Median of the valid depths [m] of ``d`` under ``mask``; NaN when none."""
    v = d[mask]
    v = v[np.isfinite(v)]
    return float(np.median(v)) if v.size else math.nan


def _touching(ring: np.ndarray, z: float, d: np.ndarray, observed: dict[int, np.ndarray],
              z_of: dict[int, float]) -> Optional[int]:
    """The track whose mask touches ``ring`` (H, W) bool most among those at depth ``z`` [m] (median
    of the mask's valid depths in ``d`` within ``_EVENT_DEPTH_M``; cached in ``z_of``), or None."""
    best, touch = None, 0
    for tid, m in observed.items():
        c = int(np.count_nonzero(m & ring))
        if c <= touch:
            continue
        if tid not in z_of:
            z_of[tid] = _median_z(d, m)
        if abs(z_of[tid] - z) <= _EVENT_DEPTH_M:
            best, touch = tid, c
    return best


def _union(masks, shape: Optional[tuple[int, int]] = None) -> Optional[np.ndarray]:
    """Pixel-wise OR of ``masks`` (a new array); when there are none, all False of ``shape``, or
    None without one."""
    out = None
    for m in masks:
        out = m.copy() if out is None else out | m
    if out is None and shape is not None:
        out = np.zeros(shape, bool)
    return out


def _mostly_outside(mask: np.ndarray, cover: Optional[np.ndarray]) -> bool:
    """Less than half of ``mask`` lies inside ``cover`` (None covers nothing)."""
    return cover is None or (mask & cover).sum() < 0.5 * mask.sum()


def _greedy_pairs(pairs, n_cands: int) -> tuple[dict[int, int], list[int]]:
    """Greedy one-to-one assignment over ``(score, candidate index, track id)`` pairs, best first
    (the caller sorts): ``({track_id: candidate index}, unmatched candidate indices)``."""
    used_c, used_t, matched = set(), set(), {}
    for _, ci, tid in pairs:
        if ci in used_c or tid in used_t:
            continue
        used_c.add(ci)
        used_t.add(tid)
        matched[tid] = ci
    return matched, [i for i in range(n_cands) if i not in used_c]

class Tracker:
    """Keeps a ``DigitalTwin`` up to date from a stream of frames. Thread-safe.

    ``update(frame)`` ingests one frame and returns a snapshot twin (later updates do not
    mutate it). Track ids start at 1 and are never reused.

    keyframe_runner: optional factory ``work -> runner`` for where keyframes run (e.g.
    ``lambda w: DelayedKeyframes(w, 5)`` to evaluate a model latency of 5 frames); by default
    ``config.keyframes`` decides (inline, or a ``BackgroundKeyframes`` worker thread).
    """

    def __init__(self, config: Optional[TwinConfig] = None, backends: Optional[TwinBackends] = None,
                 keyframe_runner=None) -> None:
        self.config = config or TwinConfig()
        self.backends = backends if backends is not None else build_twin_backends(self.config)
        self._lock = threading.RLock()
        self._tracks: dict[int, _Track] = {}
        self._next_id = 1
        self._frames_since_key = 0
        self._key_area = 0
        # keyframe_events: depth of the previous frame, pixels no track explained there, hidden
        # tracks whose place was already uncovered (an event fires once, on the change)
        self._prev_depth: Optional[np.ndarray] = None  # (H, W) [m], also for ``discover``
        self._prev_unexplained: Optional[np.ndarray] = None  # (H, W) bool: no visible track there
        self._uncovered: set[int] = set()
        self._provisional: set[int] = set()  # ``discover``ed tracks no keyframe has segmented yet
        self._start_ns: Optional[int] = None
        self._latest_twin: Optional[DigitalTwin] = None
        self._latest_frame: Optional[Frame] = None
        self._latest_depth: tuple[Optional[np.ndarray], str] = (None, "none")
        self._T = np.eye(4)  # motion frame <- current camera optical frame
        self._motion_frame = "anchor" if self.config.ego_motion else "camera"
        self._ego_inliers = 0
        self.stats = {"frames": 0, "keyframes": 0, "segment_calls": 0, "label_calls": 0, "depth_calls": 0,
                      "depth_errors": 0, "keyframes_submitted": 0, "keyframe_errors": 0, "event_keyframes": 0,
                      "discovered": 0, "video_refreshes": 0}
        # which frame each fact comes from: stamp of the keyframe that last set each track's mask
        self._mask_ns: dict[int, int] = {}
        self._keyframe_ns = 0  # stamp of the last merged keyframe
        # background keyframes (``keyframes: background``): the runner, and its measured cadence
        self._runner = None
        if keyframe_runner is not None:
            self._runner = keyframe_runner(self._keyframe_work)
        elif self.config.keyframes == "background":
            self._runner = BackgroundKeyframes(self._keyframe_work, nice=self.config.keyframe_nice)
        self._submit = False
        self._submit_segment = True  # the keyframe to submit must segment (not a video refresh)
        # keyframe_video: refreshes left before the next segmentation, the tracks' masks that seed the
        # segmenter's video session (frame, {track id: mask}) after a segmentation, and each
        # submitted job's kind by frame stamp (read by the worker)
        self._video_left = 0
        self._video_seed: Optional[tuple[Frame, dict[int, np.ndarray]]] = None
        self._jobs: dict[int, tuple] = {}
        self._held = False  # hold_keyframes(True): no new background keyframe starts
        self._next_key_s = 0.0  # monotonic time before which no keyframe starts (CPU budget)
        self._last_latency_s = math.nan
        self._model_s = math.nan
        self._lag_frames = 0
        self.keyframe_error: Optional[str] = None
        # depth from colour in the background (``depth_runs: background``): the worker, the last
        # estimate carried to the latest frame, and which frame it was estimated on
        self._depth_runner = None
        if (self.config.depth == "depth_anything_v2" and self.config.depth_runs == "background"
                and self.backends.depth is not None):
            self._depth_runner = BackgroundKeyframes(run=depth_run(self.backends.depth), nice=self.config.keyframe_nice,
                                                     name="frs_twin_depth")
        self._bg_depth: Optional[np.ndarray] = None  # (H, W) of the latest frame
        self._bg_kind = ""
        self._depth_ns = 0  # stamp of the frame the carried depth was estimated on (0 = none yet)
        self._depth_latency_s = math.nan
        self._depth_lag_frames = 0
        self._depth_frames = 0  # frames since the estimate in flight was submitted
        self.depth_error: Optional[str] = None

    # ------------------------------------------------------------------ public API
    def latest(self) -> Optional[DigitalTwin]:
        """The twin of the last update (None before the first)."""
        with self._lock:
            return self._latest_twin

    def snapshot(self) -> tuple[Optional[DigitalTwin], Optional[Frame]]:
        """The latest twin and the frame it was built from, taken together (consistent pair)."""
        with self._lock:
            return self._latest_twin, self._latest_frame

    def latest_frame(self) -> Optional[Frame]:
        with self._lock:
            return self._latest_frame

    def latest_depth(self) -> tuple[Optional[np.ndarray], str]:
        """Depth used for the last frame ``((H, W) float32 or None, source)``."""
        with self._lock:
            return self._latest_depth

    def track_mask(self, track_id: int) -> np.ndarray:
        """Last visible mask ``(H, W)`` bool of a track; KeyError if unknown."""
        with self._lock:
            return self._track(track_id).mask.copy()

    def update(self, frame: Frame) -> DigitalTwin:
        """Ingest one frame; return the twin of that frame.

        Inline keyframes run the segmenter/labeler here; background keyframes (``keyframes:
        background``) only merge a result that has already landed, so this costs the propagator,
        depth statistics and bookkeeping (the cheap path) and never waits for a model.
        """
        with self._lock:
            cfg = self.config
            t = int(frame.stamp_ns)
            if self._start_ns is None:
                self._start_ns = t
            seg = self.backends.segmenter
            prop = self.backends.tracks_with
            # every frame, with or without tracks: flow/sam2 compose motion for a keyframe in flight
            moved = prop.propagate(frame)
            depth, source = self._depth_for(frame)  # after propagate: background depth is carried by its flow
            observed: dict[int, np.ndarray] = {}
            key_ids: set[int] = set()  # tracks whose mask in this frame is a segmentation (keyframe) mask
            new_masks: list[np.ndarray] = []
            new_labels: list[Optional[list]] = []  # background: labeler candidates of each new mask
            votes: dict[int, list] = {}  # background: track id -> labeler candidates of its keyframe mask
            keyframe = False  # segmentation merged into this frame
            refresh = False  # a background video refresh merged into this frame (keyframe_video)
            dropped: list[int] = []  # provisional tracks a keyframe did not confirm
            discovered: list[np.ndarray] = []  # ``discover``: new objects found by depth on the cheap path
            resync = False  # the propagator must take the tracks' masks (some grew on the cheap path)
            mask_ns = t  # stamp of the frame the merged masks were segmented on
            if moved is None:
                # the propagator cannot propagate: segment every frame and associate
                self.stats["segment_calls"] += 1
                keyframe = not self._tracks or self._frames_since_key + 1 >= cfg.keyframe_interval
                with self.backends.gate.hold("segmenter"):
                    cands = self._filter(seg.segment(frame))
                if cfg.reid:
                    assign, rest = self._reid(cands, frame, depth, source, list(self._tracks), {})
                else:
                    assign, rest = self._associate(cands, frame, depth, source, list(self._tracks))
                observed = {tid: cands[ci] for tid, ci in assign.items()}
                new_masks = [cands[i] for i in rest]
                key_ids = set(assign)
            else:
                observed = {
                    tid: np.asarray(m, bool) for tid, m in moved.items()
                    if tid in self._tracks and int(np.count_nonzero(m)) >= cfg.min_mask_area_px
                }
                # established tracks only: area found by ``discover`` must not hide what was lost
                area = sum(int(m.sum()) for tid, m in observed.items() if tid not in self._provisional)
                # coverage drop in THIS frame (objects left, or propagation lost them): segment now
                must_segment = not self._tracks or area < cfg.coverage_drop * self._key_area
                due = must_segment or self._frames_since_key + 1 >= cfg.keyframe_interval
                event = cfg.keyframe_events and self._scene_event(frame, depth, source, observed)
                if event and not due:
                    self.stats["event_keyframes"] += 1
                due = due or event
                if self._runner is None and due:
                    keyframe = True
                    self.stats["segment_calls"] += 1
                    with self.backends.gate.hold("segmenter"):
                        cands = self._filter(seg.segment(frame))
                    matched, rest = self._merge(cands, observed, frame, depth, source)
                    new_masks = [cands[i] for i in rest]
                    self._mask_ns.update({tid: t for tid in matched})
                    key_ids = set(matched)
                elif self._runner is not None:
                    landed = self._runner.poll()
                    if landed is not None and landed.track_ids is not None:
                        refresh = self._land(landed, frame)
                        if refresh:  # a video refresh: the tracks' own masks, identities known
                            mask_ns = int(landed.frame.stamp_ns)
                            key_ids = self._merge_refresh(landed, prop, observed)
                            self._mask_ns.update({tid: mask_ns for tid in key_ids})
                    elif landed is not None:
                        keyframe = self._land(landed, frame)
                        if keyframe:
                            mask_ns = int(landed.frame.stamp_ns)
                            cands, labels = self._landed_masks(landed, prop)
                            matched, rest = self._merge(cands, observed, frame, depth, source, labels)
                            new_masks = [cands[i] for i in rest]
                            key_ids = set(matched)
                            if labels is not None:
                                votes = {tid: labels[ci] for tid, ci in matched.items()}
                                new_labels = [labels[i] for i in rest]
                            self._mask_ns.update({tid: mask_ns for tid in matched})
                    if due and not self._held and not self._runner.busy and time.monotonic() >= self._next_key_s:
                        self._submit = True
                        self._submit_segment = must_segment or event or self._video_left <= 0
                if not keyframe and cfg.discover and self._propagates_by_motion():  # a refresh finds nothing new
                    grown, discovered = self._discover(depth, source, observed)
                    for tid, m in grown.items():
                        observed[tid] = observed[tid] | m
                    resync = bool(grown)
            if keyframe:
                self.stats["keyframes"] += 1
                self._keyframe_ns = mask_ns
                # segmented now: a track like any other; one the keyframe did not take although it was
                # found on or before the keyframe's frame is dropped (a part of an object the keyframe
                # gave to an established track, or nothing); later ones wait for the next keyframe
                for tid in sorted(self._provisional):
                    if tid in key_ids:
                        self._provisional.discard(tid)
                    elif self._tracks[tid].obj.first_seen_ns <= mask_ns:
                        del self._tracks[tid]
                        observed.pop(tid, None)
                        self._provisional.discard(tid)
                        dropped.append(tid)
            inline = self._runner is None or moved is None
            if keyframe and inline:
                self._frames_since_key = 0  # background: the count restarts when a keyframe is submitted
            else:
                self._frames_since_key += 1

            for tid, tr in self._tracks.items():
                if tid in observed:
                    self._observe(tr, observed[tid], frame, depth, source)
                elif tr.obj.visible:
                    tr.obj.visible = False
                    tr.obj.gaps_ns.append((t, t))  # gap opens; its end moves while lost
                else:
                    a, _ = tr.obj.gaps_ns[-1]
                    tr.obj.gaps_ns[-1] = (a, t)
            new_ids = []
            for i, m in enumerate(new_masks):
                if len(self._tracks) >= cfg.max_objects:
                    break
                tid = self._create(m, frame, depth, source)
                self._mask_ns[tid] = mask_ns
                new_ids.append(tid)
                key_ids.add(tid)
                if i < len(new_labels):
                    votes[tid] = new_labels[i]
            for m in sorted(discovered, key=lambda b: -int(np.count_nonzero(b))):
                # unlabelled until a keyframe sees them (no model runs on the cheap path)
                if len(self._tracks) >= cfg.max_objects or len(self._provisional) >= _DISCOVER_MAX:
                    break
                tid = self._create(m, frame, depth, source)
                self._mask_ns[tid] = t
                new_ids.append(tid)
                self._provisional.add(tid)
                self.stats["discovered"] += 1
            self._update_motion(frame, [tid for tid in observed if tid in self._tracks] + new_ids)
            if cfg.reid:
                for tid in key_ids:
                    if tid in self._tracks:
                        self._appearance(self._tracks[tid], frame)

            if inline:
                to_label = ([tid for tid in self._tracks if self._tracks[tid].obj.visible] if keyframe
                            else [tid for tid in new_ids if tid not in self._provisional])
                self._label(frame, to_label)
            else:
                to_label = [tid for tid in votes if tid in self._tracks]
                self._vote(votes, mask_ns)
            if cfg.colors:
                self._name_colors(frame, to_label)
            retired = self._retire(t) + dropped
            for tid in retired:
                self._mask_ns.pop(tid, None)
                self._provisional.discard(tid)
            if keyframe or refresh or new_ids or retired or resync or moved is None:
                prop.set_tracks(frame, {tid: tr.mask for tid, tr in self._tracks.items() if tr.obj.visible})
            if retired:
                prop.forget(retired)
            if keyframe:
                self._key_area = sum(int(tr.mask.sum()) for tr in self._tracks.values() if tr.obj.visible)
            if keyframe and cfg.keyframe_video > 0:
                # the next refreshes propagate these tracks from this frame (their masks merged here)
                self._video_left = cfg.keyframe_video
                self._video_seed = (frame, {tid: tr.mask.copy() for tid, tr in self._tracks.items()
                                            if tr.obj.visible and tid not in self._provisional})
            if self._submit:
                # after set_tracks: the propagator's reference is this frame, where the keyframe is
                self._submit = False
                # _video_left > 0 only after a segmentation landed and left its seed: the first
                # refresh seeds the video session with it, the next ones carry that session on
                video = not self._submit_segment
                self._jobs = {int(frame.stamp_ns): ("video", self._video_seed) if video else ("segment",)}
                if video:
                    self._video_seed = None  # the worker's video session carries on from here
                    self._video_left -= 1
                if self._runner.submit(frame):
                    prop.mark(frame)
                    self.stats["keyframes_submitted"] += 1
                    self._frames_since_key = 0
            if cfg.keyframe_events or (cfg.discover and self._propagates_by_motion()):
                # what the next frame's "nearer than before" tests compare with
                vis = _union(tr.mask for tr in self._tracks.values() if tr.obj.visible)
                self._prev_depth = None if depth is None else np.asarray(depth, np.float32)
                self._prev_unexplained = ~vis if vis is not None else None
            self.stats["frames"] += 1
            self._latest_frame = frame
            self._latest_depth = (depth, source)
            self._latest_twin = self._snapshot(frame, source)
            return self._latest_twin

    def keyframe_status(self) -> dict:
        """Background keyframes: ``in_flight`` (bool), ``in_flight_s`` (age of the one computing
        [s]), ``keyframe_ns`` (stamp of the last merged keyframe, 0 = none), ``latency_s`` /
        ``model_s`` (of the last landed one [s], NaN before) and ``lag_frames`` (frames between
        its keyframe and the frame it was merged into), ``next_in_s`` (how long the CPU budget
        holds the next keyframe back [s]). With ``depth_runs: background`` also ``depth_ns``
        (stamp of the frame the latest frame's depth was estimated on, 0 = no depth yet),
        ``depth_latency_s`` (of the last estimate [s]) and ``depth_lag_frames`` (frames between
        its frame and the frame it landed on)."""
        with self._lock:
            f, age = self._runner.in_flight() if self._runner is not None else (None, 0.0)
            out = {"in_flight": f is not None, "in_flight_s": age, "keyframe_ns": self._keyframe_ns,
                   "latency_s": self._last_latency_s, "model_s": self._model_s, "lag_frames": self._lag_frames,
                   "next_in_s": max(0.0, self._next_key_s - time.monotonic())}
            if self._depth_runner is not None:
                out.update(depth_ns=self._depth_ns, depth_latency_s=self._depth_latency_s,
                           depth_lag_frames=self._depth_lag_frames)
            return out

    def hold_keyframes(self, hold: bool = True) -> None:
        """Background keyframes: while held, no new keyframe starts (the one in flight still lands
        and is merged). For a caller that wants the CPU for a while (a benchmark phase ending)."""
        with self._lock:
            self._held = bool(hold)

    def wait_keyframe(self, timeout_s: float) -> bool:
        """Block until the background keyframe in flight has finished computing (tests and
        benchmarks only: the per-frame path never calls it). True at once for inline keyframes."""
        return self._runner.wait(timeout_s) if self._runner is not None else True

    def wait_depth(self, timeout_s: float) -> bool:
        """Block until the background depth estimate in flight has finished (tests and benchmarks
        only, like ``wait_keyframe``). True at once without ``depth_runs: background``."""
        return self._depth_runner.wait(timeout_s) if self._depth_runner is not None else True

    def close(self) -> None:
        """Stop the background keyframe and depth workers (if any); the tracker can still be read."""
        if self._runner is not None:
            self._runner.close()
        if self._depth_runner is not None:
            self._depth_runner.close()

    def set_attributes(self, track_id: int, attributes: dict) -> None:
        """Merge tool-derived facts into a track (persist across frames)."""
        with self._lock:
            self._track(track_id).obj.attributes.update(attributes)
            self._sync_latest(track_id)

    def add_label_vote(self, track_id: int, label: str, score: float) -> None:
        """Add one label vote (e.g. from the detect tool) and re-vote."""
        with self._lock:
            tr = self._track(track_id)
            tr.votes[label] = tr.votes.get(label, 0.0) + float(score)
            tr.label_events += 1
            self._apply_votes(tr)
            self._sync_latest(track_id)

    def add_object(self, frame: Frame, mask: np.ndarray, label: str, score: float) -> int:
        """Create a track from an externally found mask (detect tool); returns its new id."""
        with self._lock:
            depth, source = self._latest_depth if frame is self._latest_frame else self._depth_for(frame)
            tid = self._create(np.asarray(mask, bool), frame, depth, source)
            self._update_motion_single(tid)
            tr = self._tracks[tid]
            tr.votes[label] = float(score)
            tr.label_events = 1
            self._apply_votes(tr)
            self._mask_ns[tid] = int(frame.stamp_ns)
            self.backends.tracks_with.set_tracks(
                frame, {i: t.mask for i, t in self._tracks.items() if t.obj.visible}
            )
            if self._latest_twin is not None:
                self._latest_twin.objects.append(self._public(tr))
            return tid

    # ------------------------------------------------------------------ internals
    def _track(self, track_id: int) -> _Track:
        try:
            return self._tracks[int(track_id)]
        except (KeyError, ValueError, TypeError):
            raise KeyError(f"no object with track id {track_id} (ids: {sorted(self._tracks)})") from None

    def _sync_latest(self, track_id: int) -> None:
        if self._latest_twin is None:
            return
        for i, o in enumerate(self._latest_twin.objects):
            if o.track_id == track_id:
                self._latest_twin.objects[i] = self._public(self._tracks[track_id])

    def _depth_for(self, frame: Frame) -> tuple[Optional[np.ndarray], str]:
        if frame.depth is not None:
            return frame.depth, "sensor"
        if self._depth_runner is not None:
            return self._background_depth(frame)
        if self.config.depth == "depth_anything_v2" and self.backends.depth is not None:
            self.stats["depth_calls"] += 1
            d, kind = self.backends.depth.estimate(frame)
            return d, f"depth_anything_v2_{kind}"
        return None, "none"

    def _background_depth(self, frame: Frame) -> tuple[Optional[np.ndarray], str]:
        """``depth_runs: background`` (called after the propagator moved on to ``frame``): the last
        estimate carried to this frame by its flow, or the estimate that just landed brought forward
        from its own frame; then the worker, if idle, takes this frame. Never waits for the model."""
        prop = self.backends.tracks_with
        runner = self._depth_runner
        d = prop.carry(self._bg_depth) if self._bg_depth is not None else None
        self._depth_frames += 1
        landed = runner.poll()
        if landed is not None:
            if landed.error is not None or landed.depth is None:
                self.depth_error = landed.error  # kept tracking on the carried depth; the next frame is tried
                self.stats["depth_errors"] += 1
            else:
                fwd = prop.bring_forward_image(landed.depth, "depth")
                if fwd is not None and fwd.shape == frame.shape:
                    d, self._bg_kind = fwd, landed.kind
                    self._depth_ns = int(landed.frame.stamp_ns)
                    self._depth_latency_s = landed.latency_s
                    self._depth_lag_frames = self._depth_frames
                    self.stats["depth_calls"] += 1
        if not runner.busy and runner.submit(frame):
            prop.mark(frame, key="depth")
            self._depth_frames = 0
        self._bg_depth = d
        if d is None:
            self._depth_ns = 0
            return None, "none"
        return d, f"depth_anything_v2_{self._bg_kind}"

    def _scene_event(self, frame: Frame, depth, source: str, observed: dict[int, np.ndarray]) -> bool:
        """``keyframe_events``: has the scene changed in a way the propagator cannot follow?

        - uncovered: a hidden track (not propagated in this frame) whose last mask, moved to where
          its last position + velocity projects now, shows the track's own depth (within
          ``_EVENT_DEPTH_M``) on at least half of its pixels that no propagated mask covers -- the
          occluder left. Fires when a track becomes uncovered, not while it stays so.
        - appeared: something came nearer on pixels no track explains (``_nearer``).
        Needs metric depth (False without).
        """
        if depth is None or source not in METRIC_SOURCES:
            return False
        cfg = self.config
        d = np.asarray(depth, np.float32)
        h, w = d.shape
        explained = _union(observed.values(), d.shape)
        # --- appeared
        fired = self._nearer(d, ~explained) is not None
        # --- uncovered
        intr = frame.intrinsics
        t = int(frame.stamp_ns)
        T_inv = np.linalg.inv(self._T)
        now = set()
        for tid, tr in self._tracks.items():
            if tid in observed:
                continue
            o = tr.obj
            if not np.all(np.isfinite(o.centroid_m)) or o.centroid_m[2] <= 0:
                continue
            p_last = ego_apply(self._T, o.centroid_m) if not o.history else np.asarray(o.history[-1][1], float)
            v = np.asarray(o.velocity_mps, float)
            dt = max(0.0, (t - o.last_seen_ns) * 1e-9)
            p_pred = p_last + (v * dt if np.all(np.isfinite(v)) else 0.0)
            c = ego_apply(T_inv, p_pred)
            if not (np.all(np.isfinite(c)) and c[2] > 0):
                continue
            u_old = intr.fx * o.centroid_m[0] / o.centroid_m[2] + intr.cx
            v_old = intr.fy * o.centroid_m[1] / o.centroid_m[2] + intr.cy
            du = int(round(intr.fx * c[0] / c[2] + intr.cx - u_old))
            dv = int(round(intr.fy * c[1] / c[2] + intr.cy - v_old))
            ys, xs = np.nonzero(tr.mask)
            ys, xs = ys + dv, xs + du
            ok = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
            ys, xs = ys[ok], xs[ok]
            free = ~explained[ys, xs]
            if int(np.count_nonzero(free)) < cfg.min_mask_area_px:
                continue
            dz = d[ys[free], xs[free]]
            with np.errstate(invalid="ignore"):
                own = int(np.count_nonzero(np.abs(dz - c[2]) <= _EVENT_DEPTH_M))
            if own >= cfg.min_mask_area_px and own >= 0.5 * int(np.count_nonzero(free)):
                now.add(tid)
        fired = fired or bool(now - self._uncovered)
        self._uncovered = now
        return fired

    def _propagates_by_motion(self) -> bool:
        """The propagator moves masks by image motion (flow, sam2), so it cannot find an object that
        was not there before (the segmenter's own propagation and sim ids can; hold is a baseline)."""
        return self.config.propagator in ("flow", "sam2")

    def _nearer(self, depth: np.ndarray, unexplained: np.ndarray) -> Optional[np.ndarray]:
        """(H, W) uint8: pixels no track explains in this frame nor the previous one whose depth came
        ``_EVENT_DEPTH_M`` nearer since the previous frame, opened by a 5x5 square (edges that moved
        with the camera are thin); None when fewer than ``min_mask_area_px`` (or no previous frame)."""
        import cv2

        prev_d, prev_u = self._prev_depth, self._prev_unexplained
        if prev_d is None or prev_u is None or prev_d.shape != depth.shape:
            return None
        with np.errstate(invalid="ignore"):
            nearer = (prev_d - depth > _EVENT_DEPTH_M) & unexplained & prev_u
        if int(np.count_nonzero(nearer)) < self.config.min_mask_area_px:
            return None
        nearer = cv2.morphologyEx(nearer.astype(np.uint8), cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
        return nearer if int(np.count_nonzero(nearer)) >= self.config.min_mask_area_px else None

    def _discover(self, depth, source: str, observed: dict[int, np.ndarray]
                  ) -> tuple[dict[int, np.ndarray], list[np.ndarray]]:
        """``discover``: what came nearer on pixels no track explains (``_nearer``), per 4-connected
        blob of at least ``min_mask_area_px``: a blob that touches a track's mask at that track's depth
        (median within ``_EVENT_DEPTH_M``) is more of that track (an object coming into view
        grows), any other is a new object. Returns ``({track id: pixels to add}, [new masks])``;
        nothing without metric depth."""
        if depth is None or source not in METRIC_SOURCES:
            return {}, []
        import cv2

        d = np.asarray(depth, np.float32)
        nearer = self._nearer(d, ~_union(observed.values(), d.shape))
        if nearer is None:
            return {}, []
        n, blobs = cv2.connectedComponents(nearer, connectivity=4)
        grown: dict[int, np.ndarray] = {}
        found: list[np.ndarray] = []
        z_of = {}
        ring_k = np.ones((3, 3), np.uint8)
        for i in range(1, n):
            blob = blobs == i
            if int(np.count_nonzero(blob)) < self.config.min_mask_area_px:
                continue
            z = float(np.nanmedian(d[blob]))
            ring = cv2.dilate(blob.astype(np.uint8), ring_k).astype(bool) & ~blob
            best = _touching(ring, z, d, observed, z_of)
            if best is None:
                best = self._reach(blob, z, d, observed, z_of)
            if best is None:
                found.append(blob)
            else:
                grown[best] = grown[best] | blob if best in grown else blob
        return grown, found

    def _reach(self, blob: np.ndarray, z: float, d: np.ndarray, observed: dict[int, np.ndarray],
               z_of: dict[int, float]) -> Optional[int]:
        """The track a ``discover`` blob that touches none joins across an occluder, or None.

        An object moving faster than the flow follows leaves its mask behind, and its leading edge
        comes nearer apart from it; behind a thin occluder (a pole, a frame) that edge comes out on
        the occluder's far side. So the blob reaches up to ``_REACH_PX`` px (for a 320 px image
        side) across pixels in front of it (nearer than ``z`` [m] by more than ``_EVENT_DEPTH_M``,
        or without depth: the occluder and its invalid seam), never across visible background or
        the same surface; the first track at its depth it reaches (then by most contact) takes it,
        unless that track's mask is smaller than the blob (an edge is the smaller part of an
        object; a new object beside a track's sliver is not that track)."""
        import cv2

        steps = max(1, int(round(_REACH_PX * max(d.shape) / 320.0)))
        area = int(np.count_nonzero(blob))
        # the reach stays within ``steps`` + 1 px of the blob: work on that box only (a full 640x480
        # image per step and track cost ~4 ms a call)
        ys, xs = np.nonzero(blob)
        y0, y1 = max(0, ys.min() - steps - 1), min(d.shape[0], ys.max() + steps + 2)
        x0, x1 = max(0, xs.min() - steps - 1), min(d.shape[1], xs.max() + steps + 2)
        box = (slice(y0, y1), slice(x0, x1))
        near = {}  # tracks at least the blob's size, cut to the box; their depth from the whole mask
        for tid, m in observed.items():
            if int(np.count_nonzero(m)) >= area and m[box].any():
                if tid not in z_of:
                    z_of[tid] = _median_z(d, m)
                near[tid] = m[box]
        if not near:
            return None
        db = d[box]
        with np.errstate(invalid="ignore"):
            passable = (db < z - _EVENT_DEPTH_M) | ~np.isfinite(db)  # in front of the blob: an occluder
        k = np.ones((3, 3), np.uint8)
        region = blob[box].copy()
        for _ in range(steps):
            ring = cv2.dilate(region.astype(np.uint8), k).astype(bool) & ~region
            best = _touching(ring, z, db, near, z_of)
            if best is not None:
                return best
            nxt = region | (ring & passable)
            if np.array_equal(nxt, region):
                break
            region = nxt
        return None

    def _filter(self, masks: list[np.ndarray]) -> list[np.ndarray]:
        return [np.asarray(m, bool) for m in masks if int(np.count_nonzero(m)) >= self.config.min_mask_area_px]

    def _merge(self, cands, observed, frame, depth, source, labels=None) -> tuple[dict[int, int], list[int]]:
        """A keyframe's masks (in this frame) merged with the propagated ones, in place.

        A fresh mask that matches a propagated one (IoU >= ``match_iou``) replaces it (corrects
        drift); a propagated mask that no fresh one overlaps is dropped (the track is lost). The
        other fresh masks, unless mostly inside the matched ones (a part of a known object), are
        first re-identified (``reid``: ``_reid`` against the tracks the keyframe did not match: lost,
        hidden, or whose propagated mask shrank under an occluder; else ``_associate`` against the
        lost ones); the rest, when not mostly covered by tracked masks, are new objects. Returns
        ({track id: candidate index} of the tracks the keyframe saw, candidate indices of new
        objects). ``labels``: each candidate's labeler candidates (background keyframes), or None.
        """
        if self.config.reid:
            return self._merge_reid(cands, observed, frame, depth, source, labels)
        matched: dict[int, int] = {}
        leftovers: list[int] = []
        covered = _union(observed.values())
        for ci, c in enumerate(cands):
            best = self._keyframe_match(c, observed, matched)
            if best is not None:
                matched[best] = ci
            elif _mostly_outside(c, covered):
                leftovers.append(ci)
        for tid, ci in matched.items():
            observed[tid] = cands[ci]
        # the keyframe is the authority: a propagated mask no keyframe mask overlaps (IoU <
        # assoc_min_iou) is a track the propagator kept on nothing (flow/hold keep a mask where an
        # object left); it is lost now, and re-associated when a keyframe finds it again
        for tid in [t for t in observed if t not in matched]:
            if all(mask_iou(c, observed[tid], empty=0.0) < self.config.assoc_min_iou for c in cands):
                del observed[tid]
        lost = [tid for tid in self._tracks if tid not in observed]
        sub = [cands[i] for i in leftovers]
        re_found, rest = self._associate(sub, frame, depth, source, lost)
        for tid, j in re_found.items():
            observed[tid] = sub[j]
            matched[tid] = leftovers[j]
        return matched, [leftovers[j] for j in rest]

    def _keyframe_match(self, c: np.ndarray, observed: dict[int, np.ndarray], matched: dict[int, int]) -> Optional[int]:
        """The propagated track a keyframe mask ``c`` is: the one it overlaps most when that IoU is at
        least ``match_iou`` and it is not ``discover``ed (those go through re-identification, where
        an established track it may be a part of wins); None when none (or that one is matched)."""
        best, best_iou = _best_overlap(c, {t: m for t, m in observed.items() if t not in self._provisional})
        if best is not None and best_iou >= self.config.match_iou and best not in matched:
            return best
        return None

    def _merge_reid(self, cands, observed, frame, depth, source, labels) -> tuple[dict[int, int], list[int]]:
        cfg = self.config
        matched: dict[int, int] = {}
        unmatched: list[int] = []
        for ci, c in enumerate(cands):
            best = self._keyframe_match(c, observed, matched)
            if best is not None:
                matched[best] = ci
            else:
                unmatched.append(ci)
        for tid in [t for t in observed if t not in matched]:
            if all(mask_iou(c, observed[tid], empty=0.0) < cfg.assoc_min_iou for c in cands):
                del observed[tid]  # kept on nothing (see _merge); lost now, re-identified below
        # a fresh mask mostly inside the keyframe's own matched masks is a part of a known object;
        # a propagated mask is no authority here (it may have leaked over an object it uncovered)
        key_cov = _union(cands[ci] for ci in matched.values())
        leftovers = [ci for ci in unmatched if _mostly_outside(cands[ci], key_cov)]
        # candidates: tracks the keyframe did not match (lost/hidden, or a propagated mask kept
        # without a match: shrunk under an occluder, or leaked)
        pool = [tid for tid in self._tracks if tid not in matched]
        kept = {tid: observed[tid] for tid in pool if tid in observed}
        sub = [cands[i] for i in leftovers]
        sub_labels = [labels[i] for i in leftovers] if labels is not None else None
        re_found, rest = self._reid(sub, frame, depth, source, pool, kept, sub_labels)
        for tid, j in re_found.items():
            matched[tid] = leftovers[j]
        for tid, ci in matched.items():
            observed[tid] = cands[ci]
        # the rest are new objects unless mostly covered by a propagated mask still kept
        covered = _union(m for tid, m in observed.items() if tid not in matched)
        new = [leftovers[j] for j in rest if _mostly_outside(sub[j], covered)]
        return matched, new

    def _reid(self, cands, frame, depth, source, track_ids, current, labels=None) -> tuple[dict[int, int], list[int]]:
        """Re-identification: greedy lowest-cost matching of candidate masks to tracks.

        ``current``: track id -> its propagated mask in this frame (tracks the propagator still
        holds); the others are compared with their last visible mask. Cues, each a gate and a cost
        term: 3-D distance between the candidate's centroid and the track's last position, both in
        the motion frame (``assoc_max_centroid_m``; without metric depth, overlap >=
        ``assoc_min_iou`` instead); physical size (area at the median depth) or, without metric
        depth, pixel area, within ``assoc_max_area_ratio`` of the track's last or last-keyframe
        size (a partly occluded last view is not the object's size); mean Lab colour of the last
        keyframe mask within ``reid_max_color``; the distance is to the last position moved on by
        the last velocity, and its gate grows by ``reid_max_speed_mps`` per second unseen; overlap = IoU, or the fraction of the track's mask
        inside the candidate when it is at least ``reid_contain`` (an object uncovered from behind
        an occluder); a labeler's label that disagrees with the track's costs 0.5. Returns
        ({track id: candidate index}, unmatched candidate indices).
        """
        cfg = self.config
        if not cands or not track_ids:
            return {}, list(range(len(cands)))
        metric = source in METRIC_SOURCES
        intr = frame.intrinsics
        t = int(frame.stamp_ns)
        rgb = getattr(frame, "rgb", None)
        d_max = cfg.assoc_max_centroid_m
        r_max = cfg.assoc_max_area_ratio
        log_r = math.log(max(r_max, 1.0 + 1e-6))
        info = []
        for c in cands:
            area = int(np.count_nonzero(c))
            if metric:
                cent = mask_centroid_m(depth, c, intr)
                pos = ego_apply(self._T, cent) if np.all(np.isfinite(cent)) else np.full(3, np.nan)
                size = _phys_size(area, float(cent[2]), intr)
            else:
                pos, size = np.full(3, np.nan), math.nan
            info.append((area, pos, size, _mean_lab(rgb, c) if cfg.reid_max_color > 0 else np.full(3, np.nan)))
        pairs = []
        for ci, c in enumerate(cands):
            area, pos, size, lab = info[ci]
            for tid in track_ids:
                tr = self._tracks[tid]
                o = tr.obj
                m = current.get(tid, tr.mask)
                inter = int(np.count_nonzero(c & m))
                a_m = int(np.count_nonzero(m))
                iou = inter / max(1, area + a_m - inter)
                contain = inter / max(1, a_m)
                overlap = max(iou, contain if contain >= cfg.reid_contain and area >= a_m else 0.0)
                # size: against the last size and the last keyframe size (either may be the whole object)
                if metric and math.isfinite(size):
                    refs = [x for x in (_phys_size(o.area_px, _z_of(o), intr), tr.key_size) if math.isfinite(x) and x > 0]
                    val = size
                else:
                    refs, val = [], math.nan
                if not refs:
                    refs = [float(x) for x in (o.area_px, tr.key_area_px) if x > 0]
                    val = float(area)
                # a smaller candidate may be a partial view (still partly occluded, or leaving the
                # image): down to 1 / ratio^2 of the reference; a larger one only up to the ratio
                ratio = min((max(val, r) / max(1e-12, min(val, r)) for r in refs), default=1.0)
                provisional = tid in self._provisional  # a blob found by depth: a part of the object
                if provisional:
                    ratio = 1.0
                elif ratio > (r_max * r_max if val < max(refs, default=0.0) else r_max):
                    continue
                d = math.nan
                if o.history:
                    dt = max(0.0, (t - o.history[-1][0]) * 1e-9)
                    v = o.velocity_mps if np.all(np.isfinite(o.velocity_mps)) else np.zeros(3)
                    d = float(np.linalg.norm(pos - (o.history[-1][1] + v * dt)))
                    gate = d_max + cfg.reid_max_speed_mps * dt
                if math.isfinite(d):
                    if d > gate:
                        continue
                    cost = d / gate
                elif overlap >= cfg.assoc_min_iou:
                    cost = 1.0
                else:
                    continue
                dc = float(np.linalg.norm(lab - tr.lab))
                if math.isfinite(dc):
                    if dc > cfg.reid_max_color:
                        continue
                    cost += dc / cfg.reid_max_color
                cost += math.log(max(ratio, 1.0)) / log_r - overlap + (0.5 if provisional else 0.0)
                if labels is not None and labels[ci] and o.label != UNLABELED:
                    name = labels[ci][0][0]
                    if name != o.label and name not in {k for k, _ in o.alt_labels}:
                        cost += 0.5
                pairs.append((cost, ci, tid))
        pairs.sort(key=lambda p: (p[0], p[1], p[2]))
        return _greedy_pairs(pairs, len(cands))

    def _appearance(self, tr: _Track, frame: Frame) -> None:
        """Re-identification cues of a track from its keyframe mask (called after ``_observe``)."""
        size = _phys_size(tr.obj.area_px, _z_of(tr.obj), frame.intrinsics)
        if math.isfinite(size):
            whole = not math.isfinite(tr.key_size) or size >= 0.5 * tr.key_size
            tr.key_size = max(size, tr.key_size) if math.isfinite(tr.key_size) else size
        else:
            whole = tr.obj.area_px >= 0.5 * tr.key_area_px
        tr.key_area_px = max(int(tr.obj.area_px), tr.key_area_px)
        # a partial view (a sliver at the image border or beside an occluder) keeps the last colour
        if self.config.reid_max_color > 0 and (whole or not np.all(np.isfinite(tr.lab))):
            tr.lab = _mean_lab(getattr(frame, "rgb", None), tr.mask)

    def _associate(self, cands, frame, depth, source, track_ids) -> tuple[dict[int, int], list[int]]:
        """Greedy matching of candidate masks to tracks by mask IoU (last mask) + centroid distance.

        Returns ({track_id: candidate index}, unmatched candidate indices). A pair is admissible
        when the areas differ by at most ``assoc_max_area_ratio`` and the 3-D centroids are within
        ``assoc_max_centroid_m`` (IoU >= ``assoc_min_iou`` when a centroid is unknown). Both gates
        matter at occlusions: the occluder overlaps the lost object's last mask, but it is
        larger/smaller and at another depth, so it must not inherit the lost track's id.
        """
        cfg = self.config
        metric = source in METRIC_SOURCES
        cent = [mask_centroid_m(depth, c, frame.intrinsics) if metric else np.full(3, np.nan) for c in cands]
        pairs = []
        for ci, c in enumerate(cands):
            for tid in track_ids:
                tr = self._tracks[tid]
                a_c, a_t = int(c.sum()), max(1, tr.obj.area_px)
                if max(a_c, a_t) > cfg.assoc_max_area_ratio * max(1, min(a_c, a_t)):
                    continue
                iou = mask_iou(c, tr.mask, empty=0.0)
                d = float(np.linalg.norm(cent[ci] - tr.obj.centroid_m))
                if math.isfinite(d):
                    if d > cfg.assoc_max_centroid_m:
                        continue
                    score = iou + 0.5 * (1.0 - d / cfg.assoc_max_centroid_m)
                elif iou >= cfg.assoc_min_iou:
                    score = iou
                else:
                    continue
                pairs.append((score, ci, tid))
        pairs.sort(key=lambda p: -p[0])
        return _greedy_pairs(pairs, len(cands))

    # ------------------------------------------------------------------ background keyframes
    def _keyframe_work(self, frame: Frame):
        """What the background worker computes for a keyframe (no tracker lock; the job's kind was
        left in ``_jobs`` under the frame's stamp before it was submitted): masks of ``frame`` and,
        with a labeler, each mask's label candidates on that frame; or, for a video refresh, the
        tracks' masks in ``frame`` by the segmenter's own propagation (seeded first with the tracks'
        masks after the last segmentation, when it is the first refresh since)."""
        gate = self.backends.gate
        job = self._jobs.get(int(frame.stamp_ns), ("segment",))
        if job[0] == "video":
            seg = self.backends.segmenter
            with gate.hold("segmenter"):
                if job[1] is not None:
                    seg.set_tracks(*job[1])
                moved = seg.propagate(frame) or {}
            ids = sorted(moved)
            return [np.asarray(moved[t], bool) for t in ids], None, ids
        with gate.hold("segmenter"):
            masks = self._filter(self.backends.segmenter.segment(frame))
        lab = self.backends.labeler
        if lab is None:
            return masks, None
        if not masks:
            return masks, []
        with gate.hold("labeler"):
            return masks, lab.label(frame, masks)

    def _land(self, landed, frame: Frame) -> bool:
        """Book-keeping of a landed keyframe; False when its models failed (nothing to merge)."""
        self._last_latency_s, self._model_s = landed.latency_s, landed.model_s
        self._lag_frames = int(frame.seq) - int(landed.frame.seq)
        budget = self.config.keyframe_cpu_budget
        self._next_key_s = time.monotonic() + landed.model_s * (1.0 / budget - 1.0)
        self.stats["video_refreshes" if landed.track_ids is not None else "segment_calls"] += 1
        if landed.labels is not None:
            self.stats["label_calls"] += 1
        if landed.error is not None:
            self.stats["keyframe_errors"] += 1
            self.keyframe_error = landed.error
            return False
        return True

    def _merge_refresh(self, landed, prop, observed: dict[int, np.ndarray]) -> set[int]:
        """A landed video refresh merged in place: each track's propagated mask, brought forward to
        this frame, replaces its flow mask; a track the video model finds absent (empty, or smaller
        than ``min_mask_area_px`` here) is lost now, as after a keyframe; tracks it does not name
        (new or provisional since) keep their flow masks. Returns the tracks it set."""
        fwd = prop.bring_forward(landed.masks)
        done: set[int] = set()
        for tid, m in zip(landed.track_ids, fwd):
            if tid not in self._tracks:
                continue  # retired meanwhile
            if int(np.count_nonzero(m)) >= self.config.min_mask_area_px:
                observed[tid] = np.asarray(m, bool)
                done.add(tid)
            else:
                observed.pop(tid, None)
        return done

    def _landed_masks(self, landed, prop) -> tuple[list[np.ndarray], Optional[list]]:
        """A landed keyframe's masks brought forward to the current frame (too small ones dropped,
        labels kept aligned)."""
        fwd = prop.bring_forward(landed.masks)
        keep = [i for i, m in enumerate(fwd) if int(np.count_nonzero(m)) >= self.config.min_mask_area_px]
        labels = [landed.labels[i] for i in keep] if landed.labels is not None else None
        return [np.asarray(fwd[i], bool) for i in keep], labels

    def _vote(self, votes: dict[int, list], label_ns: int) -> None:
        for tid, cands in votes.items():
            tr = self._tracks.get(tid)
            if tr is None:
                continue
            tr.label_events += 1
            tr.obj.label_ns = label_ns
            if cands:
                name, score = cands[0]
                tr.votes[name] = tr.votes.get(name, 0.0) + float(score)
            self._apply_votes(tr)

    def _observe(self, tr: _Track, mask: np.ndarray, frame: Frame, depth, source: str) -> None:
        o = tr.obj
        t = int(frame.stamp_ns)
        if not o.visible and o.gaps_ns:
            a, _ = o.gaps_ns[-1]
            o.gaps_ns[-1] = (a, t)  # the gap closes at the frame it is seen again
        tr.mask = mask
        o.mask = rle_encode(mask)
        o.box = mask_box(mask) or (0, 0, 0, 0)
        o.area_px = int(mask.sum())
        o.visible = True
        o.last_seen_ns = t
        o.seen_frames += 1
        o.depth = depth_stats(depth, mask, source) if depth is not None else DepthStats()
        if source in METRIC_SOURCES:
            o.centroid_m = mask_centroid_m(depth, mask, frame.intrinsics)
        else:
            o.centroid_m = np.full(3, np.nan)
        # history/velocity are written by _update_motion once the camera pose of this frame is known

    def _update_motion_single(self, tid: int) -> None:
        """A track added between updates (detect tool): place it with the current pose, no re-fit."""
        o = self._tracks[tid].obj
        if np.all(np.isfinite(o.centroid_m)):
            p = ego_apply(self._T, o.centroid_m)
            o.first_centroid_m = p.copy()
            o.history.append((o.last_seen_ns, p))

    def _update_motion(self, frame: Frame, track_ids: list[int]) -> None:
        """Camera pose of this frame (given, estimated from static objects, or last known), then
        each seen track's centroid in the motion frame -> history, first position, velocity."""
        cfg = self.config
        pose = (frame.extras or {}).get("T_world_camera")
        if pose is not None:
            self._T = np.asarray(pose, dtype=float).reshape(4, 4)
            self._motion_frame, self._ego_inliers = "world", -1
        elif cfg.ego_motion:
            ids = [
                tid for tid in track_ids
                if np.all(np.isfinite(self._tracks[tid].obj.centroid_m))
                and np.all(np.isfinite(self._tracks[tid].obj.first_centroid_m))
            ]
            self._ego_inliers = 0
            if len(ids) >= 3:
                cam = np.stack([self._tracks[t].obj.centroid_m for t in ids])
                anchor = np.stack([self._tracks[t].obj.first_centroid_m for t in ids])
                T, inl = ransac_rigid(cam, anchor, cfg.ego_inlier_m)
                if T is not None:
                    self._T, self._ego_inliers = T, int(inl.sum())
            # fewer than 3 agreeing objects: keep the last pose (camera assumed still since then)
        t = int(frame.stamp_ns)
        for tid in track_ids:
            o = self._tracks[tid].obj
            if not np.all(np.isfinite(o.centroid_m)):
                continue
            p = ego_apply(self._T, o.centroid_m)
            if not np.all(np.isfinite(o.first_centroid_m)):
                o.first_centroid_m = p.copy()
            o.history.append((t, p))
            if len(o.history) > cfg.history_len:
                del o.history[: len(o.history) - cfg.history_len]
            o.velocity_mps = velocity_from_history(o.history, cfg.velocity_window_s)

    def _create(self, mask: np.ndarray, frame: Frame, depth, source: str) -> int:
        tid = self._next_id
        self._next_id += 1
        t = int(frame.stamp_ns)
        obj = TwinObject(
            track_id=tid, mask=rle_encode(mask), box=(0, 0, 0, 0), area_px=0, label=UNLABELED, score=0.0,
            first_seen_ns=t, last_seen_ns=t,
        )
        tr = _Track(obj=obj, mask=mask)
        self._observe(tr, mask, frame, depth, source)
        self._tracks[tid] = tr
        return tid

    def _label(self, frame: Frame, track_ids: list[int]) -> None:
        lab = self.backends.labeler
        if lab is None or not track_ids:
            return
        self.stats["label_calls"] += 1
        with self.backends.gate.hold("labeler"):
            results = lab.label(frame, [self._tracks[t].mask for t in track_ids])
        for tid, cands in zip(track_ids, results):
            tr = self._tracks[tid]
            tr.label_events += 1
            tr.obj.label_ns = int(frame.stamp_ns)
            if cands:
                name, score = cands[0]  # vote with the best label of this frame, weighted by its score
                tr.votes[name] = tr.votes.get(name, 0.0) + float(score)
            self._apply_votes(tr)

    def _name_colors(self, frame: Frame, track_ids: list[int]) -> None:
        """Name the dominant colour of each track's mask (``attributes['color']``; the twin text
        leads the line with it). Same rule as the ``describe`` tool; ~1 ms per object."""
        from frs_ros.twin.tools import ToolError, dominant_color

        rgb = getattr(frame, "rgb", None)
        if rgb is None:
            return
        for tid in track_ids:
            tr = self._tracks[tid]
            try:
                tr.obj.attributes["color"] = dominant_color(rgb, tr.mask)[0]
            except ToolError:  # no visible pixels
                continue

    @staticmethod
    def _apply_votes(tr: _Track) -> None:
        if not tr.votes:
            return
        n = max(1, tr.label_events)
        ranked = sorted(tr.votes.items(), key=lambda kv: (-kv[1], kv[0]))
        # score = summed score / frames labelled: high only if confident AND consistent
        tr.obj.label, tr.obj.score = ranked[0][0], min(1.0, ranked[0][1] / n)
        tr.obj.alt_labels = [(k, min(1.0, v / n)) for k, v in ranked[1:4]]

    def _retire(self, t: int) -> list[int]:
        limit = self.config.retire_after_s * 1e9
        gone = [tid for tid, tr in self._tracks.items() if not tr.obj.visible and t - tr.obj.last_seen_ns > limit]
        for tid in gone:
            del self._tracks[tid]
        return gone

    @staticmethod
    def _public(tr: _Track) -> TwinObject:
        o = copy.copy(tr.obj)
        o.alt_labels = list(o.alt_labels)
        o.attributes = dict(o.attributes)
        o.history = list(o.history)
        o.gaps_ns = list(o.gaps_ns)
        o.depth = copy.copy(o.depth)
        return o

    def _snapshot(self, frame: Frame, source: str) -> DigitalTwin:
        for tid, tr in self._tracks.items():
            tr.obj.keyframe_ns = self._mask_ns.get(tid, 0)
        return DigitalTwin(
            stamp_ns=int(frame.stamp_ns),
            frame_id=frame.frame_id,
            intrinsics=frame.intrinsics,
            objects=[self._public(self._tracks[tid]) for tid in sorted(self._tracks)],
            keyframe_ns=int(self._keyframe_ns),
            seq=int(frame.seq),
            depth_source=source,
            start_ns=int(self._start_ns or 0),
            motion_frame=self._motion_frame,
            ego_inliers=self._ego_inliers,
        )
