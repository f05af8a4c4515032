"""Benchmark dataset formats: readers/writers for ReasonSeg, ReVOS/MeViS, LLM-Seg40K, RefCOCOg.

``frs_ros.data.bags`` (ROS bag I/O) belongs to the nodes package and is not
imported here, so this package stays ROS-free.
"""

from frs_ros.data.types import (
    DatasetFormatError,
    ImageSample,
    QueryGT,
    QueryMeta,
    VideoExpression,
    VideoSample,
)
from frs_ros.data.reasonseg import RoundTripStats, load_reasonseg, write_reasonseg
from frs_ros.data.video import load_mevis, load_revos, load_rvos, write_mevis, write_revos
from frs_ros.data.llmseg40k import load_llmseg40k
from frs_ros.data.refcocog import load_refcocog
from frs_ros.data.sim_export import sim_episode_to_sample, sim_image_to_sample

__all__ = [
    "DatasetFormatError",
    "ImageSample",
    "QueryGT",
    "QueryMeta",
    "RoundTripStats",
    "VideoExpression",
    "VideoSample",
    "load_llmseg40k",
    "load_mevis",
    "load_refcocog",
    "load_reasonseg",
    "load_revos",
    "load_rvos",
    "write_mevis",
    "write_reasonseg",
    "write_revos",
    "sim_episode_to_sample",
    "sim_image_to_sample",
]
