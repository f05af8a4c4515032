import json
import math

import numpy as np
import pytest

from frs_ros.camera import CameraIntrinsics
from frs_ros.masks import rle_encode
from frs_ros.twin.config import TwinConfig, TwinConfigError
from frs_ros.twin.types import DepthStats, DigitalTwin, TwinObject, twin_from_json, twin_to_json


def _twin():
    m = np.zeros((6, 8), bool)
    m[1:3, 2:5] = True
    obj = TwinObject(
        track_id=3, mask=rle_encode(m), box=(2, 1, 5, 3), area_px=6, label="mug", score=0.8,
        alt_labels=[("cup", 0.3)], depth=DepthStats(1.0, 0.1, 0.9, 1.1, 1.0, 1.0, "sensor", None),
        centroid_m=np.array([0.1, -0.2, 1.0]), first_seen_ns=5, last_seen_ns=9,
        attributes={"color": "red"}, history=[(5, np.array([0.0, 0.0, 1.0])), (9, np.array([0.1, -0.2, 1.0]))],
        first_centroid_m=np.array([0.0, 0.0, 1.0]), gaps_ns=[(6, 7)], seen_frames=2,
    )
    lost = TwinObject(track_id=4, mask=rle_encode(np.zeros((6, 8), bool)), box=(0, 0, 0, 0), area_px=0,
                      label="object", score=0.0, visible=False)
    return DigitalTwin(stamp_ns=9, frame_id="cam", intrinsics=CameraIntrinsics(5, 5, 4, 3, 8, 6),
                       objects=[obj, lost], seq=2, depth_source="sensor", start_ns=1)


def test_json_round_trip_through_text():
    twin = _twin()
    back = twin_from_json(json.loads(json.dumps(twin_to_json(twin))))
    assert back.ids() == [3, 4]
    a, b = twin.get(3), back.get(3)
    assert np.array_equal(a.mask.decode(), b.mask.decode())
    assert b.label == "mug" and b.alt_labels == [("cup", 0.3)] and b.attributes == {"color": "red"}
    assert b.depth == a.depth and b.box == a.box and b.gaps_ns == [(6, 7)] and b.seen_frames == 2
    assert np.allclose(b.centroid_m, a.centroid_m)
    assert np.all(np.isnan(b.velocity_mps))  # NaN survives as null -> NaN
    assert b.history[1][0] == 9 and np.allclose(b.history[1][1], [0.1, -0.2, 1.0])
    assert back.start_ns == 1 and back.intrinsics == twin.intrinsics
    lost = back.get(4)
    assert not lost.visible and math.isnan(lost.depth.median) and lost.depth.missing_reason == "no depth image"


def test_displacement_and_speed_properties():
    o = _twin().get(3)
    assert o.displacement_m == pytest.approx(math.hypot(0.1, 0.2))
    assert math.isnan(o.speed_mps)


def test_config_from_dict_rejects_unknown_keys():
    c = TwinConfig.from_dict({"segmenter": "sam2", "label_vocabulary": ["mug", "cup"]})
    assert c.segmenter == "sam2" and c.vocabulary == ("mug", "cup")
    with pytest.raises(TwinConfigError, match="unknown twin config key.*keyframe_intervall"):
        TwinConfig.from_dict({"keyframe_intervall": 3})
    with pytest.raises(TwinConfigError, match="segmenter"):
        TwinConfig(segmenter="yolo")


def test_twin_core_imports_no_ros():
    import subprocess
    import sys

    code = (
        "import sys, frs_ros.twin.tracker, frs_ros.twin.tools, frs_ros.twin.serialize, frs_ros.twin.backends.sim;"
        "bad = [m for m in sys.modules if m.startswith('rclpy') or m.endswith('_msgs')];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
