"""The core of frs_ros is ROS-free: every module outside the ROS layer imports without ROS.

A fresh interpreter installs a meta-path finder that raises on ``rclpy``/``rclpy.*``, any
``*_msgs`` package, the other ROS client libraries, and the generated ``frs_ros.msg`` /
``frs_ros.action``; it then imports every module under ``frs_ros/`` except the ROS layer
(``frs_ros.nodes.*``, ``frs_ros.bringup``, ``frs_ros.demo``; ``__main__`` modules are programs, not
imported). That covers the ROS-free halves of the boundary (``frs_ros.wire``), ``frs_ros.data``
(bags included) and ``frs_ros.bag_eval``; and every module under ``frs_ros/nodes/`` must need ROS
(``test_nodes_hold_only_ros_code``), so a ROS-free helper there is a misplaced one. Modules are discovered with pkgutil
(without importing the excluded packages), so modules added later are covered automatically.
The blocker raises a non-ImportError, so a ``try: import rclpy / except ImportError`` in the core
cannot hide a ROS dependency either.
"""

from __future__ import annotations

import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROS_LAYER = ("frs_ros.nodes", "frs_ros.bringup", "frs_ros.demo", "frs_ros.msg", "frs_ros.action")


def _is_ros_layer(name: str) -> bool:
    return any(name == layer or name.startswith(layer + ".") for layer in ROS_LAYER)


def core_modules() -> list[str]:
    """Dotted names of every module and package under frs_ros/ outside the ROS layer."""
    found = ["frs_ros"]

    def walk(folder: Path, prefix: str):
        for info in pkgutil.iter_modules([str(folder)], prefix):
            # __main__ modules run a program when imported (python -m frs_ros.x): not imported here
            if _is_ros_layer(info.name) or info.name.endswith(".__main__"):
                continue
            found.append(info.name)
            if info.ispkg:
                walk(folder / info.name.rsplit(".", 1)[-1], info.name + ".")

    walk(REPO / "frs_ros", "frs_ros.")
    return sorted(found)


_CHILD = r'''
import importlib, importlib.abc, json, sys, traceback

BLOCKED_TOP = {"rclpy", "rosidl_runtime_py", "rosidl_parser", "rcl_interfaces", "builtin_interfaces",
               "cv_bridge", "message_filters", "tf2_ros", "tf2_py", "launch", "launch_ros",
               "ament_index_python", "rosbag2_py"}
BLOCKED_PREFIX = ("frs_ros.msg", "frs_ros.action")
attempts = []


class RosImportInCore(RuntimeError):
    """Deliberately not an ImportError: an `except ImportError` fallback must not hide it."""


class BlockRos(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.split(".", 1)[0]
        blocked = (top in BLOCKED_TOP or top.endswith("_msgs") or top.endswith("_srvs")
                   or any(name == p or name.startswith(p + ".") for p in BLOCKED_PREFIX))
        if not blocked:
            return None
        importer = next((f"{fr.filename}:{fr.lineno}" for fr in reversed(traceback.extract_stack())
                         if "/frs_ros/" in fr.filename), "?")
        attempts.append({"module": name, "from": importer})
        raise RosImportInCore(f"ROS import {name!r} from the ROS-free core (at {importer})")


sys.meta_path.insert(0, BlockRos())
sys.path.insert(0, sys.argv[1])
report = {"imported": [], "failed": {}}
for name in json.loads(sys.argv[2]):
    try:
        importlib.import_module(name)
        report["imported"].append(name)
    except BaseException as exc:  # noqa: BLE001 - every failure is reported
        report["failed"][name] = f"{type(exc).__name__}: {exc}"
report["attempts"] = attempts
report["frs_ros_file"] = sys.modules["frs_ros"].__file__ if "frs_ros" in sys.modules else None
print("FRS_REPORT " + json.dumps(report))
'''


def test_core_modules_are_discovered():
    modules = core_modules()
    assert "frs_ros" in modules
    assert not [m for m in modules if _is_ros_layer(m)]
    # the core packages named in frs_ros/__init__.py that exist in this checkout are covered
    for package in ("twin", "reasoning", "training", "sim", "data", "wire"):
        if (REPO / "frs_ros" / package / "__init__.py").exists():
            assert f"frs_ros.{package}" in modules
    for module in ("frs_ros.bag_eval", "frs_ros.data.bags", "frs_ros.wire.params", "frs_ros.wire.image_codec",
                   "frs_ros.wire.sync", "frs_ros.wire.sim_wire", "frs_ros.wire.goals"):
        assert module in modules


def test_nodes_hold_only_ros_code():
    """Each module of frs_ros/nodes/ imports rclpy, a message package or another node module.

    Read from the source (not imported); lazy imports inside functions count. A module that needs
    none of them is a ROS-free helper: it belongs in frs_ros.wire (or the core), where
    test_core_imports_without_ros covers it.
    """
    import ast

    def needs_ros(name: str) -> bool:
        top = name.split(".")[0]
        return (top == "rclpy" or top.endswith("_msgs") or name.startswith("frs_ros.nodes")
                or name.startswith(("frs_ros.msg", "frs_ros.action")))

    ros_free = []
    for path in sorted((REPO / "frs_ros" / "nodes").glob("*.py")):
        if path.name == "__init__.py":
            continue
        names = []
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names += [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.append(node.module)
        if not any(needs_ros(n) for n in names):
            ros_free.append(path.name)
    assert not ros_free, (f"{ros_free} in frs_ros/nodes/ import no ROS: move them to frs_ros/wire/ "
                          "(ROS-free halves of the boundary) so that nodes/ holds only rclpy code")
