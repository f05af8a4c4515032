"""Chain generation: the IoU > 0.7 rejection filter, records that can be re-scored, statistics."""

import json

import numpy as np

from frs_ros.reasoning.base import ReasonerOutput
from frs_ros.reasoning.rollout import parse_rollout
from frs_ros.sim.types import Query
from frs_ros.training.chains import QueryContext, generate_chains, judge_chain, record_masks
from frs_ros.training.config import ChainsConfig
from frs_ros.training.rewards import LexicalJudge, score_rollout


def _mask(box, shape=(20, 20)):
    m = np.zeros(shape, dtype=bool)
    x0, y0, x1, y1 = box
    m[y0:y1, x0:x1] = True
    return m


def _ctx(gt_ids_box, kind="attribute", qi=0):
    id_masks = {1: _mask((0, 0, 10, 10)), 2: _mask((0, 0, 10, 8)), 3: _mask((12, 12, 20, 20))}
    gt = _mask(gt_ids_box) if gt_ids_box else np.zeros((20, 20), dtype=bool)
    q = Query(text="the thing", kind=kind, target_ids=[7] if gt_ids_box else [], difficulty=2)
    return QueryContext(sample="image", seed=5, split="train", query_index=qi, frame_index=0, query=q, frame=None,
                        twin=None, twin_text="#1 mug\n#2 cup\n#3 bowl", backends=None, id_masks=id_masks, gt_mask=gt)


def _out(text, status="ok"):
    try:
        r = parse_rollout(text)
    except ValueError:
        r = None
    return ReasonerOutput(text=text, rollout=r, status=status if r is not None else "parse_error")


def test_iou_threshold_keeps_and_rejects():
    ctx = _ctx((0, 0, 10, 10))                                   # gt == mask of track 1
    assert judge_chain(ctx, _out("<reason>a</reason><answer>1</answer>"), 0.7) == (None, 1.0)
    # track 2 covers 80 of 100 gt px: IoU 0.8 > 0.7 -> kept
    reason, iou = judge_chain(ctx, _out("<reason>a</reason><answer>2</answer>"), 0.7)
    assert reason is None and abs(iou - 0.8) < 1e-9
    # the same chain with a stricter threshold is rejected
    assert judge_chain(ctx, _out("<reason>a</reason><answer>2</answer>"), 0.85)[0] == "iou_le_0.85"
    # union 1+3 : IoU 100/164 = 0.61 -> rejected
    reason, iou = judge_chain(ctx, _out("<reason>a</reason><answer>1, 3</answer>"), 0.7)
    assert reason == "iou_le_0.70" and abs(iou - 100 / 164) < 1e-9
    assert judge_chain(ctx, _out("<reason>a</reason><answer>none</answer>"), 0.7)[0] == "iou_le_0.70"
    assert judge_chain(ctx, _out("garbage"), 0.7)[0] == "status_parse_error"


def test_none_query_kept_when_answer_is_none():
    ctx = _ctx(None, kind="none")
    assert judge_chain(ctx, _out("<reason>nothing</reason><answer>none</answer>"), 0.7) == (None, 1.0)
    assert judge_chain(ctx, _out("<reason>x</reason><answer>3</answer>"), 0.7)[0] == "iou_le_0.70"


class _Teacher:
    """Answers 1 for the first query, 3 (wrong) for the second, raises on the third."""

    def __init__(self):
        self.n = 0

    def reason(self, query, twin, twin_text, frame, tools, **kw):
        self.n += 1
        if self.n == 3:
            raise RuntimeError("boom")
        ans = "1" if self.n == 1 else "3"
        return _out(f"<reason>pick {ans}</reason><answer>{ans}</answer>")


def test_generate_chains_writes_records_and_stats(tmp_path):
    ctxs = [_ctx((0, 0, 10, 10), "attribute", 0), _ctx((0, 0, 10, 10), "spatial", 1), _ctx((0, 0, 10, 10), "spatial", 2)]
    cfg = ChainsConfig(out=str(tmp_path / "c.jsonl"))
    stats = generate_chains(cfg, reasoner=_Teacher(), contexts=iter(ctxs))
    assert (stats.seen, stats.kept) == (3, 1)
    lines = (tmp_path / "c.jsonl").read_text().splitlines()
    assert len(lines) == 1
    rec = json.loads(lines[0])
    assert rec["answer_ids"] == [1] and rec["kind"] == "attribute" and rec["iou"] == 1.0
    s = json.loads((tmp_path / "c.jsonl.stats.json").read_text())
    assert s["per_kind"]["spatial"] == {"seen": 2, "kept": 0}
    assert s["rejected"] == {"iou_le_0.70": 1, "teacher_exception_RuntimeError": 1}
    # the record is enough to score a new rollout later
    id_masks, gt = record_masks(rec)
    r = score_rollout("<reason>pick 1</reason><answer>1</answer>", id_masks, gt, rec["reason"], LexicalJudge(), 0.5)
    assert r.total == 2.0
    r = score_rollout("<reason>pick 3</reason><answer>3</answer>", id_masks, gt, rec["reason"], LexicalJudge(), 0.5)
    assert r.accuracy == 0.0
