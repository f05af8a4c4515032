"""The ReasonSeg action over real DDS: an in-process ActionServer and ActionClient.

The server here is a protocol stand-in (no model): it checks what the real reasoner node checks
first and answers with a fixed target, so the test pins the contract every ReasonSeg server of
this project follows:

- Feedback arrives while the goal runs, each message carrying ``stage`` (one of the
  ``STAGE_*`` constants) and its ``stage_name``.
- A goal whose query is empty or whitespace is ACCEPTED and then ABORTED with
  ``result.status == "rejected"`` and a sentence in ``result.error``. A REJECT from the goal
  callback would carry no reason, so the client could not tell the user why.
"""

from __future__ import annotations

import threading
import time

import pytest

pytestmark = pytest.mark.ros

TIMEOUT_S = 20.0
STAGES = [("STAGE_WAITING_FOR_TWIN", "waiting_for_twin"), ("STAGE_REASONING", "reasoning"),
          ("STAGE_ANSWERING", "answering")]


class _ReasonSegStandIn:
    """An ActionServer for frs_ros/action/ReasonSeg that validates the goal and answers one target."""

    def __init__(self, node, action_name):
        from rclpy.action import ActionServer, GoalResponse
        from rclpy.callback_groups import ReentrantCallbackGroup

        from frs_ros.action import ReasonSeg

        self._node = node
        self.server = ActionServer(node, ReasonSeg, action_name, execute_callback=self._execute_cb,
                                   goal_callback=lambda _goal: GoalResponse.ACCEPT,
                                   callback_group=ReentrantCallbackGroup())

    def _execute_cb(self, goal_handle):
        from frs_ros.action import ReasonSeg
        from frs_ros.msg import Target

        query = goal_handle.request.query
        if not query.strip():
            goal_handle.abort()
            return ReasonSeg.Result(
                status="rejected",
                error="The query is empty; send a sentence that describes the object to segment.")
        started = time.monotonic()
        for constant, name in STAGES:
            goal_handle.publish_feedback(ReasonSeg.Feedback(
                stage=getattr(ReasonSeg.Feedback, constant), stage_name=name,
                reasoning_so_far=f"<reason>{query}" if name != "waiting_for_twin" else "", generated_tokens=3))
            time.sleep(0.05)  # let the feedback messages go out before the result
        goal_handle.succeed()
        target = Target(track_id=7, label="mug", score=0.9)
        target.header.frame_id = "camera_color_optical_frame"
        return ReasonSeg.Result(status="ok", error="", targets=[target],
                                reasoning="<reason>mugs hold tea</reason><answer>[7]</answer>",
                                stage_names=[name for _, name in STAGES],
                                stage_latencies_s=[0.05] * len(STAGES),
                                total_latency_s=time.monotonic() - started)


@pytest.fixture
def action_pair(ros_context, unique_name):
    """(client, server) on one MultiThreadedExecutor spinning in a background thread."""
    from rclpy.action import ActionClient
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.node import Node

    from frs_ros.action import ReasonSeg

    action_name = f"/{unique_name}/reason_seg"
    server_node = Node(f"{unique_name}_server", context=ros_context)
    client_node = Node(f"{unique_name}_client", context=ros_context)
    server = _ReasonSegStandIn(server_node, action_name)
    client = ActionClient(client_node, ReasonSeg, action_name)
    executor = MultiThreadedExecutor(num_threads=4, context=ros_context)
    executor.add_node(server_node)
    executor.add_node(client_node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        assert client.wait_for_server(timeout_sec=TIMEOUT_S), f"action server {action_name} not found"
        yield client, server
    finally:
        executor.shutdown()
        spinner.join(timeout=5.0)
        client.destroy()
        server.server.destroy()
        client_node.destroy_node()
        server_node.destroy_node()


def _wait(future, what):
    deadline = time.monotonic() + TIMEOUT_S
    while not future.done() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert future.done(), f"timed out after {TIMEOUT_S} s waiting for {what}"
    return future.result()


def _send(client, query, feedback=None):
    from frs_ros.action import ReasonSeg

    goal = ReasonSeg.Goal(query=query, max_targets=1, keep_tracking=False, timeout_s=5.0)
    handle = _wait(client.send_goal_async(goal, feedback_callback=feedback), "the goal response")
    assert handle.accepted, "the server must accept every goal (errors are reported in the result)"
    return _wait(handle.get_result_async(), "the result")


def test_goal_is_answered_with_result_and_feedback_stages(action_pair):
    from action_msgs.msg import GoalStatus

    from frs_ros.action import ReasonSeg

    client, _ = action_pair
    feedback = []
    response = _send(client, "the thing I could pour hot tea into",
                     feedback=lambda msg: feedback.append(msg.feedback))
    assert response.status == GoalStatus.STATUS_SUCCEEDED
    result = response.result
    assert result.status == "ok" and result.error == ""
    assert [t.track_id for t in result.targets] == [7]
    assert result.targets[0].label == "mug"
    assert list(result.stage_names) == [name for _, name in STAGES]
    assert len(result.stage_latencies_s) == len(result.stage_names)
    assert result.total_latency_s > 0

    # Feedback travels on its own topic: allow it a moment after the result.
    deadline = time.monotonic() + 5.0
    while len(feedback) < len(STAGES) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [(f.stage, f.stage_name) for f in feedback] == [
        (getattr(ReasonSeg.Feedback, constant), name) for constant, name in STAGES]


@pytest.mark.parametrize("query", ["", "   \t\n"])
def test_empty_query_is_aborted_with_a_reason(action_pair, query):
    from action_msgs.msg import GoalStatus

    client, _ = action_pair
    response = _send(client, query)
    assert response.status == GoalStatus.STATUS_ABORTED
    assert response.result.status == "rejected"
    assert "query is empty" in response.result.error
    assert len(response.result.targets) == 0
