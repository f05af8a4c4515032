"""frs_bringup: the whole frs_ros graph in ONE process, from the same YAML as the launch file.

``launch/bringup.launch.py`` starts the same nodes as separate processes on a real ROS 2 install;
this module brings up the same nodes, with the same parameters file and the same arguments (one
table for both: ``frs_ros.wire.launch_args``), inside one process on a ``MultiThreadedExecutor``
— where ``launch`` is not installed (these machines), for the demo and the tests.

In one process the nodes hand data over directly (no serialisation): the camera ingest node puts
``Frame`` s into a shared ``FrameBuffer``, the twin node puts ``TwinSnapshot`` s into a shared
``TwinBuffer``, the simulated camera shares its ground truth (``StampStore``) and queries
(``QueryBook``). Every topic is still published (RViz, bags, other processes).

    ros2 run frs_ros frs_bringup --use-sim-camera true
    ros2 run frs_ros frs_bringup --use-sim-camera false --color-topic /camera/color/image_raw \
        --params-file $(ros2 pkg prefix frs_ros)/share/frs_ros/config/frs_robot.yaml   # real models
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Optional

from frs_ros.wire.launch_args import ARGUMENT_PARAMS, LAUNCH_ARGUMENTS, parameter_overrides
from frs_ros.wire.params import NODE_NAMES, NODE_PARAMS, ParamError, load_params_file, resolve_values, share_dir

#: CPython thread switch interval [s] for the one-process graph (see ``build_graph``).
GIL_SWITCH_INTERVAL_S = 2e-4


def default_params_file() -> str:
    base = share_dir()
    if base is None:
        raise FileNotFoundError("cannot find config/frs.yaml: pass --params-file")
    return os.path.join(base, "config", "frs.yaml")


def resolve_node_values(params_file: Optional[str] = None, arguments: Optional[dict[str, str]] = None,
                        overrides: Optional[dict[str, dict[str, Any]]] = None) -> dict[str, dict[str, Any]]:
    """Checked parameter values per node: file, then launch-style arguments, then ``overrides``."""
    loaded = load_params_file(params_file or default_params_file())
    unknown = sorted(set(arguments or {}) - set(ARGUMENT_PARAMS))
    if unknown:
        raise ParamError(f"unknown argument(s) {unknown}; arguments are {sorted(ARGUMENT_PARAMS)}")
    for node, values in parameter_overrides(arguments or {}).items():
        loaded[node].update(values)
    for node, vals in (overrides or {}).items():
        loaded[node].update(vals)
    return {node: resolve_values(node, loaded[node]) for node in NODE_NAMES}


def to_ros_parameters(node: str, values: dict[str, Any]) -> list:
    from rclpy.parameter import Parameter

    kinds = {s.name: s.kind for s in NODE_PARAMS[node]}
    out = []
    for name, value in values.items():
        if kinds[name] in ("str_array", "int_array") and not value:
            continue  # rclpy types an empty list override as BYTE_ARRAY; the declared default is [] anyway
        if kinds[name] == "str_array":
            out.append(Parameter(name, Parameter.Type.STRING_ARRAY, list(value)))
        elif kinds[name] == "int_array":
            out.append(Parameter(name, Parameter.Type.INTEGER_ARRAY, list(value)))
        else:
            out.append(Parameter(name, value=value))
    return out


@dataclass
class Graph:
    """The running in-process graph: nodes, shared hand-off objects, executor thread."""

    nodes: dict[str, Any]
    executor: Any
    context: Any
    frame_buffer: Any
    twin_buffer: Any
    ground_truth: Any
    query_book: Any
    _spinner: Any = None
    _owns_context: bool = False
    extra: dict = field(default_factory=dict)

    def start(self) -> "Graph":
        """Spin the executor on its own thread (``frs_bringup_executor``)."""
        from frs_ros.nodes.common import Spinner

        self._spinner = Spinner(self.executor, name="frs_bringup_executor").start()
        return self

    def shutdown(self) -> None:
        """Stop spinning, finalize and destroy the nodes, then shut an owned context down, in that order.

        (Destroying nodes, or shutting the executor down, under a spinning executor raised
        ``InvalidHandle: cannot use Destroyable because destruction was requested`` in its thread.)
        """
        import rclpy

        from frs_ros.nodes.common import teardown

        if self._spinner is not None:
            self._spinner.stop()
        teardown(self.executor, list(reversed(list(self.nodes.values()))))
        if self._owns_context and self.context.ok():
            rclpy.shutdown(context=self.context)


def build_graph(params_file: Optional[str] = None, *, arguments: Optional[dict[str, str]] = None,
                overrides: Optional[dict[str, dict[str, Any]]] = None, use_sim_camera: bool = True,
                namespace: str = "", context: Any = None, engine: Any = None, num_threads: int = 8,
                args: Optional[list] = None, query_book: Any = None) -> Graph:
    """Create the nodes of ``BRINGUP_NODES`` with shared hand-off objects (not yet spinning).

    engine: an already built ``ReasonSegEngine`` for the reasoner node (tests; else built from params).
    query_book: the ``QueryBook`` the sim camera fills and the reasoner node shares (give the same one
        to an oracle built for ``engine``: ``OracleReasoner(truth=query_book)``); default a new one.
    """
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import MultiThreadedExecutor

    from frs_ros.nodes.camera_ingest_node import CameraIngestNode
    from frs_ros.nodes.digital_twin_node import DigitalTwinNode
    from frs_ros.nodes.reasoner_node import ReasonerNode
    from frs_ros.nodes.sim_camera_node import SimCameraNode
    from frs_ros.sim.types import QueryBook
    from frs_ros.wire.sync import FrameBuffer, StampStore, TwinBuffer

    values = resolve_node_values(params_file, arguments, overrides)
    # All nodes share one interpreter here. The reasoner's token loop releases the GIL around every
    # torch op and, at CPython's default 5 ms switch interval, then waits behind the camera and twin
    # threads' numpy work for each re-acquisition (the "convoy effect"): measured on 2 cores, decoding
    # 46 tokens of the nano student took 0.1-0.3 s or, intermittently, 20-55 s. At 0.2 ms every goal
    # of `make demo` took 0.15-0.3 s in repeated runs. (`ros2 launch` runs one process per node and
    # does not need this.)
    sys.setswitchinterval(min(sys.getswitchinterval(), GIL_SWITCH_INTERVAL_S))
    owns = context is None
    if owns:
        context = Context()
        rclpy.init(args=args, context=context)
    frame_buffer, twin_buffer = FrameBuffer(), TwinBuffer()
    ground_truth = StampStore(capacity=64)
    query_book = query_book if query_book is not None else QueryBook()
    kw = dict(context=context, namespace=namespace)
    nodes: dict[str, Any] = {}
    try:
        if use_sim_camera:
            nodes["sim_camera_node"] = SimCameraNode(ground_truth=ground_truth, query_book=query_book,
                                                     parameter_overrides=to_ros_parameters("sim_camera_node", values["sim_camera_node"]), **kw)
        nodes["camera_ingest_node"] = CameraIngestNode(frame_buffer=frame_buffer,
                                                       parameter_overrides=to_ros_parameters("camera_ingest_node", values["camera_ingest_node"]), **kw)
        nodes["digital_twin_node"] = DigitalTwinNode(frame_buffer=frame_buffer, twin_buffer=twin_buffer,
                                                     ground_truth=ground_truth if use_sim_camera else None,
                                                     parameter_overrides=to_ros_parameters("digital_twin_node", values["digital_twin_node"]), **kw)
        nodes["reasoner_node"] = ReasonerNode(twin_buffer=twin_buffer, query_book=query_book, engine=engine,
                                              parameter_overrides=to_ros_parameters("reasoner_node", values["reasoner_node"]), **kw)
    except Exception:
        for n in nodes.values():
            n.destroy_node()
        if owns:
            rclpy.shutdown(context=context)
        raise
    executor = MultiThreadedExecutor(num_threads=num_threads, context=context)
    for n in nodes.values():
        executor.add_node(n)
    return Graph(nodes=nodes, executor=executor, context=context, frame_buffer=frame_buffer, twin_buffer=twin_buffer,
                 ground_truth=ground_truth, query_book=query_book, _owns_context=owns)


def _bool(text: str) -> bool:
    t = str(text).strip().lower()
    if t in ("true", "1", "yes", "on"):
        return True
    if t in ("false", "0", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def make_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="frs_bringup", description=__doc__.split("\n\n")[0])
    for arg in LAUNCH_ARGUMENTS:
        flag = "--" + arg.name.replace("_", "-")
        if arg.name == "use_sim_camera":
            ap.add_argument(flag, type=_bool, default=_bool(arg.default), help=f"{arg.description} (default {arg.default})")
        elif arg.name == "params_file":
            ap.add_argument(flag, default=None, help=f"{arg.description} (default: {arg.default})")
        else:
            ap.add_argument(flag, default=arg.default, help=arg.description)
    return ap


def main(argv: Optional[list[str]] = None) -> int:
    import rclpy
    from rclpy.utilities import remove_ros_args

    from frs_ros.nodes.common import StopSignals, exit_process

    argv = list(sys.argv[1:] if argv is None else argv)
    opts = make_parser().parse_args(remove_ros_args(["frs_bringup"] + argv)[1:])
    arguments = {k: getattr(opts, k) for k in ARGUMENT_PARAMS}
    stop = StopSignals().install()  # the graph's own Context: rclpy installs no signal handlers for it
    try:
        graph = build_graph(opts.params_file, arguments=arguments, use_sim_camera=opts.use_sim_camera,
                            namespace=opts.namespace, args=["frs_bringup"] + argv)
    except (ParamError, FileNotFoundError) as exc:
        stop.restore()
        print(f"frs_bringup: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    try:
        graph.start()
        stop.wait(graph._spinner)  # noqa: SLF001 - until SIGINT/SIGTERM (see common.StopSignals)
    except KeyboardInterrupt:
        pass
    finally:
        stop.ignore()  # every further signal is ignored: the shutdown runs to its end
        graph.shutdown()
    exit_process(0)  # skip the interpreter's slow teardown of torch & co. (see common.exit_process)


if __name__ == "__main__":
    raise SystemExit(main())
