"""The core of frs_ros is ROS-free: every module outside the ROS layer imports without ROS.

A fresh interpreter installs a meta-path finder that raises on ``rclpy``/``rclpy.*``, any
``*_msgs`` package, the other ROS client libraries, and the generated ``frs_ros.msg`` /
``frs_ros.action``; it then imports every module under ``frs_ros/`` except the ROS layer
(``frs_ros.nodes.*``, ``frs_ros.bringup``, ``frs_ros.demo``; ``__main__`` modules are programs, not
imported). Modules are discovered with pkgutil
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
    for package in ("twin", "reasoning", "training", "sim", "data"):
        if (REPO / "frs_ros" / package / "__init__.py").exists():
            assert f"frs_ros.{package}" in modules


def test_core_imports_without_ros():
    modules = core_modules()
    env = dict(os.environ)
    # Nothing from a sourced ROS install: the core must not need it (generated frs_ros.msg lives there).
    env.pop("PYTHONPATH", None)
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(REPO), json.dumps(modules)],
                          capture_output=True, text=True, timeout=600, env=env, cwd=str(REPO))
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("FRS_REPORT ")]
    assert proc.returncode == 0 and lines, f"the import check crashed:\n{proc.stdout}\n{proc.stderr}"
    report = json.loads(lines[-1][len("FRS_REPORT "):])
    assert report["frs_ros_file"] == str(REPO / "frs_ros" / "__init__.py"), report["frs_ros_file"]
    assert not report["attempts"], "the core imported ROS:\n" + "\n".join(
        f"  {a['module']} (from {a['from']})" for a in report["attempts"])
    assert not report["failed"], "core modules failed to import:\n" + "\n".join(
        f"  {name}: {err}" for name, err in report["failed"].items())
    assert sorted(report["imported"]) == modules
