"""Native (C/OpenMP) kernels, compiled on first use for the CPU they run on.

:func:`load_causal_lm_int8` returns the ctypes library built from ``causal_lm_int8.c`` (the int8
forward pass of the Qwen3 and Llama families behind
:class:`frs_ros.reasoning.lm.lean.LeanDecoder`). It is compiled once per source, compiler flags and CPU (``-march=native``: AVX512-VNNI or AVX2 where
the CPU has them; ``frs_simd_level()`` says which) into ``$FRS_NATIVE_CACHE`` (default
``~/.cache/frs_ros/native``) and loaded from there afterwards.
No compiler, or a failed build, raises :class:`NativeKernelError` saying why; callers fall back
to the torch path.

ROS-free; needs a C compiler with OpenMP (``cc``/``gcc``; ``$CC`` overrides) at first use only.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

__all__ = ["NativeKernelError", "load_causal_lm_int8", "native_cache_dir", "FrsMat", "FrsLayer", "FrsModel"]

SOURCE = Path(__file__).with_name("causal_lm_int8.c")
ABI_VERSION = 5
#: ``frs_simd_level()`` of a built kernel
SIMD_LEVELS = {0: "plain C", 1: "AVX2", 2: "AVX512-VNNI"}
_BASE_FLAGS = ["-O3", "-std=c11", "-fPIC", "-shared", "-fopenmp", "-ffp-contract=fast"]
_lock = threading.Lock()
_loaded: dict[str, ctypes.CDLL] = {}


class NativeKernelError(RuntimeError):
    """The native kernel cannot be built or loaded here (the message says why and what to do)."""


class FrsMat(ctypes.Structure):
    _fields_ = [
        ("w", ctypes.c_void_p),
        ("scale", ctypes.c_void_p),
        ("rows", ctypes.c_int32),
        ("cols", ctypes.c_int32),
    ]


class FrsLayer(ctypes.Structure):
    _fields_ = [
        ("qkv", FrsMat),
        ("o", FrsMat),
        ("gate_up", FrsMat),
        ("down", FrsMat),
        ("ln1", ctypes.c_void_p),
        ("ln2", ctypes.c_void_p),
        ("qk_norm", ctypes.c_void_p),
    ]


class FrsModel(ctypes.Structure):
    _fields_ = [
        ("n_layers", ctypes.c_int32),
        ("hidden", ctypes.c_int32),
        ("n_heads", ctypes.c_int32),
        ("n_kv", ctypes.c_int32),
        ("head_dim", ctypes.c_int32),
        ("inter", ctypes.c_int32),
        ("vocab", ctypes.c_int32),
        ("max_len", ctypes.c_int32),
        ("eps", ctypes.c_float),
        ("layers", ctypes.POINTER(FrsLayer)),
        ("lm_head", FrsMat),
        ("final_norm", ctypes.c_void_p),
        ("rope", ctypes.c_void_p),
    ]


def native_cache_dir() -> Path:
    """Where compiled kernels are kept (``$FRS_NATIVE_CACHE`` or ``~/.cache/frs_ros/native``)."""
    env = os.environ.get("FRS_NATIVE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "frs_ros" / "native"


def _cpu_signature() -> str:
    """CPU model + feature flags: a kernel built with -march=native is only reused on the same CPU."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.machine() + platform.processor()
    model = next((ln for ln in text.splitlines() if ln.startswith("model name")), "")
    flags = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    return platform.machine() + model + flags


def _compiler() -> str:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc:
        raise NativeKernelError(
            "no C compiler found (cc, gcc or clang; or set $CC): install one (e.g. `apt install gcc`) "
            "to build the native int8 kernel, or use kernel='torch'"
        )
    return cc


def load_causal_lm_int8(portable: bool = False, emulate_vnni: bool = False) -> ctypes.CDLL:
    """Build (first call per CPU and source) and load the int8 causal-LM kernel.

    portable: compile without ``-march=native`` and without the SIMD paths (plain C,
        compiler-vectorised) — what a CPU without AVX2 gets; used by the tests to check both.
    emulate_vnni: build the AVX512-VNNI matrix-product path with plain-C lanes (the rest as on
        this CPU), so the tests run that path's logic on machines without AVX-512 (slow).
    Raises NativeKernelError when it cannot be built or loaded.
    """
    if portable and emulate_vnni:
        raise ValueError("portable and emulate_vnni exclude each other")
    arch = [] if portable else ["-march=native"]
    defines = ["-DFRS_PORTABLE"] if portable else ["-DFRS_EMULATE_VNNI"] if emulate_vnni else []
    cc = _compiler()
    flags = _BASE_FLAGS + arch + defines
    key = hashlib.sha256(
        SOURCE.read_bytes() + " ".join([cc] + flags).encode() + _cpu_signature().encode()
    ).hexdigest()[:16]
    variant = "portable-" if portable else "emulate-vnni-" if emulate_vnni else ""
    lib_path = native_cache_dir() / f"causal_lm_int8-{variant}{key}.so"
    with _lock:
        cached = _loaded.get(str(lib_path))
        if cached is not None:
            return cached
        if not lib_path.exists():
            _build(cc, flags, lib_path)
        try:
            lib = ctypes.CDLL(str(lib_path))
        except OSError as e:
            raise NativeKernelError(f"cannot load the native kernel {lib_path}: {e}; delete it to rebuild") from e
        if lib.frs_abi_version() != ABI_VERSION:
            raise NativeKernelError(f"{lib_path} has ABI {lib.frs_abi_version()}, expected {ABI_VERSION}; delete it")
        lib.frs_forward.restype = ctypes.c_int
        lib.frs_forward.argtypes = [
            ctypes.POINTER(FrsModel), ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_void_p,
            ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
        ]
        lib.frs_simd_level.restype = ctypes.c_int
        lib.frs_embed_packed.restype = ctypes.c_int
        lib.frs_embed_packed.argtypes = [ctypes.POINTER(FrsMat), ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
        _loaded[str(lib_path)] = lib
        return lib


def _build(cc: str, flags: list[str], lib_path: Path) -> None:
    try:
        lib_path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=lib_path.parent)  # same dir: the rename is atomic
    except OSError as e:
        raise NativeKernelError(
            f"cannot write the native kernel to {lib_path.parent}: {e}; set FRS_NATIVE_CACHE to a writable directory"
        ) from e
    os.close(fd)
    cmd = [cc, *flags, str(SOURCE), "-o", tmp, "-lm"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as e:
        os.unlink(tmp)
        raise NativeKernelError(f"building the native kernel failed ({' '.join(cmd)}): {e}") from e
    if proc.returncode != 0:
        os.unlink(tmp)
        raise NativeKernelError(
            f"building the native kernel failed ({' '.join(cmd)}):\n{proc.stderr.strip()[-2000:]}\n"
            "use kernel='torch' or install a C compiler with OpenMP"
        )
    os.replace(tmp, lib_path)

