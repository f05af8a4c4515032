"""``python -m frs_ros.sim`` == ``frs-sim``."""

import sys

from frs_ros.sim.cli import main

sys.exit(main())
