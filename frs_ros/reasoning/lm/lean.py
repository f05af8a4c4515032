"""The lean runtime: a Qwen3/Llama forward pass with fused projections, a growable KV cache and
int8 weights on the native C kernel — the fast CPU path (``reasoner.runtime: lean-int8``).

- :class:`LeanDecoder` — built once from an HF ``Qwen3ForCausalLM`` or ``LlamaForCausalLM``
  (SmolLM2); weights are copied, fused (q|k|v, gate|up) and optionally quantised to int8 (one
  scale per output row, :mod:`frs_ros.reasoning.lm.int8`). int8 runs on the native kernel
  (:mod:`frs_ros.native`, ``causal_lm_int8.c``: packed weights streamed at the machine's read
  bandwidth; timings against the bandwidth floor: :mod:`frs_ros.reasoning.lm.bench`) where a C
  compiler is available, else on torch's int8 ops; fp32 runs on torch.
- :class:`KVCache` — K and V of every layer in two tensors ``(L, KV, capacity, hd)``: re-using a
  prompt prefix (the serialised twin) across queries and tool pauses is ``crop(prefix_len)``.
- :class:`LeanCausalLM` — the decoder behind the :class:`frs_ros.reasoning.lm.CausalLM` protocol.
- :func:`check_architecture` — what the decoder runs, with the reason when it does not.

ROS-free; imports torch (transformers only to read the HF model it is built from).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from frs_ros.reasoning.lm.int8 import (FloatLinear, PackedInt8Matrix, hugepage_arena, hugepage_zeros, int8_linear,
                                       interleave_blocks, quantize_rows)

__all__ = ["KERNELS", "SUPPORTED_MODEL_TYPES", "check_architecture", "KVCache", "LeanDecoder", "LeanCausalLM"]

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

    dtype: float32 for the torch kernels; float16 for the native kernel (it reads a token's
    keys and values back exactly into fp32 sums: half the bytes per decoded token, half the
    memory of each cached prefix). Growth doubles the capacity (amortised O(1) per token, unlike a concatenating cache that
    copies the whole cache every step). Speaks the part of the transformers ``Cache`` API that a
    prefix-reusing runtime needs: ``get_seq_length()``, ``crop(n)`` (negative ``n`` removes that
    many tokens) and ``copy.deepcopy`` (copies only the valid part).
    """

    def __init__(self, n_layers: int, n_kv: int, head_dim: int, capacity: int = 256,
                 dtype: torch.dtype = torch.float32) -> None:
        self.shape = (n_layers, n_kv, head_dim)
        self.k = self._zeros(capacity, dtype)
        self.v = self._zeros(capacity, dtype)
        self.length = 0

    def _zeros(self, capacity: int, dtype: torch.dtype) -> torch.Tensor:
        """One zeroed buffer ``(L, KV, capacity, hd)``: in transparent huge pages where it fills
        at least one (a decoded token reads each layer's slice; measured on SmolLM2-135M, see
        ``int8.hugepage_zeros``), else torch's."""
        L, KV, hd = self.shape
        shape = (L, KV, max(1, capacity), hd)
        t = hugepage_zeros(shape, dtype) if self.huge_pages else None
        return torch.zeros(shape, dtype=dtype) if t is None else t

    #: keep the buffers in transparent huge pages where they fill at least one (``_zeros``)
    huge_pages: bool = True

    @property
    def dtype(self) -> torch.dtype:
        return self.k.dtype

    @property
    def capacity(self) -> int:
        return self.k.shape[2]

    def reserve(self, n: int) -> None:
        """Make room for ``n`` tokens in total (keeps the valid part)."""
        if n <= self.capacity:
            return
        cap = max(n, 2 * self.capacity)
        k, v = self._zeros(cap, self.dtype), self._zeros(cap, self.dtype)
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
        new = KVCache(L, KV, hd, capacity=self.length + 128, dtype=self.dtype)
        new.k[:, :, : self.length] = self.k[:, :, : self.length]
        new.v[:, :, : self.length] = self.v[:, :, : self.length]
        new.length = self.length
        return new

    def nbytes(self) -> int:
        """Bytes of both buffers at their current capacity [bytes]."""
        return 2 * self.k.numel() * self.k.element_size()


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
    :func:`check_architecture`; weights are copied once, QKV and gate/up fused, optionally int8).
    One decode step is 4 matrix products per layer + the LM head, attention over the cache, and
    nothing else: no cache objects rebuilt, no masks for single-token steps. Typical use::

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
    Shapes: hidden ``(T, D)``; cache ``(L, KV, capacity, hd)`` for K and for V, head dims in the
    interleaved-pair order of the permuted q/k weights (see ``perm`` below).

    The torch forward is written once, as :meth:`project_qkv` (norm, fused q|k|v, q/k norm, RoPE)
    and :meth:`attend_output_mlp` (o projection, residuals, SiLU-gated MLP) around an attention
    step: :meth:`_layers` runs them over the growable cache (in place, SDPA), and the ONNX step
    graph of :mod:`frs_ros.export` over explicit past/present tensors.
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
            make = PackedInt8Matrix
        else:
            make = int8_linear if weights == "int8" else FloatLinear
        base = model.model
        hd, H, KV = self.head_dim, self.n_heads, self.n_kv
        # RoPE on interleaved pairs: permute the head dims of q and k from the "rotate half"
        # layout (pairs i, i + hd/2) to (2i, 2i + 1), so each rotated pair is adjacent (one SIMD
        # lane pair in the kernel). q.k is unchanged by a permutation applied to both, and the
        # per-dim q/k norm weights are permuted with them.
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
                if make is PackedInt8Matrix:  # the kernel applies SiLU in the product's epilogue: gate and up blocks alternate
                    gate_up = PackedInt8Matrix(interleave_blocks(mlp.gate_proj.weight, mlp.up_proj.weight, PackedInt8Matrix.BLOCK))
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
            if self.tied and isinstance(self.lm_head, PackedInt8Matrix):
                self.embed = None
            elif weights == "int8":  # int8 rows with one scale each: the table is 4x smaller in memory
                self.embed, self.embed_scale = quantize_rows(emb.detach().float())  # (V, D) int8, (V,)
            else:
                self.embed = emb.detach().float().clone()
        rope = dict(getattr(cfg, "rope_parameters", None) or {})
        theta = float(rope.get("rope_theta", getattr(cfg, "rope_theta", None) or 10000.0))
        inv = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
        ang = torch.arange(self.max_len, dtype=torch.float32)[:, None] * inv[None, :]
        #: RoPE table (max_len, hd/2, 2): cos, sin of each position and pair (the kernel's layout)
        self.rope = torch.stack([ang.cos(), ang.sin()], -1).contiguous()
        self._arena = None
        if self._lib is not None:
            if self.huge_pages:
                self._arena = hugepage_arena([m for L in self.layers for m in (L.qkv, L.o, L.gate_up, L.down)] + [self.lm_head])
            self._bind_native()
        self.cache = self.new_cache()

    #: native kernel: keep the packed weights in transparent huge pages (int8.hugepage_arena)
    huge_pages: bool = True

    def _bind_native(self) -> None:
        """The ctypes view of the weights for the C kernel (pointers into this object's tensors)."""
        import ctypes

        from frs_ros.native import FrsLayer, FrsModel

        self._c_layers = (FrsLayer * self.n_layers)(*[
            FrsLayer(L.qkv.struct(), L.o.struct(), L.gate_up.struct(), L.down.struct(),
                     L.ln1.data_ptr(), L.ln2.data_ptr(), None if L.qk_norm is None else L.qk_norm.data_ptr())
            for L in self.layers
        ])
        self._c_model = FrsModel(
            self.n_layers, self.hidden, self.n_heads, self.n_kv, self.head_dim, self.inter, self.vocab,
            self.max_len, self.eps, ctypes.cast(self._c_layers, ctypes.POINTER(FrsLayer)),
            self.lm_head.struct(), self.final_norm.data_ptr(), self.rope.data_ptr(),
        )
        self._c_model_ref = ctypes.byref(self._c_model)
        self._c_head = self.lm_head.struct()
        self._c_head_ref = ctypes.byref(self._c_head)

    def simd_level(self) -> int:
        """The native kernel's SIMD path: 2 AVX512-VNNI, 1 AVX2, 0 plain C (``frs_ros.native.SIMD_LEVELS``);
        -1 on the torch kernel."""
        return -1 if self._lib is None else int(self._lib.frs_simd_level())

    def new_cache(self, capacity: int = 256) -> KVCache:
        """An empty cache (fp16 for the native kernel, fp32 for the torch kernels)."""
        dtype = torch.float32 if self._lib is None else torch.float16
        return KVCache(self.n_layers, self.n_kv, self.head_dim, capacity, dtype=dtype)

    def reset(self) -> None:
        """Forget the default cache's tokens."""
        self.cache.length = 0

    def linear_weight_bytes(self) -> int:
        """Bytes of the matrices read per decoded token (all projections + LM head) [bytes]."""
        total = 0
        mods = [m for lyr in self.layers for m in (lyr.qkv, lyr.o, lyr.gate_up, lyr.down)] + [self.lm_head]
        for m in mods:
            if isinstance(m, PackedInt8Matrix):
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
        if cache.dtype != self.cache.dtype:
            raise TypeError(f"a {cache.dtype} cache for a decoder whose kernel keeps {self.cache.dtype}: use its new_cache()")
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
        """Embedding rows of ``tok`` (T,) as a fresh fp32 ``(T, D)``."""
        if self.embed is None:  # tied: rows of the packed int8 head (16-row blocks, 4 columns interleaved)
            w = self.lm_head.w  # (R/16, D/4, 16, 4)
            q = w[tok // PackedInt8Matrix.BLOCK, :, tok % PackedInt8Matrix.BLOCK]  # (T, D/4, 4)
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

    # ---- the torch forward, in two halves shared with the ONNX step graph (frs_ros.export)
    def project_qkv(self, L: _Layer, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
        """Pre-norm, fused q|k|v, q/k norm (Qwen3) and RoPE of one layer for hidden ``x`` (T, D).

        cos, sin: ``(T, 1, hd/2)`` of the tokens' positions. Returns q ``(T, H, hd)`` (softmax
        scale folded in), k ``(T, KV, hd)`` (both rotated), v ``(T, KV, hd)``.
        """
        T, H, KV, hd = x.shape[0], self.n_heads, self.n_kv, self.head_dim
        ks = self.q_size + self.kv_size
        qkv = L.qkv(F.rms_norm(x, (self.hidden,), L.ln1, self.eps))  # (T, (H + 2 KV) hd)
        qk = qkv[:, :ks].reshape(T, H + KV, hd)  # q and k heads together
        if L.qk_norm is not None:
            qk = F.rms_norm(qk, (hd,), None, self.eps) * L.qk_norm
        a, b = qk.view(T, H + KV, hd // 2, 2).unbind(-1)  # interleaved pairs
        qk = torch.stack([a * cos - b * sin, a * sin + b * cos], -1).view(T, H + KV, hd)
        return qk[:, :H], qk[:, H:], qkv[:, ks:].reshape(T, KV, hd)

    def attend_output_mlp(self, L: _Layer, x: torch.Tensor, att: torch.Tensor) -> torch.Tensor:
        """The rest of a layer: ``x + o(att)``, then the SiLU-gated MLP with its residual. x (T, D), att (T, H hd)."""
        x = x + L.o(att)
        gu = L.gate_up(F.rms_norm(x, (self.hidden,), L.ln2, self.eps))  # (T, 2 I)
        return x + L.down(F.silu(gu[:, : self.inter]) * gu[:, self.inter :])

    def logits_of(self, x: torch.Tensor) -> torch.Tensor:
        """Final norm and LM head: hidden ``(T, D)`` -> logits ``(T, V)``."""
        return self.lm_head(F.rms_norm(x, (self.hidden,), self.final_norm, self.eps))

    def _layers(self, tok: torch.Tensor, K: torch.Tensor, V: torch.Tensor, P: int, all_logits: bool) -> torch.Tensor:
        """The model over ``tok`` (T,) at positions P.. with caches K, V ``(L, KV, cap, hd)`` (torch kernels)."""
        T = tok.shape[0]
        x = self._embed(tok)
        H, KV, hd = self.n_heads, self.n_kv, self.head_dim
        G = H // KV
        if T == 1:
            mask, causal = None, False
        elif P == 0:
            mask, causal = None, True
        else:  # new tokens see the whole past, and each other causally: (T, P+T) bool
            mask = torch.arange(P + T)[None, :] <= torch.arange(P, P + T)[:, None]
            causal = False
        cos, sin = self.rope[P : P + T, None].unbind(-1)  # (T, 1, hd/2) each
        for li, L in enumerate(self.layers):
            q, k, v = self.project_qkv(L, x, cos, sin)
            kc, vc = K[li], V[li]  # (KV, cap, hd)
            kc[:, P : P + T] = k.transpose(0, 1)
            vc[:, P : P + T] = v.transpose(0, 1)
            if T == 1:  # decode: two batched GEMVs over the cache, the G query heads of a KV head together
                s_ = torch.bmm(q[0].view(KV, G, hd), kc[:, : P + 1].transpose(1, 2))  # (KV, G, P+1)
                att = torch.bmm(torch.softmax(s_, -1), vc[:, : P + 1]).view(1, H * hd)
            else:
                att = F.scaled_dot_product_attention(
                    q.transpose(0, 1).unsqueeze(0),  # (1, H, T, hd)
                    kc[:, : P + T].unsqueeze(0),  # (1, KV, P+T, hd)
                    vc[:, : P + T].unsqueeze(0),
                    attn_mask=mask, is_causal=causal, scale=1.0, enable_gqa=True,
                )[0].transpose(0, 1).reshape(T, H * hd)  # (T, H hd)
            x = self.attend_output_mlp(L, x, att)
        return self.logits_of(x) if all_logits else self.logits_of(x[-1:])[0]

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
            tok = int(np.argmax(logits.numpy()))  # torch.argmax: ~55 us over 49152 logits, numpy ~5 (measured)
            out.append(tok)
            if tok in eos or (stop is not None and stop(out)) or i == max_new_tokens - 1:
                break
            logits = self.forward([tok], cache)
        return out


class LeanCausalLM:
    """A :class:`LeanDecoder` as a :class:`frs_ros.reasoning.lm.CausalLM`: ``new_cache()`` gives
    a :class:`KVCache`, ``forward(ids, cache)`` appends ``ids`` and returns the last logits ``(V,)``.

    ``runtime`` says the weights and the kernel (``'lean-int8 (native kernel)'``);
    ``runtime_warning`` why the kernel is not the native one when ``kernel='auto'`` fell back
    (``''`` otherwise). ``decoder`` is the decoder (its weights, ``linear_weight_bytes()``).
    """

    def __init__(self, decoder: LeanDecoder) -> None:
        self.decoder = decoder
        self.config = decoder.config
        self.runtime = f"lean-{decoder.weights} ({decoder.kernel} kernel)"
        self.runtime_warning = decoder.kernel_note

    def new_cache(self) -> KVCache:
        return self.decoder.new_cache()

    def forward(self, ids: Sequence[int], cache: KVCache) -> torch.Tensor:
        if not isinstance(cache, KVCache):
            raise TypeError(f"LeanCausalLM needs its own KVCache (from new_cache()), got {type(cache).__name__}")
        return self.decoder.forward(ids, cache)
