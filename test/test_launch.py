"""launch/bringup.launch.py agrees with frs_bringup (checked with ast: `launch` is not installed here)."""

import ast
import importlib
import os

import yaml

from frs_ros import bringup
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


def test_launch_nodes_match_bringup():
    nodes = _assigned(_tree(), "NODES")
    assert [tuple(n) for n in nodes] == [(name, when) for name, _cls, when in bringup.BRINGUP_NODES]
    assert {n for n, _ in nodes} == set(NODE_NAMES)


def test_every_node_has_an_executable_and_a_class():
    for name, cls, _ in bringup.BRINGUP_NODES:
        mod = importlib.import_module(f"frs_ros.nodes.{name}")
        assert callable(mod.main), f"frs_ros.nodes.{name} needs main()"
        klass = getattr(mod, cls)
        assert klass.NAME == name
        launcher = os.path.join(ROOT, "scripts", "nodes", name)
        if os.path.isdir(os.path.join(ROOT, "scripts", "nodes")):
            assert os.path.isfile(launcher), f"scripts/nodes/{name} (ros2 run launcher) is missing"


def test_launch_arguments_match_bringup_cli():
    tree = _tree()
    declared = {ast.literal_eval(c.args[0]) for c in _calls(tree, "DeclareLaunchArgument")}
    assert declared == set(bringup.LAUNCH_ARGUMENTS)
    required = {"color_topic", "depth_topic", "camera_info_topic", "use_sim_camera", "params_file", "namespace",
                "segmenter", "labeler", "reasoner_model"}
    assert required <= declared
    cli = {a.dest for a in bringup.make_parser()._actions if a.dest != "help"}
    assert cli == set(bringup.LAUNCH_ARGUMENTS)


def test_argument_overrides_match_and_name_real_parameters():
    table = _assigned(_tree(), "ARGUMENT_PARAMS")
    assert {k: [tuple(x) for x in v] for k, v in table.items()} == bringup.ARGUMENT_PARAMS
    for targets in table.values():
        for node, param in targets:
            assert param in {s.name for s in NODE_PARAMS[node]}, f"{node} has no parameter {param}"


def test_launch_uses_the_packaged_yaml_and_frs_ros_executables():
    src = open(LAUNCH, encoding="utf-8").read()
    assert '"config", "frs.yaml"' in src and os.path.isfile(os.path.join(ROOT, "config", "frs.yaml"))
    node_calls = _calls(_tree(), "Node")
    assert len(node_calls) == 1  # one Node(...) per entry of NODES
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
