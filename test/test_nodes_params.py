"""The parameter table, the frozen params dataclasses and config/frs.yaml agree."""

import os

import pytest

from frs_ros.nodes import params as P
from frs_ros.reasoning.config import ReasonerConfig
from frs_ros.twin.config import TwinConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
YAML = os.path.join(ROOT, "config", "frs.yaml")


def test_yaml_keys_match_declared_parameters_exactly():
    loaded = P.load_params_file(YAML)
    assert set(loaded) == set(P.NODE_NAMES)
    for node in P.NODE_NAMES:
        declared = {s.name for s in P.NODE_PARAMS[node]}
        missing, extra = declared - set(loaded[node]), set(loaded[node]) - declared
        assert not missing and not extra, (
            f"config/frs.yaml and {node}'s parameters differ (missing {sorted(missing)}, extra {sorted(extra)}); "
            "regenerate it: python -m frs_ros.nodes.params > config/frs.yaml"
        )
        P.PARAMS_CLASSES[node].from_values(P.resolve_values(node, loaded[node]))


def test_every_yaml_knob_is_documented():
    text = open(YAML, encoding="utf-8").read().splitlines()
    for i, line in enumerate(text):
        s = line.strip()
        if not s or s.startswith("#") or ":" not in s:
            continue
        key, value = s.split(":", 1)
        if value.strip():  # a knob (sections have no value on their line)
            assert text[i - 1].strip().startswith("#"), f"config/frs.yaml line {i + 1} has no comment: {line}"


def test_core_configs_are_fully_exposed():
    twin = {s.name for s in P.NODE_PARAMS["digital_twin_node"] if s.name.startswith("twin.")}
    reasoner = {s.name for s in P.NODE_PARAMS["reasoner_node"] if s.name.startswith("reasoner.")}
    assert twin == {f"twin.{n}" for n in TwinConfig.__dataclass_fields__}
    assert reasoner == {f"reasoner.{n}" for n in ReasonerConfig.__dataclass_fields__}
    for s in P.NODE_PARAMS["digital_twin_node"] + P.NODE_PARAMS["reasoner_node"]:
        assert s.description, f"{s.name} has no description"
    # described from the config docstrings (or the table in params.py)
    assert P._doc_of(TwinConfig, "retire_after_s").startswith("a track not seen")


def test_values_map_onto_core_configs():
    v = P.resolve_values("digital_twin_node", {"twin.segmenter": "sam2", "twin.label_vocabulary": ["mug", "cup"]})
    p = P.DigitalTwinParams.from_values(v)
    assert p.twin.segmenter == "sam2" and p.twin.label_vocabulary == ("mug", "cup")
    r = P.ReasonerParams.from_values(P.resolve_values("reasoner_node", {"reasoner.backend": "oracle",
                                                                         "reasoner.reasoning_budgets": [8, 16, 32]}))
    assert r.reasoner.backend == "oracle" and r.reasoner.reasoning_budgets == (8, 16, 32)
    with pytest.raises(Exception):
        p.max_rate_hz = 3.0  # frozen


@pytest.mark.parametrize(
    "node, overrides, match",
    [
        ("camera_ingest_node", {"qos_reliability": "sometimes"}, "not one of"),
        ("camera_ingest_node", {"sync_slop_s": 5.0}, "outside"),
        ("camera_ingest_node", {"colour_topic": "/x"}, "unknown parameter"),
        ("camera_ingest_node", {"qos_depth": "5"}, "integer"),
        ("reasoner_node", {"goal_policy": "queue"}, "not one of"),
        ("digital_twin_node", {"twin.keyframe_interval": 0}, "outside"),
    ],
)
def test_bad_values_are_named(node, overrides, match):
    with pytest.raises(P.ParamError, match=match):
        P.resolve_values(node, overrides)


def test_int_for_float_is_accepted():
    assert P.resolve_values("sim_camera_node", {"rate_hz": 5})["rate_hz"] == 5.0


def test_resolve_model_path_keeps_hub_ids():
    assert P.resolve_model_path("Qwen/Qwen3-0.6B") == "Qwen/Qwen3-0.6B"
    assert P.resolve_model_path("") == ""


@pytest.mark.ros
def test_declared_parameters_on_real_nodes(ros_context):
    import rclpy
    from rclpy.parameter import Parameter

    for node_name in P.NODE_NAMES:
        overrides = [Parameter("twin.label_vocabulary", value=["mug"])] if node_name == "digital_twin_node" else []
        if node_name == "sim_camera_node":
            overrides = [Parameter("rate_hz", value=4)]  # an int for a float knob
        node = rclpy.create_node(node_name, context=ros_context, parameter_overrides=overrides)
        try:
            values = P.declare_node_params(node, node_name)
            names = {s.name for s in P.NODE_PARAMS[node_name]}
            assert set(values) == names
            P.PARAMS_CLASSES[node_name].from_values(values)
            for s in P.NODE_PARAMS[node_name]:
                assert node.has_parameter(s.name)
                d = node.describe_parameter(s.name)
                assert d.description == s.description and d.read_only == s.read_only
            if node_name == "digital_twin_node":
                assert values["twin.label_vocabulary"] == ["mug"]
            if node_name == "sim_camera_node":
                assert values["rate_hz"] == 4.0
        finally:
            node.destroy_node()
