"""Twin backends (one file each) and the factory that picks them from a ``TwinConfig``.

Model backends import torch/transformers lazily so that the ``sim`` path stays light.
"""

from __future__ import annotations

from frs_ros.twin.backends.base import DepthEstimator, Labeler, Propagator, Segmenter, TwinBackends
from frs_ros.twin.config import TwinConfig


def build_twin_backends(config: TwinConfig) -> TwinBackends:
    """Instantiate (and load) the backends ``config`` names.

    Raises ``ModelLoadError`` when a model directory/id cannot be loaded.
    The depth model is only built when ``config.depth == 'depth_anything_v2'``.
    """
    if config.segmenter == "sim":
        from frs_ros.twin.backends.sim import SimSegmenter

        segmenter: Segmenter = SimSegmenter(config)
    else:
        from frs_ros.twin.backends.sam2 import Sam2Segmenter

        segmenter = Sam2Segmenter(config)

    labeler: Labeler | None
    if config.labeler == "sim":
        from frs_ros.twin.backends.sim import SimLabeler

        labeler = SimLabeler(config)
    elif config.labeler == "owlv2":
        from frs_ros.twin.backends.owlv2 import Owlv2Labeler

        labeler = Owlv2Labeler(config)
    else:
        labeler = None

    depth: DepthEstimator | None = None
    if config.depth == "depth_anything_v2":
        from frs_ros.twin.backends.depth_anything_v2 import DepthAnythingV2Estimator

        depth = DepthAnythingV2Estimator(config)
    return TwinBackends(segmenter=segmenter, labeler=labeler, depth=depth,
                        propagator=build_propagator(config, segmenter))


def build_propagator(config: TwinConfig, segmenter: Segmenter) -> Propagator | None:
    """The per-frame propagator ``config.propagator`` names; None = the segmenter propagates
    ('segmenter', or the same name as the segmenter: one model instance, not two)."""
    name = config.propagator
    if name in ("segmenter", config.segmenter):
        return None
    if name == "flow":
        from frs_ros.twin.backends.flow import FlowPropagator

        return FlowPropagator(config)
    if name == "hold":
        from frs_ros.twin.backends.hold import HoldPropagator

        return HoldPropagator(config)
    if name == "sim":
        from frs_ros.twin.backends.sim import SimSegmenter

        return SimSegmenter(config)
    from frs_ros.twin.backends.sam2 import Sam2Segmenter

    return Sam2Segmenter(config)


__all__ = ["build_twin_backends", "build_propagator", "TwinBackends", "Segmenter", "Propagator", "Labeler", "DepthEstimator"]
