"""The LM runtimes: how the reasoner's causal LM turns token ids into logits.

One file per runtime, one protocol, one factory (``reasoner.runtime`` -> runtime):

==================  ==============================================  =========================
``runtime``         file                                            what runs
==================  ==============================================  =========================
``transformers``    :mod:`~frs_ros.reasoning.lm.transformers_lm`     the HF model's forward
``lean-fp32``       :mod:`~frs_ros.reasoning.lm.lean`                fused torch forward, fp32
``lean-int8``       :mod:`~frs_ros.reasoning.lm.lean` + :mod:`frs_ros.native`  int8 C kernel
==================  ==============================================  =========================

- :mod:`~frs_ros.reasoning.lm.base` — :class:`CausalLM` (``new_cache()``, ``forward(ids,
  cache) -> logits (V,)``, ``runtime``, ``runtime_warning``) and :class:`LMCache`;
- :mod:`~frs_ros.reasoning.lm.int8` — int8 quantisation and the packed layout of the kernel;
- :mod:`~frs_ros.reasoning.lm.bench` — decode/prefill timings against the bandwidth floor.

:func:`build_lm` is the factory. The reasoner (``frs_ros.reasoning.hf_backend``) imports this
package, never the other way round. ROS-free; importing this package imports no torch.
"""

from __future__ import annotations

from typing import Any, Callable

from frs_ros.reasoning.config import ReasonerConfig, ReasonerLoadError
from frs_ros.reasoning.lm.base import CausalLM, LMCache

__all__ = ["CausalLM", "LMCache", "build_lm", "LM_RUNTIMES"]


def _transformers(config: ReasonerConfig, model: Any) -> CausalLM:
    from frs_ros.reasoning.lm.transformers_lm import TransformersLM

    return TransformersLM(model, device=config.device)


def _lean(config: ReasonerConfig, model: Any) -> CausalLM:
    from frs_ros.reasoning.lm.lean import LeanCausalLM, LeanDecoder

    # the RoPE table covers the model's context, capped (32768 x hd/2 x 8 bytes = 8 MB at hd 64)
    max_len = min(int(getattr(model.config, "max_position_embeddings", 0) or 8192), 32768)
    try:
        decoder = LeanDecoder(model, weights=config.runtime.split("-")[1], max_len=max_len)
    except ValueError as e:
        raise ReasonerLoadError(f"reasoner.runtime={config.runtime!r} cannot run {config.model!r}: {e}; "
                                "use runtime: transformers") from e
    return LeanCausalLM(decoder)


#: ``reasoner.runtime`` -> builder ``(config, HF model) -> CausalLM``
LM_RUNTIMES: dict[str, Callable[[ReasonerConfig, Any], CausalLM]] = {
    "transformers": _transformers,
    "lean-fp32": _lean,
    "lean-int8": _lean,
}


def build_lm(config: ReasonerConfig, model: Any) -> CausalLM:
    """The runtime ``config.runtime`` over a loaded HF causal LM ``model``.

    The lean runtimes copy the weights they need (fused, int8 for ``lean-int8``): the caller may
    drop ``model`` afterwards. Raises :class:`ReasonerLoadError` (naming ``runtime:
    transformers``) when the lean runtime does not implement the model's architecture.
    """
    try:
        builder = LM_RUNTIMES[config.runtime]
    except KeyError:
        raise ReasonerLoadError(f"reasoner.runtime must be one of {sorted(LM_RUNTIMES)}, got {config.runtime!r}") from None
    return builder(config, model)
