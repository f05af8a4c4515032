"""The ``sim`` backend: what a simulator's segmentation camera provides.

It reads ``frame.gt`` (instance map + categories) and is the ONLY twin code allowed to: the
other backends must produce the same twin when ``frame.gt`` is None or garbage (tested).
Identity comes from the simulator's stable instance ids, so propagation is exact; labels can
be made realistic with ``label_noise`` (a synonym or a confusable category, drawn from a
seeded RNG so twins are reproducible).
"""

from __future__ import annotations

import re
import zlib
from typing import Optional

import numpy as np

from frs_ros.camera import Frame
from frs_ros.masks import mask_box
from frs_ros.twin.backends.base import Box
from frs_ros.twin.config import TwinConfig

# Fallback synonym/confusion table for categories the sim ontology does not describe.
_FALLBACK_SYNONYMS: dict[str, tuple[str, ...]] = {
    "mug": ("cup", "coffee mug"),
    "cup": ("mug", "glass"),
    "bottle": ("flask", "jar"),
    "bowl": ("dish", "cup"),
    "plate": ("dish", "bowl"),
    "box": ("carton", "package"),
    "book": ("notebook",),
    "can": ("tin", "cup"),
    "apple": ("fruit", "orange"),
    "banana": ("fruit",),
    "phone": ("smartphone", "remote"),
    "remote": ("controller", "phone"),
    "knife": ("blade",),
    "scissors": ("shears",),
    "sponge": ("scrubber",),
    "ball": ("sphere", "toy"),
    "block": ("cube", "box"),
    "cube": ("block", "box"),
}


def _ontology_tables() -> tuple[dict[str, tuple[str, ...]], dict[str, tuple[str, ...]]]:
    """(synonyms, confusions) per category from the simulator's ontology when it is there
    (confusions: other categories of the same supercategory and renderer shape, i.e. things a
    real detector mixes up), merged over the fallback table."""
    synonyms = dict(_FALLBACK_SYNONYMS)
    confusions: dict[str, tuple[str, ...]] = {}
    try:  # the ontology is another module's; use it when present, never require it
        from frs_ros.sim.ontology import ONTOLOGY
    except ImportError:
        return synonyms, confusions
    for name, cat in ONTOLOGY.items():
        synonyms[name] = tuple(cat.synonyms)
        confusions[name] = tuple(
            o.name for o in ONTOLOGY.values()
            if o.name != name and o.supercategory == cat.supercategory and o.shape == cat.shape
        ) or tuple(o.name for o in ONTOLOGY.values() if o.name != name and o.supercategory == cat.supercategory)[:3]
    return synonyms, confusions


def sim_vocabulary() -> tuple[str, ...]:
    """The sim ontology's category names (the OWLv2 vocabulary to use on sim frames)."""
    from frs_ros.sim.ontology import ONTOLOGY

    return tuple(ONTOLOGY)


def _gt(frame: Frame):
    if frame.gt is None or not hasattr(frame.gt, "instance_map"):
        raise ValueError(
            "the 'sim' twin backend needs simulator ground truth (frame.gt); this frame has none — "
            "use twin.segmenter='sam2' and twin.labeler='owlv2' on real cameras"
        )
    return frame.gt


def _majority_id(instance_map: np.ndarray, mask: np.ndarray) -> int:
    ids = instance_map[mask]
    ids = ids[ids > 0]
    if ids.size == 0:
        return 0
    vals, counts = np.unique(ids, return_counts=True)
    return int(vals[np.argmax(counts)])


