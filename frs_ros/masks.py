"""Binary masks: compact run-length encoding (in memory and on the wire) and boxes.

RLE format (COCO-style, uncompressed counts, *row-major*): a mask of shape (H, W) is
flattened in C order; ``counts`` alternates runs of 0 and 1 starting with a run of 0
(which may be 0 long). ``{"size": [H, W], "counts": [..]}`` is the JSON form.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RLE:
    """Run-length encoded binary mask. size = (H, W); counts alternate 0-runs and 1-runs."""

    size: tuple[int, int]
    counts: tuple[int, ...]

    def decode(self) -> np.ndarray:
        return rle_decode(self)

    @property
    def area(self) -> int:
        return int(sum(self.counts[1::2]))

    def to_json(self) -> dict:
        return {"size": [int(self.size[0]), int(self.size[1])], "counts": [int(c) for c in self.counts]}

    @classmethod
    def from_json(cls, d: dict) -> "RLE":
        size = tuple(int(x) for x in d["size"])
        counts = tuple(int(x) for x in d["counts"])
        if len(size) != 2 or sum(counts) != size[0] * size[1]:
            raise ValueError(f"RLE counts sum {sum(counts)} does not match size {size}")
        return cls(size=size, counts=counts)  # type: ignore[arg-type]


def rle_encode(mask: np.ndarray) -> RLE:
    """Encode a boolean/0-1 mask ``(H, W)``."""
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    flat = np.asarray(mask, dtype=bool).ravel()
    if flat.size == 0:
        return RLE(size=mask.shape, counts=(0,))
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds)
    if flat[0]:
        runs = np.concatenate([[0], runs])
    return RLE(size=(int(mask.shape[0]), int(mask.shape[1])), counts=tuple(int(r) for r in runs))


def rle_decode(rle: RLE) -> np.ndarray:
    """Decode to a boolean mask ``(H, W)``."""
    h, w = rle.size
    values = np.zeros(len(rle.counts), dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, np.asarray(rle.counts, dtype=np.int64))
    if flat.size != h * w:
        raise ValueError(f"RLE counts sum {flat.size} does not match size {h}x{w}")
    return flat.reshape(h, w)


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Tight box ``(x0, y0, x1, y1)`` [px], inclusive-exclusive; ``None`` for an empty mask."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def mask_iou(a: np.ndarray, b: np.ndarray, empty: float = 1.0) -> float:
    """IoU of two boolean masks; ``empty`` is returned when both are empty."""
    a = np.asarray(a, dtype=bool)
    b = np.asarray(b, dtype=bool)
    union = np.logical_or(a, b).sum()
    if union == 0:
        return float(empty)
    return float(np.logical_and(a, b).sum() / union)
