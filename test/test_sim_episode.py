"""Episodes: determinism, smooth camera, events reflected in per-frame GT, temporal queries."""

import numpy as np
import pytest

from frs_ros.sim import SimConfig, generate_episode
from frs_ros.sim.episode import HIDDEN_FRACTION, HIDDEN_MIN_FRAMES

CFG = SimConfig()
N = 20


@pytest.fixture(scope="module")
def episodes():
    # Seeds chosen to cover every event type at N = 20 frames (removed+occluded, removed+moved+added).
    return {s: generate_episode(s, "train", n_frames=N) for s in (1, 5)}


def test_episode_is_deterministic():
    a, b = generate_episode(2, "val", n_frames=10), generate_episode(2, "val", n_frames=10)
    assert a.events == b.events
    for fa, fb in zip(a.frames, b.frames):
        assert np.array_equal(fa.rgb, fb.rgb)
        assert np.array_equal(fa.depth, fb.depth, equal_nan=True)
        assert np.array_equal(fa.gt.instance_map, fb.gt.instance_map)
    assert [q.text for q in a.queries] == [q.text for q in b.queries]


def test_too_short_episode_rejected():
    with pytest.raises(ValueError, match="at least 2 frames"):
        generate_episode(0, "train", n_frames=1)


def test_camera_moves_smoothly(episodes):
    ep = episodes[1]
    pos = np.array([f.gt.camera_pose[:3, 3] for f in ep.frames])
    step = np.linalg.norm(np.diff(pos, axis=0), axis=1)
    assert step.max() < 0.05, "no jumps between frames"
    assert np.abs(np.diff(step)).max() < 0.01, "no sudden accelerations"
    assert np.linalg.norm(pos[-1] - pos[0]) > 0.02, "the camera actually moves"
    stamps = [f.stamp_ns for f in ep.frames]
    assert stamps == sorted(stamps) and [f.seq for f in ep.frames] == list(range(N))


def test_events_reflected_in_ground_truth(episodes):
    types = set()
    for ep in episodes.values():
        for ev in ep.events:
            types.add(ev["type"])
            iid = ev["instance_id"]
            if ev["type"] == "moved":
                p0 = ep.frames[0].gt.objects[iid].position_m
                p1 = ep.frames[-1].gt.objects[iid].position_m
                assert np.linalg.norm(p1 - p0) == pytest.approx(ev["distance_m"], abs=1e-6)
                assert np.allclose(ep.frames[ev["start"]].gt.objects[iid].position_m, p0)
            elif ev["type"] == "added":
                for k, f in enumerate(ep.frames):
                    assert (iid in f.gt.objects) == (k >= ev["frame"])
                assert not (ep.frames[ev["frame"] - 1].gt.instance_map == iid).any()
            elif ev["type"] == "removed":
                for k, f in enumerate(ep.frames):
                    assert (iid in f.gt.objects) == (k < ev["frame"])
                assert not (ep.frames[-1].gt.instance_map == iid).any()
            elif ev["type"] == "occluded":
                vis = [f.gt.objects[iid].visible_px for f in ep.frames]
                if ev["verified"]:
                    assert len(ev["hidden_frames"]) >= HIDDEN_MIN_FRAMES
                    for k in ev["hidden_frames"]:
                        assert vis[k] < HIDDEN_FRACTION * max(vis)
                        assert ev["occluder_id"] in ep.frames[k].gt.objects
                    assert vis[-1] >= CFG.min_visible_px
                occ = ev["occluder_id"]
                assert occ not in ep.frames[0].gt.objects and occ not in ep.frames[-1].gt.objects
    assert types == {"moved", "added", "removed", "occluded"}


def test_temporal_queries_match_events(episodes):
    seen = set()
    for ep in episodes.values():
        by_type = {}
        for ev in ep.events:
            by_type.setdefault(ev["type"], []).append(ev)
        for q in ep.queries:
            assert 0 <= q.frame_index < N
            assert q.spec["eval_frames"] and all(0 <= k < N for k in q.spec["eval_frames"])
            f = ep.frames[q.frame_index].gt
            if q.kind != "temporal":
                for iid in q.target_ids:
                    assert f.objects[iid].visible_px >= CFG.min_visible_px
                continue
            event = q.spec["event"]
            seen.add(event)
            assert 0 <= q.spec["event_frame"] <= q.frame_index
            (tid,) = q.target_ids
            if event == "moved":
                assert tid in {e["instance_id"] for e in by_type["moved"]}
                assert q.frame_index > max(e["end"] for e in by_type["moved"])
            elif event == "appeared":
                assert tid in {e["instance_id"] for e in by_type["added"]}
            elif event == "disappeared":
                ev = next(e for e in by_type["removed"] if e["instance_id"] == tid)
                assert max(q.spec["eval_frames"]) < ev["frame"] <= q.frame_index
                for k in q.spec["eval_frames"]:
                    assert ep.frames[k].gt.objects[tid].visible_px >= CFG.min_visible_px
            elif event == "reappeared":
                ev = next(e for e in by_type["occluded"] if e["instance_id"] == tid)
                assert ev["verified"] and not ev["also_hidden"] and ev["end"] < q.frame_index
            if event != "disappeared":
                assert f.objects[tid].visible_px >= CFG.min_visible_px
    assert {"moved", "disappeared"} <= seen
