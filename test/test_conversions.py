"""Message <-> numpy/core conversions (no rclpy.init needed: message classes only)."""

import math

import numpy as np
import pytest

pytest.importorskip("sensor_msgs.msg")

from sensor_msgs.msg import CameraInfo, Image  # noqa: E402

from frs_ros.camera import CameraIntrinsics  # noqa: E402
from frs_ros.masks import rle_encode  # noqa: E402
from frs_ros.nodes import conversions as cv  # noqa: E402
from frs_ros.twin.types import DepthStats, DigitalTwin, TwinObject  # noqa: E402

HDR = cv.make_header(1_700_000_000_123_456_789, "cam_optical")


def _rgb(h=6, w=8):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def test_stamp_roundtrip():
    ns = 1_700_000_000_123_456_789
    assert cv.stamp_to_ns(cv.ns_to_stamp(ns)) == ns
    with pytest.raises(ValueError):
        cv.ns_to_stamp(-1)


@pytest.mark.parametrize("enc", ["rgb8", "bgr8"])
def test_color_roundtrip(enc):
    rgb = _rgb()
    msg = cv.color_to_msg(rgb, HDR, encoding=enc)
    assert msg.encoding == enc and msg.step == 8 * 3
    np.testing.assert_array_equal(cv.color_from_msg(msg), rgb)


def test_bgr_channel_order_and_mono_and_rgba():
    msg = Image(height=1, width=1, encoding="bgr8", step=3, data=bytes([1, 2, 3]))
    assert cv.color_from_msg(msg).tolist() == [[[3, 2, 1]]]
    msg = Image(height=1, width=2, encoding="mono8", step=2, data=bytes([7, 9]))
    assert cv.color_from_msg(msg).tolist() == [[[7, 7, 7], [9, 9, 9]]]
    msg = Image(height=1, width=1, encoding="bgra8", step=4, data=bytes([1, 2, 3, 4]))
    assert cv.color_from_msg(msg).tolist() == [[[3, 2, 1]]]


def test_row_padding_is_removed():
    # width 2 rgb8 = 6 B per row, step 8 (2 B padding)
    data = bytes([1, 2, 3, 4, 5, 6, 0, 0, 7, 8, 9, 10, 11, 12, 0, 0])
    msg = Image(height=2, width=2, encoding="rgb8", step=8, data=data)
    out = cv.color_from_msg(msg)
    assert out.shape == (2, 2, 3)
    assert out[1, 1].tolist() == [10, 11, 12]


def test_depth_16uc1_mm_to_m_and_zero_is_nan():
    mm = np.array([[0, 1000], [1500, 65535]], dtype=np.uint16)
    msg = cv.array_to_image(mm, "16UC1", HDR)
    d = cv.depth_from_msg(msg)
    assert d.dtype == np.float32
    assert math.isnan(d[0, 0])
    assert d[0, 1] == pytest.approx(1.0) and d[1, 0] == pytest.approx(1.5) and d[1, 1] == pytest.approx(65.535)


def test_depth_16uc1_big_endian():
    data = np.array([[1000, 2]], dtype=">u2").tobytes()
    msg = Image(height=1, width=2, encoding="16UC1", is_bigendian=1, step=4, data=data)
    d = cv.depth_from_msg(msg)
    assert d[0, 0] == pytest.approx(1.0) and d[0, 1] == pytest.approx(0.002)


def test_depth_32fc1_invalid_values_are_nan():
    m = np.array([[0.0, np.nan, np.inf, -1.0, 0.75]], dtype=np.float32)
    d = cv.depth_from_msg(cv.array_to_image(m, "32FC1", HDR))
    assert np.isnan(d[0, :4]).all() and d[0, 4] == pytest.approx(0.75)


def test_depth_to_msg_roundtrips_with_nan():
    depth = np.array([[np.nan, 0.5], [1.234, 2.0]], dtype=np.float32)
    for enc, tol in (("16UC1", 1e-3), ("32FC1", 1e-7)):
        back = cv.depth_from_msg(cv.depth_to_msg(depth, HDR, encoding=enc))
        assert np.isnan(back[0, 0])
        np.testing.assert_allclose(back[~np.isnan(depth)], depth[~np.isnan(depth)], atol=tol)
    # 16UC1 encodes NaN as 0 (the driver convention)
    assert cv.image_to_array(cv.depth_to_msg(depth, HDR, "16UC1"))[0, 0] == 0


