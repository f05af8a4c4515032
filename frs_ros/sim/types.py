"""Ground-truth types of the simulated world.

Sim instance ids are stable for the whole episode (an object keeps its id when it
moves, is occluded, or leaves and comes back). Id 0 is background.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Iterable, Optional

import numpy as np


@dataclass
class SimObject:
    """One object instance of a simulated scene (world state at one frame).

    category: canonical ontology name (``frs_ros.sim.ontology``).
    color, material: attribute words from the ontology.
    size_m (float) [m]: characteristic size (largest extent).
    position_m: ``(3,)`` centre in the world (table) frame [m], z up.
    visible_px (int): pixels of the object visible in this frame (after occlusion).
    """

    instance_id: int
    category: str
    color: str
    material: str
    size_m: float
    position_m: np.ndarray
    visible_px: int = 0
    extras: dict = field(default_factory=dict)


@dataclass
class SceneGroundTruth:
    """What a simulator's segmentation camera provides for one frame.

    instance_map: ``(H, W)`` int32; 0 background, else the sim instance id of the
        front-most surface (real occlusion).
    objects: every object present in the world at this frame, visible or not.
    camera_pose: ``(4, 4)`` world-from-camera(optical) transform [m]; None if unknown.
    frame_index: index of this frame in its episode (0 for a still image).
    scene_kind: 'tabletop' or 'room' for simulated scenes ('' if unknown).
    """

    instance_map: np.ndarray
    objects: dict[int, SimObject]
    camera_pose: Optional[np.ndarray] = None
    frame_index: int = 0
    scene_kind: str = ""

    def mask(self, instance_id: int) -> np.ndarray:
        """Visible mask ``(H, W)`` bool of one instance (empty if occluded/absent)."""
        return self.instance_map == instance_id

    def union_mask(self, instance_ids: list[int]) -> np.ndarray:
        """Union of visible masks; all-False for an empty list (a no-target query)."""
        if not instance_ids:
            return np.zeros(self.instance_map.shape, dtype=bool)
        return np.isin(self.instance_map, np.asarray(instance_ids, dtype=np.int32))


@dataclass
class Query:
    """A reasoning-segmentation query with ground truth.

    kind: one of ``QUERY_KINDS``; difficulty: 1 (easy) .. 3 (hard), as JiTBench levels.
    is_sentence: long sentence form (ReasonSeg 'long') vs short phrase.
    target_ids: sim instance ids that are the answer; empty list = no target (empty mask).
    frame_index: the frame (in a video episode) whose mask is the answer; -1 = last frame.
    spec: the structured program the query was generated from (the oracle teacher reads it).
    template_id: which paraphrase template produced ``text`` (held-out templates mark test splits).
    """

    text: str
    kind: str
    target_ids: list[int]
    difficulty: int = 1
    is_sentence: bool = False
    frame_index: int = -1
    spec: dict = field(default_factory=dict)
    template_id: str = ""
    split: str = "train"


QUERY_KINDS = (
    "affordance",
    "attribute",
    "spatial",
    "comparative",
    "temporal",
    "multi",
    "none",
)


class QueryBook:
    """Thread-safe ``query text -> sim Query`` map: the oracle reasoner's ground truth (given at its
    construction), so it answers goals that carry only text. Lookup ignores case and surrounding
    whitespace; a later query with the same text replaces an earlier one."""

    def __init__(self, queries: Iterable[Query] = ()) -> None:
        self._lock = threading.Lock()
        self._by_text: dict[str, Query] = {}
        self.update(queries)

    @staticmethod
    def _key(text: str) -> str:
        return " ".join(str(text).split()).lower()

    def update(self, queries: Iterable[Query]) -> None:
        with self._lock:
            for q in queries:
                self._by_text[self._key(q.text)] = q

    def get(self, text: str) -> Optional[Query]:
        with self._lock:
            return self._by_text.get(self._key(text))

    def all(self) -> list[Query]:
        with self._lock:
            return list(self._by_text.values())
