"""Weight formats of the lean runtime: int8 quantisation and the packed layout of the native kernel.

- :func:`quantize_rows` — symmetric int8 with one fp32 scale per row (``w ~= q * scale``): the
  quantiser of the packed matrices and of the int8 embedding table;
- :class:`PackedInt8Matrix` — an int8 matrix in the 16-row-block layout that
  ``frs_ros/native/causal_lm_int8.c`` streams (one 64-byte line = 16 rows x 4 columns);
  :func:`interleave_blocks` orders gate and up rows so that the kernel applies SiLU in the
  product's epilogue;
- :func:`quantize_dynamic_int8` / :func:`int8_linear` — torch's dynamic int8 (fbgemm), the
  fallback when the native kernel cannot be built;
- :class:`FloatLinear` — the fp32 matrix of ``weights='fp32'``.

Shapes: a weight is ``(out, in)`` as in ``nn.Linear``. ROS-free; imports torch.
"""

from __future__ import annotations

import mmap
import warnings
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["quantize_rows", "PackedInt8Matrix", "interleave_blocks", "HUGE_PAGE", "hugepage_zeros", "hugepage_arena",
           "quantize_dynamic_int8", "int8_linear", "FloatLinear"]


def quantize_dynamic_int8(model: nn.Module, *, per_channel: bool = True, inplace: bool = False) -> nn.Module:
    """int8 weights for every ``nn.Linear`` (activations quantised on the fly per call).

    Uses ``torch.ao.quantization.quantize_dynamic`` (fbgemm on x86). ``per_channel`` keeps one
    scale per output row, which is what keeps a small LM's greedy outputs close to fp32.
    A tied LM head is un-tied by this (the head becomes an int8 copy; the embedding stays fp32
    for the lookup) — the head is the largest matrix of a small-vocabulary-heavy model such as
    Qwen3-0.6B (151936 x 1024), so leaving it fp32 would keep a quarter of the bytes.
    Returns the quantised model (a copy unless ``inplace``). CPU only.
    """
    from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig
    from torch.ao.quantization import quantize_dynamic

    qconfig = per_channel_dynamic_qconfig if per_channel else default_dynamic_qconfig
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        return quantize_dynamic(model, {nn.Linear: qconfig}, dtype=torch.qint8, inplace=inplace)


