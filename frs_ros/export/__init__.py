"""Export of the LLM student for other runtimes: ONNX (onnxruntime on CPU) and TensorRT (GPU).

- :func:`export_onnx` writes the student's full-context forward (``input_ids (1, T) -> logits
  (1, T, V)``, dynamic ``T``) with the torch dynamo exporter; :func:`export_onnx_step` writes a
  decode graph with an explicit KV cache (``input_ids (1, T), past_k/past_v (L, KV, P, hd) ->
  logits (1, V), present_k/present_v (L, KV, P+T, hd)``), the form a runtime needs to decode
  token by token; its layers are the lean runtime's (Qwen3 or Llama).
- :func:`onnx_session` / :func:`onnx_logits` run them with onnxruntime (CPU provider).
- :func:`build_tensorrt_engine` builds an fp16 TensorRT engine from an ONNX file; it needs the
  ``tensorrt`` package and an NVIDIA GPU, and raises :class:`ExportUnavailableError` otherwise.

ROS-free. onnx/onnxruntime/onnxscript/tensorrt are optional imports: a missing one raises
:class:`ExportUnavailableError` with the pip command, nothing fails at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

__all__ = [
    "ExportUnavailableError",
    "export_onnx",
    "export_onnx_step",
    "onnx_session",
    "onnx_logits",
    "tensorrt_available",
    "build_tensorrt_engine",
]


class ExportUnavailableError(RuntimeError):
    """An optional export dependency (onnx, onnxruntime, tensorrt, a GPU) is missing."""


def _require(module: str, pip_name: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ExportUnavailableError(f"{module} is not installed: `pip install {pip_name}`") from e


class _FullForward(nn.Module):
    """HF causal LM -> plain ``logits`` (no cache objects in the graph)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, use_cache=False).logits


def export_onnx(model: nn.Module, path: str | Path, max_len: int = 4096, example_len: int = 8) -> Path:
    """Export an HF causal LM's full-context forward to ONNX (dynamic sequence length).

    path: output ``.onnx`` file (weights above 2 GB go to an external-data file beside it).
    max_len [tokens]: largest sequence length the graph accepts.
    """
    _require("onnxscript", "onnxscript onnx")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ids = torch.zeros(1, example_len, dtype=torch.long)
    seq = torch.export.Dim("seq", min=2, max=max_len)
    torch.onnx.export(
        _FullForward(model.eval()), (ids,), str(path), input_names=["input_ids"], output_names=["logits"],
        dynamo=True, dynamic_shapes={"input_ids": {1: seq}}, verbose=False,
    )
    return path


