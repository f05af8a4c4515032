"""Simulated RGB-D world for reasoning segmentation: ontology, scenes, episodes, queries.

Public API (others build on exactly these names)::

    from frs_ros.sim import SimSample, SimConfig, generate_image, generate_episode
    from frs_ros.sim.ontology import ONTOLOGY, get_category

``split`` is one of 'train', 'val', 'test'; held-out categories and query templates only
appear in 'test'. The same ``(seed, split, config)`` always gives bit-identical output.
"""

from frs_ros.sim.generate import SimSample, generate_episode, generate_image
from frs_ros.sim.types import QUERY_KINDS, Query, SceneGroundTruth, SimObject
from frs_ros.sim.world import SimConfig, depth_from_16uc1_mm, depth_to_16uc1_mm

__all__ = [
    "QUERY_KINDS",
    "Query",
    "SceneGroundTruth",
    "SimConfig",
    "SimObject",
    "SimSample",
    "depth_from_16uc1_mm",
    "depth_to_16uc1_mm",
    "generate_episode",
    "generate_image",
]
