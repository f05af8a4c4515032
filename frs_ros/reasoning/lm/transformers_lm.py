"""The transformers runtime: an HF causal LM's own forward (any architecture, any device, any dtype).

``reasoner.runtime: transformers``. The reference the lean runtime is tested against, and the
runtime for training (GRPO samples rollouts from the model it is updating, through ``.model``).
ROS-free; imports torch and transformers.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

__all__ = ["TransformersLM"]


class TransformersLM:
    """An HF ``*ForCausalLM`` (``model``) as a :class:`frs_ros.reasoning.lm.CausalLM`.

    The cache is a transformers ``DynamicCache``; ``forward`` runs ``model(input_ids (1, T),
    past_key_values=cache, use_cache=True, logits_to_keep=1)`` without autograd and returns the
    last logits ``(V,)`` as float32 on the model's device.
    """

    runtime = "transformers"
    runtime_warning = ""

    def __init__(self, model: Any, device: str = "cpu") -> None:
        self.model = model.eval()
        self.config = model.config
        self.device = torch.device(device)

    def new_cache(self) -> Any:
        from transformers import DynamicCache

        return DynamicCache(config=self.model.config)

    def forward(self, ids: Sequence[int], cache: Any) -> torch.Tensor:
        inp = torch.tensor([list(ids)], dtype=torch.long, device=self.device)
        with torch.inference_mode():
            out = self.model(input_ids=inp, past_key_values=cache, use_cache=True, logits_to_keep=1)
        return out.logits[0, -1].float()