class SimSegmenter:
    """Ground-truth instance masks; propagation by the simulator's stable instance ids."""

    name = "sim"

    def __init__(self, config: TwinConfig) -> None:
        self.config = config
        self._track_to_sim: dict[int, int] = {}
        self._latest_imap: Optional[np.ndarray] = None  # instance map of the last propagated frame
        self._marked_imap: Optional[np.ndarray] = None  # ... of the frame a keyframe is in flight for

    def segment(self, frame: Frame) -> list[np.ndarray]:
        imap = _gt(frame).instance_map
        ids, counts = np.unique(imap[imap > 0], return_counts=True)
        return [imap == i for i, c in zip(ids, counts) if c >= self.config.min_mask_area_px]

    def set_tracks(self, frame: Frame, masks: dict[int, np.ndarray]) -> None:
        imap = _gt(frame).instance_map
        for tid, m in masks.items():
            sid = _majority_id(imap, m)
            if sid > 0:
                self._track_to_sim[tid] = sid
        # tracks absent from ``masks`` are only hidden: keep their sim id so they are found
        # again when they reappear; retired ones are dropped by forget()

    def forget(self, track_ids: list[int]) -> None:
        """Drop retired tracks (the tracker never reuses their ids)."""
        for tid in track_ids:
            self._track_to_sim.pop(tid, None)

    def propagate(self, frame: Frame) -> Optional[dict[int, np.ndarray]]:
        imap = self._latest_imap = _gt(frame).instance_map
        return {tid: imap == sid for tid, sid in self._track_to_sim.items()}

    def mark(self, frame: Frame) -> None:
        self._marked_imap = _gt(frame).instance_map

    def bring_forward(self, masks: list[np.ndarray]) -> list[np.ndarray]:
        """Exact, by sim id: each mask's majority id in the marked frame, cut from the latest one."""
        k, now, self._marked_imap = self._marked_imap, self._latest_imap, None
        if k is None or now is None:
            return [np.asarray(m, bool) for m in masks]
        out = []
        for m in masks:
            sid = _majority_id(k, np.asarray(m, bool))
            out.append(now == sid if sid > 0 else np.zeros(now.shape, bool))
        return out

    def segment_boxes(self, frame: Frame, boxes: list[Box]) -> list[np.ndarray]:
        imap = _gt(frame).instance_map
        out = []
        for x0, y0, x1, y1 in boxes:
            sid = _majority_id(imap[y0:y1, x0:x1], np.ones((max(0, y1 - y0), max(0, x1 - x0)), bool))
            out.append(imap == sid if sid > 0 else np.zeros(imap.shape, bool))
        return out


class SimLabeler:
    """Ground-truth categories, with optional seeded synonym/confusion noise."""

    name = "sim"

    def __init__(self, config: TwinConfig) -> None:
        self.config = config
        self.synonyms, self.confusions = _ontology_tables()

    def _rng(self, frame: Frame, sid: int) -> np.random.Generator:
        # one deterministic stream per (seed, frame, object): twins are reproducible
        key = zlib.crc32(f"{self.config.seed}/{frame.seq}/{frame.stamp_ns}/{sid}".encode())
        return np.random.default_rng(key)

    def _noisy(self, frame: Frame, sid: int, category: str) -> tuple[str, float]:
        if self.config.label_noise <= 0.0:
            return category, 1.0
        rng = self._rng(frame, sid)
        # scores look like a detector's for both right and wrong labels, so noise is not trivially filtered
        score = float(rng.uniform(0.5, 0.95))
        alts = tuple(self.synonyms.get(category, ())) + tuple(self.confusions.get(category, ()))
        if alts and rng.random() < self.config.label_noise:
            return str(alts[int(rng.integers(len(alts)))]), score
        return category, score

    def label(self, frame: Frame, masks: list[np.ndarray]) -> list[list[tuple[str, float]]]:
        gt = _gt(frame)
        out = []
        for m in masks:
            sid = _majority_id(gt.instance_map, m)
            obj = gt.objects.get(sid)
            out.append([self._noisy(frame, sid, obj.category)] if obj is not None else [])
        return out

    def matches(self, category: str, text: str) -> bool:
        """Whether a free-text query names ``category`` or one of its synonyms (word match)."""
        words = " " + re.sub(r"[^a-z0-9 ]+", " ", text.lower()) + " "
        names = (category,) + tuple(self.synonyms.get(category, ()))
        for n in names:
            n = n.lower().replace("_", " ")
            if f" {n} " in words or f" {n}s " in words or f" {n}es " in words:
                return True
        return False

    def detect(self, frame: Frame, text: str) -> list[tuple[Box, float]]:
        gt = _gt(frame)
        out = []
        for sid, obj in sorted(gt.objects.items()):
            if not self.matches(obj.category, text):
                continue
            box = mask_box(gt.instance_map == sid)
            if box is not None:
                out.append((box, 1.0))
        return out