class _StepGraph(nn.Module):
    """One forward over ``T`` new tokens with an explicit past KV cache, for export.

    The layers are the lean runtime's own torch forward (:meth:`LeanDecoder.project_qkv`,
    :meth:`LeanDecoder.attend_output_mlp`, fp32 weights); only the attention step is written here,
    with export-friendly ops (GQA by ``repeat_interleave``, an explicit causal mask, the softmax
    scale already folded into q). Shapes: past ``(L, KV, P, hd)``, head dims in the decoder's
    interleaved-pair order (the cache is opaque to the caller).
    """

    def __init__(self, model: nn.Module, max_len: int) -> None:
        super().__init__()
        from frs_ros.reasoning.lm.lean import LeanDecoder

        dec = LeanDecoder(model, max_len=max_len, weights="fp32")
        self.dec = dec
        self.L, self.H, self.KV, self.hd = dec.n_layers, dec.n_heads, dec.n_kv, dec.head_dim
        # register the decoder's tensors so that export sees parameters and buffers, not constants
        self.mats = nn.ModuleList([nn.ModuleList([L.qkv, L.o, L.gate_up, L.down]) for L in dec.layers] + [dec.lm_head])
        self.register_buffer("embed", dec.embed, persistent=False)
        self.register_buffer("rope", dec.rope, persistent=False)
        self.register_buffer("final_norm", dec.final_norm, persistent=False)
        for i, L in enumerate(dec.layers):
            self.register_buffer(f"ln1_{i}", L.ln1, persistent=False)
            self.register_buffer(f"ln2_{i}", L.ln2, persistent=False)
            if L.qk_norm is not None:
                self.register_buffer(f"qk_norm_{i}", L.qk_norm, persistent=False)

    def forward(self, input_ids: torch.Tensor, past_k: torch.Tensor, past_v: torch.Tensor):
        dec = self.dec
        T = input_ids.shape[1]
        P = past_k.shape[2]
        H, KV, hd = self.H, self.KV, self.hd
        x = self.embed[input_ids[0]]  # (T, D)
        cos, sin = self.rope[P : P + T, None].unbind(-1)  # (T, 1, hd/2)
        q_pos = torch.arange(T).unsqueeze(1) + P
        k_pos = torch.arange(P + T).unsqueeze(0)
        bias = torch.where(k_pos <= q_pos, 0.0, float("-inf"))  # (T, P+T)
        ks, vs = [], []
        for i, L in enumerate(dec.layers):
            q, k, v = dec.project_qkv(L, x, cos, sin)  # (T, H, hd), (T, KV, hd), (T, KV, hd)
            k = torch.cat([past_k[i], k.transpose(0, 1)], 1)  # (KV, P+T, hd)
            v = torch.cat([past_v[i], v.transpose(0, 1)], 1)
            ks.append(k)
            vs.append(v)
            kr = k.repeat_interleave(H // KV, 0)
            vr = v.repeat_interleave(H // KV, 0)
            att = torch.softmax(q.transpose(0, 1) @ kr.transpose(1, 2) + bias, -1) @ vr  # (H, T, hd)
            x = dec.attend_output_mlp(L, x, att.transpose(0, 1).reshape(T, H * hd))
        logits = dec.logits_of(x[-1:])  # (1, V)
        return logits, torch.stack(ks), torch.stack(vs)


def export_onnx_step(model: nn.Module, path: str | Path, max_len: int = 4096) -> Path:
    """Export a Qwen3 or Llama decode graph with an explicit KV cache to ONNX (dynamic ``T`` and ``P``).

    Inputs ``input_ids (1, T) int64, past_k, past_v (L, KV, P, hd) float32``; outputs
    ``logits (1, V)`` of the last position, ``present_k, present_v (L, KV, P+T, hd)``.
    Raises ``ValueError`` for an architecture the lean decoder does not run (see
    :func:`frs_ros.reasoning.lm.lean.check_architecture`).
    """
    _require("onnxscript", "onnxscript onnx")
    from frs_ros.reasoning.lm.lean import check_architecture

    check_architecture(model.config)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    g = _StepGraph(model, max_len).eval()
    ids = torch.zeros(1, 3, dtype=torch.long)
    past = torch.zeros(g.L, g.KV, 4, g.hd)
    T = torch.export.Dim("T", min=1, max=max_len)
    P = torch.export.Dim("P", min=1, max=max_len)
    with torch.no_grad():
        torch.onnx.export(
            g, (ids, past, past.clone()), str(path),
            input_names=["input_ids", "past_k", "past_v"], output_names=["logits", "present_k", "present_v"],
            dynamo=True, dynamic_shapes={"input_ids": {1: T}, "past_k": {2: P}, "past_v": {2: P}}, verbose=False,
        )
    return path


def onnx_session(path: str | Path, threads: Optional[int] = None):
    """An onnxruntime CPU session for an exported graph."""
    ort = _require("onnxruntime", "onnxruntime")
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = int(threads)
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def onnx_logits(session, input_ids) -> Any:
    """Run a full-forward graph from :func:`export_onnx`: ``(1, T)`` ids -> ``(1, T, V)`` logits."""
    import numpy as np

    return session.run(None, {"input_ids": np.asarray(input_ids, dtype=np.int64)})[0]


def tensorrt_available() -> bool:
    """True when ``tensorrt`` imports and a CUDA GPU is visible."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def build_tensorrt_engine(onnx_path: str | Path, engine_path: str | Path, fp16: bool = True,
                          workspace_gb: float = 4.0, max_len: int = 4096) -> Path:
    """Build a serialized TensorRT engine from an ONNX file (:func:`export_onnx` or
    :func:`export_onnx_step`), with one optimisation profile over the dynamic dims.

    Needs the ``tensorrt`` Python package and an NVIDIA GPU; raises
    :class:`ExportUnavailableError` otherwise. Not exercised on the CPU-only machines.
    """
    if not tensorrt_available():
        raise ExportUnavailableError(
            "TensorRT needs the `tensorrt` package and a CUDA GPU; neither is usable here. "
            "Build the engine on the robot's GPU: `pip install tensorrt`, then call build_tensorrt_engine"
        )
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errs}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * 2**30))
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        inp = network.get_input(i)
        shape = list(inp.shape)
        lo = [1 if d < 0 else d for d in shape]
        opt = [min(512, max_len) if d < 0 else d for d in shape]
        hi = [max_len if d < 0 else d for d in shape]
        profile.set_shape(inp.name, lo, opt, hi)
    config.add_optimization_profile(profile)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path}")
    engine_path = Path(engine_path)
    engine_path.write_bytes(bytes(engine))
    return engine_path
