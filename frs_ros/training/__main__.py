"""``python -m frs_ros.training`` = ``frs-train``."""

import sys

from frs_ros.training.cli import main

sys.exit(main())
