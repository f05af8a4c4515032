"""The launch arguments and nodes of a bring-up, in one table (ROS-free).

``launch/bringup.launch.py`` (``ros2 launch``, one process per node) and ``frs_ros.bringup``
(``frs_bringup``, one process) both import it: the same arguments, defaults and node list. An
argument that sets parameters takes its description from the knob of the last parameter it sets
(:mod:`frs_ros.knobs`), so a knob's doc and choices are written once.
"""

from __future__ import annotations

from dataclasses import dataclass

from frs_ros.wire.params import NODE_PARAMS

#: (node name == executable == module under frs_ros.nodes, class name, started when)
BRINGUP_NODES = (
    ("sim_camera_node", "SimCameraNode", "use_sim_camera"),
    ("camera_ingest_node", "CameraIngestNode", "always"),
    ("digital_twin_node", "DigitalTwinNode", "always"),
    ("reasoner_node", "ReasonerNode", "always"),
)


@dataclass(frozen=True)
class LaunchArgument:
    """One launch argument.

    default: its default text ('' for a parameter argument = keep the parameters file's value).
    sets: the ``(node, parameter)`` pairs it overrides when non-empty.
    about: the description of an argument that sets no parameter.
    """

    name: str
    default: str = ""
    sets: tuple[tuple[str, str], ...] = ()
    about: str = ""

    @property
    def description(self) -> str:
        """What the argument does; for a parameter argument, the parameter's knob description."""
        if not self.sets:
            return self.about
        node, param = self.sets[-1]  # the camera topics: the ingest node (the one a real camera feeds)
        spec = next(s for s in NODE_PARAMS[node] if s.name == param)
        choices = f"; one of {' | '.join(spec.choices)}" if spec.choices else ""
        return f"{param}: {spec.description}{choices} ('' = the parameters file's value)"


_CAMERA = ("sim_camera_node", "camera_ingest_node")

#: Every launch argument, in the order ``ros2 launch ... --show-args`` lists them.
LAUNCH_ARGUMENTS: tuple[LaunchArgument, ...] = (
    LaunchArgument("color_topic", sets=tuple((n, "color_topic") for n in _CAMERA)),
    LaunchArgument("depth_topic", sets=tuple((n, "depth_topic") for n in _CAMERA)),
    LaunchArgument("camera_info_topic", sets=tuple((n, "camera_info_topic") for n in _CAMERA)),
    LaunchArgument("use_sim_camera", "true", about="start sim_camera_node (the simulated RGB-D camera)"),
    LaunchArgument("params_file", "share/frs_ros/config/frs.yaml", about="parameters YAML for every node"),
    LaunchArgument("namespace", about="namespace of every node and topic"),
    LaunchArgument("segmenter", sets=(("digital_twin_node", "twin.segmenter"),)),
    LaunchArgument("labeler", sets=(("digital_twin_node", "twin.labeler"),)),
    LaunchArgument("propagator", sets=(("digital_twin_node", "twin.propagator"),)),
    LaunchArgument("keyframes", sets=(("digital_twin_node", "twin.keyframes"),)),
    LaunchArgument("reasoner_model", sets=(("reasoner_node", "reasoner.model"),)),
)

#: launch argument -> the (node, parameter) pairs it sets when non-empty
ARGUMENT_PARAMS: dict[str, list[tuple[str, str]]] = {a.name: list(a.sets) for a in LAUNCH_ARGUMENTS if a.sets}


def parameter_overrides(values: dict[str, str]) -> dict[str, dict[str, str]]:
    """``{node: {parameter: value}}`` from launch argument values (empty values keep the file's)."""
    out: dict[str, dict[str, str]] = {name: {} for name, _cls, _when in BRINGUP_NODES}
    for arg, targets in ARGUMENT_PARAMS.items():
        value = values.get(arg, "")
        if value:
            for node, param in targets:
                out[node][param] = value
    return out
