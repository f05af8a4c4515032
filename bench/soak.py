"""Soak of the reasoner node over real rclpy + DDS (issue 14): 1,000 sequential goals, then 10
concurrent clients (2 rounds x 20 goals each); the node's RSS after an idle settle and the goal
round trip p50/p95 at start and end, and the RSS trend over the last half.

    python bench/soak.py                       # ~3-6 min on 2 cores; table on stdout
    python bench/run_bench.py --only soak      # the same, from the bench entry point

Needs the built interfaces (``. install/setup.sh``). The node runs in a child process with
``frs_ros.nodes.soak.ScriptedReasoner`` (an instant answer), so this measures the ROS layer
(action server, goal policy, twin buffer, results), not the LM; the harness is the one of the
slow test ``test_soak_1000_sequential_goals_then_10_concurrent_clients``. DDS stays on this host
(``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``) in domain ``ROS_DOMAIN_ID`` (default 10 + pid % 200).
Writes ``bench/results/soak_results.json`` and ``bench/results/soak_table.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _machine() -> str:
    cpu = "unknown cpu"
    with open("/proc/cpuinfo", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        head = "unknown"
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, commit {head}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sequential", type=int, default=1000, help="goals sent one after another")
    ap.add_argument("--clients", type=int, default=10, help="concurrent clients")
    ap.add_argument("--goals-per-client", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=2, help="rounds of concurrent clients")
    ap.add_argument("--client-goals", type=int, default=100,
                    help="a fresh sequential client every N goals (0 = one client; rclpy 9.1.2's ActionClient slows "
                    "itself down goal after goal, see frs_ros.nodes.soak.run_soak)")
    ap.add_argument("--settle-s", type=float, default=2.0, help="idle pause after gc before reading RSS [s]")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "soak_results.json"))
    ap.add_argument("--md", default=str(ROOT / "bench" / "results" / "soak_table.md"))
    a = ap.parse_args(argv)

    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    from frs_ros.nodes.soak import default_domain_id, run_soak, soak_table

    domain_id = default_domain_id()
    os.environ["ROS_DOMAIN_ID"] = str(domain_id)
    try:
        import rclpy
        from rclpy.context import Context

        import frs_ros.action  # noqa: F401 - the generated interfaces: fail here, with the fix
    except ImportError as exc:
        print(f"[soak] cannot import rclpy or frs_ros.action ({exc}): build and source the workspace "
              "(make build; . scripts/env.sh; . install/setup.sh)", file=sys.stderr)
        return 2

    load0 = os.getloadavg()[0]
    ctx = Context()
    rclpy.init(context=ctx, domain_id=domain_id)
    try:
        r = run_soak(ctx, domain_id, sequential=a.sequential, clients=a.clients, goals_per_client=a.goals_per_client,
                     rounds=a.rounds, settle_s=a.settle_s, client_goals=a.client_goals,
                     log=lambda m: print(f"[soak {time.strftime('%H:%M:%S')}] {m}", file=sys.stderr, flush=True))
    finally:
        ctx.try_shutdown()
    head = (f"Machine: {_machine()}; load avg {load0:.2f} at start, {os.getloadavg()[0]:.2f} at end; "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    table = head + "\n\n" + soak_table(r)
    print(table)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    d = dict(vars(r))
    d.update(machine=head, growth_pct=r.growth_pct, sequential_growth_pct=r.sequential_growth_pct,
             last_half_slope_mb_per_1000=r.last_half_slope_mb_per_1000,
             latency_start_ms=r.latency_ms("start"), latency_end_ms=r.latency_ms("end"))
    out.write_text(json.dumps(d, indent=1))
    if a.md:
        Path(a.md).write_text(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
