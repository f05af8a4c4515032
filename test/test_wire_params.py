"""The parameter table, the frozen params dataclasses and config/frs.yaml agree (frs_ros.wire.params);
declared on real nodes, the same checks run at start-up and at set time (frs_ros.nodes.params)."""

import os
import re

import pytest

from frs_ros.wire import params as P
from frs_ros.knobs import field_default, knob_of
from frs_ros.reasoning.config import ReasonerConfig
from frs_ros.twin.config import TwinConfig



def declare_node_params(node, node_name):
    from frs_ros.nodes.params import declare_node_params as declare

    return declare(node, node_name)


def read_node_params(node, node_name):
    from frs_ros.nodes.params import read_node_params as read

    return read(node, node_name)


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
            "regenerate it: python -m frs_ros.wire.params > config/frs.yaml"
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
    # described once, on the field: the spec is the field's knob
    retire = next(s for s in P.NODE_PARAMS["digital_twin_node"] if s.name == "twin.retire_after_s")
    assert retire.knob is knob_of(TwinConfig.__dataclass_fields__["retire_after_s"])
    assert retire.description == "remove a track not seen for this long [s]" and retire.applies == P.CONFIGURE


def test_every_knob_is_declared_once_with_a_doc():
    """Every field of every params/config dataclass is a knob (or a nested core config)."""
    import dataclasses

    for cls in [*P.PARAMS_CLASSES.values(), TwinConfig, ReasonerConfig]:
        for f in dataclasses.fields(cls):
            if dataclasses.is_dataclass(field_default(f)):
                continue
            k = knob_of(f)  # raises for a field declared without knob(...)
            assert k.doc.strip(), (cls.__name__, f.name)
            assert not k.unit or f"[{k.unit}]" not in k.doc, f"{cls.__name__}.{f.name}: the unit is written twice"


def test_core_config_checks_come_from_the_same_knobs():
    """The core dataclass refuses what the ROS table refuses: one range, one list of choices."""
    with pytest.raises(ValueError, match=r"twin.keyframe_interval = 0 is outside \[1, 10000\]"):
        TwinConfig(keyframe_interval=0)
    with pytest.raises(ValueError, match=r"reasoner.top_p = 0.0 is outside \(0.0, 1.0\]"):
        ReasonerConfig(top_p=0.0)
    with pytest.raises(P.ParamError, match=r"twin.coverage_drop.*outside \(0.0, 1.0\]"):
        P.validate_values("digital_twin_node", {"twin.coverage_drop": 0.0})
    with pytest.raises(P.ParamError, match=r"reasoner.max_plan_tokens.*must be >= 4"):
        P.validate_values("reasoner_node", {"reasoner.max_plan_tokens": 3})


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


def test_robot_params_file_is_valid_and_sets_the_two_tier_twin():
    """config/frs_robot.yaml (the real-camera recipe in docs/ros.md) loads through the same checks as
    frs.yaml and gives the flow propagator with background SAM-2 + OWLv2 keyframes."""
    loaded = P.load_params_file(os.path.join(ROOT, "config", "frs_robot.yaml"))
    twin = P.DigitalTwinParams.from_values(P.resolve_values("digital_twin_node", loaded["digital_twin_node"])).twin
    assert (twin.segmenter, twin.labeler, twin.propagator, twin.keyframes) == ("sam2", "owlv2", "flow", "background")
    assert twin.keyframe_events and twin.discover
    # only the twin differs from the defaults
    assert all(not loaded[n] for n in P.NODE_NAMES if n != "digital_twin_node")
    for node in P.NODE_NAMES:
        P.resolve_values(node, loaded[node])


def test_resolve_model_path_keeps_hub_ids():
    assert P.resolve_model_path("Qwen/Qwen3-0.6B") == "Qwen/Qwen3-0.6B"
    assert P.resolve_model_path("") == ""


