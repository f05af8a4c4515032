"""frs_ros — reasoning segmentation for ROS 2 robots (FastReasonSeg).

The package is split into a ROS-free core (``camera``, ``masks``, ``metrics``,
``sim``, ``data``, ``twin``, ``reasoning``, ``training``) and a thin ROS layer
(``nodes``, ``bringup``). Only ``frs_ros.nodes`` and ``frs_ros.bringup`` may
import ``rclpy`` or message packages; ``test/test_core_no_ros.py`` enforces it.
"""

__version__ = "0.1.0"
