"""COCO mask encodings without pycocotools: column-major RLE, compressed counts, polygons.

The benchmark files (ReVOS / MeViS ``mask_dict.json``, LLM-Seg40K ``rle_seg``,
COCO ``instances.json``) store masks the way ``pycocotools.mask`` does:

- RLE over the mask flattened in **column-major (Fortran) order**, counts
  alternating 0-runs and 1-runs starting with a 0-run -- unlike the row-major RLE
  of ``frs_ros.masks``;
- ``counts`` either a list of ints ("uncompressed RLE") or a string in the
  LEB128-like 6-bits-per-char code of ``maskApi.c::rleToString`` / ``rleFrString``
  (ASCII 48..111; from the 4th count on, the difference to the count two before
  is coded);
- polygons ``[[x1, y1, x2, y2, ...], ...]`` [px] rasterised by
  ``maskApi.c::rleFrPoly`` (upsampled x5 boundary walk), which is reproduced
  here line by line so that RefCOCOg polygon masks come out bit-identical.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np


class CocoMaskError(ValueError):
    """A COCO segmentation entry is malformed (size, counts, or polygon)."""


def encode_counts(mask: np.ndarray) -> list[int]:
    """Column-major run lengths of a ``(H, W)`` mask, starting with a 0-run."""
    m = np.asarray(mask)
    if m.ndim != 2:
        raise CocoMaskError(f"mask must be 2-D, got shape {m.shape}")
    flat = m.astype(bool).ravel(order="F")
    if flat.size == 0:
        return [0]
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    runs = np.diff(np.concatenate([[0], change, [flat.size]])).tolist()
    if flat[0]:
        runs = [0] + runs
    return [int(r) for r in runs]


def counts_to_string(counts: Sequence[int]) -> str:
    """``maskApi.c::rleToString``: compress run lengths into the COCO ASCII code."""
    out = []
    for i, c in enumerate(counts):
        x = int(c)
        if i > 2:
            x -= int(counts[i - 2])
        more = True
        while more:
            ch = x & 0x1F
            x >>= 5  # arithmetic shift, as C's signed long
            more = (x != -1) if (ch & 0x10) else (x != 0)
            if more:
                ch |= 0x20
            out.append(chr(ch + 48))
    return "".join(out)


def string_to_counts(s: str) -> list[int]:
    """``maskApi.c::rleFrString``: decode the COCO ASCII code into run lengths."""
    counts: list[int] = []
    p = 0
    n = len(s)
    while p < n:
        x = 0
        k = 0
        more = True
        while more:
            if p >= n:
                raise CocoMaskError(f"truncated compressed RLE string at char {p}")
            c = ord(s[p]) - 48
            if not 0 <= c < 64:
                raise CocoMaskError(f"invalid character {s[p]!r} in compressed RLE string")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def encode(mask: np.ndarray, compressed: bool = True) -> dict:
    """``pycocotools.mask.encode`` equivalent: ``{"size": [H, W], "counts": str | list}``."""
    m = np.asarray(mask)
    counts = encode_counts(m)
    return {"size": [int(m.shape[0]), int(m.shape[1])], "counts": counts_to_string(counts) if compressed else counts}


def decode(rle: dict) -> np.ndarray:
    """Decode a COCO RLE dict (string or list counts, str or bytes) to ``(H, W)`` bool."""
    try:
        h, w = (int(v) for v in rle["size"])
        counts: Any = rle["counts"]
    except (KeyError, TypeError, ValueError) as exc:
        raise CocoMaskError(f"RLE must be a dict with 'size': [H, W] and 'counts', got {rle!r:.80}") from exc
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    if isinstance(counts, str):
        counts = string_to_counts(counts)
    counts = np.asarray(counts, dtype=np.int64)
    if (counts < 0).any() or int(counts.sum()) != h * w:
        raise CocoMaskError(f"RLE counts sum to {int(counts.sum())}, expected H*W = {h}*{w} = {h * w}")
    values = np.zeros(counts.size, dtype=bool)
    values[1::2] = True
    return np.repeat(values, counts).reshape((h, w), order="F")


def _c_int_round(x: float) -> int:
    """C ``(int)(x + .5)``: truncation toward zero after adding one half."""
    return int(math.trunc(x + 0.5))


def polygon_counts(xy: Sequence[float], h: int, w: int) -> list[int]:
    """``maskApi.c::rleFrPoly``: run lengths (column-major) of one polygon ``[x1, y1, ...]``."""
    if len(xy) < 6 or len(xy) % 2:
        raise CocoMaskError(f"polygon needs an even number (>= 6) of coordinates, got {len(xy)}")
    scale = 5.0
    k = len(xy) // 2
    x = [_c_int_round(scale * float(xy[2 * j])) for j in range(k)]
    y = [_c_int_round(scale * float(xy[2 * j + 1])) for j in range(k)]
    x.append(x[0])
    y.append(y[0])
    u: list[int] = []
    v: list[int] = []
    for j in range(k):
        xs, xe, ys, ye = x[j], x[j + 1], y[j], y[j + 1]
        dx, dy = abs(xe - xs), abs(ys - ye)
        flip = (dx >= dy and xs > xe) or (dx < dy and ys > ye)
        if flip:
            xs, xe = xe, xs
            ys, ye = ye, ys
        if dx >= dy:
            s = (ye - ys) / dx if dx else 0.0  # C divides 0/0 only when dx == dy == 0 (loop runs once, t = 0)
            for d in range(dx + 1):
                t = dx - d if flip else d
                u.append(t + xs)
                v.append(_c_int_round(ys + s * t))
        else:
            s = (xe - xs) / dy
            for d in range(dy + 1):
                t = dy - d if flip else d
                v.append(t + ys)
                u.append(_c_int_round(xs + s * t))
    # points along y-boundary, downsampled
    bx: list[int] = []
    by: list[int] = []
    for j in range(1, len(u)):
        if u[j] == u[j - 1]:
            continue
        xd = float(u[j] if u[j] < u[j - 1] else u[j] - 1)
        xd = (xd + 0.5) / scale - 0.5
        if math.floor(xd) != xd or xd < 0 or xd > w - 1:
            continue
        yd = float(v[j] if v[j] < v[j - 1] else v[j - 1])
        yd = (yd + 0.5) / scale - 0.5
        yd = 0.0 if yd < 0 else (float(h) if yd > h else yd)
        bx.append(int(xd))
        by.append(int(math.ceil(yd)))
    a = sorted([bx[j] * h + by[j] for j in range(len(bx))] + [h * w])
    prev = 0
    for j in range(len(a)):
        a[j], prev = a[j] - prev, a[j]
    b = [a[0]]
    j = 1
    while j < len(a):
        if a[j] > 0:
            b.append(a[j])
            j += 1
        else:
            j += 1
            if j < len(a):
                b[-1] += a[j]
                j += 1
    return b


def polygons_to_mask(polygons: Sequence[Sequence[float]], h: int, w: int) -> np.ndarray:
    """Union of COCO polygons, as ``mask.decode(mask.merge(mask.frPyObjects(polys, h, w)))``."""
    out = np.zeros((h, w), dtype=bool)
    for poly in polygons:
        out |= decode({"size": [h, w], "counts": polygon_counts(poly, h, w)})
    return out


def segmentation_to_mask(segmentation: Any, h: int, w: int) -> np.ndarray:
    """COCO ``annotation["segmentation"]`` (polygon list, RLE, or uncompressed RLE) to ``(H, W)`` bool."""
    if isinstance(segmentation, list):
        return polygons_to_mask(segmentation, h, w)
    if isinstance(segmentation, dict):
        m = decode(segmentation)
        if m.shape != (h, w):
            raise CocoMaskError(f"RLE size {m.shape} does not match image size {(h, w)}")
        return m
    raise CocoMaskError(f"unsupported segmentation type {type(segmentation).__name__}")
