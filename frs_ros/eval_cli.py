"""``frs-eval``: one command family for every evaluation, each run where its code lives.

    frs-eval twin --episodes 10 --frames 30          # the digital twin on sim episodes (frs_ros.twin.report)
    frs-eval reasoner oracle --images 200            # reasoner benchmarks: oracle gIoU, LM timing (frs_ros.reasoning.bench)
    frs-eval heldout --config config/train_eval_val.yaml   # students vs teacher on the held-out split (frs-train eval)
    frs-eval bag BAG --annotations ann.json          # twin + reasoner replayed over a rosbag2 (frs_ros.bag_eval)

Each command hands the rest of the command line to the module that owns that evaluation
(``frs-eval <command> --help`` shows its options); docs/layout.md says why each lives there.
Benchmarks of speed and memory are not evaluations: they live in ``bench/``.
"""

from __future__ import annotations

import importlib
import sys
from typing import Callable, Optional, Sequence

#: command -> (module with main(argv), argv prefix, what it measures)
COMMANDS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "twin": ("frs_ros.twin.report", (), "the digital twin on sim episodes: track-id consistency, depth stats, "
             "text size, per-track mask J/F"),
    "reasoner": ("frs_ros.reasoning.bench", (), "reasoner benchmarks on the simulator: oracle gIoU, LM prompt/cache "
                 "timing (oracle | timing)"),
    "heldout": ("frs_ros.training.cli", ("eval",), "reasoners (students, teacher) on the held-out sim split: gIoU/cIoU, "
                "J&F, format validity, tokens (frs-train eval)"),
    "bag": ("frs_ros.bag_eval", (), "twin + reasoner replayed over a recorded rosbag2 with annotations"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: frs-eval <command> [options]   (frs-eval <command> --help for its options)", "", "commands:"]
    lines += [f"  {name:<{width}}  {about}  [{module}]" for name, (module, _, about) in COMMANDS.items()]
    return "\n".join(lines)


def resolve(command: str) -> tuple[Callable[[Optional[Sequence[str]]], int], tuple[str, ...]]:
    """The ``main`` of ``command``'s module and the arguments put before the user's."""
    module, prefix, _ = COMMANDS[command]
    return importlib.import_module(module).main, prefix


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"frs-eval: unknown command '{command}'\n\n{usage()}", file=sys.stderr)
        return 2
    fn, prefix = resolve(command)
    return int(fn([*prefix, *rest]) or 0)


if __name__ == "__main__":
    sys.exit(main())
