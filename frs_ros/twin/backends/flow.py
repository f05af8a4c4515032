"""The ``flow`` propagator: OpenCV DIS optical flow moves each track's mask to the next frame.

Per frame (``propagate``): one dense DIS flow from the new frame back to the previous one
(``cv2.DISOpticalFlow``, preset ULTRAFAST down to pyramid level 1, computed on a grey image scaled so its longer side is
at most ``flow_max_side`` px, then scaled back), then every track's mask is pulled through it
(backward warping, nearest neighbour: no holes, one ``cv2.remap`` over the mask's box grown by the
largest displacement). With depth images on both frames, a warped pixel is dropped when the depth
it lands on differs from the depth it came from by more than ``flow_depth_gate_m``: that is the
occluder moving over the object, which flow alone would paint with the object's id.

Keyframes computed in the background (``mark`` / ``bring_forward``): while a keyframe of frame k is
in flight, the per-frame flows are composed into one map "pixel of the latest frame -> where it
was in frame k" (one 2-channel remap per frame), so the keyframe's masks land on the current frame
with one remap each, however many frames the model took.

Colour only, never ``frame.gt``. Costs are measured in docs/performance.md (twin two-tier rows).
"""

from __future__ import annotations

from typing import Optional

import cv2
import numpy as np

from frs_ros.camera import Frame
from frs_ros.twin.config import TwinConfig


def _gray(frame: Frame) -> np.ndarray:
    return cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2GRAY)


class FlowField:
    """Backward dense flow between consecutive frames, at a capped resolution.

    ``map(prev_gray, cur_gray)`` -> ``(H, W, 2)`` float32 absolute source coordinates [px]: for each
    pixel of the current frame, where it was in the previous one.
    """

    def __init__(self, max_side: int) -> None:
        self.max_side = int(max_side)
        self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
        # finest pyramid level 1 (ULTRAFAST stops at 2) and patch stride 4 (6): on 3 sim val episodes
        # (320x240, masks propagated 10 frames from GT) mean IoU 0.873 vs 0.858, 5.7 vs 2.9 ms CPU a
        # frame; level 0 gave 0.895 at 15.8 ms; variational refinement lowered IoU (0.849)
        self._dis.setFinestScale(1)
        self._dis.setPatchStride(4)
        self._grid: Optional[np.ndarray] = None

    def _identity(self, h: int, w: int) -> np.ndarray:
        if self._grid is None or self._grid.shape[:2] != (h, w):
            xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
            self._grid = np.stack([xs, ys], -1)
        return self._grid

    def identity(self, h: int, w: int) -> np.ndarray:
        """``(H, W, 2)`` float32 map that moves nothing."""
        return self._identity(h, w).copy()

    def map(self, prev: np.ndarray, cur: np.ndarray) -> tuple[np.ndarray, float]:
        """``(source map (H, W, 2) float32 [px], largest displacement [px])``."""
        h, w = cur.shape
        s = min(1.0, self.max_side / max(h, w))
        if s < 1.0:
            size = (max(8, int(round(w * s))), max(8, int(round(h * s))))
            small = self._dis.calc(cv2.resize(cur, size, interpolation=cv2.INTER_AREA),
                                   cv2.resize(prev, size, interpolation=cv2.INTER_AREA), None)
            flow = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
            flow[..., 0] *= w / size[0]
            flow[..., 1] *= h / size[1]
        else:
            flow = self._dis.calc(cur, prev, None)  # cur(x) ~ prev(x + flow(x))
        reach = float(np.abs(flow).max()) if flow.size else 0.0
        return self._identity(h, w) + flow, reach


def warp_mask(mask: np.ndarray, src_map: np.ndarray, reach: float,
              depth_now: Optional[np.ndarray] = None, depth_src: Optional[np.ndarray] = None,
              gate_m: float = 0.0) -> np.ndarray:
    """``mask`` (source frame, (H, W) bool) pulled into the target frame through ``src_map``.

    Only the mask's box grown by ``reach`` [px] (the largest displacement) is remapped. With both
    depths [m] and ``gate_m`` > 0, target pixels whose depth differs from the source pixel's depth
    by more than ``gate_m`` are dropped (occluded); NaN depth on either side keeps the pixel.
    """
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    out = np.zeros((h, w), bool)
    if ys.size == 0:
        return out
    r = int(np.ceil(reach)) + 1
    y0, y1 = max(0, ys.min() - r), min(h, ys.max() + r + 1)
    x0, x1 = max(0, xs.min() - r), min(w, xs.max() + r + 1)
    mx = np.ascontiguousarray(src_map[y0:y1, x0:x1, 0])
    my = np.ascontiguousarray(src_map[y0:y1, x0:x1, 1])
    roi = cv2.remap(mask.astype(np.uint8), mx, my, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0) > 0
    if gate_m > 0 and depth_now is not None and depth_src is not None:
        d_src = cv2.remap(depth_src, mx, my, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=np.nan)
        d_now = depth_now[y0:y1, x0:x1]
        with np.errstate(invalid="ignore"):
            occluded = np.abs(d_now - d_src) > gate_m  # False where either is NaN
        roi &= ~occluded
    out[y0:y1, x0:x1] = roi
    return out


