"""The small protocols every twin backend implements, and the bundle the factory returns.

Masks are ``(H, W)`` bool numpy arrays over the frame; boxes are ``(x0, y0, x1, y1)`` [px],
inclusive-exclusive (``frs_ros.masks.mask_box`` convention).
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional, Protocol, runtime_checkable

import numpy as np

from frs_ros.camera import Frame

Box = tuple[int, int, int, int]


@runtime_checkable
class Segmenter(Protocol):
    """Class-agnostic instance segmentation with optional temporal propagation."""

    name: str

    def segment(self, frame: Frame) -> list[np.ndarray]:
        """Keyframe: every object mask found in ``frame`` (no identities)."""

    def set_tracks(self, frame: Frame, masks: dict[int, np.ndarray]) -> None:
        """Register the tracked masks of ``frame`` (keyed by track id) as the propagation source."""

    def propagate(self, frame: Frame) -> Optional[dict[int, np.ndarray]]:
        """Tracking frame: the registered tracks' masks in ``frame`` (empty mask = lost);
        ``None`` if this backend cannot propagate (the tracker then segments + associates)."""

    def segment_boxes(self, frame: Frame, boxes: list[Box]) -> list[np.ndarray]:
        """One mask per box prompt (used by the detect tool to add objects)."""

    def forget(self, track_ids: list[int]) -> None:
        """The tracker retired these tracks; drop any state kept for them."""


@runtime_checkable
class Propagator(Protocol):
    """Moves the tracked masks from one frame to the next (the twin's per-frame cheap path).

    ``sim`` and ``sam2`` segmenters are propagators themselves; ``flow`` and ``hold`` are
    propagators only. Chosen by ``TwinConfig.propagator``.
    """

    name: str

    def set_tracks(self, frame: Frame, masks: dict[int, np.ndarray]) -> None:
        """Register the tracked masks of ``frame`` (keyed by track id) as the propagation source."""

    def propagate(self, frame: Frame) -> Optional[dict[int, np.ndarray]]:
        """The registered tracks' masks in ``frame`` (empty mask = lost); ``None`` if this backend
        cannot propagate. Called on every frame, with or without tracks."""

    def forget(self, track_ids: list[int]) -> None:
        """The tracker retired these tracks; drop any state kept for them."""

    def mark(self, frame: Frame) -> None:
        """A keyframe of ``frame`` (the frame just propagated) went to the background worker."""

    def bring_forward(self, masks: list[np.ndarray]) -> list[np.ndarray]:
        """Masks of the marked frame, moved to the last propagated frame (clears the mark)."""


@runtime_checkable
class Labeler(Protocol):
    """Open-vocabulary labels for masks, and text-prompted detection."""

    name: str

    def label(self, frame: Frame, masks: list[np.ndarray]) -> list[list[tuple[str, float]]]:
        """For each mask, candidate ``(label, score)`` pairs, best first (may be empty)."""

    def detect(self, frame: Frame, text: str) -> list[tuple[Box, float]]:
        """Boxes matching a free-text query with scores in [0, 1], best first."""


@runtime_checkable
class DepthEstimator(Protocol):
    """Monocular depth for frames without a depth image."""

    name: str

    def estimate(self, frame: Frame) -> tuple[np.ndarray, str]:
        """``(depth (H, W) float32, kind)``; kind 'metric' means metres, 'relative' unitless."""


class ModelGate:
    """One lock per heavy model, shared by the background keyframe worker and the reasoner's
    ``detect`` tool: a model object is not safe for two callers at once (SAM-2's image
    predictor keeps the image it was last given), so a tool call waits for the keyframe's use of
    that model to end. ``hold(name, on_wait)`` calls ``on_wait(message)`` once before it blocks,
    so a goal can say why it waits (action feedback); it never waits when the model is free."""

    def __init__(self) -> None:
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def _lock(self, name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(name, threading.Lock())

    @contextmanager
    def hold(self, name: str, on_wait: Optional[Callable[[str], None]] = None) -> Iterator[None]:
        lock = self._lock(name)
        if not lock.acquire(blocking=False):
            if on_wait is not None:
                on_wait(f"waiting for the {name} (in use by a background keyframe)")
            lock.acquire()
        try:
            yield
        finally:
            lock.release()


@dataclass
class TwinBackends:
    """What ``build_twin_backends`` returns; ``labeler``/``depth`` may be None (not configured);
    ``propagator`` None means the segmenter propagates (its own ``set_tracks``/``propagate``).
    ``gate``: the per-model locks (``ModelGate``) of the keyframe worker and ``detect``."""

    segmenter: Segmenter
    labeler: Optional[Labeler] = None
    depth: Optional[DepthEstimator] = None
    propagator: Optional[Propagator] = None
    gate: ModelGate = field(default_factory=ModelGate, repr=False, compare=False)

    @property
    def tracks_with(self):
        """The propagator in use: ``propagator``, else the segmenter."""
        return self.propagator if self.propagator is not None else self.segmenter


def box_iou(a: Box, b: Box) -> float:
    """IoU of two inclusive-exclusive boxes [px]."""
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    ua = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / ua) if ua > 0 else 0.0


def box_mask(box: Box, shape: tuple[int, int]) -> np.ndarray:
    """Filled box as a bool mask ``shape``; the box is clipped to the image."""
    m = np.zeros(shape, dtype=bool)
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    m[max(0, y0):max(0, y1), max(0, x0):max(0, x1)] = True
    return m


def load_pretrained(cls, model_id: str, what: str, config_key: str, device: str = "cpu", **kwargs):
    """``cls.from_pretrained(model_id)`` in eval mode on ``device``; any failure to find or read the
    files becomes a ``ModelLoadError`` that says how to get them onto an offline machine."""
    from frs_ros.twin.config import model_load_error

    try:
        model = cls.from_pretrained(model_id, **kwargs)
    except (OSError, ValueError, KeyError, RuntimeError) as e:  # hub/IO/config errors all surface as these
        raise model_load_error(what, model_id, config_key, e) from e
    if hasattr(model, "eval"):
        model = model.eval().to(device)
    return model


def read_json_file(model_id: str, filename: str) -> dict | None:
    """A JSON file that sits beside the weights (local dir or hub cache); None when there is none."""
    import json
    import os

    path = os.path.join(model_id, filename)
    if not os.path.isfile(path):
        try:
            from transformers.utils import cached_file

            path = cached_file(model_id, filename, _raise_exceptions_for_missing_entries=False)
        except (OSError, ValueError):
            return None
        if path is None:
            return None
    with open(path) as f:
        return json.load(f)


def nms_masks(masks: list[np.ndarray], scores: list[float], iou_thresh: float) -> list[int]:
    """Greedy mask NMS: indices kept, best score first; a mask is dropped when its IoU with a kept
    one exceeds ``iou_thresh``."""
    order = np.argsort(-np.asarray(scores, dtype=float), kind="stable")
    kept: list[int] = []
    areas = [int(m.sum()) for m in masks]
    for i in order:
        ok = True
        for j in kept:
            inter = int(np.logical_and(masks[i], masks[j]).sum())
            union = areas[i] + areas[j] - inter
            if union > 0 and inter / union > iou_thresh:
                ok = False
                break
        if ok:
            kept.append(int(i))
    return kept
