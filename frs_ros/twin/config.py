"""Configuration and errors of the digital twin (one frozen dataclass, read once)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from frs_ros.config_util import dataclass_from_mapping

#: Default open vocabulary for OWLv2 on real scenes (household / tabletop objects).
HOUSEHOLD_VOCABULARY: tuple[str, ...] = (
    "mug", "cup", "bottle", "bowl", "plate", "glass", "can", "box", "book", "phone",
    "laptop", "keyboard", "mouse", "remote", "scissors", "knife", "fork", "spoon", "pen",
    "apple", "banana", "orange", "sponge", "towel", "toy", "ball", "plant", "vase",
    "lamp", "chair", "table", "shoe", "bag", "jar", "tool", "screwdriver", "hammer",
)


class TwinConfigError(ValueError):
    """A twin configuration value or key is invalid."""


class ModelLoadError(RuntimeError):
    """A model could not be loaded (no local directory and no hub access, or broken files)."""


def model_load_error(what: str, model_id: str, config_key: str, cause: BaseException | None = None) -> ModelLoadError:
    """The one actionable message for a model that cannot be loaded."""
    msg = (
        f"could not load {what} from '{model_id}': no local directory and no hub access; "
        f"download it on a connected machine with `huggingface-cli download {model_id}` "
        f"and set twin.{config_key} to the local path"
    )
    if cause is not None:
        msg += f" (underlying error: {type(cause).__name__}: {str(cause).splitlines()[0][:200] if str(cause) else ''})"
    return ModelLoadError(msg)


@dataclass(frozen=True)
class TwinConfig:
    """Every knob of the twin. Units in brackets.

    segmenter: 'sim' (simulator ground-truth instance masks) | 'sam2'.
    labeler: 'sim' (ground-truth categories, optionally noisy) | 'owlv2' | 'none'.
    depth: 'sensor' (depth camera only; NaN stats with a reason when a frame has none) |
        'depth_anything_v2' (depth camera when the frame has depth, else the model).
    keyframe_interval [frames]: segment + label every N frames; between keyframes masks are
        propagated (sam2 video / sim ids) or associated.
    coverage_drop: a frame becomes a keyframe early when the tracked visible area falls below
        this fraction of the area at the last keyframe (objects left or were lost).
    retire_after_s [s]: a track not seen for this long is removed.
    points_per_side: SAM-2 automatic-mask point grid (points_per_side**2 prompts).
    min_mask_area_px [px]: smaller masks are ignored (noise, slivers).
    label_vocabulary: OWLv2 text queries; empty = HOUSEHOLD_VOCABULARY.
    label_noise: sim labeler: probability that a label is replaced by a synonym/confusion.
    num_threads: torch intra-op threads for the model backends (0 = torch's default); on a
        shared small CPU, 1-2 is much faster than oversubscribing.
    ego_motion: estimate camera motion from static objects when frames carry no
        ``extras['T_world_camera']`` (see ``frs_ros.twin.ego``); ego_inlier_m [m]: RANSAC inlier radius.
    seed: RNG seed of the sim label noise (deterministic twins for tests and data).
    colors: name each object's dominant colour at keyframes and when it is first seen (the
        ``describe`` rule; ~1 ms per object); the twin text then leads each line with it, so a
        colour query needs no tool call.
    """

    segmenter: str = "sim"
    labeler: str = "sim"
    depth: str = "sensor"
    sam2_model: str = "facebook/sam2.1-hiera-tiny"
    owlv2_model: str = "google/owlv2-base-patch16-ensemble"
    depth_model: str = "depth-anything/Depth-Anything-V2-Small-hf"
    device: str = "cpu"
    num_threads: int = 0
    keyframe_interval: int = 10
    coverage_drop: float = 0.7
    retire_after_s: float = 5.0
    points_per_side: int = 16
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.7
    stability_score_thresh: float = 0.85
    mask_nms_iou: float = 0.7
    min_mask_area_px: int = 30
    max_objects: int = 64
    label_vocabulary: tuple[str, ...] = ()
    label_score_thresh: float = 0.1
    detect_score_thresh: float = 0.1
    label_noise: float = 0.0
    seed: int = 0
    assoc_min_iou: float = 0.2
    assoc_max_centroid_m: float = 0.3
    assoc_max_area_ratio: float = 2.5
    match_iou: float = 0.5
    move_threshold_m: float = 0.05
    ego_motion: bool = True
    ego_inlier_m: float = 0.05
    velocity_window_s: float = 1.0
    history_len: int = 120
    colors: bool = True

    def __post_init__(self) -> None:
        if self.segmenter not in ("sim", "sam2"):
            raise TwinConfigError(f"twin.segmenter must be 'sim' or 'sam2', got {self.segmenter!r}")
        if self.labeler not in ("sim", "owlv2", "none"):
            raise TwinConfigError(f"twin.labeler must be 'sim', 'owlv2' or 'none', got {self.labeler!r}")
        if self.depth not in ("sensor", "depth_anything_v2"):
            raise TwinConfigError(f"twin.depth must be 'sensor' or 'depth_anything_v2', got {self.depth!r}")
        if self.keyframe_interval < 1:
            raise TwinConfigError(f"twin.keyframe_interval must be >= 1 frame, got {self.keyframe_interval}")
        if self.retire_after_s < 0:
            raise TwinConfigError(f"twin.retire_after_s must be >= 0 s, got {self.retire_after_s}")
        if self.points_per_side < 1:
            raise TwinConfigError(f"twin.points_per_side must be >= 1, got {self.points_per_side}")
        if not 0.0 <= self.label_noise <= 1.0:
            raise TwinConfigError(f"twin.label_noise is a probability in [0, 1], got {self.label_noise}")
        if not 0.0 < self.coverage_drop <= 1.0:
            raise TwinConfigError(f"twin.coverage_drop must be in (0, 1], got {self.coverage_drop}")

    @property
    def vocabulary(self) -> tuple[str, ...]:
        return tuple(self.label_vocabulary) or HOUSEHOLD_VOCABULARY

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TwinConfig":
        """Build from a (YAML) mapping; unknown keys are an error, lists become tuples."""
        return dataclass_from_mapping(cls, d, TwinConfigError, "twin")
