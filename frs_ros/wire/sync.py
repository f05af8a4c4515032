"""ROS-free synchronisation and hand-off helpers (tested without rclpy).

- ``ApproximateTimeSync``: groups one message per stream (colour, depth, camera_info) whose
  stamps lie within ``slop`` of each other, like ``message_filters.ApproximateTimeSynchronizer``;
  *latest-frame-wins*: a matched set is emitted at once, everything older is dropped, and a set
  older than the last one emitted is never emitted (a slow consumer sees fresh frames, not a queue).
  A set the consumer could not use (``reject``) does not count as emitted, and stamps that go
  back by more than ``jump_ns`` are a clock jump (bag loop, simulator restart, NTP step): the
  synchroniser resets instead of dropping every later set as stale.
- ``LatestSlot``: a thread-safe single-item mailbox (the in-process ``FrameBuffer`` / twin buffer):
  ``put`` replaces, ``wait_newer`` blocks until something newer than what the caller has seen,
  ``age_s`` says how long ago the value was put.
- ``StampStore``: bounded map stamp -> value (simulator ground truth waiting for its frame).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from collections import OrderedDict, deque
from typing import Any, Callable, Generic, Hashable, Optional, Sequence, TypeVar

T = TypeVar("T")


#: Default clock-jump threshold of ``ApproximateTimeSync`` [ns]: a message more than this older
#: than the last emitted set is not late, its clock went back (1 s: far beyond any network delay
#: or sync slop, well below a bag loop or a simulator restart).
DEFAULT_JUMP_NS = 1_000_000_000


@dataclass(frozen=True)
class ClockJump:
    """Stamps jumped: ``direction`` 'backward' | 'forward', from the last emitted set's stamp
    ``from_ns`` to ``to_ns`` [ns]; ``size_s`` [s] is the (positive) size of the jump."""

    direction: str
    from_ns: int
    to_ns: int

    @property
    def size_s(self) -> float:
        return abs(self.to_ns - self.from_ns) * 1e-9


class ApproximateTimeSync:
    """Approximate-time synchroniser by stamp.

    keys: the streams, e.g. ``("color", "depth", "info")``; one message of each makes a set.
    slop_ns [ns]: the largest allowed spread (max stamp - min stamp) within a set.
    queue_size: messages kept per stream while waiting for partners (older ones are dropped).
    jump_ns [ns]: a message older than the last emitted set by more than this is a clock jump
        back: the synchroniser resets (forgets the last stamp and the queued messages of the old
        time line) and goes on from the new stamps. A set newer by more than this is a jump
        forward: it is emitted as usual (it is newer) and reported. Either way ``on_jump``
        (if given) is called with a ``ClockJump``, and ``jumps`` counts them.

    Counters: ``dropped`` (messages discarded without being part of an emitted set), of which
    ``stale`` were older than the last emitted set (late, within ``jump_ns``).
    """

    def __init__(self, keys: Sequence[str], slop_ns: int, queue_size: int = 5, *, jump_ns: int = DEFAULT_JUMP_NS,
                 on_jump: Optional[Callable[[ClockJump], None]] = None) -> None:
        if not keys:
            raise ValueError("ApproximateTimeSync needs at least one stream key")
        if slop_ns < 0:
            raise ValueError(f"slop must be >= 0 ns, got {slop_ns}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        if jump_ns <= slop_ns:
            raise ValueError(f"jump_ns ({jump_ns}) must be larger than slop_ns ({slop_ns})")
        self.keys = tuple(keys)
        self.slop_ns = int(slop_ns)
        self.jump_ns = int(jump_ns)
        self.on_jump = on_jump
        self._queues: dict[str, deque] = {k: deque(maxlen=int(queue_size)) for k in self.keys}
        self._last_emitted_ns: Optional[int] = None
        self._before_last_ns: Optional[int] = None  # restored by reject()
        self._lock = threading.Lock()
        self.dropped = 0  # messages discarded without being part of an emitted set
        self.stale = 0  # of those, older than the last emitted set
        self.jumps = 0

    @property
    def last_emitted_ns(self) -> Optional[int]:
        """Stamp [ns] of the newest set emitted and not rejected (``None`` before the first / after a reset)."""
        with self._lock:
            return self._last_emitted_ns

    def add(self, key: str, stamp_ns: int, msg: Any) -> Optional[dict[str, Any]]:
        """Offer a message; returns ``{key: msg}`` when it completes a set, else ``None``.

        A set that the caller then cannot use (it fails to convert) must be handed back with
        ``reject()``, or its stamp would make every later set look stale.
        """
        if key not in self._queues:
            raise KeyError(f"unknown stream '{key}'; streams are {self.keys}")
        stamp_ns = int(stamp_ns)
        jump = None
        with self._lock:
            last = self._last_emitted_ns
            if last is not None and stamp_ns <= last:
                if last - stamp_ns <= self.jump_ns:
                    self.dropped += 1  # older than the last frame we handed on: late, stale
                    self.stale += 1
                    return None
                jump = ClockJump("backward", last, stamp_ns)
                self._reset_locked(keep_below_ns=stamp_ns + self.jump_ns)
            q = self._queues[key]
            if len(q) == q.maxlen:
                self.dropped += 1
            q.append((stamp_ns, msg))
            out = self._match_locked(key, stamp_ns, msg)
            if out is not None:
                set_ns = self._last_emitted_ns
                if jump is None and last is not None and set_ns is not None and set_ns - last > self.jump_ns:
                    jump = ClockJump("forward", last, set_ns)
            if jump is not None:
                self.jumps += 1
        if jump is not None and self.on_jump is not None:
            self.on_jump(jump)
        return out

    def _match_locked(self, key: str, stamp_ns: int, msg: Any) -> Optional[dict[str, Any]]:
        chosen: dict[str, tuple[int, Any]] = {key: (stamp_ns, msg)}
        for other in self.keys:
            if other == key:
                continue
            oq = self._queues[other]
            if not oq:
                return None
            chosen[other] = min(oq, key=lambda item: abs(item[0] - stamp_ns))
        stamps = [s for s, _ in chosen.values()]
        if max(stamps) - min(stamps) > self.slop_ns:
            return None
        # Emit, then drop the used messages and everything older (latest frame wins).
        for k, (s, _) in chosen.items():
            kq = self._queues[k]
            before = len(kq)
            kept = [item for item in kq if item[0] > s]
            kq.clear()
            kq.extend(kept)
            self.dropped += before - len(kept) - 1
        self._before_last_ns, self._last_emitted_ns = self._last_emitted_ns, max(stamps)
        return {k: m for k, (_, m) in chosen.items()}

    def reject(self) -> None:
        """The set ``add`` just returned was not used (e.g. it failed to convert): forget its stamp.

        So one bad set, even one stamped far in the future, cannot make later sets look stale.
        """
        with self._lock:
            self._last_emitted_ns, self._before_last_ns = self._before_last_ns, None

    def _reset_locked(self, keep_below_ns: Optional[int] = None) -> None:
        for q in self._queues.values():
            kept = [item for item in q if keep_below_ns is not None and item[0] < keep_below_ns]
            q.clear()
            q.extend(kept)
        self._last_emitted_ns = self._before_last_ns = None

    def reset(self) -> None:
        """Forget every queued message and the last emitted stamp."""
        with self._lock:
            self._reset_locked()


class LatestSlot(Generic[T]):
    """Thread-safe latest-value mailbox with a sequence number (the in-process hand-off).

    Producers ``put``; consumers ``wait_newer(seen_seq)`` and get ``(seq, value)`` of the newest
    value, skipping any they were too slow to see (a frame is worth nothing once a newer exists).
    """

    def __init__(self, clock: Optional[Callable[[], float]] = None) -> None:
        import time

        self._clock = clock or time.monotonic
        self._cond = threading.Condition()
        self._value: Optional[T] = None
        self._put_s: Optional[float] = None
        self._seq = 0
        self._closed = False

    def put(self, value: T) -> int:
        with self._cond:
            self._value = value
            self._put_s = self._clock()
            self._seq += 1
            self._cond.notify_all()
            return self._seq

    def latest(self) -> tuple[int, Optional[T]]:
        with self._cond:
            return self._seq, self._value

    def age_s(self) -> Optional[float]:
        """Seconds since the latest value was put (monotonic clock); ``None`` while empty."""
        with self._cond:
            return None if self._put_s is None else max(0.0, self._clock() - self._put_s)

    def latest_with_age(self) -> tuple[int, Optional[T], Optional[float]]:
        """``(seq, value, age_s)`` of the latest value, read together."""
        with self._cond:
            age = None if self._put_s is None else max(0.0, self._clock() - self._put_s)
            return self._seq, self._value, age

    def wait_newer(self, seen_seq: int, timeout_s: Optional[float]) -> tuple[int, Optional[T]]:
        """Block until a value newer than ``seen_seq`` exists (or timeout/close); returns ``(seq, value)``.

        On timeout or close the returned seq is ``seen_seq`` and the value ``None``.
        """
        with self._cond:
            self._cond.wait_for(lambda: self._seq > seen_seq or self._closed, timeout=timeout_s)
            if self._seq > seen_seq:
                return self._seq, self._value
            return seen_seq, None

    def close(self) -> None:
        """Wake every waiter (shutdown)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class FrameBuffer(LatestSlot):
    """The latest synchronised ``frs_ros.camera.Frame`` (camera ingest -> digital twin, in one process)."""


