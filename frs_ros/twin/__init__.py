"""The digital twin (ROS-free core): types, depth statistics, backends, tracker, text, tools."""

from frs_ros.twin.config import HOUSEHOLD_VOCABULARY, ModelLoadError, TwinConfig, TwinConfigError
from frs_ros.twin.depth import depth_stats, mask_centroid_m, velocity_from_history
from frs_ros.twin.types import DepthStats, DigitalTwin, TwinObject, twin_from_json, twin_to_json

__all__ = [
    "DepthStats", "DigitalTwin", "TwinObject", "twin_to_json", "twin_from_json",
    "TwinConfig", "TwinConfigError", "ModelLoadError", "HOUSEHOLD_VOCABULARY",
    "depth_stats", "mask_centroid_m", "velocity_from_history",
    "Tracker", "build_twin_backends", "twin_to_text", "naive_json", "run_tool", "ToolError",
]


def __getattr__(name):
    # lazy: importing frs_ros.twin for the types must not import cv2/tokenizers/tools
    if name == "Tracker":
        from frs_ros.twin.tracker import Tracker

        return Tracker
    if name == "build_twin_backends":
        from frs_ros.twin.backends import build_twin_backends

        return build_twin_backends
    if name in ("twin_to_text", "naive_json"):
        from frs_ros.twin import serialize

        return getattr(serialize, name)
    if name in ("run_tool", "ToolError"):
        from frs_ros.twin import tools

        return getattr(tools, name)
    raise AttributeError(f"module 'frs_ros.twin' has no attribute {name!r}")
