import math

import numpy as np
import pytest

from frs_ros.camera import CameraIntrinsics
from frs_ros.twin.depth import depth_stats, mask_centroid_m, metric_extent_m, velocity_from_history


def test_depth_stats_exact_with_nan_pixels():
    depth = np.full((4, 5), 3.0, np.float32)
    depth[1, 1:4] = [1.0, 2.0, np.nan]
    depth[2, 1:4] = [4.0, 0.0, 5.0]  # 0 = invalid (driver "no return")
    mask = np.zeros((4, 5), bool)
    mask[1:3, 1:4] = True
    s = depth_stats(depth, mask, "sensor")
    vals = np.array([1.0, 2.0, 4.0, 5.0])
    assert s.valid and s.source == "sensor" and s.missing_reason is None
    assert s.mean == pytest.approx(vals.mean()) and s.std == pytest.approx(vals.std())
    assert (s.min, s.max, s.median) == (1.0, 5.0, 3.0)
    assert s.valid_fraction == pytest.approx(4 / 6)


def test_depth_stats_missing_is_nan_with_reason_never_zero():
    mask = np.ones((2, 2), bool)
    s = depth_stats(None, mask, "sensor")
    assert math.isnan(s.median) and s.missing_reason == "no depth image" and not s.valid
    s = depth_stats(np.full((2, 2), np.nan, np.float32), mask, "sensor")
    assert math.isnan(s.mean) and s.missing_reason == "no valid depth pixels under the mask"
    s = depth_stats(np.ones((2, 2), np.float32), np.zeros((2, 2), bool), "sensor")
    assert math.isnan(s.min) and s.missing_reason == "empty mask"
    with pytest.raises(ValueError, match="does not match"):
        depth_stats(np.ones((2, 3), np.float32), mask, "sensor")


def test_centroid_on_hand_made_plane():
    # fronto-parallel plane at z = 2 m; a square centred on pixel (30, 10): fx = fy = 50, c = (20, 15)
    k = CameraIntrinsics(fx=50.0, fy=50.0, cx=20.0, cy=15.0, width=40, height=30)
    depth = np.full((30, 40), 2.0, np.float32)
    mask = np.zeros((30, 40), bool)
    mask[8:13, 28:33] = True  # u 28..32, v 8..12 -> centre (30, 10)
    c = mask_centroid_m(depth, mask, k)
    assert np.allclose(c, [(30 - 20) * 2 / 50, (10 - 15) * 2 / 50, 2.0])
    depth[8:13, 28] = np.nan  # invalid column: median over the remaining valid pixels
    c = mask_centroid_m(depth, mask, k)
    assert np.allclose(c, [(30.5 - 20) * 2 / 50, (10 - 15) * 2 / 50, 2.0])
    assert np.all(np.isnan(mask_centroid_m(None, mask, k)))
    assert metric_extent_m((28, 8, 33, 13), 2.0, k) == pytest.approx((0.2, 0.2))


def test_velocity_least_squares():
    hist = [(int(i * 1e8), np.array([0.1 * i * 0.1, 0.0, 1.0])) for i in range(6)]  # 0.1 m/s along x
    assert np.allclose(velocity_from_history(hist), [0.1, 0.0, 0.0])
    assert np.all(np.isnan(velocity_from_history(hist[:1])))
    hist.append((int(7e8), np.full(3, np.nan)))  # NaN samples are ignored
    assert np.allclose(velocity_from_history(hist), [0.1, 0.0, 0.0])


def test_ransac_rigid_recovers_camera_motion_despite_a_moving_object():
    from frs_ros.twin.ego import apply, ransac_rigid

    rng = np.random.default_rng(0)
    anchor = rng.uniform([-1, -0.5, 1], [1, 0.5, 3], size=(6, 3))  # where objects were first seen
    a = 0.2
    R = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    T_true = np.eye(4)
    T_true[:3, :3], T_true[:3, 3] = R, [0.3, -0.05, 0.2]
    cam = apply(np.linalg.inv(T_true), anchor)  # the same static points seen from the moved camera
    cam[2] += [0.4, 0.0, 0.0]  # ... except one object that really moved 0.4 m
    T, inl = ransac_rigid(cam, anchor, inlier_m=0.05)
    assert np.allclose(T, T_true, atol=1e-9) and inl.tolist() == [True, True, False, True, True, True]
    assert ransac_rigid(cam[:2], anchor[:2])[0] is None
