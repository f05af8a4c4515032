"""discover: between keyframes, the flow tracker finds objects that come into view by depth (through
the real Tracker; no keyframe, no model)."""

import numpy as np

from frs_ros.masks import mask_iou
from frs_ros.twin.config import TwinConfig
from frs_ros.twin.synthetic import Shape2D, make_frame
from frs_ros.twin.tracker import UNLABELED, Tracker

DT = 100_000_000  # 10 Hz
MUG = Shape2D(1, "mug", "disc", 15, 20, 10, 10, 1.0, (200, 30, 30))
BOTTLE = Shape2D(2, "bottle", "rect", 45, 25, 8, 16, 1.2, (30, 160, 60))


def _run(scenes, **over):
    # keyframes only on the first frame (interval 100, no coverage-drop keyframes)
    cfg = dict(propagator="flow", keyframe_interval=100, retire_after_s=10, coverage_drop=1e-6)
    tr = Tracker(TwinConfig(**{**cfg, **over}))
    twins, frames = [], []
    for i, shapes in enumerate(scenes):
        frames.append(make_frame(shapes, stamp_ns=i * DT, seq=i))
        twins.append(tr.update(frames[-1]))
    tr.close()
    return tr, twins, frames


def test_an_object_appearing_between_keyframes_is_tracked_at_once_and_unlabelled():
    bowl = Shape2D(3, "bowl", "rect", 20, 38, 12, 6, 0.8, (40, 80, 200))
    scenes = [[MUG, BOTTLE] + ([bowl] if i >= 4 else []) for i in range(8)]
    tr, twins, frames = _run(scenes)
    assert tr.stats["keyframes"] == 1 and tr.stats["discovered"] == 1
    new = [o for o in twins[4].objects if o.track_id not in {p.track_id for p in twins[3].objects}]
    assert len(new) == 1 and new[0].visible and new[0].label == UNLABELED
    gt = frames[4].gt.instance_map == 3
    assert mask_iou(new[0].mask.decode(), gt) > 0.9
    assert np.isclose(new[0].depth.median, 0.8)  # depth statistics exact on the discovered mask
    # it stays one track while it stays in view
    assert all(o.visible for o in twins[-1].objects) and len(twins[-1].objects) == 3
    _, off, _ = _run(scenes, discover=False)
    assert sum(o.visible for o in off[-1].objects) == 2  # without it the bowl waits for a keyframe


def test_an_object_sliding_into_view_grows_as_one_track():
    # a box entering from the left edge, 6 px more of it in view each frame
    def box(i):
        return Shape2D(4, "box", "rect", -8 + 6 * i, 36, 16, 10, 0.9, (130, 80, 40))

    scenes = [[MUG, BOTTLE]] + [[MUG, BOTTLE, box(i)] for i in range(1, 5)]
    tr, twins, frames = _run(scenes)
    assert tr.stats["keyframes"] == 1
    ids = {o.track_id for o in twins[-1].objects} - {o.track_id for o in twins[0].objects}
    assert len(ids) == 1  # one track, not one per frame
    (tid,) = ids
    o = twins[-1].get(tid)
    gt = frames[-1].gt.instance_map == 4
    assert o.visible and mask_iou(o.mask.decode(), gt) > 0.8


def test_no_metric_depth_no_discovery_and_the_segmenter_propagator_is_unchanged():
    bowl = Shape2D(3, "bowl", "rect", 20, 38, 12, 6, 0.8, (40, 80, 200))
    scenes = [[MUG, BOTTLE] + ([bowl] if i >= 2 else []) for i in range(4)]
    tr = Tracker(TwinConfig(propagator="flow", keyframe_interval=100, coverage_drop=1e-6))
    for i, shapes in enumerate(scenes):
        tr.update(make_frame(shapes, stamp_ns=i * DT, seq=i, with_depth=False))
    assert tr.stats["discovered"] == 0
    tr, _, _ = _run(scenes, propagator="segmenter")
    assert tr.stats["discovered"] == 0


def test_a_discovered_track_the_next_keyframe_does_not_confirm_is_dropped():
    # a bowl shows up for two frames between keyframes (0 and 5): tracked meanwhile, then the
    # keyframe, which does not see it, drops it rather than keeping a "lost" track nobody segmented
    bowl = Shape2D(3, "bowl", "rect", 20, 38, 12, 6, 0.8, (40, 80, 200))
    scenes = [[MUG, BOTTLE] + ([bowl] if 2 <= i < 4 else []) for i in range(7)]
    tr, twins, _ = _run(scenes, keyframe_interval=5)
    assert tr.stats["discovered"] == 1 and len(twins[2].objects) == 3
    assert len(twins[4].objects) == 3 and sum(o.visible for o in twins[4].objects) == 2  # lost, not yet dropped
    assert tr.stats["keyframes"] == 2 and len(twins[5].objects) == 2  # the keyframe dropped it


def test_discovered_area_does_not_hide_a_coverage_drop():
    # a box found by depth at frame 3, then the bottle leaves at frame 5: the established tracks'
    # area falls below coverage_drop x the keyframe's, so a keyframe is due although the box's
    # area would make up for it
    box = Shape2D(4, "box", "rect", 25, 38, 16, 10, 0.9, (130, 80, 40))
    scenes = [[MUG] + ([BOTTLE] if i < 5 else []) + ([box] if i >= 3 else []) for i in range(7)]
    tr, twins, _ = _run(scenes, coverage_drop=0.7)
    assert tr.stats["discovered"] == 1
    assert [t.keyframe_ns for t in twins] == [0] * 5 + [5 * DT] * 2


