"""Shared pytest set-up for frs_ros.

- Markers (declared in pytest.ini): ``ros`` tests need rclpy and the built frs_ros interfaces;
  without them they are skipped with the reason, unless ``FRS_REQUIRE_ROS=1`` (set by
  ``make test``), which turns a missing ROS into a failure so CI can't pass by skipping.
  ``gpu`` tests are skipped when torch sees no CUDA device.
- ``ros_context``: an initialised rclpy Context per test, shut down afterwards.
- DDS isolation: every test session uses its own ROS_DOMAIN_ID (10 + pid % 200, or
  ``FRS_TEST_ROS_DOMAIN_ID``) and localhost-only discovery, so parallel runs of other
  engineers on this machine don't see each other's topics. Set before rclpy is imported.
"""

from __future__ import annotations

import os
import re

import pytest

ROS_DOMAIN_ID = int(os.environ.get("FRS_TEST_ROS_DOMAIN_ID", 10 + os.getpid() % 200))
os.environ["ROS_DOMAIN_ID"] = str(ROS_DOMAIN_ID)
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")


def _ros_unavailable_reason() -> str | None:
    """None when rclpy and the generated frs_ros interfaces import, else why not (a sentence)."""
    try:
        import rclpy  # noqa: F401
    except ImportError as exc:
        return (f"rclpy is not importable ({exc}); run the tests through `make test`, or source "
                "a ROS 2 install and the workspace's install/setup.sh")
    try:
        import frs_ros.action  # noqa: F401
        import frs_ros.msg  # noqa: F401
    except ImportError as exc:
        return (f"the frs_ros interfaces are not built or not sourced ({exc}); run `make build` "
                "(or colcon build) and `. install/setup.sh`")
    return None


#: why tests that need torch skip where it is not installed (a venv made with FRS_TORCH=0)
TORCH_MISSING = ("needs torch, which this environment does not have (scripts/bootstrap.sh with FRS_TORCH=0, or "
                 "`pip install -e .` without [lm]/[train]): the Jazzy/CPython 3.12 and core/CPython 3.10 CI legs, "
                 "where PyPI's only torch is the CUDA build; install the CPU build (README) to run it")


def torch_missing() -> bool:
    """True when torch is not importable (checked without importing it: that takes seconds)."""
    import importlib.util

    return importlib.util.find_spec("torch") is None


def pytest_collection_modifyitems(config, items):
    if torch_missing():
        if os.environ.get("FRS_REQUIRE_TORCH") == "1":
            raise pytest.UsageError("FRS_REQUIRE_TORCH=1 (set by `make test`) but torch is not importable: "
                                    "rerun `make setup` without FRS_TORCH=0, or unset FRS_REQUIRE_TORCH")
        for item in items:
            if item.get_closest_marker("torch"):
                item.add_marker(pytest.mark.skip(reason=TORCH_MISSING))
    ros_items = [item for item in items if item.get_closest_marker("ros")]
    if ros_items:
        reason = _ros_unavailable_reason()
        if reason is not None:
            if os.environ.get("FRS_REQUIRE_ROS") == "1":
                raise pytest.UsageError(f"FRS_REQUIRE_ROS=1 but ROS tests cannot run: {reason}")
            for item in ros_items:
                item.add_marker(pytest.mark.skip(reason=reason))
    gpu_items = [item for item in items if item.get_closest_marker("gpu")]
    if gpu_items:
        try:
            import torch

            has_cuda = torch.cuda.is_available()
        except ImportError:
            has_cuda = False
        if not has_cuda:
            for item in gpu_items:
                item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is false)"))


@pytest.fixture
def ros_context():
    """An initialised rclpy Context of its own (domain ROS_DOMAIN_ID), shut down after the test."""
    import rclpy
    from rclpy.context import Context
    from rclpy.signals import SignalHandlerOptions

    context = Context()
    # No signal handlers: pytest keeps Ctrl-C, and one test's context can't affect another's.
    rclpy.init(context=context, domain_id=ROS_DOMAIN_ID, signal_handler_options=SignalHandlerOptions.NO)
    try:
        yield context
    finally:
        context.try_shutdown()


@pytest.fixture
def unique_name(request) -> str:
    """A ROS-name-safe identifier unique to this test (for node and topic names)."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", request.node.name).strip("_").lower()
    return f"frs_test_{name}_{os.getpid()}"
