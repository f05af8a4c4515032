"""Reasoning-segmentation metrics, matching the published benchmark code exactly.

Pure functions (arrays in, numbers out); ROS-free. Every mask argument is a 2-D
``(H, W)`` array, read as boolean (non-zero = foreground). Shapes must agree, else
``ValueError``. See ``docs/metrics.md`` for the conventions and the references.

Image benchmarks (ReasonSeg, LLM-Seg40K, RefCOCOg) -- gIoU / cIoU:
    Reference: LISA ``train_ds.py::validate()`` with ``utils.intersectionAndUnionGPU``
    (ignore_index=255). Per sample, pixels whose ground-truth label is 255 ("ignore"
    and "flag" polygons of ReasonSeg) are removed from both prediction and ground
    truth before counting I and U. gIoU = mean over samples of I/U, where a sample
    with U == 0 (no-object target predicted empty) scores 1.0
    (``acc_iou[union_i == 0] += 1.0``). cIoU = sum(I) / sum(U) (0.0 when sum(U) == 0,
    as LISA's ``/(sum + 1e-10)`` gives). LISA adds 1e-5 to each per-sample union
    and 1e-10 to the summed union; we compute the exact ratio (difference < 1e-5/U).
    Seg-Zero ``evaluation_scripts/calculate_iou.py`` scores U == 0 as 0.0 instead:
    pass ``empty_union=0.0`` (``SEG_ZERO_EMPTY_UNION``).

Video benchmarks (ReVOS, MeViS, Ref-YouTube-VOS) -- J, F, J&F:
    Reference: davis2017-evaluation ``davis2017/metrics.py`` (``db_eval_iou``,
    ``db_eval_boundary`` -> ``f_measure`` + ``_seg2bmap``), which the MeViS / ReVOS
    evaluation scripts import. J is the Jaccard index with both-empty = 1. F is
    the boundary F-measure: boundary maps by ``_seg2bmap``; a boundary pixel is
    matched when the other boundary map, dilated by ``disk(bound_pix)``, covers it;
    ``bound_pix = bound_th`` when ``bound_th >= 1`` else
    ``ceil(bound_th * ||(H, W)||_2)``; both boundaries empty -> 1, exactly one
    empty -> 0. Per expression, J and F are averaged over frames; the benchmark
    J (F) is the mean over expressions; J&F = (J + F) / 2 (MeViS
    ``eval_mevis.py``, ReVOS ``eval_revos.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence

import cv2
import numpy as np

#: Ground-truth label that marks pixels excluded from scoring (LISA ``ignore_label``).
IGNORE_LABEL = 255
#: ``empty_union`` value of LISA ``validate()`` (no-object target predicted empty = 1).
LISA_EMPTY_UNION = 1.0
#: ``empty_union`` value of Seg-Zero ``calculate_iou.py`` (union 0 scored 0).
SEG_ZERO_EMPTY_UNION = 0.0
#: DAVIS default boundary tolerance as a fraction of the image diagonal.
DAVIS_BOUND_TH = 0.008


class MetricInputError(ValueError):
    """Masks given to a metric do not fit together (shape, dimensionality, count)."""


def _as_mask(x: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 2:
        raise MetricInputError(f"{name} must be a 2-D (H, W) mask, got shape {a.shape}")
    return a.astype(bool, copy=False)


def _check_same_shape(**masks: np.ndarray) -> None:
    shapes = {k: np.shape(v) for k, v in masks.items() if v is not None}
    if len(set(shapes.values())) > 1:
        raise MetricInputError(f"mask shapes differ: {shapes}")


def split_label_mask(label: np.ndarray, ignore_label: int = IGNORE_LABEL) -> tuple[np.ndarray, np.ndarray]:
    """Split a ReasonSeg-style label map into ``(gt, ignore)`` boolean masks.

    label: ``(H, W)`` integer map with 0 = background, 1 = target,
    ``ignore_label`` (255) = not scored. Returns ``gt = label == 1`` and
    ``ignore = label == ignore_label``; other values raise ``ValueError``.
    """
    lab = np.asarray(label)
    if lab.ndim != 2:
        raise MetricInputError(f"label map must be 2-D, got shape {lab.shape}")
    bad = ~np.isin(lab, (0, 1, ignore_label))
    if bad.any():
        raise MetricInputError(
            f"label map may only hold 0, 1 and {ignore_label}; found {np.unique(lab[bad])[:5].tolist()}"
        )
    return lab == 1, lab == ignore_label


def intersection_union(
    pred: np.ndarray, gt: np.ndarray, ignore: Optional[np.ndarray] = None
) -> tuple[int, int]:
    """Foreground intersection and union [px] with ``ignore`` pixels removed from both.

    Matches LISA ``intersectionAndUnionGPU(output, target, 2, ignore_index=255)``
    class 1: prediction pixels under the ignore label are set to the ignore label,
    so they count neither in I nor in U.
    """
    p = _as_mask(pred, "pred")
    g = _as_mask(gt, "gt")
    ig = None if ignore is None else _as_mask(ignore, "ignore")
    _check_same_shape(pred=p, gt=g, ignore=ig)
    if ig is not None:
        keep = ~ig
        p = p & keep
        g = g & keep
    return int(np.count_nonzero(p & g)), int(np.count_nonzero(p | g))


def iou(
    pred: np.ndarray,
    gt: np.ndarray,
    ignore: Optional[np.ndarray] = None,
    empty_union: float = LISA_EMPTY_UNION,
) -> float:
    """Per-sample IoU in [0, 1], ignore pixels excluded; ``empty_union`` when U == 0.

    ``empty_union=1.0`` is LISA (a no-object target predicted empty is correct),
    ``0.0`` is Seg-Zero.
    """
    return iou_of_counts(*intersection_union(pred, gt, ignore), empty_union)


def iou_of_counts(intersection: int, union: int, empty_union: float = LISA_EMPTY_UNION) -> float:
    """``intersection / union`` [px / px]; ``empty_union`` when the union is empty (see ``iou``)."""
    return float(empty_union) if union == 0 else intersection / union


@dataclass
class GIoUCIoU:
    """Accumulator for gIoU (mean per-sample IoU) and cIoU (sum I / sum U).

    empty_union: score of a sample whose union is empty (LISA 1.0, Seg-Zero 0.0).
    Call ``add`` once per (query, mask) sample; read ``giou`` / ``ciou``.
    """

    empty_union: float = LISA_EMPTY_UNION
    per_sample: list[float] = field(default_factory=list)
    sum_intersection: int = 0
    sum_union: int = 0

    def add(self, pred: np.ndarray, gt: np.ndarray, ignore: Optional[np.ndarray] = None) -> float:
        """Score one sample; returns its IoU."""
        return self.add_counts(*intersection_union(pred, gt, ignore))

    def add_counts(self, intersection: int, union: int) -> float:
        """Score one sample from its intersection and union [px] (``intersection_union``); returns its IoU."""
        s = iou_of_counts(intersection, union, self.empty_union)
        self.per_sample.append(s)
        self.sum_intersection += intersection
        self.sum_union += union
        return s

    @property
    def n(self) -> int:
        return len(self.per_sample)

    @property
    def giou(self) -> float:
        """Mean per-sample IoU; raises ``RuntimeError`` before any sample was added."""
        if not self.per_sample:
            raise RuntimeError("gIoU of zero samples is undefined; call add() first")
        return float(np.mean(self.per_sample))

    @property
    def ciou(self) -> float:
        """sum(I) / sum(U); 0.0 when every union was empty (as LISA and Seg-Zero)."""
        if not self.per_sample:
            raise RuntimeError("cIoU of zero samples is undefined; call add() first")
        if self.sum_union == 0:
            return 0.0
        return self.sum_intersection / self.sum_union

    def summary(self) -> dict:
        return {"gIoU": self.giou, "cIoU": self.ciou, "n": self.n}


def giou_ciou(
    preds: Iterable[np.ndarray],
    gts: Iterable[np.ndarray],
    ignores: Optional[Iterable[Optional[np.ndarray]]] = None,
    empty_union: float = LISA_EMPTY_UNION,
) -> tuple[float, float]:
    """``(gIoU, cIoU)`` over paired samples; see ``GIoUCIoU``."""
    preds, gts = list(preds), list(gts)
    ign = [None] * len(preds) if ignores is None else list(ignores)
    if not (len(preds) == len(gts) == len(ign)):
        raise MetricInputError(f"got {len(preds)} predictions, {len(gts)} ground truths, {len(ign)} ignore masks")
    acc = GIoUCIoU(empty_union=empty_union)
    for p, g, ig in zip(preds, gts, ign):
        acc.add(p, g, ig)
    return acc.giou, acc.ciou


# ----------------------------------------------------------------------------- DAVIS J / F


def j_region(pred: np.ndarray, gt: np.ndarray) -> float:
    """Region similarity J = |P & G| / |P | G|; 1.0 when both are empty (davis ``db_eval_iou``)."""
    return iou(pred, gt, None, empty_union=1.0)


def seg2bmap(mask: np.ndarray) -> np.ndarray:
    """One-pixel boundary map ``(H, W)`` bool of a binary mask (davis ``_seg2bmap``, same size).

    A pixel is on the boundary when it differs from its east, south or south-east
    neighbour (outside the image counts as background); the last row only compares
    east, the last column only south, and the bottom-right pixel is never boundary.
    """
    seg = _as_mask(mask, "mask")
    e = np.zeros_like(seg)
    s = np.zeros_like(seg)
    se = np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    b = (seg ^ e) | (seg ^ s) | (seg ^ se)
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = False
    return b


def boundary_tolerance_px(shape: Sequence[int], bound_th: float = DAVIS_BOUND_TH) -> float:
    """Dilation radius [px]: ``bound_th`` if >= 1, else ``ceil(bound_th * sqrt(H^2 + W^2))``."""
    if bound_th <= 0:
        raise ValueError(f"bound_th must be positive, got {bound_th}")
    if bound_th >= 1:
        return float(bound_th)
    return float(math.ceil(bound_th * float(np.linalg.norm(np.asarray(shape[:2], dtype=np.float64)))))


def _disk(radius: float) -> np.ndarray:
    """skimage ``morphology.disk(radius)`` (strict radius): ``x^2 + y^2 <= r^2`` on ``arange(-r, r+1)``."""
    grid = np.arange(-radius, radius + 1)
    x, y = np.meshgrid(grid, grid)
    return ((x**2 + y**2) <= radius**2).astype(np.uint8)


def boundary_precision_recall(
    pred: np.ndarray,
    gt: np.ndarray,
    bound_th: float = DAVIS_BOUND_TH,
    void: Optional[np.ndarray] = None,
) -> tuple[float, float]:
    """Boundary precision and recall of davis ``f_measure`` (see ``f_boundary``)."""
    p = _as_mask(pred, "pred")
    g = _as_mask(gt, "gt")
    v = None if void is None else _as_mask(void, "void")
    _check_same_shape(pred=p, gt=g, void=v)
    if v is not None:
        p = p & ~v
        g = g & ~v
    r = boundary_tolerance_px(p.shape, bound_th)
    fg_b = seg2bmap(p)
    gt_b = seg2bmap(g)
    kernel = _disk(r)
    fg_dil = cv2.dilate(fg_b.astype(np.uint8), kernel).astype(bool)
    gt_dil = cv2.dilate(gt_b.astype(np.uint8), kernel).astype(bool)
    n_fg = int(np.count_nonzero(fg_b))
    n_gt = int(np.count_nonzero(gt_b))
    if n_fg == 0 and n_gt > 0:
        return 1.0, 0.0
    if n_fg > 0 and n_gt == 0:
        return 0.0, 1.0
    if n_fg == 0 and n_gt == 0:
        return 1.0, 1.0
    precision = np.count_nonzero(fg_b & gt_dil) / n_fg
    recall = np.count_nonzero(gt_b & fg_dil) / n_gt
    return float(precision), float(recall)


def f_boundary(
    pred: np.ndarray,
    gt: np.ndarray,
    bound_th: float = DAVIS_BOUND_TH,
    void: Optional[np.ndarray] = None,
) -> float:
    """Boundary F-measure of davis2017 ``db_eval_boundary`` / ``f_measure``.

    bound_th: tolerance; < 1 is a fraction of the image diagonal (tolerance
    ``ceil(bound_th * diag)`` px), >= 1 is pixels. void: optional ``(H, W)`` mask
    removed from both masks first (davis ``void_pixels``). Both boundaries empty
    -> 1.0; exactly one empty -> 0.0.
    """
    precision, recall = boundary_precision_recall(pred, gt, bound_th, void)
    if precision + recall == 0:
        return 0.0
    return 2.0 * precision * recall / (precision + recall)


def jf(pred: np.ndarray, gt: np.ndarray, bound_th: float = DAVIS_BOUND_TH) -> float:
    """(J + F) / 2 of one frame."""
    return 0.5 * (j_region(pred, gt) + f_boundary(pred, gt, bound_th))


@dataclass(frozen=True)
class VideoJF:
    """Video benchmark result: means over expressions of per-expression frame means.

    per_expression: ``(J_e, F_e)`` per expression, in input order.
    """

    j: float
    f: float
    per_expression: tuple[tuple[float, float], ...]

    @property
    def jf(self) -> float:
        return 0.5 * (self.j + self.f)

    def summary(self) -> dict:
        return {"J": self.j, "F": self.f, "J&F": self.jf, "n_expressions": len(self.per_expression)}

    @classmethod
    def of_expressions(cls, per_expression: Iterable[tuple[float, float]]) -> "VideoJF":
        """The benchmark result from each expression's ``(J_e, F_e)`` (``expression_jf``): unweighted
        means over expressions."""
        per = tuple((float(j), float(f)) for j, f in per_expression)
        if not per:
            raise MetricInputError("video J&F needs at least one expression")
        return cls(j=float(np.mean([x[0] for x in per])), f=float(np.mean([x[1] for x in per])), per_expression=per)


def expression_jf(
    pred_frames: Sequence[np.ndarray], gt_frames: Sequence[np.ndarray], bound_th: float = DAVIS_BOUND_TH
) -> tuple[float, float]:
    """``(J, F)`` of one expression: per-frame davis J and F averaged over its frames."""
    if len(pred_frames) != len(gt_frames):
        raise MetricInputError(f"{len(pred_frames)} predicted frames vs {len(gt_frames)} ground-truth frames")
    if len(gt_frames) == 0:
        raise MetricInputError("an expression needs at least one frame")
    js = [j_region(p, g) for p, g in zip(pred_frames, gt_frames)]
    fs = [f_boundary(p, g, bound_th) for p, g in zip(pred_frames, gt_frames)]
    return float(np.mean(js)), float(np.mean(fs))


def video_jf(
    expressions: Iterable[tuple[Sequence[np.ndarray], Sequence[np.ndarray]]],
    bound_th: float = DAVIS_BOUND_TH,
) -> VideoJF:
    """Benchmark J, F, J&F over ``(pred_frames, gt_frames)`` pairs, one per expression.

    As MeViS ``eval_mevis.py`` / ReVOS: each expression's J and F are frame means;
    the result is the unweighted mean over expressions (long videos do not weigh more).
    """
    per = tuple(expression_jf(p, g, bound_th) for p, g in expressions)
    if not per:
        raise MetricInputError("video_jf needs at least one expression")
    return VideoJF.of_expressions(per)


# --------------------------------------------------------------------------------------------
# Paired comparison of two systems on the same queries
# --------------------------------------------------------------------------------------------

# The benchmark statistics as functions of per-query components (rows = queries): gIoU and J&F are
# means of one value per query (the sample's IoU; the expression's (J + F) / 2); cIoU is a ratio of
# sums, so a query contributes its intersection and union in pixels.
PAIRED_STATS = {
    "gIoU": lambda c: float(np.mean(c[:, 0])),
    "cIoU": lambda c: float(c[:, 0].sum() / c[:, 1].sum()) if c[:, 1].sum() > 0 else 0.0,
    "J&F": lambda c: float(np.mean(c[:, 0])),
}


@dataclass(frozen=True)
class PairedDelta:
    """``b - a`` on one statistic over the same queries, with a paired-bootstrap interval.

    delta: the statistic of b less that of a on all queries; lo, hi: the ``level`` percentile
    interval of that difference over ``n_boot`` resamples of the queries (the same resampled
    queries for both systems); wins / losses: queries whose own score (first component) is
    higher / lower for b by more than 1e-9; n: queries.
    """

    delta: float
    lo: float
    hi: float
    n: int
    wins: int
    losses: int
    level: float

    @property
    def ties(self) -> int:
        return self.n - self.wins - self.losses


def paired_bootstrap(
    a: np.ndarray, b: np.ndarray, stat, n_boot: int = 10000, level: float = 0.95, seed: int = 0
) -> PairedDelta:
    """``stat(b) - stat(a)`` and its paired-bootstrap percentile interval.

    a, b: ``(n, k)`` per-query components of two systems on the same n queries, row i of both
    the same query (e.g. ``(iou,)`` or ``(intersection, union)``, see ``PAIRED_STATS``); ``stat``
    maps such an array to a number. Each resample draws n query indices with replacement and
    scores both systems on them, so what the two systems share (which queries are hard) cancels.
    """
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if b.ndim == 1:
        b = b[:, None]
    if a.shape != b.shape or a.ndim != 2:
        raise MetricInputError(f"paired components must have the same (n, k) shape, got {a.shape} and {b.shape}")
    n = a.shape[0]
    if n == 0:
        raise MetricInputError("a paired comparison needs at least one query")
    if not 0.0 < level < 1.0:
        raise MetricInputError(f"level must be in (0, 1), got {level}")
    if int(n_boot) < 1:
        raise MetricInputError(f"n_boot must be at least 1 resample, got {n_boot}")
    rng = np.random.default_rng(seed)
    deltas = np.empty(int(n_boot))
    for r in range(int(n_boot)):
        idx = rng.integers(0, n, n)
        deltas[r] = stat(b[idx]) - stat(a[idx])
    tail = 100.0 * (1.0 - level) / 2.0
    lo, hi = np.percentile(deltas, [tail, 100.0 - tail])
    d = b[:, 0] - a[:, 0]
    return PairedDelta(delta=stat(b) - stat(a), lo=float(lo), hi=float(hi), n=n,
                       wins=int((d > 1e-9).sum()), losses=int((d < -1e-9).sum()), level=level)
