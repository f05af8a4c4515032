"""The ``depth_anything_v2`` estimator: monocular depth for frames WITHOUT a depth image.

Honest units: the kind is read from the checkpoint's own ``config.depth_estimation_type``.
``Depth-Anything-V2-Small-hf`` (the default) predicts *relative inverse depth* (larger =
closer, no unit) -> kind 'relative' -> DepthStats.source 'depth_anything_v2_relative', never
presented as metres; a metric checkpoint (``...-Metric-...-hf``, ``depth_estimation_type =
'metric'``) predicts metres -> 'depth_anything_v2_metric'. Never reads ``frame.gt``.
"""

from __future__ import annotations

import numpy as np

from frs_ros.camera import Frame
from frs_ros.twin.backends.base import load_pretrained
from frs_ros.twin.config import TwinConfig


class DepthAnythingV2Estimator:
    """DepthAnything V2 (transformers); loads ``config.depth_model`` (weights + image processor)."""

    name = "depth_anything_v2"

    def __init__(self, config: TwinConfig) -> None:
        import torch
        from transformers import AutoImageProcessor, DepthAnythingForDepthEstimation

        self.config = config
        self._torch = torch
        if config.num_threads > 0:
            torch.set_num_threads(config.num_threads)
        self.model = load_pretrained(
            DepthAnythingForDepthEstimation, config.depth_model, "DepthAnything V2", "depth_model", config.device
        )
        self.processor = load_pretrained(
            AutoImageProcessor, config.depth_model, "the DepthAnything V2 image processor", "depth_model"
        )
        self.kind = "metric" if getattr(self.model.config, "depth_estimation_type", "relative") == "metric" else "relative"

    def estimate(self, frame: Frame) -> tuple[np.ndarray, str]:
        """``(depth (H, W) float32, kind)``: metres if kind == 'metric', else unitless relative inverse depth."""
        torch = self._torch
        h, w = frame.shape
        inputs = self.processor(images=frame.rgb, return_tensors="pt").to(self.config.device)
        with torch.no_grad():
            out = self.model(**inputs)
        pred = self.processor.post_process_depth_estimation(out, target_sizes=[(h, w)])[0]["predicted_depth"]
        depth = pred.detach().cpu().numpy().astype(np.float32).reshape(h, w)
        if self.kind == "metric":
            depth[~(depth > 0)] = np.nan  # a non-positive metric depth is invalid, not "0 m"
        return depth, self.kind
