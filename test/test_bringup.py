"""frs_bringup: parameters file + launch-style arguments -> the same nodes in one process."""

import os

import pytest

from frs_ros import bringup
from frs_ros.nodes.params import ParamError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
YAML = os.path.join(ROOT, "config", "frs.yaml")


def test_arguments_override_the_file():
    v = bringup.resolve_node_values(YAML, arguments={"color_topic": "/cam/rgb", "segmenter": "sam2",
                                                     "reasoner_model": "/models/x", "labeler": ""})
    assert v["camera_ingest_node"]["color_topic"] == "/cam/rgb" == v["sim_camera_node"]["color_topic"]
    assert v["digital_twin_node"]["twin.segmenter"] == "sam2"
    assert v["digital_twin_node"]["twin.labeler"] == "sim"  # '' keeps the file's value
    assert v["reasoner_node"]["reasoner.model"] == "/models/x"


def test_unknown_argument_and_bad_value_are_errors():
    with pytest.raises(ParamError, match="unknown argument"):
        bringup.resolve_node_values(YAML, arguments={"colour_topic": "/x"})
    with pytest.raises(ParamError, match="not one of"):
        bringup.resolve_node_values(YAML, arguments={"segmenter": "mask-rcnn"})


def test_default_params_file_is_found():
    assert os.path.isfile(bringup.default_params_file())


def test_cli_parses_launch_arguments():
    opts = bringup.make_parser().parse_args(["--use-sim-camera", "false", "--segmenter", "sam2", "--namespace", "robot1"])
    assert opts.use_sim_camera is False and opts.segmenter == "sam2" and opts.namespace == "robot1"


def test_main_reports_a_bad_params_file(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("/**/camera_ingest_node:\n  ros__parameters:\n    qos_reliability: sometimes\n")
    assert bringup.main(["--params-file", str(bad)]) == 2
    assert "qos_reliability" in capsys.readouterr().err


@pytest.mark.ros
def test_graph_comes_up_and_shuts_down_cleanly(ros_context):
    g = bringup.build_graph(YAML, context=ros_context, use_sim_camera=False,
                            overrides={"reasoner_node": {"reasoner.backend": "oracle"}})
    try:
        assert set(g.nodes) == {"camera_ingest_node", "digital_twin_node", "reasoner_node"}
        g.start()
        assert all(n.health.state == "ok" for n in g.nodes.values())
    finally:
        g.shutdown()
    assert ros_context.ok()  # a borrowed context is left to its owner


@pytest.mark.ros
def test_models_that_cannot_load_are_error_states_not_crashes(ros_context):
    g = bringup.build_graph(YAML, context=ros_context, use_sim_camera=False,
                            overrides={"reasoner_node": {"reasoner.backend": "hf", "reasoner.model": "/nonexistent/model"},
                                       "digital_twin_node": {"twin.segmenter": "sam2", "twin.sam2_model": "/nonexistent/sam2"}})
    try:
        node = g.nodes["reasoner_node"]
        assert node.health.state == "error" and "reasoner.model" in node.health.error
        twin = g.nodes["digital_twin_node"]
        assert twin.health.state == "error" and "twin.*" in twin.health.error
        # lifecycle: both are back in 'unconfigured'; fix the parameters and configure again
        from rclpy.lifecycle import TransitionCallbackReturn
        from rclpy.parameter import Parameter

        for n, fix in ((twin, Parameter("twin.segmenter", value="sim")),
                       (node, Parameter("reasoner.backend", value="oracle"))):
            assert n._state_machine.current_state[1] == "unconfigured"  # noqa: SLF001
            assert n.set_parameters([fix])[0].successful
            assert n.trigger_configure() == TransitionCallbackReturn.SUCCESS
            assert n.trigger_activate() == TransitionCallbackReturn.SUCCESS
            assert n.health.state == "ok" and n._state_machine.current_state[1] == "active"  # noqa: SLF001
    finally:
        g.shutdown()
