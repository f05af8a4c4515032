"""CPU inference optimisation for the LLM student: int8 weights, a lean decode loop, the bandwidth limit.

Why this module exists: on an edge CPU, decoding one token of a causal LM reads every weight
matrix once (the KV cache is small at our context lengths), so the time per token is bounded below
by ``bytes of weights read per token / memory bandwidth``. This module measures the bandwidth
(:func:`measure_memory_bandwidth`), computes that floor (:func:`decode_floor_s`,
:func:`decode_bytes_per_token`), and provides the two things that bring decoding close to it:

- :func:`quantize_dynamic_int8` — int8 weights for every ``nn.Linear`` of any model
  (``torch.ao`` dynamic quantisation, per-output-channel scales): 4x fewer bytes per token;
- :class:`LeanDecoder` — a Qwen3/Llama decode loop with a preallocated (static) KV cache, fused QKV and
  gate/up projections and no per-step cache objects or mask building, so the per-token time is the
  weight streaming and little else. Its cache is a plain tensor, so re-using a prompt prefix (the
  serialised twin) across queries and tool pauses is ``truncate(prefix_len)``. With int8 weights
  it runs on the native C kernel (:mod:`frs_ros.native`, packed int8 weights streamed at the
  machine's read bandwidth) where a C compiler is available, else on torch's int8 ops.

ROS-free; imports only torch (transformers is only needed to *read* an HF ``Qwen3ForCausalLM`` or
``LlamaForCausalLM``).
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
import warnings
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "BandwidthResult",
    "measure_memory_bandwidth",
    "decode_bytes_per_token",
    "decode_floor_s",
    "floor_fraction",
    "quantize_dynamic_int8",
    "count_parameters",
    "model_weight_bytes",
    "KVCache",
    "LeanDecoder",
    "LeanCausalLM",
    "lean_hf_reasoner",
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
# model size and quantisation
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


def _quantize_rows(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 with one scale per row: ``(q int8 (R, K), scale fp32 (R,))``, ``w ~= q * scale``."""
    scale = (w.abs().amax(1) / 127.0).clamp_min(1e-12).contiguous()
    return torch.round(w / scale[:, None]).clamp_(-127, 127).to(torch.int8), scale


def _int8_linear(weight: torch.Tensor) -> nn.Module:
    """One dynamic-int8 Linear (no bias) from a float weight ``(out, in)``."""
    lin = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    lin.weight.data = weight.detach().float().contiguous()
    return quantize_dynamic_int8(nn.Sequential(lin), inplace=True)[0]


class _QMat:
    """An int8 matrix for the native kernel: symmetric per-row scales, row sums for the u8 offset.

    weight ``(out, in)`` float -> ``w`` int8 ``(out, in)``, ``scale`` fp32 ``(out,)`` (weight ~= w * scale),
    ``rowsum`` int32 ``(out,)``; ``struct()`` is the ctypes view the kernel reads (holds no reference:
    this object must outlive it).
    """

    #: rows per packed block (``RB`` in causal_lm_int8.c)
    BLOCK = 16

    def __init__(self, weight: torch.Tensor) -> None:
        w = weight.detach().float()
        R, K = w.shape
        if K % 4:
            raise ValueError(f"the native kernel needs input sizes divisible by 4, got {K}")
        self.shape = (R, K)
        q, self.scale = _quantize_rows(w)
        self.rowsum = q.sum(1, dtype=torch.int32).contiguous()
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

        return FrsMat(self.w.data_ptr(), self.scale.data_ptr(), self.rowsum.data_ptr(), *self.shape)

    def nbytes(self) -> int:
        return self.w.numel() + self.scale.numel() * 4 + self.rowsum.numel() * 4


