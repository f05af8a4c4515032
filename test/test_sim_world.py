"""World and renderer: determinism, occlusion, depth geometry, 16UC1, frame contracts."""

import numpy as np
import pytest

from frs_ros.sim import SimConfig, depth_from_16uc1_mm, depth_to_16uc1_mm, generate_image
from frs_ros.sim.ontology import get_category
from frs_ros.sim.render import Background, CameraPose
from frs_ros.sim.world import Scene, WorldObject, make_rng, render_frame

CFG = SimConfig()


def _obj(iid, cat, base, dims=None, color="red", material="plastic"):
    c = get_category(cat)
    dims = np.asarray(c.extent) * c.size_range_m[1] if dims is None else np.asarray(dims, dtype=float)
    return WorldObject(iid, c, color, material, dims, 0.0, [(0, np.asarray(base, dtype=float))])


def _scene(objects, cam_height=0.2):
    # Camera looks horizontally along +y, so optical depth z equals world y - 0.
    cam = CameraPose.look_at(np.array([0.0, 0.0, cam_height]), np.array([0.0, 5.0, cam_height]))
    bg = Background(floor_z=0.0, wall_y=6.0, floor_color=(0.5, 0.5, 0.5), wall_color=(0.8, 0.8, 0.8))
    return Scene("room", bg, objects, [cam], np.array([0.0, -0.5, 1.0]) / np.sqrt(1.25), "train", 0)


def _render(scene):
    return render_frame(scene, 0, CFG, np.random.default_rng(0))


def test_same_seed_same_split_is_bit_identical():
    a, b = generate_image(7, "train"), generate_image(7, "train")
    fa, fb = a.frames[0], b.frames[0]
    assert np.array_equal(fa.rgb, fb.rgb)
    assert np.array_equal(fa.depth, fb.depth, equal_nan=True)
    assert np.array_equal(fa.gt.instance_map, fb.gt.instance_map)
    assert [q.text for q in a.queries] == [q.text for q in b.queries]
    c = generate_image(7, "val")
    assert not np.array_equal(fa.rgb, c.frames[0].rgb)


def test_frame_contract_and_visible_counts():
    s = generate_image(3, "train")
    f = s.frames[0]
    assert f.rgb.shape == (240, 320, 3) and f.rgb.dtype == np.uint8
    assert f.depth.dtype == np.float32 and f.depth.shape == (240, 320)
    invalid = np.isnan(f.depth).mean()
    assert 0.0 < invalid < 0.3, "some but not most depth pixels are invalid"
    assert np.nanmin(f.depth) > 0.1
    counts = np.bincount(f.gt.instance_map.ravel())
    for iid, o in f.gt.objects.items():
        assert o.visible_px == (counts[iid] if iid < len(counts) else 0)
        assert o.extras["silhouette_px"] >= o.visible_px
        assert o.position_m.shape == (3,)
    assert f.gt.camera_pose.shape == (4, 4)
    assert 3 <= len(f.gt.objects) <= 10


def test_object_depths_within_configured_range():
    for seed in range(4):
        for o in generate_image(seed, "train").frames[0].gt.objects.values():
            z = o.extras["centroid_cam_m"][2]
            assert CFG.depth_range_m[0] <= z <= CFG.depth_range_m[1]


def test_front_object_occludes_the_one_behind():
    front = _obj(1, "cardboard box", (0.0, 1.0, 0.0), dims=(0.5, 0.3, 0.45), color="brown", material="cardboard")
    back = _obj(2, "mug", (0.0, 2.0, 0.0), dims=(0.1, 0.1, 0.12), color="blue")
    f = _render(_scene([front, back]))
    gt = f.gt
    v, u = 120, 160  # image centre looks along the optical axis at height 0.2 m
    assert gt.instance_map[v, u] == 1
    assert gt.objects[2].visible_px == 0 and gt.objects[2].extras["silhouette_px"] > 0
    # Same scene without the box: the mug is visible where the box was.
    g = _render(_scene([_obj(2, "mug", (0.0, 2.0, 0.0), dims=(0.1, 0.1, 0.12), color="blue")])).gt
    assert g.objects[2].visible_px > 0
    # Depth at the centre is the box's front face (y = 1.0 - 0.15), not the mug's.
    d = f.depth[v - 2 : v + 3, u - 2 : u + 3]
    assert np.nanmedian(d) == pytest.approx(0.85, abs=0.01)


def test_sphere_depth_matches_geometry():
    r = 0.11
    ball = _obj(1, "soccer ball", (0.1, 1.5, 0.2 - r), dims=(2 * r, 2 * r, 2 * r), color="white", material="leather")
    f = _render(_scene([ball], cam_height=0.2))
    mask = f.gt.mask(1)
    assert mask.sum() > 200
    vs, us = np.nonzero(mask & ~np.isnan(f.depth))
    pts = f.intrinsics.deproject(us, vs, f.depth[vs, us].astype(np.float64))
    # Optical frame of a horizontal camera: x = world x, y = -(world z - 0.2), z = world y.
    centre_cam = np.array([0.1, 0.0, 1.5])
    dist = np.linalg.norm(pts - centre_cam, axis=1)
    assert np.median(np.abs(dist - r)) < 0.005
    cen = f.gt.objects[1].extras["centroid_cam_m"]
    assert np.allclose(cen, centre_cam, atol=1e-9)


def test_16uc1_round_trip():
    depth = np.array([[0.5, np.nan], [2.3456, 70.0]], dtype=np.float32)
    mm = depth_to_16uc1_mm(depth)
    assert mm.dtype == np.uint16
    assert mm.tolist() == [[500, 0], [2346, 0]]
    back = depth_from_16uc1_mm(mm)
    assert back[0, 0] == pytest.approx(0.5) and back[1, 0] == pytest.approx(2.346)
    assert np.isnan(back[0, 1]) and np.isnan(back[1, 1])
    f = generate_image(1, "train").frames[0]
    rt = depth_from_16uc1_mm(depth_to_16uc1_mm(f.depth))
    assert np.array_equal(np.isnan(rt), np.isnan(f.depth))
    assert np.nanmax(np.abs(rt - f.depth)) <= 0.0005 + 1e-6
    with pytest.raises(ValueError, match="uint16"):
        depth_from_16uc1_mm(mm.astype(np.int32))


def test_config_validation():
    with pytest.raises(ValueError, match="n_objects"):
        SimConfig(n_objects=(5, 2))
    with pytest.raises(ValueError, match="depth_range_m"):
        SimConfig(depth_range_m=(2.0, 1.0))
    with pytest.raises(ValueError, match="seed"):
        make_rng(CFG, "train", 1, -1)


def test_identical_across_processes_with_different_hash_seeds():
    """Set/dict iteration over strings must not leak into the output (PYTHONHASHSEED)."""
    import os
    import subprocess
    import sys

    code = (
        "import hashlib\n"
        "from frs_ros.sim import generate_image\n"
        "h = hashlib.sha1()\n"
        "for s in range(6):\n"
        "    smp = generate_image(s, 'test')\n"
        "    h.update(smp.frames[0].rgb.tobytes())\n"
        "    h.update(repr([(q.text, q.target_ids, sorted(q.spec.items(), key=str)) for q in smp.queries]).encode())\n"
        "print(h.hexdigest())\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = []
    for hash_seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed, PYTHONPATH=root)
        out.append(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout)
    assert out[0] == out[1]
