"""The ROS half of the parameter table: declare, check at run time, read back (needs rclpy).

The table itself, the values' checks and the YAML live in the ROS-free
:mod:`frs_ros.wire.params`; this module turns its specs into ``ParameterDescriptor`` s on a node
and routes every ``set_parameters`` and each configure through the same ``validate_values``.
"""

from __future__ import annotations

import dataclasses as dc
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType, SetParametersResult
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.parameter import Parameter

from frs_ros.wire.params import NODE_PARAMS, RUNTIME, ParamError, coerce, resolve_values, validate_values


def declare_node_params(node: Any, node_name: str) -> dict[str, Any]:
    """Declare every parameter of ``node_name`` on ``node`` once; returns the checked values.

    Descriptors carry the description (with when a change applies), ``read_only``,
    ``IntegerRange`` / ``FloatingPointRange`` and the choices as ``additional_constraints``.
    Floats are declared with dynamic typing so that a YAML ``1`` for a ``1.0`` knob is accepted
    (and converted) instead of killing the node; everything else is strictly typed. Then the
    run-time checks are installed (``install_param_callbacks``). Raises ``ParamError`` for a bad
    start-up value.
    """
    type_of = {
        "bool": ParameterType.PARAMETER_BOOL,
        "int": ParameterType.PARAMETER_INTEGER,
        "float": ParameterType.PARAMETER_DOUBLE,
        "str": ParameterType.PARAMETER_STRING,
        "int_array": ParameterType.PARAMETER_INTEGER_ARRAY,
        "str_array": ParameterType.PARAMETER_STRING_ARRAY,
    }
    raw: dict[str, Any] = {}
    for spec in NODE_PARAMS[node_name]:
        kind = spec.kind
        desc = ParameterDescriptor(name=spec.name, description=spec.doc, read_only=spec.read_only)
        constraints = [f"one of: {', '.join(spec.choices)}"] if spec.choices else []
        bounded = spec.range is not None and None not in spec.range  # ROS ranges need both ends
        if spec.range is not None and kind in ("int", "float"):
            constraints.append(f"range {spec.knob.range_text()}")
        if kind == "float":
            desc.dynamic_typing = True
            constraints.append("finite")
            if bounded:
                desc.floating_point_range = [FloatingPointRange(from_value=float(spec.range[0]), to_value=float(spec.range[1]),
                                                                step=0.0)]
        else:
            desc.type = type_of[kind]
            if kind == "int" and bounded:
                desc.integer_range = [IntegerRange(from_value=int(spec.range[0]), to_value=int(spec.range[1]), step=0)]
        desc.additional_constraints = "; ".join(constraints)
        default = list(spec.default) if isinstance(spec.default, (list, tuple)) else spec.default
        try:
            if kind in ("str_array", "int_array") and not default:
                # an empty list would be typed BYTE_ARRAY: declare the type without a value
                ptype = Parameter.Type.STRING_ARRAY if kind == "str_array" else Parameter.Type.INTEGER_ARRAY
                value = node.declare_parameter(spec.name, ptype, desc).value
                raw[spec.name] = [] if value is None else list(value)
            else:
                raw[spec.name] = node.declare_parameter(spec.name, default, desc).value
        except (InvalidParameterTypeException, InvalidParameterValueException) as exc:
            raise ParamError(f"parameter '{spec.name}' has an invalid start-up value ({exc}); allowed: {spec.allowed()}") from exc
        raw[spec.name] = _plain_value(raw[spec.name])
    values = resolve_values(node_name, raw)
    validate_values(node_name, values)
    install_param_callbacks(node, node_name)
    return values


def _plain_value(v: Any) -> Any:
    """A rclpy parameter value as plain Python (arrays -> lists)."""
    if isinstance(v, (tuple, list)) or type(v).__name__ == "array":
        return list(v)
    return v


def install_param_callbacks(node: Any, node_name: str) -> None:
    """Run-time parameter checks and updates on ``node`` (``declare_node_params`` calls it).

    - on set (before the value is stored): ``validate_values`` on the current values with the
      changes; a bad change is refused with the reason (the parameter, what is allowed) and the
      old value stays;
    - after set: RUNTIME parameters replace their field in ``node.params`` (the node's frozen
      params dataclass) at once; CONFIGURE ones are logged as applied at the next configure.
    """
    specs = {s.name: s for s in NODE_PARAMS[node_name]}

    def on_set(parameters: list) -> SetParametersResult:
        changes: dict[str, Any] = {}
        for prm in parameters:
            spec = specs.get(prm.name)
            if spec is None:
                continue  # not ours (use_sim_time, ...)
            if prm.type_ == Parameter.Type.NOT_SET:
                return SetParametersResult(successful=False, reason=f"parameter '{spec.name}' cannot be unset; "
                                                                    f"allowed: {spec.allowed()}")
            try:
                changes[spec.name] = coerce(spec, _plain_value(prm.value))
            except ParamError as exc:
                return SetParametersResult(successful=False, reason=str(exc))
        if changes:
            try:
                validate_values(node_name, {**read_node_params(node, node_name), **changes})
            except ParamError as exc:
                return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    def after_set(parameters: list) -> None:
        now: dict[str, Any] = {}
        for prm in parameters:
            spec = specs.get(prm.name)
            if spec is None:
                continue
            value = coerce(spec, _plain_value(prm.value))
            if spec.applies == RUNTIME:
                now[spec.name] = value
                node.get_logger().info(f"parameter {spec.name} = {value!r}: takes effect now")
            else:
                node.get_logger().info(
                    f"parameter {spec.name} = {value!r}: applied at the next configure "
                    f"(ros2 lifecycle set {node.get_fully_qualified_name()} deactivate, cleanup, configure, activate)")
        current = getattr(node, "params", None)
        if now and current is not None:
            node.params = dc.replace(current, **now)

    node.add_on_set_parameters_callback(on_set)
    node.add_post_set_parameters_callback(after_set)


def read_node_params(node: Any, node_name: str) -> dict[str, Any]:
    """The current values of ``node_name``'s (already declared) parameters, checked."""
    raw = {}
    for spec in NODE_PARAMS[node_name]:
        try:
            v = node.get_parameter(spec.name).value
        except Exception:  # noqa: BLE001 - an uninitialised (statically typed, empty) array
            v = None
        raw[spec.name] = _plain_value(v) if v is not None or not spec.kind.endswith("array") else []
    return resolve_values(node_name, raw)
