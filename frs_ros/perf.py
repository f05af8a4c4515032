"""Performance probes: memory bandwidth, the decode floor, resident memory, model size.

Why: on an edge CPU, decoding one token of a causal LM reads every weight matrix once (plus the
KV cache), so the time per token is bounded below by ``bytes read per token / memory bandwidth``.
These functions measure the bandwidth (:func:`measure_memory_bandwidth`, [bytes/s]), compute the
bytes and that floor (:func:`decode_bytes_per_token` [bytes], :func:`decode_floor_s` [s],
:func:`floor_fraction`), count parameters and weight bytes, and read this process's resident
memory (:func:`rss_bytes`, :func:`peak_rss_bytes` [bytes], Linux ``/proc``).

They measure the runtime; they are not part of it (the LM runtimes live in
:mod:`frs_ros.reasoning.lm`). Used by ``bench/`` (through the :mod:`frs_ros.optim` re-exports),
:mod:`frs_ros.reasoning.lm.bench` and the tests. ROS-free; imports numpy and torch.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

__all__ = [
    "BandwidthResult",
    "ReadProbe",
    "measure_memory_bandwidth",
    "decode_bytes_per_token",
    "decode_floor_s",
    "floor_fraction",
    "count_parameters",
    "model_weight_bytes",
    "rss_bytes",
    "peak_rss_bytes",
]


# --------------------------------------------------------------------------------------------
# memory bandwidth and the decoding floor
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BandwidthResult:
    """Measured memory bandwidth [bytes/s] of this machine, by access pattern.

    read_bps: best streaming *read* rate (the pattern of a GEMV over weights) over the probes;
    copy_bps: read+write rate of a large copy, counting both directions;
    probes: rate of each probe [bytes/s] by name; nbytes: array size used [bytes].
    """

    read_bps: float
    copy_bps: float
    probes: dict
    nbytes: int
    threads: int

    @property
    def read_gbps(self) -> float:
        return self.read_bps / 1e9


def _best_time(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: page faults, thread pool start
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def measure_memory_bandwidth(nbytes: int = 512 * 2**20, repeats: int = 5) -> BandwidthResult:
    """Measure streaming memory bandwidth with arrays far larger than the caches.

    nbytes [bytes]: size of each array (default 512 MiB; use >= 8x the last-level cache).
    Probes: numpy float32 sum (one thread, and one thread per torch thread on disjoint halves),
    torch float32 sum and dot (all torch threads), torch copy (read + write). ``read_bps`` is the *best* read probe, so the floor computed
    from it is the strictest one this machine can justify.
    """
    if nbytes < 2**20:
        raise ValueError(f"nbytes={nbytes} is too small to measure DRAM bandwidth (use >= 64 MiB)")
    n = nbytes // 4
    a = torch.rand(n, dtype=torch.float32)
    b = torch.empty_like(a)
    a_np = a.numpy()
    n_threads = max(1, torch.get_num_threads())
    parts = np.array_split(a_np, n_threads)

    def threaded_sum() -> None:  # numpy releases the GIL: one streaming reader per core
        with ThreadPoolExecutor(n_threads) as ex:
            list(ex.map(np.sum, parts))

    probes = {
        "numpy_sum_1thread": nbytes / _best_time(lambda: a_np.sum(), repeats),
        f"numpy_sum_{n_threads}threads": nbytes / _best_time(threaded_sum, repeats),
        "torch_sum": nbytes / _best_time(lambda: a.sum(), repeats),
        "torch_dot": nbytes / _best_time(lambda: torch.dot(a, a), repeats),
    }
    copy_bps = 2 * nbytes / _best_time(lambda: b.copy_(a), repeats)
    probes["torch_copy_rw"] = copy_bps
    read_bps = max(v for k, v in probes.items() if k != "torch_copy_rw")
    return BandwidthResult(read_bps=read_bps, copy_bps=copy_bps, probes=probes, nbytes=int(nbytes),
                           threads=torch.get_num_threads())


class ReadProbe:
    """A quick streaming-read bandwidth probe to run *next to* a timing, on a shared machine whose
    bandwidth drifts (measured here: 35 and 56 GB/s from the same probe four minutes apart).

    nbytes [bytes]: the array, allocated once (default 256 MiB, 8x this machine's 32 MiB L3).
    ``read_bps(repeats)`` [bytes/s]: best of ``repeats`` torch float32 sums and dots over it, the
    two all-thread read probes of :func:`measure_memory_bandwidth` (~30 ms at 35 GB/s).
    """

    def __init__(self, nbytes: int = 256 * 2**20) -> None:
        if nbytes < 2**20:
            raise ValueError(f"nbytes={nbytes} is too small to measure DRAM bandwidth (use >= 64 MiB)")
        self.nbytes = int(nbytes)
        self._a = torch.rand(self.nbytes // 4, dtype=torch.float32)

    def read_bps(self, repeats: int = 3) -> float:
        a = self._a
        return self.nbytes / min(_best_time(lambda: a.sum(), repeats), _best_time(lambda: torch.dot(a, a), repeats))


def decode_bytes_per_token(
    n_linear_params: int,
    bytes_per_weight: float,
    *,
    n_layers: int = 0,
    n_kv_heads: int = 0,
    head_dim: int = 0,
    context_tokens: int = 0,
    kv_bytes_per_value: float = 4.0,
    hidden_size: int = 0,
    other_bytes: int = 0,
) -> float:
    """Bytes that one decoded token must read from memory [bytes].

    n_linear_params: parameters of every matrix used per token (all projections of every layer
        plus the LM head; a tied embedding counts once, as the head: the embedding *lookup*
        reads one row, ``hidden_size`` values, added here).
    bytes_per_weight: 4 for fp32, 2 for bf16, ~1 for int8 (add scales through other_bytes).
    KV cache read: ``2 * n_layers * n_kv_heads * head_dim * context_tokens * kv_bytes_per_value``.
    """
    if n_linear_params < 0 or bytes_per_weight <= 0:
        raise ValueError("n_linear_params must be >= 0 and bytes_per_weight > 0")
    kv = 2.0 * n_layers * n_kv_heads * head_dim * context_tokens * kv_bytes_per_value
    embed_row = hidden_size * bytes_per_weight
    return n_linear_params * bytes_per_weight + kv + embed_row + other_bytes


def decode_floor_s(bytes_per_token: float, bandwidth_bps: float) -> float:
    """Lower bound on the time per decoded token [s] = bytes read per token / bandwidth."""
    if bandwidth_bps <= 0:
        raise ValueError(f"bandwidth must be positive, got {bandwidth_bps}")
    return bytes_per_token / bandwidth_bps


def floor_fraction(measured_s: float, floor_s: float) -> float:
    """Share of the bandwidth floor reached: ``floor / measured`` (1.0 = at the floor)."""
    if measured_s <= 0:
        raise ValueError(f"measured time must be positive, got {measured_s}")
    return floor_s / measured_s


# --------------------------------------------------------------------------------------------
# model size
# --------------------------------------------------------------------------------------------


def count_parameters(model: nn.Module) -> int:
    """Unique parameters (a tied embedding/LM head counts once)."""
    seen, total = set(), 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total


def model_weight_bytes(model: nn.Module) -> int:
    """Bytes held by unique parameters and buffers, int8 packed weights included [bytes]."""
    seen, total = set(), 0
    for t in list(model.parameters()) + list(model.buffers()):
        if id(t) not in seen:
            seen.add(id(t))
            total += t.numel() * t.element_size()
    for m in model.modules():
        packed = getattr(m, "_packed_params", None)
        if packed is not None and hasattr(m, "weight") and callable(m.weight):
            w = m.weight()
            total += w.numel() * w.element_size()
    return total


# --------------------------------------------------------------------------------------------
# memory
# --------------------------------------------------------------------------------------------


def _proc_status_bytes(key: str) -> int:
    """A ``kB`` field of ``/proc/self/status`` (Linux) [bytes]."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{key} not found in /proc/self/status (not Linux?)")


def rss_bytes() -> int:
    """Current resident set size of this process [bytes] (Linux /proc)."""
    return _proc_status_bytes("VmRSS")


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far [bytes] (Linux ``VmHWM``)."""
    return _proc_status_bytes("VmHWM")
