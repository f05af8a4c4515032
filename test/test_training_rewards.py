"""Rewards of GRPO (frs_ros.training.rewards): hand-computed cases, empty masks included."""

import numpy as np
import pytest

from frs_ros.masks import rle_encode
from frs_ros.training import rewards as R


def _mask(shape, box):
    m = np.zeros(shape, dtype=bool)
    x0, y0, x1, y1 = box
    m[y0:y1, x0:x1] = True
    return m


GOOD = "<reason>the mug is red</reason><answer>3</answer>"
GOOD_TOOL = '<reason>check colour</reason><plan>describe(3)</plan><results>describe(3): red</results><answer>3</answer>'
NONE = "<reason>nothing fits</reason><answer>none</answer>"


@pytest.mark.parametrize("text,expected", [
    (GOOD, 0.5),
    (GOOD_TOOL, 0.5),
    (NONE, 0.5),
    ("", -0.5),
    ("<reason>x</reason>", -0.5),                              # no answer
    ("<answer>3</answer><reason>x</reason>", -0.5),            # wrong order
    ("<reason>x</reason><answer>3</answer> trailing", -0.5),   # text after the answer
    ("<reason>x<answer>3</answer>", -0.5),                     # reason not closed
])
def test_format_reward(text, expected):
    assert R.format_reward(text) == expected


def test_accuracy_threshold_hand_computed():
    gt = _mask((10, 10), (0, 0, 4, 5))                      # 20 px
    assert R.accuracy_reward(gt, gt) == 1.0
    half = _mask((10, 10), (0, 0, 2, 5))                     # 10 px inside gt: IoU = 10/20 = 0.5
    assert R.accuracy_reward(half, gt) == 0.0                # > 0.5 required, 0.5 is not enough
    more = _mask((10, 10), (0, 0, 3, 5))                     # IoU = 15/20 = 0.75
    assert R.accuracy_reward(more, gt) == 1.0


def test_accuracy_empty_masks():
    z = np.zeros((6, 7), dtype=bool)
    assert R.accuracy_reward(z, z) == 1.0                    # correct "none"
    assert R.accuracy_reward(z, _mask((6, 7), (1, 1, 3, 3))) == 0.0
    assert R.accuracy_reward(_mask((6, 7), (1, 1, 3, 3)), z) == 0.0
    with pytest.raises(ValueError):
        R.accuracy_reward(z, np.zeros((7, 6), dtype=bool))


def test_answer_mask_union_and_unknown_ids():
    a = _mask((8, 8), (0, 0, 2, 2))
    b = _mask((8, 8), (4, 4, 6, 6))
    masks = {1: rle_encode(a), 2: b}
    u = R.answer_mask([1, 2, 99], masks, (8, 8))
    assert u.sum() == 8 and u[0, 0] and u[5, 5]
    assert not R.answer_mask([], masks, (8, 8)).any()


def test_reasoning_scores():
    assert R.cosine_reasoning_score(np.array([1.0, 0.0]), np.array([2.0, 0.0])) == pytest.approx(1.0)
    assert R.cosine_reasoning_score(np.array([1.0, 0.0]), np.array([-1.0, 0.0])) == 0.0   # clipped
    assert R.cosine_reasoning_score(np.zeros(3), np.ones(3)) == 0.0
    # token F1: student {the, red, mug}, teacher {the, red, cup, left}: overlap 2, P=2/3, R=2/4
    assert R.lexical_reasoning_score("the red mug", "the red cup left") == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))
    assert R.lexical_reasoning_score("", "") == 1.0
    assert R.lexical_reasoning_score("a", "") == 0.0


def test_total_and_score_rollout_hand_computed():
    gt = _mask((10, 10), (0, 0, 4, 5))
    masks = {3: gt, 4: _mask((10, 10), (6, 6, 9, 9))}
    judge = R.LexicalJudge()
    r = R.score_rollout(GOOD, masks, gt, "the mug is red", judge, gamma=0.5)
    assert (r.format, r.accuracy, r.reasoning) == (0.5, 1.0, 1.0)
    assert r.total == pytest.approx(0.5 + 1.0 + 0.5 * 1.0)
    wrong = R.score_rollout("<reason>the mug is red</reason><answer>4</answer>", masks, gt, "the mug is red", judge, 0.5)
    assert wrong.accuracy == 0.0 and wrong.total == pytest.approx(1.0)
    bad = R.score_rollout("<reason>oops", masks, gt, "the mug is red", judge, 0.5)
    assert (bad.format, bad.accuracy, bad.reasoning, bad.total, bad.parsed) == (-0.5, 0.0, 0.0, -0.5, False)
    # gamma = 0 ablation: no reasoning term
    g0 = R.score_rollout(GOOD, masks, gt, "unrelated words", judge, gamma=0.0)
    assert g0.total == pytest.approx(1.5) and g0.reasoning == 0.0
    # correct "none" on an empty ground truth
    empty = np.zeros((10, 10), dtype=bool)
    n = R.score_rollout(NONE, masks, empty, "nothing fits", judge, 0.5)
    assert n.accuracy == 1.0 and n.iou == 1.0 and n.total == pytest.approx(2.0)


def test_group_advantages():
    adv = R.group_advantages([1.0, 2.0, 3.0])
    assert adv.mean() == pytest.approx(0.0)
    assert adv[2] > 0 > adv[0]
    assert np.allclose(R.group_advantages([1.5, 1.5, 1.5]), 0.0)
    assert R.group_advantages([]).size == 0


def test_build_judge_unknown():
    with pytest.raises(ValueError):
        R.build_judge("gpt")


@pytest.mark.torch
def test_embedding_judge_offline():
    judge = R.EmbeddingJudge()
    same = judge.score("the red mug is on the left", "the red mug is on the left")
    close = judge.score("the red mug is on the left", "mug 3 is red and left of the bowl")
    far = judge.score("the red mug is on the left", "bananas grow in tropical countries")
    assert same == pytest.approx(1.0, abs=1e-5)
    assert 0.0 <= far < close < same <= 1.0
    assert judge.score("", "something") == 0.0
    assert judge.score_many(["the red mug is on the left", ""], "the red mug is on the left")[1] == 0.0
