"""The ``flow`` propagator: OpenCV DIS optical flow moves each track's mask to the next frame.

Per frame (``propagate``): one dense DIS flow from the new frame back to the previous one
(``cv2.DISOpticalFlow``, preset ULTRAFAST down to pyramid level 1, computed on a grey image scaled so its longer side is
at most ``flow_max_side`` px, then scaled back), then every track's mask is pulled through it
(backward warping, nearest neighbour: no holes, one ``cv2.remap`` over the mask's box grown by the
largest displacement). With depth images on both frames, a warped pixel is dropped when the depth
it lands on differs from the depth it came from by more than ``flow_depth_gate_m``: that is the
occluder moving over the object, which flow alone would paint with the object's id.

Boundary refinement (``flow_refine``, on by default): the warped masks are only seeds. Each frame,
all tracks are re-derived together by one marker-based watershed (``cv2.watershed``) on the
current image, over the box around the tracks: each track's warped mask eroded by
``REFINE_ERODE_PX`` is its sure core, everything farther than ``REFINE_BAND_PX`` from every
warped mask is sure background, and the band in between goes to whichever side floods it across
the smaller colour step. Depth discontinuities (a step between neighbours > ``REFINE_DEPTH_STEP_M``
+ ``REFINE_DEPTH_STEP_REL`` x depth; the farther pixel of the step) are made walls the flood
crosses last, so a mask snaps to where the object's silhouette is in depth as well as colour. An
invalid depth pixel next to valid ones counts as the farthest of them (``_depth_filled``): depth
images leave a seam of invalid pixels along silhouettes, which would otherwise hide the step.
A watershed line pixel joins its most similar neighbour (colour, not across a depth step). Where
warped masks overlap, the nearer track (median depth of its warped mask) is in front: farther
tracks' cores are cleared from its whole warped mask, the image decides the overlap, and the final
masks are made disjoint nearest first. A refined mask's holes are filled, a pixel it gained must lie
within the warped mask's depth range (2nd-98th percentile) widened by one wall step (no creeping
down a smooth slope that no step marks), and a refinement that grows a mask's area (less what nearer
tracks cover) by more than ``REFINE_AREA_RATIO``, or shrinks it by more than
``REFINE_SHRINK_RATIO``, is not trusted (the warped mask, less nearer tracks' masks, is kept). The
shrink check is the tighter one: real loss of area (occlusion by a nearer object, leaving the image)
is already out of the warped mask (depth gate, nearer tracks, image border), so a refinement that
eats much more is flooding through an edge inside the object (a shaded underside the colour of the
floor it stands on). The refined mask is what is warped next frame, so drift is corrected every
frame instead of accumulating. Pixel sizes are for a 320 px longer side and grow with larger images.
The keyframe masks brought forward (``bring_forward``) are refined on the latest frame the same way.

Keyframes computed in the background (``mark`` / ``bring_forward``): while a keyframe of frame k is
in flight, the per-frame flows are composed into one map "pixel of the latest frame -> where it
was in frame k" (one 2-channel remap per frame), so the keyframe's masks land on the current frame
with one remap each, however many frames the model took.

Colour and depth images only, never ``frame.gt``. Costs are measured in docs/performance.md (twin two-tier rows).
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


# Refinement settings, chosen on sim val episodes 10000-10004 (320x240, keyframes every 10, J of the
# twin's masks, docs/performance.md; J 90.0 there) and confirmed on held-out episodes: band 6 px (4 or
# 8: within 0.2 J), core erosion 2 px (1: -7 J, 3: -0.8), area ratio 1.3 (1.2: -1.0, 1.5: -0.7; no
# check at all: -5 J in an earlier variant), depth walls 3 cm + 2 % of depth (none: -1.3 J); Lab
# instead of RGB, a median blur, or DIS down to pyramid level 0 did not help.
# Invalid-depth seams (jloss over val 10000-10009, 30 frames, the report's N=10 row; train 0-4 as
# held-out): filling a NaN pixel with its farthest valid 3x3 neighbour for the walls took J 92.94 ->
# 93.24 (FP 1.34 -> 1.07 J points; train 88.93 -> 89.43); the nearest neighbour instead: 91.34; the
# filled depth in _resolve_lines as well: 90.74 (the sim labels 84 % of seam pixels as the nearer side).
# Shrink ratio, same measure (J val / train 0-4 / train 5-9): 1.3 (= the grow ratio) 93.24 / 89.43 /
# 80.85; 1.15: 93.50 / 89.64 / 81.50 (FN 2.31 -> 1.96 J points on val, FP 1.07 -> 1.17: an earlier
# leak is corrected less often); 1.1: 93.37 / 89.51; 1.2: 93.37 / - / 81.44; 1.5: 93.21. The grow
# ratio stays: 1.2: 92.80, 1.5: 93.26 (with shrink 1.3).
# Depth range of gained pixels (2nd-98th percentile of the warped mask's depth, widened by one wall
# step): J val 93.50 -> 93.67 (FP 1.17 -> 1.00), train 0-4 89.64 -> 89.79, train 5-9 81.50 -> 81.56;
# + 0.1 m more: 93.65; about 0.3 ms a frame. Rechecked with these: band 4 / 8 px: 93.31 / 93.12,
# erode 1.5 / 2.5 px: 93.30 / 93.49 (6 and 2 stay).
REFINE_BAND_PX = 6.0
REFINE_ERODE_PX = 2.0
REFINE_AREA_RATIO = 1.3
REFINE_SHRINK_RATIO = 1.15
REFINE_DEPTH_STEP_M = 0.03
REFINE_DEPTH_STEP_REL = 0.02
_REFINE_REF_SIDE = 320.0  # the pixel sizes above are for this longer image side


def _wall_step_m(depth):
    """The depth step [m] that makes a wall at ``depth`` [m]: ``REFINE_DEPTH_STEP_M +
    REFINE_DEPTH_STEP_REL * depth`` (works on arrays and scalars)."""
    return REFINE_DEPTH_STEP_M + REFINE_DEPTH_STEP_REL * depth


def _valid_depth(depth: np.ndarray) -> np.ndarray:
    """``depth`` [m] as float32 with NaN where it is invalid (NaN or <= 0)."""
    return np.where(np.isfinite(depth) & (depth > 0), depth, np.nan).astype(np.float32)


def _depth_filled(depth: np.ndarray) -> np.ndarray:
    """``depth`` as float32 with NaN where invalid (NaN / <= 0), except that an invalid pixel next
    to valid ones takes the FARTHEST valid depth of its 3x3 neighbourhood. Depth images (the sim's,
    and real sensors' after flying-pixel removal) leave invalid pixels along silhouettes, on the far
    side: without the fill a one-pixel NaN seam hides the step from ``_depth_walls`` and the flood
    leaks through it (a bottle's neck flooding the wall 0.5 m behind it)."""
    d = _valid_depth(depth)
    bad = np.isnan(d)
    if bad.any():
        far = cv2.dilate(np.where(bad, -np.inf, d).astype(np.float32), np.ones((3, 3), np.uint8))
        fill = bad & np.isfinite(far)
        d[fill] = far[fill]
    return d


def _depth_walls(d: np.ndarray) -> np.ndarray:
    """(H, W) bool: the farther pixel of every 4-neighbour depth step larger than
    ``REFINE_DEPTH_STEP_M + REFINE_DEPTH_STEP_REL * depth`` (``d`` from ``_depth_filled``; NaN: no step)."""
    thr = _wall_step_m(np.nan_to_num(d, nan=0.0))
    wall = np.zeros(d.shape, bool)
    with np.errstate(invalid="ignore"):
        # horizontal neighbours (x, x + 1), then vertical ones (y, y + 1)
        a, b = d[:, :-1], d[:, 1:]
        step = np.abs(a - b) > thr[:, 1:]  # False where either side is NaN
        wall[:, :-1] |= step & (a > b)
        wall[:, 1:] |= step & (b > a)
        a, b = d[:-1, :], d[1:, :]
        step = np.abs(a - b) > thr[1:, :]
        wall[:-1, :] |= step & (a > b)
        wall[1:, :] |= step & (b > a)
    return wall


def _resolve_lines(markers: np.ndarray, rgb: np.ndarray, depth: Optional[np.ndarray]) -> None:
    """Each watershed line pixel (-1) takes the label of its most similar labelled 4-neighbour (in
    place): nearest colour, never across a depth step when another neighbour is on its side of it.
    The line lies on the edge, and the edge pixel belongs to one side or the other."""
    line = markers == -1
    line[0, :] = line[-1, :] = line[:, 0] = line[:, -1] = False  # the crop's border: watershed's own frame
    if not line.any():
        return
    ys, xs = np.nonzero(line)
    c = rgb[ys, xs].astype(np.int32)
    d = None
    if depth is not None:
        # raw depth here, not ``_depth_filled``: a line pixel on a NaN seam joins by colour (filling
        # the seam with the far depth here too lost 2.5 J on the sim val episodes)
        d = _valid_depth(depth)
        dp = d[ys, xs]
        thr = _wall_step_m(np.nan_to_num(dp, nan=0.0))
    best = np.full(ys.size, np.iinfo(np.int32).max, np.int32)
    lab = np.ones(ys.size, np.int32)
    for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):
        ny, nx = ys + dy, xs + dx
        nl = markers[ny, nx]
        diff = np.abs(rgb[ny, nx].astype(np.int32) - c).max(-1)
        if d is not None:
            with np.errstate(invalid="ignore"):
                diff += 256 * (np.abs(d[ny, nx] - dp) > thr)  # across a depth step: only as a last resort
        take = (nl > 0) & (diff < best)
        best[take], lab[take] = diff[take], nl[take]
    markers[ys, xs] = lab


def _mask_depths(depth: Optional[np.ndarray], mask: np.ndarray) -> np.ndarray:
    """The valid depths [m] under ``mask`` (empty without depth)."""
    if depth is None:
        return np.zeros(0, np.float32)
    v = depth[mask]
    return v[np.isfinite(v) & (v > 0)]


def refine_masks(masks: dict[int, np.ndarray], rgb: np.ndarray,
                 depth: Optional[np.ndarray] = None) -> dict[int, np.ndarray]:
    """Warped masks ``{track: (H, W) bool}`` snapped to the colour and depth edges of this frame
    (``rgb`` (H, W, 3) uint8, ``depth`` (H, W) [m] or None: colour only); see the module docstring.
    Returns new masks, pairwise disjoint (the nearer track keeps a contested pixel); empty masks stay empty."""
    ids = [t for t, m in masks.items() if m.any()]
    out = {t: m for t, m in masks.items()}
    if not ids:
        return out
    h, w = rgb.shape[:2]
    s = max(1.0, max(h, w) / _REFINE_REF_SIDE)  # drift in px grows with the image; smaller images keep the sizes
    band = max(1, int(round(REFINE_BAND_PX * s)))
    erode = max(1.0, REFINE_ERODE_PX * s)
    union = np.zeros((h, w), bool)
    for t in ids:
        union |= masks[t]
    ys, xs = np.nonzero(union)
    r = band + 2
    y0, y1 = max(0, ys.min() - r), min(h, ys.max() + r + 1)
    x0, x1 = max(0, xs.min() - r), min(w, xs.max() + r + 1)
    crop = {t: np.ascontiguousarray(masks[t][y0:y1, x0:x1], dtype=np.uint8) for t in ids}
    img = np.array(rgb[y0:y1, x0:x1], np.uint8)  # a copy: depth walls are painted into it
    dc = _depth_filled(depth[y0:y1, x0:x1]) if depth is not None else None
    if dc is not None:
        wall = _depth_walls(dc)
        # a wall pixel is far (>= 128) from any colour in every channel: the flood crosses it last
        img[wall] = np.where(img[wall] >= 128, 0, 255).astype(np.uint8)
    markers = np.zeros(img.shape[:2], np.int32)
    kb = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1, 2 * band + 1))
    markers[cv2.dilate(union[y0:y1, x0:x1].astype(np.uint8), kb) == 0] = 1  # sure background
    # farther first: a nearer track clears farther cores from all of its warped mask (it is in front
    # there), then the watershed decides that overlap by the image's edges
    draw = depth[y0:y1, x0:x1] if depth is not None else None
    zs = {t: _mask_depths(draw, crop[t] > 0) for t in ids}  # each warped mask's valid depths [m]
    order = sorted(ids, key=lambda t: -(float(np.median(zs[t])) if zs[t].size else 0.0))
    for i, t in enumerate(order):
        markers[(crop[t] > 0) & (markers > 1)] = 0
        dist = cv2.distanceTransform(crop[t], cv2.DIST_L2, 3)
        top = float(dist.max())
        core = dist > min(erode, 0.5 * top)  # a thin object keeps its middle
        if not core.any():
            core = dist >= top
        markers[core] = i + 2
    cv2.watershed(img, markers)  # labels every pixel; -1 on the lines between regions
    _resolve_lines(markers, rgb[y0:y1, x0:x1], draw)
    # nearest first: each mask loses what nearer tracks hold, so the masks are pairwise disjoint
    taken = np.zeros(markers.shape, bool)  # final masks of the nearer tracks
    nearer = [np.zeros(markers.shape, bool)]  # nearer[k]: warped masks of the k nearest tracks
    for t in reversed(order):
        nearer.append(nearer[-1] | (crop[t] > 0))
    for k, (i, t) in enumerate(reversed(list(enumerate(order)))):
        lab = (markers == i + 2).astype(np.uint8)
        contours, _ = cv2.findContours(lab, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        filled = np.zeros_like(lab)
        cv2.drawContours(filled, contours, -1, 1, -1)  # holes filled
        mine = filled > 0
        if draw is not None:
            # a pixel the flood added must lie within the warped mask's depth range (2nd-98th
            # percentile) widened by one wall step: no smooth slope away from the object
            warped = crop[t] > 0
            if zs[t].size >= 10:
                lo, hi = np.percentile(zs[t], [2, 98])
                lo -= _wall_step_m(lo)
                hi += _wall_step_m(hi)
                with np.errstate(invalid="ignore"):
                    mine &= warped | ~((draw < lo) | (draw > hi))  # NaN depth: kept
        # the area to expect: the warped mask less what nearer tracks cover (occluded now)
        a0, a1 = int(((crop[t] > 0) & ~nearer[k]).sum()), int(mine.sum())
        if a1 > REFINE_AREA_RATIO * a0 or a1 * REFINE_SHRINK_RATIO < a0:
            mine = crop[t] > 0  # leaked or collapsed: the warped mask is kept
        mine &= ~taken
        taken |= mine
        full = np.zeros((h, w), bool)
        full[y0:y1, x0:x1] = mine
        out[t] = full
    return out


class FlowPropagator:
    """Tracks' masks moved frame to frame by DIS optical flow (see the module docstring).

    Besides masks it carries images: ``carry`` moves an image of the previous frame to the frame
    just propagated (the background depth of a colour-only camera, ``depth_runs: background``),
    and ``mark`` / ``bring_forward`` / ``bring_forward_image`` keep one composed flow per ``key``
    ("keyframe", "depth") while a background job on a marked frame computes.
    """

    name = "flow"

    def __init__(self, config: TwinConfig) -> None:
        self.config = config
        self.flow = FlowField(config.flow_max_side)
        self._masks: dict[int, np.ndarray] = {}
        self._prev_gray: Optional[np.ndarray] = None
        self._prev_depth: Optional[np.ndarray] = None
        self._prev_stamp: Optional[int] = None
        # background jobs in flight, by key: (pixel of the latest frame -> its coordinates in the
        # marked frame, largest displacement summed [px])
        self._chains: dict[str, tuple[np.ndarray, float]] = {}
        self._step: Optional[np.ndarray] = None  # the last frame's own source map (``carry``)
        self._last: Optional[Frame] = None  # the last frame propagated (refines brought-forward masks)

    def set_tracks(self, frame: Frame, masks: dict[int, np.ndarray]) -> None:
        self._masks = {int(t): np.asarray(m, bool) for t, m in masks.items()}
        if self._prev_stamp != int(frame.stamp_ns) or self._prev_gray is None:
            self._prev_gray, self._prev_depth, self._prev_stamp = _gray(frame), frame.depth, int(frame.stamp_ns)

    def propagate(self, frame: Frame) -> dict[int, np.ndarray]:
        gray = _gray(frame)
        prev, prev_depth = self._prev_gray, self._prev_depth
        self._prev_gray, self._prev_depth, self._prev_stamp = gray, frame.depth, int(frame.stamp_ns)
        self._step = None
        if prev is None or prev.shape != gray.shape:
            self._chains = {}  # a new stream (or size): nothing to carry forward
            return {}
        if not self._masks and not self._chains:
            return {}
        src_map, reach = self.flow.map(prev, gray)
        self._step = src_map
        for key, (chain, r) in self._chains.items():
            # compose: latest pixel -> previous frame (src_map) -> marked frame (chain)
            self._chains[key] = (cv2.remap(chain, src_map[..., 0], src_map[..., 1], cv2.INTER_LINEAR,
                                           borderMode=cv2.BORDER_REPLICATE), r + reach)
        gate = self.config.flow_depth_gate_m
        self._masks = {
            tid: warp_mask(m, src_map, reach, frame.depth, prev_depth, gate) for tid, m in self._masks.items()
        }
        self._last = frame
        if self.config.flow_refine:
            self._masks = refine_masks(self._masks, frame.rgb, frame.depth)
        return {tid: m.copy() for tid, m in self._masks.items()}

    def forget(self, track_ids: list[int]) -> None:
        for tid in track_ids:
            self._masks.pop(int(tid), None)

    def mark(self, frame: Frame, key: str = "keyframe") -> None:
        """A background job (``key``) took ``frame`` (the last frame propagated): compose flows from
        here until ``bring_forward`` / ``bring_forward_image`` with the same key."""
        h, w = frame.shape
        self._chains[key] = (self.flow.identity(h, w), 0.0)

    def bring_forward(self, masks: list[np.ndarray], key: str = "keyframe") -> list[np.ndarray]:
        """Masks of the marked frame moved to the last propagated frame (then the mark is cleared)."""
        if key not in self._chains:
            return [np.asarray(m, bool) for m in masks]
        chain, reach = self._chains.pop(key)
        # no depth gate here: over many frames an object's own depth may change by more than the gate
        moved = [warp_mask(np.asarray(m, bool), chain, reach) for m in masks]
        if self.config.flow_refine and self._last is not None and moved:
            refined = refine_masks(dict(enumerate(moved)), self._last.rgb, self._last.depth)
            moved = [refined[i] for i in range(len(moved))]
        return moved

    def bring_forward_image(self, image: np.ndarray, key: str) -> Optional[np.ndarray]:
        """An image ``(H, W)`` of the frame marked under ``key`` moved to the last propagated frame
        (nearest neighbour; NaN where it came from outside the image), then the mark is cleared;
        None when nothing is marked under ``key`` (a new stream since)."""
        if key not in self._chains:
            return None
        chain, _ = self._chains.pop(key)
        return _remap_image(image, chain)

    def carry(self, image: np.ndarray) -> Optional[np.ndarray]:
        """An image ``(H, W)`` of the previous frame moved to the frame just propagated (nearest
        neighbour, NaN from outside); None when that frame computed no flow (first frame of a
        stream, or nothing to track and nothing marked)."""
        if self._step is None or self._step.shape[:2] != np.shape(image)[:2]:
            return None
        return _remap_image(image, self._step)


def _remap_image(image: np.ndarray, src_map: np.ndarray) -> np.ndarray:
    """``image`` ``(H, W)`` pulled through ``src_map`` ``(H, W, 2)`` [px] as float32, nearest
    neighbour (a depth edge stays an edge), NaN for sources outside the image."""
    return cv2.remap(np.asarray(image, np.float32), np.ascontiguousarray(src_map[..., 0]),
                     np.ascontiguousarray(src_map[..., 1]), cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                     borderValue=np.nan)


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
