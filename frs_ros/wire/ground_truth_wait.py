"""ROS-free: frames waiting for their simulator ground truth (the ``sim`` twin backends, across processes).

In one process the simulated camera stores a frame's ground truth before it publishes the image, so
it is always there first. Across processes it travels on its own topics (``frs/sim/instance_ids`` +
``frs/sim/objects``, assembled by stamp) while the frame takes another path (camera ingest ->
``frs/frame/*``), and it can arrive later than its frame: at start-up, while subscriptions are still
matching, and under load (seen: more than 0.3 s, in 3 of 7 ``ros2 launch`` runs on 2 busy cores).
A frame without it is therefore queued, not failed; ``pop_ready`` hands on the newest queued frame
whose ground truth has come (older ones are skipped: latest frame wins), and only frames that waited
longer than ``max_wait_s`` are dropped. A real camera never has ground truth: there every frame
expires, and ``starved_s`` tells the node how long nothing has arrived, to say what to configure.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any, Callable, Optional


class GroundTruthWait:
    """Frames (``frs_ros.camera.Frame``: ``stamp_ns``, ``gt``, ``extras``) queued until their ground truth.

    store: ``StampStore`` of ``stamp_ns -> (frame index, SceneGroundTruth, pose extras)``.
    max_wait_s [s]: how long a frame may wait before it is dropped.
    capacity: most frames queued (the oldest go first; a frame is worth nothing once a newer one is ready).
    clock: monotonic seconds (tests pass their own).
    """

    def __init__(self, store: Any, max_wait_s: float = 2.0, capacity: int = 32,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_wait_s <= 0:
            raise ValueError(f"max_wait_s must be > 0 s, got {max_wait_s}")
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.store = store
        self.max_wait_s = float(max_wait_s)
        self._clock = clock
        self._queue: deque[tuple[float, Any]] = deque(maxlen=int(capacity))
        self._since = clock()  # start, or the last time a frame got its ground truth [s]
        self.matched = 0   # frames handed on with their ground truth
        self.skipped = 0   # frames passed over because a newer one was ready first
        self.expired = 0   # frames dropped after max_wait_s without ground truth (or pushed out when full)

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, frame: Any) -> None:
        """Queue a frame that has no ground truth yet."""
        if len(self._queue) == self._queue.maxlen:
            self.expired += 1
        self._queue.append((self._clock(), frame))

    def pop_ready(self) -> Optional[Any]:
        """The newest queued frame whose ground truth has arrived (attached to it), else None.

        Frames older than it leave the queue (skipped); frames that waited too long expire.
        """
        ready = None
        for i in range(len(self._queue) - 1, -1, -1):
            frame = self._queue[i][1]
            item = self.store.get(frame.stamp_ns)
            if item is not None:
                frame.gt = item[1]
                frame.extras.update(item[2] if len(item) > 2 else {})
                ready = frame
                for _ in range(i + 1):
                    self._queue.popleft()
                self.skipped += i
                self.matched += 1
                self._since = self._clock()
                break
        now = self._clock()
        while self._queue and now - self._queue[0][0] > self.max_wait_s:
            self._queue.popleft()
            self.expired += 1
        return ready

    def starved_s(self) -> float:
        """Seconds since a frame last got its ground truth (or since start) [s]."""
        return self._clock() - self._since
