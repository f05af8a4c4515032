"""The flow and hold propagators (frs_ros.twin.backends.flow / hold) on hand-built frames."""

import numpy as np

from frs_ros.masks import mask_iou
from frs_ros.twin.backends.flow import FlowPropagator, warp_mask
from frs_ros.twin.backends.hold import HoldPropagator
from frs_ros.twin.config import TwinConfig
from frs_ros.twin.synthetic import Shape2D, make_frame

DT = 100_000_000


def _frame(i, occluder=False, with_gt=True):
    shapes = [Shape2D(1, "mug", "disc", 30 + 2 * i, 40, 20, 20, 1.0, (200, 30, 30)),  # 2 px/frame right
              Shape2D(2, "bottle", "rect", 90, 50, 16, 30, 1.2, (30, 160, 60))]  # still
    if occluder:  # a nearer box that slides over the mug faster than it moves
        shapes.append(Shape2D(3, "box", "rect", 10 + 5 * i, 40, 10, 30, 0.5, (40, 40, 200)))
    return make_frame(shapes, width=128, height=96, stamp_ns=i * DT, seq=i, with_gt=with_gt)


def _run(prop, frames):
    prop.propagate(frames[0])
    imap = frames[0].gt.instance_map
    prop.set_tracks(frames[0], {1: imap == 1, 2: imap == 2})
    return [prop.propagate(f) for f in frames[1:]]


def test_flow_follows_a_moving_object_and_hold_does_not():
    frames = [_frame(i) for i in range(8)]
    last = frames[-1].gt.instance_map
    flow = _run(FlowPropagator(TwinConfig()), frames)[-1]
    hold = _run(HoldPropagator(TwinConfig()), frames)[-1]
    assert mask_iou(flow[1], last == 1) > 0.9 and mask_iou(flow[2], last == 2) > 0.95
    assert mask_iou(hold[1], last == 1) < 0.3 and mask_iou(hold[2], last == 2) == 1.0  # 14 px behind


def test_depth_gate_drops_pixels_that_land_on_something_nearer():
    # identity motion; a nearer occluder now covers the mask's right half: those pixels go
    mask = np.zeros((20, 30), bool)
    mask[5:15, 5:25] = True
    src = FlowPropagator(TwinConfig()).flow.identity(20, 30)
    d_before = np.full((20, 30), 1.0, np.float32)
    d_now = d_before.copy()
    d_now[:, 15:] = 0.5
    d_now[0:8, 5:8] = np.nan  # no depth: kept (unknown is not "occluded")
    gated = warp_mask(mask, src, 0.0, d_now, d_before, gate_m=0.15)
    assert np.array_equal(gated, mask & (np.arange(30) < 15)[None, :])
    assert np.array_equal(warp_mask(mask, src, 0.0, d_now, d_before, gate_m=0.0), mask)  # 0 = no gate
    assert np.array_equal(warp_mask(mask, src, 0.0, d_now, d_before, gate_m=0.6), mask)  # 0.5 m apart < 0.6 m


def test_flow_tracks_past_an_occluder_without_painting_it():
    frames = [_frame(i, occluder=True) for i in range(9)]
    out = _run(FlowPropagator(TwinConfig()), frames)
    for o, f in zip(out, frames[1:]):
        assert int((o[1] & (f.gt.instance_map == 3)).sum()) == 0  # the mug's id never covers the box
        if o[1].any():  # what is left of the mug is the mug (pixels it loses come back at a keyframe)
            assert (o[1] & (f.gt.instance_map == 1)).sum() >= 0.8 * o[1].sum()


def test_bring_forward_moves_a_marked_frames_masks_to_the_latest_frame():
    frames = [_frame(i) for i in range(7)]
    p = FlowPropagator(TwinConfig())
    p.propagate(frames[0])
    p.mark(frames[0])  # a keyframe of frame 0 goes to the background
    for f in frames[1:]:
        p.propagate(f)
    m0 = frames[0].gt.instance_map == 1
    (fwd,) = p.bring_forward([m0])
    assert mask_iou(fwd, frames[-1].gt.instance_map == 1) > 0.9 and mask_iou(m0, frames[-1].gt.instance_map == 1) < 0.5
    assert p.bring_forward([m0])[0].sum() == m0.sum()  # the mark is used once


def test_flow_never_reads_ground_truth():
    outs = []
    for with_gt in (True, False):
        frames = [_frame(i, with_gt=with_gt) for i in range(5)]
        ref = _frame(0)  # GT masks to seed with; the propagated frames may have none
        p = FlowPropagator(TwinConfig())
        p.propagate(frames[0])
        p.set_tracks(frames[0], {1: ref.gt.instance_map == 1})
        outs.append([p.propagate(f)[1] for f in frames[1:]])
    assert all(np.array_equal(a, b) for a, b in zip(*outs))
