"""The ``hold`` propagator: every track keeps its last mask until the next keyframe.

The baseline the ``flow`` propagator is measured against (docs/performance.md, twin J/F table):
it costs nothing and is right only while nothing moves. Never reads ``frame.gt``.
"""

from __future__ import annotations

import numpy as np

from frs_ros.camera import Frame
from frs_ros.twin.config import TwinConfig


class HoldPropagator:
    """Masks stay where the last keyframe put them."""

    name = "hold"

    def __init__(self, config: TwinConfig) -> None:
        self.config = config
        self._masks: dict[int, np.ndarray] = {}

    def set_tracks(self, frame: Frame, masks: dict[int, np.ndarray]) -> None:
        self._masks = {int(t): np.asarray(m, bool) for t, m in masks.items()}

    def propagate(self, frame: Frame) -> dict[int, np.ndarray]:
        return {tid: m.copy() for tid, m in self._masks.items()}

    def forget(self, track_ids: list[int]) -> None:
        for tid in track_ids:
            self._masks.pop(int(tid), None)

    def mark(self, frame: Frame) -> None:
        """Nothing to record: held masks do not move."""

    def bring_forward(self, masks: list[np.ndarray]) -> list[np.ndarray]:
        return [np.asarray(m, bool) for m in masks]
