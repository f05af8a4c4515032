"""Benchmark sample types shared by every reader and writer in ``frs_ros.data``.

Masks are ``(H, W)`` bool numpy arrays (row-major, as everywhere in frs_ros);
colour is ``(H, W, 3)`` uint8 RGB; depth is ``(H, W)`` float32 metres with NaN
where invalid (``frs_ros.camera`` conventions).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from frs_ros.camera import CameraIntrinsics


class DatasetFormatError(ValueError):
    """A dataset file is missing or does not follow the expected layout.

    The message names the file and what is wrong with it.
    """


@dataclass
class QueryMeta:
    """The structured query behind a text (frs_ros extension; real benchmarks lack it).

    kind: one of ``frs_ros.sim.types.QUERY_KINDS``; difficulty: 1..3;
    template_id: paraphrase template; spec: structured program; target_ids: sim
    instance ids of the answer (empty = no target); frame_index: answer frame of a
    video query (-1 = last); split: sim split name.
    """

    kind: str
    difficulty: int = 1
    template_id: str = ""
    spec: dict = field(default_factory=dict)
    target_ids: list[int] = field(default_factory=list)
    frame_index: int = -1
    split: str = ""

    def to_json(self) -> dict:
        return {
            "kind": self.kind,
            "difficulty": int(self.difficulty),
            "template_id": self.template_id,
            "spec": self.spec,
            "target_ids": [int(i) for i in self.target_ids],
            "frame_index": int(self.frame_index),
            "split": self.split,
        }

    @classmethod
    def from_json(cls, d: dict) -> "QueryMeta":
        return cls(
            kind=str(d["kind"]),
            difficulty=int(d.get("difficulty", 1)),
            template_id=str(d.get("template_id", "")),
            spec=dict(d.get("spec", {})),
            target_ids=[int(i) for i in d.get("target_ids", [])],
            frame_index=int(d.get("frame_index", -1)),
            split=str(d.get("split", "")),
        )


@dataclass
class QueryGT:
    """One image query and its ground truth.

    texts: phrasings of the same request (ReasonSeg ``text`` list); ``text`` is the
        first, the one LISA's validation uses.
    mask: ``(H, W)`` bool target pixels (all False = no target).
    ignore_mask: ``(H, W)`` bool pixels excluded from scoring (ReasonSeg label 255),
        or ``None``.
    is_sentence: ReasonSeg long-sentence query.
    meta: structured query (frs_ros extension) or ``None``.
    source_id: where it came from in the source dataset (file name, ref id, ...).
    """

    texts: list[str]
    mask: np.ndarray
    ignore_mask: Optional[np.ndarray] = None
    is_sentence: bool = False
    meta: Optional[QueryMeta] = None
    source_id: str = ""

    def __post_init__(self) -> None:
        if not self.texts:
            raise ValueError("a query needs at least one text")
        self.mask = np.asarray(self.mask, dtype=bool)
        if self.mask.ndim != 2:
            raise ValueError(f"mask must be (H, W), got {self.mask.shape}")
        if self.ignore_mask is not None:
            self.ignore_mask = np.asarray(self.ignore_mask, dtype=bool)
            if self.ignore_mask.shape != self.mask.shape:
                raise ValueError(f"ignore_mask {self.ignore_mask.shape} != mask {self.mask.shape}")

    @property
    def text(self) -> str:
        return self.texts[0]

    def label_map(self) -> np.ndarray:
        """``(H, W)`` uint8: 0 background, 1 target, 255 ignore (ignore wins)."""
        out = self.mask.astype(np.uint8)
        if self.ignore_mask is not None:
            out[self.ignore_mask] = 255
        return out


@dataclass
class ImageSample:
    """One image with its queries (ReasonSeg, LLM-Seg40K, RefCOCOg, sim).

    rgb: ``(H, W, 3)`` uint8; depth: ``(H, W)`` float32 [m] NaN-invalid or ``None``;
    intrinsics: pinhole camera or ``None`` (real RGB benchmarks have none).
    """

    name: str
    rgb: np.ndarray
    queries: list[QueryGT]
    depth: Optional[np.ndarray] = None
    intrinsics: Optional[CameraIntrinsics] = None

    def __post_init__(self) -> None:
        if self.rgb.ndim != 3 or self.rgb.shape[2] != 3 or self.rgb.dtype != np.uint8:
            raise ValueError(f"{self.name}: rgb must be (H, W, 3) uint8, got {self.rgb.shape} {self.rgb.dtype}")
        hw = self.rgb.shape[:2]
        for q in self.queries:
            if q.mask.shape != hw:
                raise ValueError(f"{self.name}: query mask {q.mask.shape} does not match image {hw}")
        if self.depth is not None and self.depth.shape != hw:
            raise ValueError(f"{self.name}: depth {self.depth.shape} does not match image {hw}")


@dataclass
class VideoExpression:
    """One referring/reasoning expression of a video.

    obj_ids: keys of ``VideoSample.tracks`` that are the answer (empty = no target).
    exp_id: expression id in ``meta_expressions.json``.
    """

    text: str
    obj_ids: list[int]
    exp_id: str = ""
    is_sentence: bool = False
    meta: Optional[QueryMeta] = None


@dataclass
class VideoSample:
    """One video (ReVOS / MeViS layout, or a sim episode).

    frames: list of ``(H, W, 3)`` uint8 RGB, length T; frame_names: T names without
    extension (``"00000"`` ...); tracks: object id -> ``(T, H, W)`` bool per-frame
    masks (all-False frames where the object is absent); depth: list of T
    ``(H, W)`` float32 [m] NaN-invalid, or ``None``.
    """

    name: str
    frames: list[np.ndarray]
    frame_names: list[str]
    tracks: dict[int, np.ndarray]
    expressions: list[VideoExpression]
    depth: Optional[list[np.ndarray]] = None
    intrinsics: Optional[CameraIntrinsics] = None

    def __post_init__(self) -> None:
        t = len(self.frames)
        if len(self.frame_names) != t:
            raise ValueError(f"{self.name}: {t} frames but {len(self.frame_names)} frame names")
        if t == 0:
            raise ValueError(f"{self.name}: a video needs at least one frame")
        h, w = self.frames[0].shape[:2]
        for oid, tr in self.tracks.items():
            if tr.shape != (t, h, w):
                raise ValueError(f"{self.name}: track {oid} has shape {tr.shape}, expected {(t, h, w)}")
        for e in self.expressions:
            missing = [o for o in e.obj_ids if o not in self.tracks]
            if missing:
                raise ValueError(f"{self.name}: expression {e.exp_id!r} refers to unknown objects {missing}")
        if self.depth is not None and len(self.depth) != t:
            raise ValueError(f"{self.name}: {len(self.depth)} depth images for {t} frames")

    @property
    def shape(self) -> tuple[int, int]:
        return self.frames[0].shape[0], self.frames[0].shape[1]

    def expression_masks(self, expression: VideoExpression) -> np.ndarray:
        """``(T, H, W)`` bool union of the expression's object tracks (all False if none)."""
        out = np.zeros((len(self.frames),) + self.shape, dtype=bool)
        for oid in expression.obj_ids:
            out |= self.tracks[oid]
        return out
