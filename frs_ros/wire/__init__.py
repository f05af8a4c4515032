"""ROS-free halves of the ROS boundary: what the nodes use but can be tested (and reused) without rclpy.

- ``image_codec``: ``sensor_msgs/Image`` / ``CameraInfo`` fields <-> numpy arrays and ``Frame``
  (works on real messages and on the ``rosbags`` records of ``frs_ros.data.bags``);
- ``sync``: approximate-time synchroniser, frame/twin buffers, stamp store, clock-jump detector;
- ``sim_wire``: the simulator's ground truth and queries as JSON (cross-process hand-off);
- ``ground_truth_wait``: frames queued until their simulator ground truth arrives;
- ``geometry``: rigid transforms of target centroids (tf2 supplies the transform);
- ``goals``: the reasoner's goal policy (arbiter, budgets, outcomes, tracking session);
- ``params``: every node parameter in one table, its checks, and ``config/frs.yaml``.

``frs_ros.nodes`` holds only code that imports rclpy or message packages.
"""