def _interleave_blocks(a: torch.Tensor, b: torch.Tensor, block: int) -> torch.Tensor:
    """Rows of ``a`` and ``b`` (both ``(I, K)``) in alternating ``block``-row blocks: a[0:16], b[0:16],
    a[16:32], ... -> ``(2 Ip, K)`` with ``Ip = ceil(I / block) block`` (zero rows pad the last block)."""
    I, K = a.shape
    Ip = -(-I // block) * block
    pad = lambda w: torch.cat([w.detach().float(), w.new_zeros(Ip - I, K, dtype=torch.float32)])  # noqa: E731
    return torch.stack([pad(a).view(Ip // block, block, K), pad(b).view(Ip // block, block, K)], 1).reshape(2 * Ip, K)


class _FloatLinear(nn.Module):
    """Bias-free fp32 linear over a given weight, called without the nn.Linear wrapper checks."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.detach().float().contiguous(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight)


# --------------------------------------------------------------------------------------------
# the lean decode loop
# --------------------------------------------------------------------------------------------

#: LeanDecoder kernels: 'auto' = native C for int8 when it builds here, else torch
KERNELS = ("auto", "native", "portable", "torch")


@dataclass
class _Layer:
    qkv: nn.Module
    o: nn.Module
    gate_up: nn.Module
    down: nn.Module
    ln1: torch.Tensor
    ln2: torch.Tensor
    #: (H + KV, hd): q_norm (x softmax scale) for the H query heads, k_norm for the KV heads;
    #: None for models without q/k norm (Llama: the softmax scale is folded into the Wq rows)
    qk_norm: Optional[torch.Tensor]


class KVCache:
    """K/V of every layer in two growable buffers ``(L, KV, capacity, hd)``; ``length`` valid.

    Growth doubles the capacity (amortised O(1) per token, unlike a concatenating cache that
    copies the whole cache every step). Speaks the part of the transformers ``Cache`` API that a
    prefix-reusing runtime needs: ``get_seq_length()``, ``crop(n)`` (negative ``n`` removes that
    many tokens) and ``copy.deepcopy`` (copies only the valid part).
    """

    def __init__(self, n_layers: int, n_kv: int, head_dim: int, capacity: int = 256) -> None:
        self.shape = (n_layers, n_kv, head_dim)
        self.k = torch.zeros(n_layers, n_kv, max(1, capacity), head_dim)
        self.v = torch.zeros_like(self.k)
        self.length = 0

    @property
    def capacity(self) -> int:
        return self.k.shape[2]

    def reserve(self, n: int) -> None:
        """Make room for ``n`` tokens in total (keeps the valid part)."""
        if n <= self.capacity:
            return
        cap = max(n, 2 * self.capacity)
        L, KV, hd = self.shape
        k = torch.zeros(L, KV, cap, hd)
        v = torch.zeros_like(k)
        k[:, :, : self.length] = self.k[:, :, : self.length]
        v[:, :, : self.length] = self.v[:, :, : self.length]
        self.k, self.v = k, v

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.length

    def crop(self, max_length: int) -> None:
        """Keep ``max_length`` tokens; a negative value removes ``-max_length`` tokens (HF semantics)."""
        n = self.length + max_length if max_length < 0 else max_length
        if not 0 <= n <= self.length:
            raise ValueError(f"cannot crop a cache of {self.length} tokens to {n}")
        self.length = int(n)

    def __deepcopy__(self, memo) -> "KVCache":
        L, KV, hd = self.shape
        new = KVCache(L, KV, hd, capacity=self.length + 128)
        new.k[:, :, : self.length] = self.k[:, :, : self.length]
        new.v[:, :, : self.length] = self.v[:, :, : self.length]
        new.length = self.length
        return new

    def nbytes(self) -> int:
        return self.k.numel() * 4 * 2


#: ``config.model_type`` of the architectures LeanDecoder (and the native kernel) implement
SUPPORTED_MODEL_TYPES = ("qwen3", "llama")


def check_architecture(cfg) -> None:
    """Raise ``ValueError`` saying what differs when an HF config is not one LeanDecoder runs.

    Runs: pre-norm decoder layers with RMS norm, grouped-query attention without biases, optional
    per-head q/k RMS norm (Qwen3 has it, Llama not), default RoPE (any theta), SiLU-gated MLP
    without biases, tied or separate LM head: ``Qwen3ForCausalLM`` and ``LlamaForCausalLM``
    (SmolLM2, TinyLlama, Llama 2). Not: Llama 3.x rope scaling, sliding windows, biases.
    """
    mt = getattr(cfg, "model_type", None)
    if mt not in SUPPORTED_MODEL_TYPES:
        raise ValueError(f"LeanDecoder runs model_type {' or '.join(map(repr, SUPPORTED_MODEL_TYPES))}, got {mt!r}")
    problems = []
    if getattr(cfg, "hidden_act", "silu") != "silu":
        problems.append(f"hidden_act={cfg.hidden_act!r} (needs 'silu')")
    for flag in ("attention_bias", "mlp_bias", "use_sliding_window"):
        if getattr(cfg, flag, False):
            problems.append(f"{flag}=True")
    rope = dict(getattr(cfg, "rope_parameters", None) or getattr(cfg, "rope_scaling", None) or {})
    if rope.get("rope_type", rope.get("type", "default")) != "default":
        problems.append(f"rope_type={rope.get('rope_type', rope.get('type'))!r} (implements the default RoPE only)")
    heads, kv = cfg.num_attention_heads, getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
    hd = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    if heads % kv or hd % 2:
        problems.append(f"{heads} query heads over {kv} KV heads with head_dim {hd} (needs a whole number of "
                        "query heads per KV head and an even head_dim)")
    if problems:
        raise ValueError(f"LeanDecoder cannot run this {mt} config: {'; '.join(problems)}")


class LeanDecoder:
    """Greedy Qwen3/Llama inference with fused projections and a growable static KV cache.

    Built from an HF ``Qwen3ForCausalLM`` or ``LlamaForCausalLM`` (SmolLM2; any size, see
    :func:`check_architecture`; weights are copied once, QKV and gate/up fused, optionally int8). One decode step is 4 matrix products per layer + the LM head,
    SDPA over the cache, and nothing else: no cache objects rebuilt, no masks for single-token
    steps. Typical use::

        dec = LeanDecoder(model, weights="int8")
        dec.prefill(twin_prompt_ids)          # once per twin
        prefix = dec.cache.length
        for query in queries:
            dec.cache.crop(prefix)            # KV-cache reuse: the twin is not re-read
            ids = dec.generate(query_ids, max_new_tokens=64, stop=lambda out: ...)

    weights: 'fp32' or 'int8' (int8 weights with one scale per output row, activations quantised
        per token, LM head included; the embedding table is stored as int8 rows with a per-row scale,
        or, for a tied head on the native kernel, read from the packed head: ``tied``, ``embed is None``).
    kernel: for int8, 'auto' (the native C kernel where it builds, else torch's fbgemm dynamic int8,
        with a RuntimeWarning and the reason in ``kernel_note``), 'native', 'portable' (the C kernel
        without SIMD intrinsics or -march=native) or 'torch'. fp32 always runs on torch.
    max_len [tokens]: longest context (RoPE table size). Batch size 1; not thread-safe.
    Shapes: hidden ``(T, D)``; cache ``(L, KV, capacity, hd)`` for K and for V.
    """

    def __init__(self, model: nn.Module, max_len: int = 8192, weights: str = "fp32", kernel: str = "auto") -> None:
        if weights not in ("fp32", "int8"):
            raise ValueError(f"weights must be 'fp32' or 'int8', got {weights!r}")
        if kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
        if weights == "fp32" and kernel in ("native", "portable"):
            raise ValueError("the native kernel runs int8 weights: use weights='int8' or kernel='torch'")
        cfg = model.config
        check_architecture(cfg)
        if max_len <= 0:
            raise ValueError(f"max_len must be positive, got {max_len}")
        self.config = cfg
        self.weights = weights
        self.n_layers = cfg.num_hidden_layers
        self.n_heads = cfg.num_attention_heads
        self.n_kv = cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.hidden = cfg.hidden_size
        self.inter = cfg.intermediate_size
        self.eps = cfg.rms_norm_eps
        self.vocab = cfg.vocab_size
        self.max_len = int(max_len)
        self.scale = self.head_dim**-0.5
        self.q_size = self.n_heads * self.head_dim
        self.kv_size = self.n_kv * self.head_dim
        #: 'native' (C kernel, int8), 'portable' (the same without SIMD/-march) or 'torch'
        self.kernel = "torch"
        #: why an 'auto' int8 decoder fell back to the torch kernel ('' when it did not)
        self.kernel_note = ""
        self._lib = None
        if weights == "int8" and kernel != "torch":
            from frs_ros.native import NativeKernelError, load_causal_lm_int8

            try:
                odd = [n for n in (self.hidden, self.q_size, self.inter) if n % 4]
                if odd:
                    raise NativeKernelError(f"the native kernel needs layer widths divisible by 4, got {odd}")
                self._lib = load_causal_lm_int8(portable=kernel == "portable")
                self.kernel = "portable" if kernel == "portable" else "native"
            except NativeKernelError as e:
                if kernel != "auto":
                    raise
                self.kernel_note = str(e)
                warnings.warn(f"LeanDecoder: native int8 kernel unavailable, using torch's: {e}", RuntimeWarning)
        if self._lib is not None:
            make = _QMat
        else:
            make = _int8_linear if weights == "int8" else _FloatLinear
        base = model.model
        hd, H, KV = self.head_dim, self.n_heads, self.n_kv
        # RoPE as a complex product: permute the head dims of q and k from the "rotate half"
        # layout (pairs i, i + hd/2) to interleaved pairs (2i, 2i + 1). q.k is unchanged by a
        # permutation applied to both, and the per-dim q/k norm weights are permuted with them.
        perm = torch.stack([torch.arange(hd // 2), torch.arange(hd // 2) + hd // 2], -1).reshape(-1)

        def rows(w: torch.Tensor, heads: int) -> torch.Tensor:
            return w.detach().float().reshape(heads, hd, -1)[:, perm].reshape(heads * hd, -1)

        with torch.no_grad():
            self.final_norm = base.norm.weight.detach().float().clone()
            self.layers: list[_Layer] = []
            for lyr in base.layers:
                att, mlp = lyr.self_attn, lyr.mlp
                if hasattr(att, "q_norm"):  # Qwen3: per-head RMS norm of q and k; the softmax scale rides on q's
                    qk_norm = torch.cat([
                        (att.q_norm.weight.detach().float()[perm] * self.scale).expand(H, hd),
                        att.k_norm.weight.detach().float()[perm].expand(KV, hd),
                    ], 0).contiguous()
                    wq = rows(att.q_proj.weight, H)
                else:  # Llama: no q/k norm; the softmax scale goes into the Wq rows (exact under per-row int8)
                    qk_norm = None
                    wq = rows(att.q_proj.weight, H) * self.scale
                if make is _QMat:  # the kernel applies SiLU in the product's epilogue: gate and up blocks alternate
                    gate_up = _QMat(_interleave_blocks(mlp.gate_proj.weight, mlp.up_proj.weight, _QMat.BLOCK))
                else:
                    gate_up = make(torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight], 0))
                self.layers.append(
                    _Layer(
                        qkv=make(torch.cat([wq, rows(att.k_proj.weight, KV), att.v_proj.weight.detach().float()], 0)),
                        o=make(att.o_proj.weight),
                        gate_up=gate_up,
                        down=make(mlp.down_proj.weight),
                        ln1=lyr.input_layernorm.weight.detach().float().clone(),
                        ln2=lyr.post_attention_layernorm.weight.detach().float().clone(),
                        qk_norm=qk_norm,
                    )
                )
            self.lm_head = make(model.lm_head.weight)
            emb = base.embed_tokens.weight  # (V, D); a lookup reads one row
            #: the LM head is the embedding matrix (SmolLM2, Qwen3-0.6B): int8 on the native kernel
            #: looks its rows up in the packed head, one copy of the largest matrix instead of two
            self.tied = emb.data_ptr() == model.lm_head.weight.data_ptr() and emb.shape == model.lm_head.weight.shape
            self.embed_scale = None
            if self.tied and isinstance(self.lm_head, _QMat):
                self.embed = None
            elif weights == "int8":  # int8 rows with one scale each: the table is 4x smaller in memory
                self.embed, self.embed_scale = _quantize_rows(emb.detach().float())  # (V, D) int8, (V,)
            else:
                self.embed = emb.detach().float().clone()
        rope = dict(getattr(cfg, "rope_parameters", None) or {})
        theta = float(rope.get("rope_theta", getattr(cfg, "rope_theta", None) or 10000.0))
        inv = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
        ang = torch.arange(self.max_len, dtype=torch.float32)[:, None] * inv[None, :]
        self.freqs = torch.polar(torch.ones_like(ang), ang)  # (max_len, hd/2) complex64
        if self._lib is not None:
            self._bind_native()
        self.cache = self.new_cache()

    def _bind_native(self) -> None:
        """The ctypes view of the weights for the C kernel (pointers into this object's tensors)."""
        import ctypes

        from frs_ros.native import FrsLayer, FrsModel

        self._rope = torch.view_as_real(self.freqs).contiguous()  # (max_len, hd/2, 2): cos, sin
        self._c_layers = (FrsLayer * self.n_layers)(*[
            FrsLayer(L.qkv.struct(), L.o.struct(), L.gate_up.struct(), L.down.struct(),
                     L.ln1.data_ptr(), L.ln2.data_ptr(), None if L.qk_norm is None else L.qk_norm.data_ptr())
            for L in self.layers
        ])
        self._c_model = FrsModel(
            self.n_layers, self.hidden, self.n_heads, self.n_kv, self.head_dim, self.inter, self.vocab,
            self.max_len, self.eps, ctypes.cast(self._c_layers, ctypes.POINTER(FrsLayer)),
            self.lm_head.struct(), self.final_norm.data_ptr(), self._rope.data_ptr(),
        )
        self._c_model_ref = ctypes.byref(self._c_model)
        self._c_head = self.lm_head.struct()
        self._c_head_ref = ctypes.byref(self._c_head)

    def simd_level(self) -> int:
        """The native kernel's SIMD path: 2 AVX512-VNNI, 1 AVX2, 0 plain C (``frs_ros.native.SIMD_LEVELS``);
        -1 on the torch kernel."""
        return -1 if self._lib is None else int(self._lib.frs_simd_level())

    def new_cache(self, capacity: int = 256) -> KVCache:
        return KVCache(self.n_layers, self.n_kv, self.head_dim, capacity)

    def reset(self) -> None:
        """Forget the default cache's tokens."""
        self.cache.length = 0

    def linear_weight_bytes(self) -> int:
        """Bytes of the matrices read per decoded token (all projections + LM head) [bytes]."""
        total = 0
        mods = [m for lyr in self.layers for m in (lyr.qkv, lyr.o, lyr.gate_up, lyr.down)] + [self.lm_head]
        for m in mods:
            if isinstance(m, _QMat):
                total += m.nbytes()
                continue
            w = m.weight() if callable(getattr(m, "weight", None)) else m.weight
            total += w.numel() * w.element_size()
            if w.is_quantized and w.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
                total += w.q_per_channel_scales().numel() * 8 + w.q_per_channel_zero_points().numel() * 8
        return total

    def linear_params(self) -> int:
        """Parameters of the matrices used per decoded token (projections + LM head)."""
        n = self.n_layers * (self.hidden * (self.q_size + 2 * self.kv_size) + self.q_size * self.hidden
                             + 3 * self.hidden * self.inter)
        return n + self.vocab * self.hidden

    def forward(self, ids: Sequence[int], cache: Optional[KVCache] = None, logits_for: str = "last") -> torch.Tensor:
        """Append ``ids`` to ``cache`` (default: this decoder's) and return the logits ``(V,)`` of
        the last position (``logits_for='all'``: ``(T, V)``)."""
        cache = self.cache if cache is None else cache
        ids = [int(i) for i in ids]
        T = len(ids)
        if T == 0:
            raise ValueError("forward() needs at least one token")
        P = cache.length
        if P + T > self.max_len:
            raise ValueError(f"context of {P + T} tokens exceeds max_len={self.max_len}; build with a larger max_len")
        cache.reserve(P + T)
        prev = torch.get_num_threads()
        switch = T == 1 and self.decode_threads > 0 and self.decode_threads != prev
        if switch:  # decoding is bandwidth-bound: fewer threads can beat more on a busy or small CPU
            torch.set_num_threads(self.decode_threads)
        try:
            with self._grad_mode():
                tok = torch.tensor(ids, dtype=torch.long)
                if self._lib is not None:
                    logits = self._native(tok, cache, P, logits_for == "all")
                else:
                    logits = self._layers(tok, cache.k, cache.v, P, logits_for == "all")
        finally:
            if switch:
                torch.set_num_threads(prev)
        cache.length = P + T
        return logits

    #: torch threads for single-token steps (0 = leave the global setting); prefill keeps it
    decode_threads: int = 0

    #: gradient mode of the forward pass; ``torch.compile`` (see :meth:`compile`) needs no_grad
    _grad_mode = staticmethod(torch.inference_mode)

    def compile(self, **kwargs) -> None:
        """Compile the per-token computation with ``torch.compile`` (inductor; needs a C++
        compiler). Whether it pays on a given CPU is measured by ``bench/run_bench.py``."""
        self._grad_mode = staticmethod(torch.no_grad)
        self._layers = torch.compile(self._layers, **kwargs)

    def _embed(self, tok: torch.Tensor) -> torch.Tensor:
        """Embedding rows of ``tok`` (T,) as a fresh fp32 ``(T, D)`` (the residual stream is updated in place)."""
        if self.embed is None:  # tied: rows of the packed int8 head (16-row blocks, 4 columns interleaved)
            w = self.lm_head.w  # (R/16, D/4, 16, 4)
            q = w[tok // _QMat.BLOCK, :, tok % _QMat.BLOCK]  # (T, D/4, 4)
            return q.reshape(tok.shape[0], self.hidden).float().mul_(self.lm_head.scale[tok, None])
        x = self.embed[tok].float()
        if self.embed_scale is not None:
            x.mul_(self.embed_scale[tok, None])
        return x

    def _native(self, tok: torch.Tensor, cache: KVCache, P: int, all_logits: bool) -> torch.Tensor:
        """The C kernel over ``tok`` (T,) at positions P.. (same contract as :meth:`_layers`)."""
        T = tok.shape[0]
        if self.embed is None:  # tied: the kernel reads the rows from the packed head (~25 us less per token than torch ops)
            x = torch.empty(T, self.hidden)
            if self._lib.frs_embed_packed(self._c_head_ref, tok.data_ptr(), T, x.data_ptr()) != 0:
                raise IndexError(f"a token id in {tok.tolist()[:8]}... is outside the vocabulary (size {self.vocab})")
        else:
            x = self._embed(tok).contiguous()
        out = torch.empty(T if all_logits else 1, self.vocab)
        rc = self._lib.frs_forward(self._c_model_ref, x.data_ptr(), T, P, cache.k.data_ptr(), cache.v.data_ptr(),
                                   cache.capacity, out.data_ptr(), int(all_logits), torch.get_num_threads())
        if rc != 0:
            raise RuntimeError(f"native kernel failed with code {rc} ({'out of memory' if rc == -2 else 'bad arguments'})")
        return out if all_logits else out[0]

    def _layers(self, tok: torch.Tensor, K: torch.Tensor, V: torch.Tensor, P: int, all_logits: bool) -> torch.Tensor:
        """The model over ``tok`` (T,) at positions P.. with caches K, V ``(L, KV, cap, hd)``."""
        T = tok.shape[0]
        x = self._embed(tok)
        H, KV, hd, D = self.n_heads, self.n_kv, self.head_dim, self.hidden
        G = H // KV
        if T == 1:
            mask, causal = None, False
        elif P == 0:
            mask, causal = None, True
        else:  # new tokens see the whole past, and each other causally: (T, P+T) bool
            mask = torch.arange(P + T)[None, :] <= torch.arange(P, P + T)[:, None]
            causal = False
        ks = self.q_size + self.kv_size
        NH = H + KV
        fc = self.freqs[P : P + T].unsqueeze(1)  # (T, 1, hd/2) complex
        for li, L in enumerate(self.layers):
            qkv = L.qkv(F.rms_norm(x, (D,), L.ln1, self.eps))  # (T, (H + 2 KV) hd)
            # q and k heads together: norm and weight (Qwen3; softmax scale folded into q), rotate
            qk = qkv[:, :ks].reshape(T, NH, hd)
            if L.qk_norm is not None:
                qk = F.rms_norm(qk, (hd,), None, self.eps).mul_(L.qk_norm)
            qk = torch.view_as_real(torch.view_as_complex(qk.view(T, NH, hd // 2, 2)) * fc).view(T, NH, hd)
            kc, vc = K[li], V[li]  # (KV, cap, hd)
            kc[:, P : P + T] = qk[:, H:].transpose(0, 1)
            vc[:, P : P + T] = qkv[:, ks:].view(T, KV, hd).transpose(0, 1)
            if T == 1:  # decode: two batched GEMVs over the cache, the G query heads of a KV head together
                s_ = torch.bmm(qk[0, :H].view(KV, G, hd), kc[:, : P + 1].transpose(1, 2))  # (KV, G, P+1)
                att = torch.bmm(torch.softmax(s_, -1), vc[:, : P + 1]).view(1, H * hd)
            else:
                att = F.scaled_dot_product_attention(
                    qk[:, :H].transpose(0, 1).unsqueeze(0),  # (1, H, T, hd)
                    kc[:, : P + T].unsqueeze(0),  # (1, KV, P+T, hd)
                    vc[:, : P + T].unsqueeze(0),
                    attn_mask=mask, is_causal=causal, scale=1.0, enable_gqa=True,
                )[0].transpose(0, 1).reshape(T, H * hd)  # (T, H hd)
            x.add_(L.o(att))
            gu = L.gate_up(F.rms_norm(x, (D,), L.ln2, self.eps))  # (T, 2 I)
            a = F.silu(gu[:, : self.inter]).mul_(gu[:, self.inter :])
            x.add_(L.down(a))
        if all_logits:
            return self.lm_head(F.rms_norm(x, (D,), self.final_norm, self.eps))
        return self.lm_head(F.rms_norm(x[-1:], (D,), self.final_norm, self.eps))[0]

    def prefill(self, ids: Sequence[int], cache: Optional[KVCache] = None, chunk: int = 512) -> torch.Tensor:
        """Append a prompt in chunks (bounded activation memory); returns the last logits ``(V,)``."""
        ids = list(ids)
        if not ids:
            raise ValueError("prefill() needs at least one token")
        logits = None
        for s in range(0, len(ids), chunk):
            logits = self.forward(ids[s : s + chunk], cache)
        return logits

    def generate(
        self,
        ids: Sequence[int],
        max_new_tokens: int,
        *,
        cache: Optional[KVCache] = None,
        eos_ids: Sequence[int] = (),
        stop: Optional[Callable[[list[int]], bool]] = None,
    ) -> list[int]:
        """Greedy: prefill ``ids`` onto the cache, then decode up to ``max_new_tokens``.

        Stops after an ``eos_ids`` token or when ``stop(out)`` is true (e.g. the text ends with
        ``</answer>``). The last generated token is not yet in the cache (a caller continuing
        after a tool pause passes it first, with the results).
        """
        out: list[int] = []
        if max_new_tokens <= 0:
            return out
        logits = self.prefill(ids, cache)
        eos = set(int(e) for e in eos_ids)
        for i in range(max_new_tokens):
            tok = int(torch.argmax(logits))
            out.append(tok)
            if tok in eos or (stop is not None and stop(out)) or i == max_new_tokens - 1:
                break
            logits = self.forward([tok], cache)
        return out


class _LMOutput:
    __slots__ = ("logits",)

    def __init__(self, logits: torch.Tensor) -> None:
        self.logits = logits


class LeanCausalLM:
    """A :class:`LeanDecoder` behind the call signature of an HF causal LM, so a runtime written
    for ``model(input_ids=, past_key_values=, use_cache=True, logits_to_keep=1)`` runs on it.

    The runtime must create caches with :meth:`new_cache` (see :func:`lean_hf_reasoner`).
    """

    def __init__(self, decoder: LeanDecoder) -> None:
        self.decoder = decoder
        self.config = decoder.config

    def eval(self) -> "LeanCausalLM":
        return self

    def new_cache(self) -> KVCache:
        return self.decoder.new_cache()

    def __call__(self, input_ids: torch.Tensor, past_key_values: Optional[KVCache] = None,
                 use_cache: bool = True, logits_to_keep: int = 1, **_: object) -> _LMOutput:
        if input_ids.shape[0] != 1:
            raise ValueError("LeanCausalLM runs batch size 1")
        if past_key_values is None:
            past_key_values = self.decoder.new_cache()
        if not isinstance(past_key_values, KVCache):
            raise TypeError(f"LeanCausalLM needs its own KVCache, got {type(past_key_values).__name__}")
        ids = input_ids[0].tolist()
        if logits_to_keep == 1:
            logits = self.decoder.forward(ids, past_key_values)[None, None]
        else:
            logits = self.decoder.forward(ids, past_key_values, logits_for="all")[None]
        return _LMOutput(logits)


def lean_hf_reasoner(config, lean_model: LeanCausalLM, tokenizer):
    """The reasoning module's ``HFReasoner`` (prefix cache, tool pauses, constrained answers)
    running on a :class:`LeanCausalLM`: only the cache factory differs."""
    from frs_ros.reasoning.hf_backend import HFReasoner

    class LeanHFReasoner(HFReasoner):
        def new_cache(self):  # noqa: D401 - HFReasoner hook
            return self.model.new_cache()

    reasoner = LeanHFReasoner(config, model=lean_model, tokenizer=tokenizer)
    dec = lean_model.decoder
    reasoner.runtime = f"lean-{dec.weights} ({dec.kernel} kernel)"
    reasoner.runtime_warning = dec.kernel_note
    return reasoner


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
