"""Bring up frs_ros on a real ROS 2 install (Humble / Jazzy / Kilted): one process per node.

    ros2 launch frs_ros bringup.launch.py                        # simulated camera, oracle-free defaults
    ros2 launch frs_ros bringup.launch.py use_sim_camera:=false \\
        params_file:=$(ros2 pkg prefix frs_ros)/share/frs_ros/config/frs_robot.yaml \\
        color_topic:=/camera/color/image_raw depth_topic:=/camera/aligned_depth_to_color/image_raw \\
        camera_info_topic:=/camera/color/camera_info     # real camera, SAM-2 + OWLv2 (config/frs_robot.yaml)

Every node reads the same parameters file (``params_file``, default share/frs_ros/config/frs.yaml);
the arguments (frs_ros/wire/launch_args.py) override single parameters when non-empty. Where ``launch`` is not installed,
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

# The arguments, their descriptions (from the knobs of the parameters they set) and the nodes: one
# table shared with frs_bringup (frs_ros/wire/launch_args.py).
from frs_ros.wire.launch_args import ARGUMENT_PARAMS, BRINGUP_NODES, LAUNCH_ARGUMENTS, parameter_overrides


def _nodes(context, *args, **kwargs):
    params_file = LaunchConfiguration("params_file").perform(context)
    namespace = LaunchConfiguration("namespace").perform(context)
    overrides = parameter_overrides({arg: LaunchConfiguration(arg).perform(context) for arg in ARGUMENT_PARAMS})
    actions = []
    for name, _cls, when in BRINGUP_NODES:
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
    args = [DeclareLaunchArgument(a.name, default_value=default_params if a.name == "params_file" else a.default,
                                  description=a.description)
            for a in LAUNCH_ARGUMENTS]
    return LaunchDescription(args + [OpaqueFunction(function=_nodes)])
