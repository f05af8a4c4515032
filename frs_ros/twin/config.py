"""Configuration and errors of the digital twin (one frozen dataclass, read once)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from frs_ros.config_util import dataclass_from_mapping
from frs_ros.knobs import check_knobs, knob

#: Default open vocabulary for OWLv2 on real scenes (household / tabletop objects).
HOUSEHOLD_VOCABULARY: tuple[str, ...] = (
    "mug", "cup", "bottle", "bowl", "plate", "glass", "can", "box", "book", "phone",
    "laptop", "keyboard", "mouse", "remote", "scissors", "knife", "fork", "spoon", "pen",
    "apple", "banana", "orange", "sponge", "towel", "toy", "ball", "plant", "vase",
    "lamp", "chair", "table", "shoe", "bag", "jar", "tool", "screwdriver", "hammer",
)


#: ``TwinConfig.propagator`` values (see ``frs_ros.twin.backends.build_propagator``)
PROPAGATORS: tuple[str, ...] = ("segmenter", "flow", "sim", "sam2", "hold")


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
    """Every knob of the twin: each field's doc, unit, range and choices are in its ``knob(...)``
    (:mod:`frs_ros.knobs`; ``config/frs.yaml`` lists them under ``twin.``).
    """

    segmenter: str = knob("sim", doc="instance segmentation: sim (simulator ground truth) | sam2", choices=("sim", "sam2"))
    labeler: str = knob("sim", doc="open-vocabulary labels: sim (ground-truth categories, optionally noisy) | owlv2 | none",
                        choices=("sim", "owlv2", "none"))
    depth: str = knob("sensor", doc="depth source: sensor (depth camera only; NaN stats with a reason when a frame has "
                      "none) | depth_anything_v2 (camera depth when present, else the model)",
                      choices=("sensor", "depth_anything_v2"))
    sam2_model: str = knob("facebook/sam2.1-hiera-tiny", doc="SAM-2 hub id or local directory")
    owlv2_model: str = knob("google/owlv2-base-patch16-ensemble", doc="OWLv2 hub id or local directory")
    depth_model: str = knob("depth-anything/Depth-Anything-V2-Small-hf", doc="Depth-Anything-V2 hub id or local directory")
    device: str = knob("cpu", doc="torch device of the vision models (cpu, cuda, cuda:0)")
    num_threads: int = knob(0, doc="torch intra-op threads for the model backends (0 = torch's default); on a shared "
                            "small CPU, 1-2 is much faster than oversubscribing", range=(0, None))
    keyframe_interval: int = knob(10, doc="segment + label every N frames; masks are propagated (sam2 video / sim ids) "
                                  "or associated in between", unit="frames", range=(1, 10000))
    coverage_drop: float = knob(0.7, doc="keyframe early when the tracked visible area falls below this fraction of "
                                "the area at the last keyframe (objects left or were lost)", range=(0.0, 1.0),
                                min_exclusive=True)
    keyframe_events: bool = knob(False, doc="keyframe early (still at most keyframe_interval apart) when the scene changes "
                                 "in a way the propagator cannot follow: a hidden track's predicted place shows its own "
                                 "depth again (uncovered), or a blob of pixels no track explains comes nearer than it was "
                                 "in the previous frame (an object entering or appearing); each event triggers once. Off by default: the "
                                 "shipped student was trained and scored on twins without it; for real models with the "
                                 "flow propagator turn it on (docs/performance.md)")
    discover: bool = knob(True, doc="flow and sam2 propagators, between keyframes: what comes nearer (by "
                          "metric depth, since the previous frame) on pixels no track explains is an object coming into "
                          "view: a blob touching a track at that track's depth is added to it, any other becomes a "
                          "new, provisional, unlabelled track (at most 8 at a time; the next keyframe confirms and labels it, "
                          "gives it to an established track, or drops it); the search is cheap, the tracks it adds "
                          "cost the per-frame path like any other; without it new objects wait for the next keyframe")
    retire_after_s: float = knob(5.0, doc="remove a track not seen for this long", unit="s", range=(0.0, 3600.0))
    points_per_side: int = knob(16, doc="SAM-2 automatic-mask point grid (points_per_side^2 prompts)", range=(1, 128))
    points_per_batch: int = knob(64, doc="SAM-2 prompts per forward pass")
    pred_iou_thresh: float = knob(0.7, doc="SAM-2 predicted-IoU threshold for keeping a mask")
    stability_score_thresh: float = knob(0.85, doc="SAM-2 stability-score threshold for keeping a mask")
    mask_nms_iou: float = knob(0.7, doc="masks overlapping more than this IoU are suppressed")
    min_mask_area_px: int = knob(30, doc="ignore masks smaller than this (noise, slivers)", unit="px")
    max_objects: int = knob(64, doc="at most this many objects in the twin")
    label_vocabulary: tuple[str, ...] = knob((), doc="OWLv2 text queries; empty = built-in household vocabulary "
                                             "(HOUSEHOLD_VOCABULARY)")
    label_score_thresh: float = knob(0.1, doc="OWLv2 score below which a label is not given")
    detect_score_thresh: float = knob(0.1, doc="OWLv2 score threshold of the detect() tool")
    label_noise: float = knob(0.0, doc="sim labeler: probability a label is replaced by a synonym/confusion",
                              range=(0.0, 1.0))
    seed: int = knob(0, doc="RNG seed of the sim label noise (deterministic twins for tests and data)")
    assoc_min_iou: float = knob(0.2, doc="least mask IoU to associate a new mask with a track")
    assoc_max_centroid_m: float = knob(0.3, doc="largest 3-D centroid jump to associate a mask with a track", unit="m")
    assoc_max_area_ratio: float = knob(2.5, doc="largest ratio of mask areas to associate a mask with a track")
    match_iou: float = knob(0.5, doc="IoU at which a segmented mask is the same object as a propagated one")
    reid: bool = knob(True, doc="re-identification at keyframes: a keyframe mask no propagated mask matches is first "
                      "offered to the tracks not seen in it (hidden, lost, or whose propagated mask shrank under an "
                      "occluder) by a gated cost of 3-D distance in the motion frame (assoc_max_centroid_m), physical "
                      "size (assoc_max_area_ratio against the last or the largest keyframe size), mean colour "
                      "(reid_max_color) and overlap with the last mask; only the rest are new objects, so a hidden "
                      "object keeps its id ('was hidden'). Off: the older mask IoU + centroid association")
    reid_max_speed_mps: float = knob(0.5, doc="re-identification: the 3-D distance gate (assoc_max_centroid_m) grows by "
                                     "this speed times the time a track has not been seen (it may have moved while "
                                     "hidden); its last velocity predicts where it went", unit="m/s",
                                     range=(0.0, None))
    reid_max_color: float = knob(25.0, doc="re-identification: largest CIE Lab distance between a keyframe mask's mean "
                                 "colour and a track's (its last keyframe mask); 0 = no colour gate", range=(0.0, None))
    reid_contain: float = knob(0.7, doc="re-identification: a propagated mask lying at least this fraction inside a "
                               "larger keyframe mask (an object uncovered from behind an occluder) counts as overlap "
                               "with it, like IoU", range=(0.0, 1.0), min_exclusive=True)
    move_threshold_m: float = knob(0.05, doc="displacement above which an object counts as moved", unit="m")
    ego_motion: bool = knob(True, doc="estimate camera motion from static objects when frames carry no "
                            "extras['T_world_camera'] (see frs_ros.twin.ego)")
    ego_inlier_m: float = knob(0.05, doc="ego-motion RANSAC inlier radius", unit="m")
    velocity_window_s: float = knob(1.0, doc="window of centroid history for the velocity estimate", unit="s")
    history_len: int = knob(120, doc="centroid samples kept per track")
    colors: bool = knob(True, doc="name each object's dominant colour at keyframes and when it is first seen (the "
                        "describe rule; ~1 ms per object); the twin text then leads each line with it, so a colour "
                        "query needs no tool call")
    propagator: str = knob("segmenter", doc="what moves the tracked masks on every frame (the cheap path): segmenter "
                           "(the segmenter's own propagation: sim ids / SAM-2 video memory) | flow (DIS optical flow, "
                           "milliseconds, snapped to colour and depth edges: flow_refine) | sim | sam2 | hold (keep the "
                           "last mask; a baseline)",
                           choices=PROPAGATORS)
    keyframes: str = knob("inline", doc="where keyframe segmentation + labelling run: inline (inside update, which then "
                          "takes as long as the models) | background (a worker thread; update never waits for it, and a "
                          "keyframe's masks are brought forward to the frame it lands on)",
                          choices=("inline", "background"))
    depth_runs: str = knob("inline", doc="depth: depth_anything_v2 on frames without a depth image: inline (estimated "
                           "inside update on every such frame; ~1 s on 2 CPU cores at real size) | background (a worker "
                           "thread estimates the latest frame, one at a time; update carries the last estimate to each "
                           "new frame by the optical flow and never waits, so the depth facts lag by the model's "
                           "latency: keyframe_status() depth_ns / depth_lag_frames); needs propagator: flow",
                           choices=("inline", "background"))
    keyframe_video: int = knob(0, doc="background keyframes with propagator: flow: after each segmentation keyframe, "
                               "up to this many keyframes are video refreshes instead: the worker moves the tracks' "
                               "masks to the keyframe's frame with the segmenter's own video propagation (SAM-2's "
                               "memory: one pass, 22 s against 57 s for automatic masks + labels at 640x480 on one "
                               "CPU thread), correcting "
                               "their masks without finding new objects or labels; a coverage drop or an event "
                               "keyframe is always a segmentation. 0 = every keyframe segments", range=(0, None))
    keyframe_cpu_budget: float = knob(1.0, doc="background keyframes: largest fraction of wall time the worker may spend "
                                      "in the models; after a keyframe of T s the next starts no sooner than "
                                      "T x (1/budget - 1) s after it (1 = back to back)", range=(0.0, 1.0),
                                      min_exclusive=True)
    keyframe_nice: int = knob(10, doc="background keyframes: niceness added to the worker thread (Linux), so the "
                              "per-frame path wins the CPU when both want it; 0 = same priority", range=(0, 19))
    flow_max_side: int = knob(320, doc="the flow propagator computes flow on a grey image scaled down to this longer "
                              "side (and scales it back)", unit="px", range=(16, None))
    flow_depth_gate_m: float = knob(0.15, doc="flow propagator: a warped mask pixel whose depth differs from the depth "
                                    "it came from by more than this is dropped (an occluder moved over the object); "
                                    "0 = no gate", unit="m", range=(0.0, None))
    flow_refine: bool = knob(True, doc="flow propagator: snap every warped mask to this frame's colour and depth "
                             "edges (one marker watershed over all tracks, seeded by the eroded warped masks; the "
                             "nearer track wins where two overlap); ~3 ms at 320x240. Off: the warped masks as they are")

    def __post_init__(self) -> None:
        check_knobs(self, "twin", TwinConfigError)
        if self.keyframe_video > 0 and (self.keyframes != "background" or self.propagator != "flow"):
            raise TwinConfigError(
                f"twin.keyframe_video: {self.keyframe_video} runs the segmenter's video propagation on the background "
                f"keyframe worker while the flow propagator tracks every frame; it needs keyframes: background and "
                f"propagator: flow (got keyframes: {self.keyframes}, propagator: {self.propagator}), or set it to 0")
        if self.depth == "depth_anything_v2" and self.depth_runs == "background" and self.propagator != "flow":
            raise TwinConfigError(
                f"twin.depth_runs: background carries the last depth estimate to each frame by optical flow, which "
                f"only propagator: flow computes (got propagator: {self.propagator}); set twin.propagator: flow, or "
                f"twin.depth_runs: inline")

    @property
    def vocabulary(self) -> tuple[str, ...]:
        return tuple(self.label_vocabulary) or HOUSEHOLD_VOCABULARY

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TwinConfig":
        """Build from a (YAML) mapping; unknown keys are an error, lists become tuples."""
        return dataclass_from_mapping(cls, d, TwinConfigError, "twin")