def test_resolve_reasoner_paths_finds_the_shipped_adapter_from_any_cwd(tmp_path, monkeypatch):
    from frs_ros.reasoning.config import ReasonerConfig

    monkeypatch.chdir(tmp_path)  # not the source tree: models/ is found in the share dirs
    cfg = P.resolve_reasoner_paths(ReasonerConfig(backend="hf", model="smollm2-135m", adapter="models/smollm2_student"))
    assert cfg.model == "smollm2-135m"  # a built-in name stays a name
    assert os.path.isfile(os.path.join(cfg.adapter, "adapter_config.json"))
    with pytest.raises(FileNotFoundError, match="no adapter directory 'models/nope'"):
        P.resolve_reasoner_paths(ReasonerConfig(backend="hf", model="smollm2-135m", adapter="models/nope"))
    # the oracle needs no files
    assert P.resolve_reasoner_paths(ReasonerConfig(backend="oracle", adapter="models/nope")).adapter == "models/nope"


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
            values = declare_node_params(node, node_name)
            names = {s.name for s in P.NODE_PARAMS[node_name]}
            assert set(values) == names
            P.PARAMS_CLASSES[node_name].from_values(values)
            for s in P.NODE_PARAMS[node_name]:
                assert node.has_parameter(s.name)
                d = node.describe_parameter(s.name)
                assert d.description == s.doc and s.description in d.description and d.read_only == s.read_only
            if node_name == "digital_twin_node":
                assert values["twin.label_vocabulary"] == ["mug"]
            if node_name == "sim_camera_node":
                assert values["rate_hz"] == 4.0
        finally:
            node.destroy_node()



# ---- issue 14: the table enforces what it documents, at start, at run time and at configure
def test_every_parameter_says_when_it_applies():
    for node, specs in P.NODE_PARAMS.items():
        fields = set(P.PARAMS_CLASSES[node].__dataclass_fields__)
        for s in specs:
            assert s.applies in (P.START, P.RUNTIME, P.CONFIGURE)
            assert s.read_only == (s.applies == P.START)
            if s.applies == P.RUNTIME:  # replaced in node.params at once: must be a field of it
                assert s.name in fields, (node, s.name)
            if s.applies == P.CONFIGURE:  # only lifecycle nodes configure
                assert node in ("digital_twin_node", "reasoner_node"), (node, s.name)
    text = open(YAML, encoding="utf-8").read()
    assert "; next configure)" in text and "; run time)" in text and "; ro)" in text


def test_goal_timeout_ceiling_matches_the_goal_policy():
    from frs_ros.wire.goals import MAX_GOAL_TIMEOUT_S

    spec = next(s for s in P.NODE_PARAMS["reasoner_node"] if s.name == "default_timeout_s")
    assert P.MAX_GOAL_TIMEOUT_S == MAX_GOAL_TIMEOUT_S == spec.range[1]


# the run-time cases of issue 14 (all accepted before), and what the refusal must name
BAD_VALUES = [
    ("reasoner_node", "default_timeout_s", "abc", "number"),
    ("reasoner_node", "default_timeout_s", -5.0, "outside [0.1, 3600.0]"),
    ("reasoner_node", "overlay_alpha", 7.0, "outside [0.0, 1.0]"),
    ("reasoner_node", "twin_wait_s", float("nan"), "finite"),
    ("reasoner_node", "tracking_lost_s", float("inf"), "finite"),
    ("reasoner_node", "max_twin_age_s", -1.0, "outside"),
    ("reasoner_node", "reasoner.temperature", -3.0, "outside [0.0, 10.0]"),
    ("reasoner_node", "reasoner.backend", "nonsense", "not one of"),
    ("camera_ingest_node", "stall_warn_s", -1.0, "outside [0.5, 3600.0]"),
    ("digital_twin_node", "max_rate_hz", -10.0, "outside [0.0, 120.0]"),
    ("digital_twin_node", "twin.segmenter", "nonsense", "not one of"),
    ("digital_twin_node", "twin.coverage_drop", float("-inf"), "finite"),
]


@pytest.mark.parametrize("node, name, value, match", BAD_VALUES)
def test_bad_values_name_the_parameter_and_what_is_allowed(node, name, value, match):
    with pytest.raises(P.ParamError, match=re.escape(match)) as info:
        P.validate_values(node, {name: value})
    assert f"'{name}'" in str(info.value) and "allowed:" in str(info.value)


