"""Hand-computed cases for frs_ros.metrics (gIoU/cIoU as LISA, J/F as davis2017)."""

import numpy as np
import pytest
from scipy import ndimage

from frs_ros import metrics as M


def _m(rows):
    return np.array(rows, dtype=bool)


# ------------------------------------------------------------------ IoU / gIoU / cIoU


def test_iou_basic_and_empty_conventions():
    pred = _m([[1, 1, 0], [0, 0, 0]])
    gt = _m([[1, 1, 1], [0, 0, 0]])
    # I = 2, U = 3
    assert M.intersection_union(pred, gt) == (2, 3)
    assert M.iou(pred, gt) == pytest.approx(2 / 3)
    empty = np.zeros((2, 3), bool)
    assert M.iou(empty, empty) == 1.0  # LISA: no-object target predicted empty
    assert M.iou(empty, empty, empty_union=M.SEG_ZERO_EMPTY_UNION) == 0.0
    assert M.iou(pred, empty) == 0.0  # I = 0, U = 2
    assert M.iou(empty, gt) == 0.0


def test_iou_ignore_pixels_leave_both_i_and_u():
    label = np.array([[1, 1, 255], [0, 0, 255]])
    gt, ignore = M.split_label_mask(label)
    pred = _m([[1, 0, 1], [1, 0, 1]])
    # column 2 ignored: pred {(0,0),(1,0)}, gt {(0,0),(0,1)} -> I = 1, U = 3
    assert M.intersection_union(pred, gt, ignore) == (1, 3)
    assert M.iou(pred, gt, ignore) == pytest.approx(1 / 3)
    # without ignore the pred pixels in column 2 would count: U = 5
    assert M.intersection_union(pred, gt) == (1, 5)
    # everything ignored -> empty union
    assert M.iou(pred, gt, np.ones_like(pred)) == 1.0


def test_split_label_mask_rejects_other_values():
    with pytest.raises(ValueError, match="0, 1 and 255"):
        M.split_label_mask(np.array([[0, 2]]))


def test_giou_ciou_hand_case_lisa_vs_segzero():
    a = np.zeros((2, 3), bool)
    s1 = (_m([[1, 1, 0], [0, 0, 0]]), _m([[1, 1, 1], [0, 0, 0]]))  # I=2 U=3
    s2 = (a, a)  # I=0 U=0
    s3 = (_m([[0, 0, 0], [0, 0, 1]]), a)  # I=0 U=1
    preds, gts = zip(s1, s2, s3)
    g, c = M.giou_ciou(preds, gts)
    assert g == pytest.approx((2 / 3 + 1 + 0) / 3)  # 5/9
    assert c == pytest.approx(2 / 4)
    g0, c0 = M.giou_ciou(preds, gts, empty_union=M.SEG_ZERO_EMPTY_UNION)
    assert g0 == pytest.approx((2 / 3) / 3)
    assert c0 == pytest.approx(0.5)


def test_ciou_all_empty_and_accumulator_errors():
    acc = M.GIoUCIoU()
    with pytest.raises(RuntimeError):
        _ = acc.giou
    a = np.zeros((3, 3), bool)
    acc.add(a, a)
    assert acc.giou == 1.0 and acc.ciou == 0.0 and acc.n == 1