def quantize_rows(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 with one scale per row: ``(q int8 (R, K), scale fp32 (R,))``, ``w ~= q * scale``."""
    scale = (w.abs().amax(1) / 127.0).clamp_min(1e-12).contiguous()
    return torch.round(w / scale[:, None]).clamp_(-127, 127).to(torch.int8), scale


def int8_linear(weight: torch.Tensor) -> nn.Module:
    """One dynamic-int8 Linear (no bias) from a float weight ``(out, in)``."""
    lin = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    lin.weight.data = weight.detach().float().contiguous()
    return quantize_dynamic_int8(nn.Sequential(lin), inplace=True)[0]


class PackedInt8Matrix:
    """An int8 matrix for the native kernel: symmetric, one scale per row.

    weight ``(out, in)`` float -> ``w`` int8, ``scale`` fp32 ``(out,)`` (weight ~= w * scale);
    ``w`` is packed ``(ceil(out / 16), in / 4, 16, 4)``: for each block of
    16 rows and each group of 4 input columns, the 16 rows' 4 bytes (one 64-byte cache line), the
    order in which the kernel streams them (``causal_lm_int8.c``, ``qgemm``). ``struct()`` is the
    ctypes view the kernel reads (holds no reference: this object must outlive it).
    """

    #: rows per packed block (``RB`` in causal_lm_int8.c)
    BLOCK = 16

    def __init__(self, weight: torch.Tensor) -> None:
        w = weight.detach().float()
        R, K = w.shape
        if K % 4:
            raise ValueError(f"the native kernel needs input sizes divisible by 4, got {K}")
        self.shape = (R, K)
        q, self.scale = quantize_rows(w)
        Rp = -(-R // self.BLOCK) * self.BLOCK
        if Rp != R:
            q = torch.cat([q, q.new_zeros(Rp - R, K)])
        # (Rp/16, 16, K/4, 4) -> (Rp/16, K/4, 16, 4): 16 rows' 4 bytes per 64-byte line, streamed in order
        self.w = q.view(Rp // self.BLOCK, self.BLOCK, K // 4, 4).permute(0, 2, 1, 3).contiguous()

    def dequantize(self) -> torch.Tensor:
        """The float matrix ``(out, in)`` these int8 values stand for."""
        R, K = self.shape
        q = self.w.permute(0, 2, 1, 3).reshape(-1, K)[:R]
        return q.float() * self.scale[:, None]

    def struct(self):
        from frs_ros.native import FrsMat

        return FrsMat(self.w.data_ptr(), self.scale.data_ptr(), *self.shape)

    def nbytes(self) -> int:
        """Bytes the kernel streams for one product: packed weights (padded rows included) and scales."""
        return self.w.numel() + self.scale.numel() * 4


#: transparent huge page size on x86-64 Linux [bytes]
HUGE_PAGE = 2 << 20


def hugepage_zeros(shape: Sequence[int], dtype: torch.dtype) -> Optional[torch.Tensor]:
    """A zero-filled contiguous tensor in its own private anonymous mapping whose whole 2 MB pages
    are advised for transparent huge pages (``MADV_HUGEPAGE``); None where the system has no
    ``MADV_HUGEPAGE`` or the tensor is smaller than one huge page.

    Why: a decoded token streams every weight once (SmolLM2-135M: 136 MB) and its layers' slices
    of the KV cache; in 4 KB pages that is tens of thousands of pages, far beyond the TLB's reach,
    and the hardware prefetchers stop at each 4 KB boundary. Where THP is set to ``madvise`` (a
    common default) torch's allocations get none. Only the 2 MB-aligned pages inside the tensor
    are advised, so it costs no memory beyond its bytes (the tail stays in 4 KB pages). Whether
    the kernel grants huge pages is up to it (AnonHugePages in /proc/<pid>/smaps). The tensor
    holds a reference to the mapping (``torch.frombuffer``); the mapping is never closed, it is
    unmapped when the last view goes.

    Measured with ``bench/decode_ab.py`` (SmolLM2-135M architecture, 500-token context, 2 threads,
    AMD EPYC Zen 4 with 2 cores shared, rounds interleaved, load average ~1-1.7): the packed
    weights in huge pages decode 6.7 % faster (4.85 -> 4.52 ms/token), the KV caches too another
    3.3 % (3.88 -> 3.75), both against neither 9 % (4.04 -> 3.67).
    """
    advice = getattr(mmap, "MADV_HUGEPAGE", None)
    n = 1
    for d in shape:
        n *= int(d)
    nbytes = n * torch.empty(0, dtype=dtype).element_size()
    if advice is None or nbytes < HUGE_PAGE:
        return None
    try:
        mm = mmap.mmap(-1, nbytes + HUGE_PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        buf = torch.frombuffer(mm, dtype=torch.uint8)
        off = -buf.data_ptr() % HUGE_PAGE  # huge pages map 2 MB-aligned addresses
        mm.madvise(advice, off, nbytes // HUGE_PAGE * HUGE_PAGE)  # before the first touch
    except (OSError, ValueError):
        return None
    return buf[off: off + nbytes].view(dtype).view(*shape)


def hugepage_arena(mats: Sequence[PackedInt8Matrix]) -> Optional[torch.Tensor]:
    """Move the packed weights of ``mats`` into one :func:`hugepage_zeros` buffer (the matrices'
    ``w`` become views into it, same values, each starting on a 4 KB page). Returns the buffer
    (int8), or None (the weights stay where they are) where there are none or no huge pages.
    """
    sizes = [-(-m.w.numel() // 4096) * 4096 for m in mats]
    arena = hugepage_zeros((sum(sizes),), torch.int8) if mats else None
    if arena is None:
        return None
    off = 0
    for m, n in zip(mats, sizes):
        w = arena[off: off + m.w.numel()].view(m.w.shape)
        w.copy_(m.w)
        m.w = w
        off += n
    return arena


def interleave_blocks(a: torch.Tensor, b: torch.Tensor, block: int) -> torch.Tensor:
    """Rows of ``a`` and ``b`` (both ``(I, K)``) in alternating ``block``-row blocks: a[0:16], b[0:16],
    a[16:32], ... -> ``(2 Ip, K)`` with ``Ip = ceil(I / block) block`` (zero rows pad the last block)."""
    I, K = a.shape
    Ip = -(-I // block) * block
    pad = lambda w: torch.cat([w.detach().float(), w.new_zeros(Ip - I, K, dtype=torch.float32)])  # noqa: E731
    return torch.stack([pad(a).view(Ip // block, block, K), pad(b).view(Ip // block, block, K)], 1).reshape(2 * Ip, K)


class FloatLinear(nn.Module):
    """Bias-free fp32 linear over a given weight, called without the nn.Linear wrapper checks."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.detach().float().contiguous(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight)