@pytest.mark.parametrize(
    "msg, match",
    [
        (Image(height=2, width=2, encoding="yuv422", step=4, data=bytes(8)), "unsupported image encoding"),
        (Image(height=2, width=2, encoding="rgb8", step=6, data=bytes(11)), "data is 11 B"),
        (Image(height=2, width=2, encoding="rgb8", step=4, data=bytes(8)), "step 4 B is smaller"),
        (Image(height=0, width=2, encoding="rgb8", step=6, data=b""), "zero size"),
        (Image(height=1, width=1, encoding="16UC1", step=2, data=bytes(2)), "depth/label encoding"),
    ],
)
def test_bad_color_messages_raise_clear_errors(msg, match):
    if cv._BRIDGE is not None and msg.encoding == "yuv422":
        pytest.skip("cv_bridge installed: unknown colour encodings are routed through it")
    with pytest.raises(cv.ImageConversionError, match=match):
        cv.color_from_msg(msg)


def test_bad_depth_encoding():
    msg = cv.color_to_msg(_rgb(), HDR)
    with pytest.raises(cv.ImageConversionError, match="16UC1"):
        cv.depth_from_msg(msg)


def test_camera_info_roundtrip_and_frame():
    k = CameraIntrinsics(fx=100.0, fy=101.0, cx=3.5, cy=2.5, width=8, height=6)
    info = cv.intrinsics_to_camera_info(k, HDR)
    assert cv.intrinsics_from_camera_info(info) == k
    rgb = _rgb()
    depth = np.full((6, 8), 1.25, np.float32)
    f = cv.frame_from_msgs(cv.color_to_msg(rgb, HDR), cv.depth_to_msg(depth, HDR, "16UC1"), info, seq=4)
    assert f.stamp_ns == cv.stamp_to_ns(HDR.stamp) and f.frame_id == "cam_optical" and f.seq == 4
    np.testing.assert_array_equal(f.rgb, rgb)
    np.testing.assert_allclose(f.depth, 1.25)
    f2 = cv.frame_from_msgs(cv.color_to_msg(rgb, HDR), None, info)
    assert f2.depth is None


def test_frame_size_mismatches_raise():
    k = CameraIntrinsics(fx=100.0, fy=100.0, cx=3.5, cy=2.5, width=8, height=6)
    info = cv.intrinsics_to_camera_info(k, HDR)
    with pytest.raises(cv.ImageConversionError, match="camera_info says"):
        cv.frame_from_msgs(cv.color_to_msg(_rgb(5, 8), HDR), None, info)
    with pytest.raises(cv.ImageConversionError, match="aligned"):
        cv.frame_from_msgs(cv.color_to_msg(_rgb(), HDR), cv.depth_to_msg(np.ones((3, 4), np.float32), HDR), info)
    bad = CameraInfo(width=8, height=6)  # all-zero K: uncalibrated
    with pytest.raises(cv.ImageConversionError, match="calibrated"):
        cv.intrinsics_from_camera_info(bad)


def test_mask_and_instance_ids():
    mask = np.zeros((6, 8), bool)
    mask[1:3, 2:5] = True
    m = cv.mask_to_msg(mask, HDR)
    assert m.encoding == "mono8" and m.header.frame_id == "cam_optical"
    assert set(np.unique(cv.image_to_array(m)).tolist()) == {0, 255}
    np.testing.assert_array_equal(cv.mask_from_msg(m), mask)
    ids = np.arange(48, dtype=np.int32).reshape(6, 8)
    np.testing.assert_array_equal(cv.instance_ids_from_msg(cv.instance_ids_to_msg(ids, HDR)), ids)
    np.testing.assert_array_equal(cv.instance_ids_from_msg(cv.instance_ids_to_msg(ids, HDR, "mono16")), ids)