def test_shape_mismatch_raises_value_error():
    with pytest.raises(ValueError, match="shapes differ"):
        M.iou(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(ValueError):
        M.f_boundary(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="2-D"):
        M.j_region(np.zeros((2, 3, 1)), np.zeros((2, 3, 1)))
    with pytest.raises(ValueError):
        M.giou_ciou([np.zeros((2, 2))], [])


# ------------------------------------------------------------------ J / F (davis)


def test_j_region_davis_conventions():
    a = np.zeros((4, 4), bool)
    assert M.j_region(a, a) == 1.0
    b = a.copy()
    b[1, 1] = True
    assert M.j_region(b, a) == 0.0
    assert M.j_region(b, b) == 1.0


def test_seg2bmap_single_pixel_and_square():
    seg = np.zeros((5, 5), bool)
    seg[2, 2] = True
    # boundary = the pixel itself (east is background) plus west (east neighbour in),
    # north (south neighbour in) and north-west (south-east neighbour in).
    expected = np.zeros((5, 5), bool)
    expected[1:3, 1:3] = True
    np.testing.assert_array_equal(M.seg2bmap(seg), expected)
    sq = np.zeros((10, 10), bool)
    sq[3:7, 3:7] = True  # rows/cols 3..6 -> outline of rows 2..6, cols 2..6
    ring = np.zeros((10, 10), bool)
    ring[2:7, 2:7] = True
    ring[3:6, 3:6] = False
    np.testing.assert_array_equal(M.seg2bmap(sq), ring)
    # full image: davis' map is empty (no background anywhere, corner cleared)
    assert not M.seg2bmap(np.ones((4, 4), bool)).any()


def test_boundary_tolerance_px():
    assert M.boundary_tolerance_px((5, 5)) == 1.0  # ceil(0.008 * 7.07) = ceil(0.057)
    assert M.boundary_tolerance_px((100, 100)) == 2.0  # ceil(1.131)
    assert M.boundary_tolerance_px((480, 854)) == 8.0  # ceil(0.008 * 979.6) = ceil(7.84)
    assert M.boundary_tolerance_px((100, 100), 3) == 3.0  # >= 1 means pixels
    with pytest.raises(ValueError):
        M.boundary_tolerance_px((5, 5), 0.0)


def test_f_boundary_hand_cases():
    a = np.zeros((5, 5), bool)
    gt = a.copy()
    gt[2, 2] = True  # boundary block rows 1-2, cols 1-2
    assert M.f_boundary(a, a) == 1.0  # both empty
    assert M.f_boundary(gt, a) == 0.0  # one empty: P=0, R=1 -> F=0
    assert M.f_boundary(a, gt) == 0.0  # P=1, R=0 -> F=0
    one = a.copy()
    one[2, 3] = True  # boundary cols 2-3; each pixel within 1 px of gt's block
    assert M.boundary_precision_recall(one, gt) == (1.0, 1.0)
    two = a.copy()
    two[2, 4] = True  # boundary cols 3-4: col 3 matched (dist 1), col 4 not (dist 2)
    assert M.boundary_precision_recall(two, gt) == (0.5, 0.5)
    assert M.f_boundary(two, gt) == pytest.approx(0.5)
    assert M.j_region(two, gt) == 0.0
    assert M.jf(two, gt) == pytest.approx(0.25)
    # tolerance 2 px (given in pixels) matches both columns
    assert M.f_boundary(two, gt, bound_th=2) == 1.0


def test_f_boundary_tolerance_edge_shift():
    gt = np.zeros((100, 100), bool)  # tolerance ceil(0.008 * 141.4) = 2 px
    gt[20:40, 20:40] = True
    shifted2 = np.roll(gt, 2, axis=1)
    shifted3 = np.roll(gt, 3, axis=1)
    assert M.f_boundary(shifted2, gt) == 1.0  # every boundary pixel within 2 px
    assert M.f_boundary(shifted3, gt) < 1.0  # vertical edges now 3 px apart
    assert M.f_boundary(shifted3, gt, bound_th=3) == 1.0


def _f_bruteforce(pred, gt, r):
    """Independent F: Euclidean distance transform instead of disk dilation."""
    bp, bg = M.seg2bmap(pred), M.seg2bmap(gt)
    if not bp.any() and not bg.any():
        return 1.0
    if not bp.any() or not bg.any():
        return 0.0
    d_to_gt = ndimage.distance_transform_edt(~bg)
    d_to_pred = ndimage.distance_transform_edt(~bp)
    p = np.mean(d_to_gt[bp] <= r)
    rec = np.mean(d_to_pred[bg] <= r)
    return 0.0 if p + rec == 0 else 2 * p * rec / (p + rec)


def test_f_boundary_matches_independent_implementation_on_random_masks():
    rng = np.random.default_rng(0)
    for k in range(40):
        h, w = rng.integers(8, 60, size=2)
        base = rng.random((h, w)) < rng.uniform(0.05, 0.6)
        pred = ndimage.binary_opening(base) if k % 2 else base
        gt = np.roll(base, rng.integers(-3, 4), axis=int(rng.integers(0, 2))) ^ (rng.random((h, w)) < 0.05)
        for th in (M.DAVIS_BOUND_TH, 1, 2, 3):
            r = M.boundary_tolerance_px((h, w), th)
            assert M.f_boundary(pred, gt, th) == pytest.approx(_f_bruteforce(pred, gt, r), abs=1e-12)


def test_void_pixels_removed_before_boundary():
    gt = np.zeros((5, 5), bool)
    gt[2, 2] = True
    pred = gt.copy()
    pred[0, 4] = True
    void = np.zeros((5, 5), bool)
    void[0, 4] = True
    assert M.f_boundary(pred, gt) < 1.0
    assert M.f_boundary(pred, gt, void=void) == 1.0


def test_video_jf_frame_then_expression_mean():
    gt = np.zeros((5, 5), bool)
    gt[2, 2] = True
    two = np.zeros((5, 5), bool)
    two[2, 4] = True
    empty = np.zeros((5, 5), bool)
    # expression A: frames (perfect, J=0/F=0.5) -> J=0.5, F=0.75
    # expression B: one frame, both empty -> J=1, F=1
    res = M.video_jf([([gt, two], [gt, gt]), ([empty], [empty])])
    assert res.per_expression[0] == pytest.approx((0.5, 0.75))
    assert res.j == pytest.approx(0.75)  # not frame-weighted (which would give 2/3)
    assert res.f == pytest.approx(0.875)
    assert res.jf == pytest.approx(0.8125)
    with pytest.raises(ValueError):
        M.video_jf([([gt], [gt, gt])])
    with pytest.raises(ValueError):
        M.video_jf([])


def test_metrics_and_data_are_ros_free():
    import subprocess
    import sys

    code = (
        "import sys, frs_ros.metrics, frs_ros.data; "
        "bad = [m for m in sys.modules if m.startswith('rclpy') or m.endswith('_msgs')]; "
        "sys.exit(1 if bad else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# --- paired_bootstrap ------------------------------------------------------------------------

def test_paired_bootstrap_same_system_is_zero_everywhere():
    from frs_ros.metrics import PAIRED_STATS, paired_bootstrap

    a = np.random.default_rng(0).random((40, 1))
    d = paired_bootstrap(a, a.copy(), PAIRED_STATS["gIoU"], n_boot=500)
    assert d.delta == 0.0 and d.lo == 0.0 and d.hi == 0.0
    assert (d.wins, d.losses, d.ties, d.n) == (0, 0, 40, 40)


def test_paired_bootstrap_interval_excludes_zero_only_for_a_consistent_gain():
    from frs_ros.metrics import PAIRED_STATS, paired_bootstrap

    rng = np.random.default_rng(1)
    a = rng.random((60, 1)) * 0.8
    better = paired_bootstrap(a, a + 0.05, PAIRED_STATS["gIoU"], n_boot=1000)
    assert better.delta == pytest.approx(0.05) and better.lo > 0.0 and better.wins == 60
    # one query flipped from 0 to 1 among 60: +1/60 but not distinguishable from chance
    b = a.copy()
    b[0, 0], a[0, 0] = 1.0, 0.0
    one = paired_bootstrap(a, b, PAIRED_STATS["gIoU"], n_boot=2000)
    assert one.delta == pytest.approx(1 / 60) and one.lo == 0.0 < one.hi and (one.wins, one.losses) == (1, 0)
    # the paired interval is much narrower than the spread of the per-query scores themselves
    assert better.hi - better.lo < 1e-9 < a.std()


def test_paired_bootstrap_ciou_is_a_ratio_of_sums():
    from frs_ros.metrics import PAIRED_STATS, paired_bootstrap

    a = np.array([[10, 100], [0, 10]], float)   # sum I / sum U = 10 / 110
    b = np.array([[90, 100], [0, 10]], float)   # 90 / 110
    d = paired_bootstrap(a, b, PAIRED_STATS["cIoU"], n_boot=200)
    assert d.delta == pytest.approx(80 / 110)
    assert PAIRED_STATS["cIoU"](np.zeros((3, 2))) == 0.0


def test_paired_bootstrap_rejects_unpaired_input():
    from frs_ros.metrics import MetricInputError, PAIRED_STATS, paired_bootstrap

    with pytest.raises(MetricInputError, match="same"):
        paired_bootstrap(np.zeros((3, 1)), np.zeros((4, 1)), PAIRED_STATS["gIoU"])
    with pytest.raises(MetricInputError, match="at least one"):
        paired_bootstrap(np.zeros((0, 1)), np.zeros((0, 1)), PAIRED_STATS["gIoU"])
    with pytest.raises(MetricInputError, match="level"):
        paired_bootstrap(np.zeros((2, 1)), np.zeros((2, 1)), PAIRED_STATS["gIoU"], level=1.5)
    with pytest.raises(MetricInputError, match="n_boot"):
        paired_bootstrap(np.zeros((2, 1)), np.zeros((2, 1)), PAIRED_STATS["gIoU"], n_boot=0)


def test_counts_paths_agree_with_the_mask_paths():
    rng = np.random.default_rng(5)
    acc_masks, acc_counts = M.GIoUCIoU(), M.GIoUCIoU()
    for _ in range(6):
        p, g = rng.random((12, 12)) > 0.6, rng.random((12, 12)) > 0.6
        assert acc_counts.add_counts(*M.intersection_union(p, g)) == acc_masks.add(p, g) == M.iou(p, g)
    assert acc_counts.add_counts(0, 0) == acc_masks.add(np.zeros((3, 3)), np.zeros((3, 3))) == 1.0
    assert (acc_counts.giou, acc_counts.ciou) == (acc_masks.giou, acc_masks.ciou)
    assert M.iou_of_counts(0, 0, empty_union=0.0) == 0.0
    per = [(0.5, 0.25), (1.0, 0.75)]
    v = M.VideoJF.of_expressions(per)
    assert (v.j, v.f, v.jf, v.per_expression) == (0.75, 0.5, 0.625, tuple(per))
    with pytest.raises(M.MetricInputError, match="at least one expression"):
        M.VideoJF.of_expressions([])