class FlowPropagator:
    """Tracks' masks moved frame to frame by DIS optical flow (see the module docstring)."""

    name = "flow"

    def __init__(self, config: TwinConfig) -> None:
        self.config = config
        self.flow = FlowField(config.flow_max_side)
        self._masks: dict[int, np.ndarray] = {}
        self._prev_gray: Optional[np.ndarray] = None
        self._prev_depth: Optional[np.ndarray] = None
        self._prev_stamp: Optional[int] = None
        # keyframe in flight: pixel of the latest frame -> its coordinates in the marked frame
        self._chain: Optional[np.ndarray] = None
        self._chain_reach = 0.0

    def set_tracks(self, frame: Frame, masks: dict[int, np.ndarray]) -> None:
        self._masks = {int(t): np.asarray(m, bool) for t, m in masks.items()}
        if self._prev_stamp != int(frame.stamp_ns) or self._prev_gray is None:
            self._prev_gray, self._prev_depth, self._prev_stamp = _gray(frame), frame.depth, int(frame.stamp_ns)

    def propagate(self, frame: Frame) -> dict[int, np.ndarray]:
        gray = _gray(frame)
        prev, prev_depth = self._prev_gray, self._prev_depth
        self._prev_gray, self._prev_depth, self._prev_stamp = gray, frame.depth, int(frame.stamp_ns)
        if prev is None or prev.shape != gray.shape:
            self._chain = None  # a new stream (or size): nothing to carry forward
            return {}
        if not self._masks and self._chain is None:
            return {}
        src_map, reach = self.flow.map(prev, gray)
        if self._chain is not None:
            # compose: latest pixel -> previous frame (src_map) -> marked frame (chain)
            self._chain = cv2.remap(self._chain, src_map[..., 0], src_map[..., 1], cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_REPLICATE)
            self._chain_reach += reach
        gate = self.config.flow_depth_gate_m
        self._masks = {
            tid: warp_mask(m, src_map, reach, frame.depth, prev_depth, gate) for tid, m in self._masks.items()
        }
        return {tid: m.copy() for tid, m in self._masks.items()}

    def forget(self, track_ids: list[int]) -> None:
        for tid in track_ids:
            self._masks.pop(int(tid), None)

    def mark(self, frame: Frame) -> None:
        """A keyframe of ``frame`` (the last frame propagated) went to the background: compose
        flows from here until ``bring_forward``."""
        h, w = frame.shape
        self._chain = self.flow.identity(h, w)
        self._chain_reach = 0.0

    def bring_forward(self, masks: list[np.ndarray]) -> list[np.ndarray]:
        """Masks of the marked frame moved to the last propagated frame (then the mark is cleared)."""
        if self._chain is None:
            return [np.asarray(m, bool) for m in masks]
        chain, reach = self._chain, self._chain_reach
        self._chain = None
        # no depth gate here: over many frames an object's own depth may change by more than the gate
        return [warp_mask(np.asarray(m, bool), chain, reach) for m in masks]


class FlowChain:
    """``mark`` / ``bring_forward`` by DIS flow for a propagator that does not compute flow itself
    (``sam2``): flow is computed only while a keyframe is in flight (from ``observe`` on every frame)."""

    def __init__(self, max_side: int) -> None:
        self.flow = FlowField(max_side)
        self._prev: Optional[np.ndarray] = None
        self._chain: Optional[np.ndarray] = None
        self._reach = 0.0

    def observe(self, frame: Frame) -> None:
        """The propagator moved on to ``frame``: compose its flow while a keyframe is in flight."""
        if self._chain is None:
            return  # nothing in flight: no flow needed (``mark`` takes the reference frame)
        gray = _gray(frame)
        if self._prev is not None and self._prev.shape == gray.shape:
            src_map, reach = self.flow.map(self._prev, gray)
            self._chain = cv2.remap(self._chain, src_map[..., 0], src_map[..., 1], cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_REPLICATE)
            self._reach += reach
        self._prev = gray

    def mark(self, frame: Frame) -> None:
        self._prev = _gray(frame)
        self._chain = self.flow.identity(*frame.shape)
        self._reach = 0.0

    def bring_forward(self, masks: list[np.ndarray]) -> list[np.ndarray]:
        if self._chain is None:
            return [np.asarray(m, bool) for m in masks]
        chain, self._chain = self._chain, None
        return [warp_mask(np.asarray(m, bool), chain, self._reach) for m in masks]