def test_overlay_tints_only_the_mask():
    rgb = np.zeros((6, 8, 3), np.uint8)
    mask = np.zeros((6, 8), bool)
    mask[2:5, 2:6] = True
    out = cv.overlay_rgb(rgb, mask, color=(0, 255, 0), alpha=0.5)
    assert out[~mask].max() == 0 and out[mask][:, 1].min() > 0
    assert rgb.max() == 0  # input untouched


def _twin():
    k = CameraIntrinsics(fx=100.0, fy=100.0, cx=3.5, cy=2.5, width=8, height=6)
    mask = np.zeros((6, 8), bool)
    mask[1:4, 1:4] = True
    obj = TwinObject(
        track_id=3, mask=rle_encode(mask), box=(1, 1, 4, 4), area_px=9, label="mug", score=0.8,
        alt_labels=[("cup", 0.1)], depth=DepthStats(1.0, 0.1, 0.9, 1.1, 1.0, 1.0, "sensor", None),
        centroid_m=np.array([0.1, 0.2, 1.0]), first_seen_ns=5, last_seen_ns=9, attributes={"color": "red"},
    )
    lost = TwinObject(track_id=7, mask=rle_encode(np.zeros((6, 8), bool)), box=(0, 0, 0, 0), area_px=0,
                      label="bottle", score=0.5, visible=False)
    return DigitalTwin(stamp_ns=1_000_000_123, frame_id="cam", intrinsics=k, objects=[obj, lost], seq=2,
                       depth_source="sensor", start_ns=400_000_001, motion_frame="anchor", keyframe_ns=700_000_002), mask


def test_twin_msg_roundtrip():
    pytest.importorskip("frs_ros.msg")
    twin, mask = _twin()
    msg = cv.twin_to_msg(twin)
    assert msg.header.frame_id == "cam" and len(msg.objects) == 2
    assert math.isnan(msg.objects[1].centroid.x) and msg.objects[1].depth.missing_reason == "no depth image"
    back = cv.twin_from_msg(msg)
    assert back.stamp_ns == twin.stamp_ns and back.intrinsics == twin.intrinsics
    assert back.start_ns == 400_000_001 and back.motion_frame == "anchor" and back.keyframe_ns == 700_000_002
    o = back.get(3)
    assert o.label == "mug" and o.alt_labels == [("cup", pytest.approx(0.1))] and o.attributes == {"color": "red"}
    np.testing.assert_array_equal(o.mask.decode(), mask)
    np.testing.assert_allclose(o.centroid_m, [0.1, 0.2, 1.0], rtol=1e-6)
    assert o.depth.valid and not back.get(7).visible
    ids = cv.instance_id_image(twin)
    assert set(np.unique(ids).tolist()) == {0, 3} and (ids == 3).sum() == 9


def test_target_builders_and_markers():
    pytest.importorskip("frs_ros.msg")
    from frs_ros.reasoning.types import Target
    from visualization_msgs.msg import Marker

    twin, mask = _twin()
    o = twin.get(3)
    t = Target(track_id=3, label="mug", score=0.8, mask=mask, box=o.box, depth=o.depth, centroid_m=o.centroid_m)
    arr = cv.targets_to_msg([t], HDR, "the mug", "ab12")
    assert arr.query == "the mug" and arr.goal_id == "ab12" and len(arr.targets) == 1
    tm = arr.targets[0]
    assert tm.mask.header.frame_id == "cam_optical" and tm.mask.encoding == "mono8"
    np.testing.assert_array_equal(cv.mask_from_msg(tm.mask), mask)
    assert (tm.box.x_offset, tm.box.y_offset, tm.box.width, tm.box.height) == (1, 1, 3, 3)
    assert tm.centroid.point.z == pytest.approx(1.0) and tm.depth.median == pytest.approx(1.0)
    mk = cv.target_markers([t], HDR)
    assert mk.markers[0].action == Marker.DELETEALL and len(mk.markers) == 3
    tw = cv.twin_markers(twin, HDR)
    assert tw.markers[0].action == Marker.DELETEALL
    assert len(tw.markers) == 3  # the lost object has no centroid -> no marker
    assert "#3 mug" in tw.markers[2].text
    if not cv.HAVE_VISION_MSGS:
        assert cv.detections_to_msg([t], HDR) is None
