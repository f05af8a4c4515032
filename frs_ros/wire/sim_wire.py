"""Simulator ground truth on the wire (ROS-free JSON), for the cross-process hand-off.

In one process (``frs_bringup``, the demo, the tests) the simulated camera hands its ground
truth to the twin and reasoner nodes directly (a ``StampStore`` keyed by the published stamp,
and a ``frs_ros.sim.types.QueryBook`` text -> ``Query``). Across processes the sim camera publishes
``/frs/sim/instance_ids`` (32SC1, the colour image's header) and ``/frs/sim/objects``
(std_msgs/String, ``objects_to_json``), plus the episode's queries once on the latched
``/frs/sim/queries`` (``queries_to_json``); the receiving nodes rebuild the same objects.
"""

from __future__ import annotations

import json
import threading
from typing import Any, Iterable, Optional

import numpy as np

from frs_ros.sim.types import Query, SceneGroundTruth, SimObject


def _jsonable(x: Any) -> Any:
    if isinstance(x, np.ndarray):
        return {"__nd__": x.tolist(), "dtype": str(x.dtype)}
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    if isinstance(x, (tuple, list)):
        return [_jsonable(v) for v in x]
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    return x


def _unjson(x: Any) -> Any:
    if isinstance(x, dict):
        if "__nd__" in x:
            return np.asarray(x["__nd__"], dtype=x.get("dtype", "float64"))
        return {k: _unjson(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_unjson(v) for v in x]
    return x


#: frame extras the simulator may know and a robot gets from tf2 (camera pose for ego-motion)
POSE_EXTRAS = ("T_world_camera",)


def pose_extras(extras: Optional[dict]) -> dict:
    """The camera-pose entries of a frame's ``extras`` (what the sim shares with the twin)."""
    return {k: np.asarray(v, dtype=float) for k, v in (extras or {}).items() if k in POSE_EXTRAS and v is not None}


def objects_to_json(stamp_ns: int, objects: dict[int, SimObject], extras: Optional[dict] = None) -> str:
    return json.dumps({"stamp_ns": int(stamp_ns), "objects": [_jsonable(o.__dict__) for o in objects.values()],
                       "extras": _jsonable(pose_extras(extras))})


def extras_from_json(text: str) -> dict:
    return {k: np.asarray(v, dtype=float) for k, v in _unjson(json.loads(text).get("extras", {})).items()}


def objects_from_json(text: str) -> tuple[int, dict[int, SimObject]]:
    d = json.loads(text)
    objs = {}
    for o in d["objects"]:
        o = _unjson(o)
        o["position_m"] = np.asarray(o["position_m"], dtype=float)
        objs[int(o["instance_id"])] = SimObject(**o)
    return int(d["stamp_ns"]), objs


def query_to_dict(query: Query) -> dict:
    """A ``Query`` as a JSON-ready dict (arrays tagged with their dtype); ``query_from_dict`` reverses it."""
    return _jsonable(query.__dict__)


def query_from_dict(d: dict) -> Query:
    """The ``Query`` of a ``query_to_dict`` dict (also as read back from JSON)."""
    return Query(**_unjson(d))


def queries_to_json(queries: Iterable[Query]) -> str:
    return json.dumps([query_to_dict(q) for q in queries])


def queries_from_json(text: str) -> list[Query]:
    return [query_from_dict(q) for q in json.loads(text)]


class GroundTruthAssembler:
    """Pairs ``/frs/sim/instance_ids`` images with ``/frs/sim/objects`` JSON by stamp; a complete pair
    gives ``(stamp_ns, SceneGroundTruth, pose extras)``."""

    def __init__(self, capacity: int = 16) -> None:
        self._maps: dict[int, np.ndarray] = {}
        self._objs: dict[int, dict[int, SimObject]] = {}
        self.extras: dict[int, dict] = {}  # stamp -> pose extras that came with the objects
        self._capacity = capacity
        self._lock = threading.Lock()

    def add_instance_map(self, stamp_ns: int, instance_map: np.ndarray) -> Optional[tuple[int, SceneGroundTruth, dict]]:
        with self._lock:
            self._maps[int(stamp_ns)] = instance_map
            return self._pop(int(stamp_ns))

    def add_objects(self, text: str) -> Optional[tuple[int, SceneGroundTruth, dict]]:
        stamp, objs = objects_from_json(text)
        with self._lock:
            self._objs[stamp] = objs
            self.extras[stamp] = extras_from_json(text)
            return self._pop(stamp)

    def _pop(self, stamp: int) -> Optional[tuple[int, SceneGroundTruth, dict]]:
        for d in (self._maps, self._objs, self.extras):
            while len(d) > self._capacity:
                d.pop(min(d))
        if stamp in self._maps and stamp in self._objs:
            gt = SceneGroundTruth(instance_map=self._maps.pop(stamp), objects=self._objs.pop(stamp))
            return stamp, gt, self.extras.pop(stamp, {})
        return None