def test_at_most_eight_provisional_tracks_the_largest_blobs_first():
    # twelve boxes of different sizes appear at once between keyframes (the mug keeps the tracker
    # from keyframing for want of tracks): only the eight largest become tracks
    boxes = [Shape2D(10 + i, "box", "rect", 6 + 10 * (i % 6), 32 + 10 * (i // 6), 7 + i % 3, 6 + i // 6, 0.9,
                     (130, 80, 40)) for i in range(12)]  # 35 to 63 px each
    mug = Shape2D(1, "mug", "disc", 15, 12, 10, 10, 1.0, (200, 30, 30))
    tr, twins, frames = _run([[mug]] * 2 + [[mug] + boxes] * 2)
    assert tr.stats["keyframes"] == 1 and tr.stats["discovered"] == 8
    areas = sorted((int((frames[2].gt.instance_map == b.instance_id).sum()) for b in boxes), reverse=True)
    got = sorted((o.area_px for o in twins[2].objects if o.track_id != 1), reverse=True)
    assert len(areas) == 12 and got == areas[:8]
    assert all(o.label == UNLABELED for o in twins[2].objects if o.track_id != 1)  # no model ran on them



W, H = 160, 120  # a reach of 8 px at this size (16 px for a 320 px side)
POLE = Shape2D(7, "pole", "rect", 74, 60, 6, 60, 0.6, (220, 220, 220))


def _box(cx: float, w: float = 40, iid: int = 5, depth: float = 1.0) -> Shape2D:
    return Shape2D(iid, "box", "rect", cx, 60, w, 20, depth, (140, 90, 40))


def _run_wide(scenes, **over):
    cfg = dict(propagator="flow", keyframe_interval=100, retire_after_s=10, coverage_drop=1e-6)
    tr = Tracker(TwinConfig(**{**cfg, **over}))
    twins, frames = [], []
    for i, shapes in enumerate(scenes):
        frames.append(make_frame(shapes, width=W, height=H, stamp_ns=i * DT, seq=i))
        twins.append(tr.update(frames[-1]))
    tr.close()
    return tr, twins, frames


def test_an_edge_coming_out_past_a_thin_occluder_joins_the_object_behind_it():
    # a plain box (no texture for the flow to follow) slides right behind a pole 0.4 m in front of
    # it; its leading edge comes out on the far side of the pole, apart from the box's mask: the
    # edge is more of the box (same depth, reached across the pole), not a new object
    scenes = [[_box(50), POLE], [_box(56), POLE], [_box(62), POLE]]
    tr, twins, frames = _run_wide(scenes)
    assert tr.stats["keyframes"] == 1 and tr.stats["discovered"] == 0
    assert len(twins[-1].objects) == 2  # the box and the pole, one track each
    box_tid = next(o.track_id for o in twins[0].objects if o.label == "box")
    gt = frames[-1].gt.instance_map == 5
    right = gt & (np.arange(W) > 77)[None, :]  # the part past the pole
    assert right.sum() >= 60
    m = twins[-1].get(box_tid).mask.decode()
    assert (m & right).sum() >= 0.9 * right.sum()
    assert np.isclose(twins[-1].get(box_tid).depth.median, 1.0)  # nothing of the pole or the floor


def test_a_new_object_across_visible_background_is_not_joined_to_a_track_at_its_depth():
    # the same box, and a second box at the same depth appearing 7 px to its right with background
    # (farther) between them: a new object, whose reach stops at the background
    scenes = [[_box(40)], [_box(40)], [_box(40), _box(75, w=14, iid=6)]]
    tr, twins, frames = _run_wide(scenes)
    assert tr.stats["discovered"] == 1 and len(twins[-1].objects) == 2
    new = [o for o in twins[-1].objects if o.label == UNLABELED]
    assert len(new) == 1 and mask_iou(new[0].mask.decode(), frames[-1].gt.instance_map == 6) > 0.9


def test_an_object_larger_than_the_track_it_reaches_is_not_that_track():
    # a sliver of a box stands beside the pole; a large box at the sliver's depth appears on the
    # pole's far side: a new object (an edge is the smaller part of an object), not the sliver
    sliver = Shape2D(5, "box", "rect", 69.5, 60, 4, 20, 1.0, (140, 90, 40))  # x 68-71, the pole 72-76
    big = _box(91.5, w=30, iid=6)  # x 77-106
    scenes = [[sliver, POLE], [sliver, POLE], [sliver, POLE, big]]
    tr, twins, frames = _run_wide(scenes, min_mask_area_px=20)
    assert tr.stats["discovered"] == 1
    sl = next(o for o in twins[0].objects if o.label == "box")
    assert mask_iou(twins[-1].get(sl.track_id).mask.decode(), frames[-1].gt.instance_map == 5) > 0.9
    new = [o for o in twins[-1].objects if o.label == UNLABELED]
    assert len(new) == 1 and mask_iou(new[0].mask.decode(), frames[-1].gt.instance_map == 6) > 0.9