def test_cross_field_rules_are_checked_too():
    with pytest.raises(P.ParamError, match="clock_jump_s"):
        P.validate_values("camera_ingest_node", {"sync_slop_s": 0.5, "clock_jump_s": 0.2})
    with pytest.raises(P.ParamError, match="top_p"):  # (0, 1]: the minimum itself is refused
        P.validate_values("reasoner_node", {"reasoner.top_p": 0.0})


def _set(node, name, value):
    from rclpy.parameter import Parameter

    return node.set_parameters([Parameter(name, value=value)])[0]


@pytest.mark.ros
@pytest.mark.parametrize("node_name", ["camera_ingest_node", "digital_twin_node", "reasoner_node"])
def test_invalid_values_are_refused_at_set_time_with_a_reason(ros_context, node_name):
    """Real rclpy nodes with the table's descriptors and callbacks: every bad value of issue 14 is
    refused when it is set (the old value stays), with a reason naming the parameter."""
    import rclpy

    node = rclpy.create_node(node_name, context=ros_context)
    try:
        declare_node_params(node, node_name)
        cases = [c for c in BAD_VALUES if c[0] == node_name]
        assert cases
        for _, name, value, _match in cases:
            before = node.get_parameter(name).value
            r = _set(node, name, value)
            assert not r.successful, f"{name}={value!r} was accepted"
            # ours ("...; allowed: a finite number in [lo, hi]") or rclpy's range check ("... Min: lo, Max: hi")
            assert name in r.reason and ("allowed" in r.reason or "Min:" in r.reason), r.reason
            assert node.get_parameter(name).value == before
        # the ROS descriptors carry the ranges too (ros2 param describe)
        for s in P.NODE_PARAMS[node_name]:
            d = node.describe_parameter(s.name)
            bounded = s.range is not None and None not in s.range  # one-sided: checked by us, not in the descriptor
            if bounded and s.kind == "float":
                assert (d.floating_point_range[0].from_value, d.floating_point_range[0].to_value) == s.range
            if bounded and s.kind == "int":
                assert (d.integer_range[0].from_value, d.integer_range[0].to_value) == s.range
            if s.range is not None and not bounded:
                assert s.knob.range_text() in d.additional_constraints
        # read-only ones are refused by rclpy itself
        ro = next(s for s in P.NODE_PARAMS[node_name] if s.read_only)
        assert not _set(node, ro.name, ro.default).successful
    finally:
        node.destroy_node()


@pytest.mark.ros
def test_valid_run_time_values_reach_node_params(ros_context):
    """RUNTIME parameters replace their field of node.params at once; CONFIGURE ones wait."""
    import rclpy

    from frs_ros.wire.params import ReasonerParams

    node = rclpy.create_node("reasoner_node", context=ros_context)
    try:
        node.params = ReasonerParams.from_values(declare_node_params(node, "reasoner_node"))
        assert _set(node, "twin_wait_s", 1).successful  # an int for a float knob
        assert node.params.twin_wait_s == 1.0 and isinstance(node.params.twin_wait_s, float)
        assert _set(node, "overlay_alpha", 0.25).successful and node.params.overlay_alpha == 0.25
        assert _set(node, "reasoner.temperature", 0.7).successful
        assert node.params.reasoner.temperature == 0.0  # applied at the next configure
        assert read_node_params(node, "reasoner_node")["reasoner.temperature"] == 0.7
    finally:
        node.destroy_node()


@pytest.mark.ros
def test_bad_start_up_value_is_a_named_param_error(ros_context):
    import rclpy
    from rclpy.parameter import Parameter

    node = rclpy.create_node("reasoner_node", context=ros_context,
                             parameter_overrides=[Parameter("overlay_alpha", value=7.0)])
    try:
        with pytest.raises(P.ParamError, match="overlay_alpha"):
            declare_node_params(node, "reasoner_node")
    finally:
        node.destroy_node()
