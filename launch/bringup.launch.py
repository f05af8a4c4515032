"""Bring up frs_ros on a real ROS 2 install (Humble / Jazzy / Kilted): one process per node.

    ros2 launch frs_ros bringup.launch.py                        # simulated camera, oracle-free defaults
    ros2 launch frs_ros bringup.launch.py use_sim_camera:=false \\
        color_topic:=/camera/color/image_raw depth_topic:=/camera/aligned_depth_to_color/image_raw \\
        camera_info_topic:=/camera/color/camera_info segmenter:=sam2 labeler:=owlv2

Every node reads the same parameters file (``params_file``, default share/frs_ros/config/frs.yaml);
the arguments below override single parameters when non-empty. Where ``launch`` is not installed,
``ros2 run frs_ros frs_bringup`` (frs_ros/bringup.py) starts the same nodes from the same YAML in
one process; test/test_launch.py checks that both agree, and test/test_launch_real.py runs this file with
`ros2 launch` (defaults, and a namespace with an outside camera), sends a goal and stops it with one SIGINT.
Stop: one SIGINT to `ros2 launch` (Ctrl-C) forwards one to every node; each node stops spinning, finalizes
its lifecycle, and exits 0 (further signals are ignored while it cleans up: frs_ros.nodes.common.run_node).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

#: launch argument -> [(node, parameter)] it overrides when non-empty (same table as frs_ros.bringup.ARGUMENT_PARAMS)
ARGUMENT_PARAMS = {
    "color_topic": [("sim_camera_node", "color_topic"), ("camera_ingest_node", "color_topic")],
    "depth_topic": [("sim_camera_node", "depth_topic"), ("camera_ingest_node", "depth_topic")],
    "camera_info_topic": [("sim_camera_node", "camera_info_topic"), ("camera_ingest_node", "camera_info_topic")],
    "segmenter": [("digital_twin_node", "twin.segmenter")],
    "labeler": [("digital_twin_node", "twin.labeler")],
    "reasoner_model": [("reasoner_node", "reasoner.model")],
}

#: (executable == node name, started when)
NODES = [
    ("sim_camera_node", "use_sim_camera"),
    ("camera_ingest_node", "always"),
    ("digital_twin_node", "always"),
    ("reasoner_node", "always"),
]


def _nodes(context, *args, **kwargs):
    params_file = LaunchConfiguration("params_file").perform(context)
    namespace = LaunchConfiguration("namespace").perform(context)
    overrides = {name: {} for name, _ in NODES}
    for arg, targets in ARGUMENT_PARAMS.items():
        value = LaunchConfiguration(arg).perform(context)
        if value:
            for node, param in targets:
                overrides[node][param] = value
    actions = []
    for name, when in NODES:
        condition = IfCondition(LaunchConfiguration("use_sim_camera")) if when == "use_sim_camera" else None
        actions.append(Node(
            package="frs_ros",
            executable=name,
            name=name,
            namespace=namespace,
            output="screen",
            emulate_tty=True,
            parameters=[params_file, overrides[name]],
            condition=condition,
        ))
    return actions


def generate_launch_description():
    default_params = os.path.join(get_package_share_directory("frs_ros"), "config", "frs.yaml")
    args = [
        DeclareLaunchArgument("color_topic", default_value="", description="colour image topic ('' = the parameters file's)"),
        DeclareLaunchArgument("depth_topic", default_value="", description="aligned depth topic ('' = the parameters file's)"),
        DeclareLaunchArgument("camera_info_topic", default_value="", description="camera_info topic ('' = the parameters file's)"),
        DeclareLaunchArgument("use_sim_camera", default_value="true", description="start sim_camera_node (the simulated RGB-D camera)"),
        DeclareLaunchArgument("params_file", default_value=default_params, description="parameters YAML for every node"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of every node and topic"),
        DeclareLaunchArgument("segmenter", default_value="", description="twin.segmenter: sim | sam2 ('' = the parameters file's)"),
        DeclareLaunchArgument("labeler", default_value="", description="twin.labeler: sim | owlv2 | none ('' = the parameters file's)"),
        DeclareLaunchArgument("reasoner_model", default_value="", description="reasoner.model: local model directory or hub id"),
    ]
    return LaunchDescription(args + [OpaqueFunction(function=_nodes)])
