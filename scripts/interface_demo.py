#!/usr/bin/env python3
"""Round trip of the frs_ros interfaces over real DDS, runnable before the nodes exist.

Starts a ReasonSeg action server and client in one process (one MultiThreadedExecutor), sends a
query, prints the feedback stages and the result, then sends an empty query and prints the
server's reason for refusing it. The server here has no model: it answers with a fixed target,
to show the interfaces and the action policy (empty query -> aborted, status "rejected", error
sentence), not reasoning. Needs `make build` and `. install/setup.sh` (`make demo` does both).

    python scripts/interface_demo.py [--query TEXT] [--timeout S]
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--query", default="the thing I could pour hot tea into",
                        help="query sent as the first goal")
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds to wait for each reply")
    args = parser.parse_args(argv)

    try:
        import rclpy
        from rclpy.action import ActionClient, ActionServer, GoalResponse
        from rclpy.callback_groups import ReentrantCallbackGroup
        from rclpy.executors import MultiThreadedExecutor
        from rclpy.node import Node

        from frs_ros.action import ReasonSeg
        from frs_ros.msg import Target
    except ImportError as exc:
        print(f"interface_demo: {exc}. Build and source the workspace first: make build && . install/setup.sh",
              file=sys.stderr)
        return 2

    stages = [(ReasonSeg.Feedback.STAGE_WAITING_FOR_TWIN, "waiting_for_twin"),
              (ReasonSeg.Feedback.STAGE_REASONING, "reasoning"),
              (ReasonSeg.Feedback.STAGE_ANSWERING, "answering")]

    def execute_cb(goal_handle):
        query = goal_handle.request.query
        if not query.strip():
            goal_handle.abort()
            return ReasonSeg.Result(status="rejected", error="The query is empty; send a sentence that "
                                    "describes the object to segment.")
        for stage, name in stages:
            goal_handle.publish_feedback(ReasonSeg.Feedback(stage=stage, stage_name=name))
            time.sleep(0.05)
        goal_handle.succeed()
        return ReasonSeg.Result(status="ok", targets=[Target(track_id=7, label="mug", score=0.9)],
                                reasoning="<reason>fixed answer of the demo server</reason><answer>[7]</answer>",
                                stage_names=[name for _, name in stages])

    # A domain of our own: no cross-talk with other ROS processes on this machine.
    domain_id = int(os.environ.get("ROS_DOMAIN_ID", 10 + os.getpid() % 200))
    rclpy.init(domain_id=domain_id)
    server_node, client_node = Node("frs_demo_reason_seg_server"), Node("frs_demo_reason_seg_client")
    ActionServer(server_node, ReasonSeg, "/frs/reason_seg", execute_callback=execute_cb,
                 goal_callback=lambda _goal: GoalResponse.ACCEPT, callback_group=ReentrantCallbackGroup())
    client = ActionClient(client_node, ReasonSeg, "/frs/reason_seg")
    executor = MultiThreadedExecutor(num_threads=4)
    executor.add_node(server_node)
    executor.add_node(client_node)
    threading.Thread(target=executor.spin, daemon=True).start()

    def wait(future, what):
        deadline = time.monotonic() + args.timeout
        while not future.done() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not future.done():
            raise TimeoutError(f"no {what} within {args.timeout} s")
        return future.result()

    try:
        if not client.wait_for_server(timeout_sec=args.timeout):
            raise TimeoutError(f"action server /frs/reason_seg not found within {args.timeout} s")
        for query in (args.query, "   "):
            print(f"\n[demo] goal: query={query!r} (ROS_DOMAIN_ID={domain_id})")
            t0 = time.monotonic()
            handle = wait(client.send_goal_async(
                ReasonSeg.Goal(query=query, max_targets=1),
                feedback_callback=lambda m: print(f"[demo]   feedback: stage={m.feedback.stage} "
                                                  f"({m.feedback.stage_name})")), "goal response")
            reply = wait(handle.get_result_async(), "result")
            r = reply.result
            print(f"[demo]   result after {time.monotonic() - t0:.3f} s: goal status={reply.status}, "
                  f"status={r.status!r}, error={r.error!r}, targets={[(t.track_id, t.label) for t in r.targets]}")
    except TimeoutError as exc:
        print(f"interface_demo: {exc}", file=sys.stderr)
        return 1
    finally:
        executor.shutdown()
        rclpy.try_shutdown()
    print("\n[demo] interfaces OK: frs_ros.msg / frs_ros.action round trip over DDS.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