class TwinBuffer(LatestSlot):
    """The latest ``TwinSnapshot`` (digital twin -> reasoner, in one process)."""


@dataclass
class TwinSnapshot:
    """A twin with the frame it was built from; ``tracker`` is set in one process (tools can then
    update the persistent tracks), ``None`` when the twin came over a topic."""

    twin: Any
    frame: Any
    tracker: Any = None


class StampStore(Generic[T]):
    """Bounded ``stamp_ns -> value`` map; the oldest entries go first when full.

    ``get(stamp, tolerance_ns)`` returns the value with the nearest stamp within tolerance.
    """

    def __init__(self, capacity: int = 64) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self._items: "OrderedDict[int, T]" = OrderedDict()
        self._lock = threading.Lock()

    def put(self, stamp_ns: int, value: T) -> None:
        with self._lock:
            self._items[int(stamp_ns)] = value
            self._items.move_to_end(int(stamp_ns))
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def get(self, stamp_ns: int, tolerance_ns: int = 0) -> Optional[T]:
        with self._lock:
            if int(stamp_ns) in self._items:
                return self._items[int(stamp_ns)]
            if tolerance_ns <= 0 or not self._items:
                return None
            best = min(self._items, key=lambda s: abs(s - int(stamp_ns)))
            return self._items[best] if abs(best - int(stamp_ns)) <= tolerance_ns else None

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


class ThrottledReporter:
    """Counts problems per kind and says when one should be logged (first time, then every ``period_s``).

    ``clock`` returns seconds (monotonic); the nodes pass their ROS clock in.
    """

    def __init__(self, period_s: float = 10.0, clock: Optional[Callable[[], float]] = None) -> None:
        import time

        self.period_s = float(period_s)
        self._clock = clock or time.monotonic
        self._last: dict[Hashable, float] = {}
        self.counts: dict[Hashable, int] = {}
        self._lock = threading.Lock()

    def report(self, kind: Hashable) -> bool:
        """Count one occurrence of ``kind``; True when the caller should log it now."""
        now = self._clock()
        with self._lock:
            self.counts[kind] = self.counts.get(kind, 0) + 1
            last = self._last.get(kind)
            if last is None or now - last >= self.period_s:
                self._last[kind] = now
                return True
            return False

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self.counts.values())
