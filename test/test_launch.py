"""launch/bringup.launch.py agrees with frs_bringup (checked with ast: `launch` is not installed here)."""

import ast
import importlib
import os

import pytest
import yaml

from frs_ros import bringup
from frs_ros.wire.launch_args import BRINGUP_NODES, LAUNCH_ARGUMENTS, parameter_overrides
from frs_ros.wire.params import NODE_NAMES, NODE_PARAMS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCH = os.path.join(ROOT, "launch", "bringup.launch.py")


def _tree():
    return ast.parse(open(LAUNCH, encoding="utf-8").read(), filename=LAUNCH)


def _assigned(tree, name):
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{name} not assigned in the launch file")


def _calls(tree, func):
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == func]


def test_launch_file_imports_the_argument_table_instead_of_copying_it():
    tree = _tree()
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module == "frs_ros.wire.launch_args"
                for a in n.names}
    assert {"BRINGUP_NODES", "LAUNCH_ARGUMENTS", "ARGUMENT_PARAMS", "parameter_overrides"} <= imported
    # no table of its own: no module-level literal assignment, one DeclareLaunchArgument (over LAUNCH_ARGUMENTS)
    literals = [t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets
                if isinstance(t, ast.Name) and isinstance(n.value, (ast.Dict, ast.List, ast.Tuple))]
    assert not literals, f"the launch file copies a table: {literals}"
    declare = _calls(tree, "DeclareLaunchArgument")
    assert len(declare) == 1
    comp = [n for n in ast.walk(tree) if isinstance(n, ast.ListComp)
            and any(getattr(g.iter, "id", "") == "LAUNCH_ARGUMENTS" for g in n.generators)]
    assert comp and comp[0].elt is declare[0]
    assert {n for n, _cls, _when in BRINGUP_NODES} == set(NODE_NAMES)


@pytest.mark.ros  # imports the nodes (rclpy)
def test_every_node_has_an_executable_and_a_class():
    for name, cls, _ in BRINGUP_NODES:
        mod = importlib.import_module(f"frs_ros.nodes.{name}")
        assert callable(mod.main), f"frs_ros.nodes.{name} needs main()"
        klass = getattr(mod, cls)
        assert klass.NAME == name
        launcher = os.path.join(ROOT, "scripts", "nodes", name)
        if os.path.isdir(os.path.join(ROOT, "scripts", "nodes")):
            assert os.path.isfile(launcher), f"scripts/nodes/{name} (ros2 run launcher) is missing"


def test_launch_arguments_match_bringup_cli():
    names = [a.name for a in LAUNCH_ARGUMENTS]
    assert len(names) == len(set(names))
    required = {"color_topic", "depth_topic", "camera_info_topic", "use_sim_camera", "params_file", "namespace",
                "segmenter", "labeler", "propagator", "keyframes", "reasoner_model"}
    assert required <= set(names)
    cli = {a.dest for a in bringup.make_parser()._actions if a.dest != "help"}
    assert cli == set(names)


def test_argument_overrides_name_real_parameters_and_take_their_knobs_description():
    for arg in LAUNCH_ARGUMENTS:
        assert arg.description, f"launch argument {arg.name} has no description"
        for node, param in arg.sets:
            specs = {s.name: s for s in NODE_PARAMS[node]}
            assert param in specs, f"{node} has no parameter {param}"
            if (node, param) == arg.sets[-1]:
                assert specs[param].description in arg.description
    assert parameter_overrides({"segmenter": "sam2", "color_topic": "", "labeler": "none"}) == {
        "sim_camera_node": {}, "camera_ingest_node": {}, "reasoner_node": {},
        "digital_twin_node": {"twin.segmenter": "sam2", "twin.labeler": "none"}}


def test_launch_uses_the_packaged_yaml_and_frs_ros_executables():
    src = open(LAUNCH, encoding="utf-8").read()
    assert '"config", "frs.yaml"' in src and os.path.isfile(os.path.join(ROOT, "config", "frs.yaml"))
    node_calls = _calls(_tree(), "Node")
    assert len(node_calls) == 1  # one Node(...) per entry of BRINGUP_NODES
    kw = {k.arg: k.value for k in node_calls[0].keywords}
    assert ast.literal_eval(kw["package"]) == "frs_ros"
    assert isinstance(kw["executable"], ast.Name) and isinstance(kw["name"], ast.Name)
    assert isinstance(kw["parameters"], ast.List) and getattr(kw["parameters"].elts[0], "id", "") == "params_file"


def test_rviz_config_shows_our_topics():
    doc = yaml.safe_load(open(os.path.join(ROOT, "rviz", "frs.rviz"), encoding="utf-8"))
    displays = doc["Visualization Manager"]["Displays"]
    topics = {d["Topic"]["Value"] for d in displays if "Topic" in d}
    assert {"/frs/target/overlay", "/frs/target/mask", "/frs/twin/markers", "/frs/target/markers"} <= topics
    ingest = {s.name: s.default for s in NODE_PARAMS["camera_ingest_node"]}
    assert ingest["color_topic"] in topics
