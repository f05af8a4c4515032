"""Chain generation: the IoU > 0.7 rejection filter, records that can be re-scored, statistics."""

import json

import numpy as np
import pytest

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


class _FlaggingTeacher:
    """Always answers the right track 1; flags the 1st chain DO_NOT_TRAIN (the oracle's marker), adds a
    harmless warning to the 2nd, and answers wrongly *and* flags the 3rd."""

    def __init__(self):
        self.n = 0

    def reason(self, query, twin, twin_text, frame, tools, **kw):
        from frs_ros.reasoning.oracle import DO_NOT_TRAIN

        self.n += 1
        ans = "3" if self.n == 3 else "1"
        out = _out(f"<reason>#{ans} is the leftmost mug.</reason><answer>{ans}</answer>")
        out.warnings = {1: [f"the twin does not show 'leftmost' for #1 ({DO_NOT_TRAIN})"],
                        2: ["sim target(s) [9] have no twin object; answered with the rest"],
                        3: [f"twin colour of #3 is 'red', query says 'blue' ({DO_NOT_TRAIN})"]}[self.n]
        return out


def test_generate_chains_drops_chains_the_twin_text_cannot_justify(tmp_path):
    ctxs = [_ctx((0, 0, 10, 10), "spatial", i) for i in range(3)]
    cfg = ChainsConfig(out=str(tmp_path / "c.jsonl"))
    stats = generate_chains(cfg, reasoner=_FlaggingTeacher(), contexts=iter(ctxs))
    # the 1st is right (IoU 1.0) but flagged: dropped as twin_lacks_fact; the 2nd is kept; the wrong
    # 3rd is an IoU rejection (the IoU filter decides first)
    assert (stats.seen, stats.kept) == (3, 1)
    s = json.loads((tmp_path / "c.jsonl.stats.json").read_text())
    assert s["rejected"] == {"twin_lacks_fact": 1, "iou_le_0.70": 1}
    assert s["per_kind"]["spatial"] == {"seen": 3, "kept": 1}
    recs = [json.loads(x) for x in (tmp_path / "c.jsonl").read_text().splitlines()]
    assert [r["query_index"] for r in recs] == [1] and recs[0]["n_tool_rounds"] == 0


@pytest.mark.torch  # match() needs the sentence embedder
def test_oracle_chains_on_a_sim_image_call_match_for_uses_and_drop_only_flagged_ones(tmp_path):
    from frs_ros.reasoning.oracle import DO_NOT_TRAIN, OracleReasoner
    from frs_ros.training.chains import contexts_of_sample, run_teacher

    ctxs = contexts_of_sample("image", 3, "train")
    assert ctxs and all(c.twin_text.splitlines()[0].startswith("twin t=") and "img=" not in c.twin_text for c in ctxs)
    oracle = OracleReasoner()
    outs = [run_teacher(oracle, c) for c in ctxs]
    right = [judge_chain(c, o, 0.7)[0] is None for c, o in zip(ctxs, outs)]
    flagged = [any(DO_NOT_TRAIN in w for w in o.warnings) for o in outs]
    cfg = ChainsConfig(out=str(tmp_path / "c.jsonl"))
    stats = generate_chains(cfg, reasoner=OracleReasoner(), contexts=iter(ctxs))
    recs = [json.loads(x) for x in (tmp_path / "c.jsonl").read_text().splitlines()]
    assert stats.kept == len(recs) == sum(r and not f for r, f in zip(right, flagged)) > 0
    assert stats.rejected.get("twin_lacks_fact", 0) == sum(r and f for r, f in zip(right, flagged))
    # the oracle calls one tool, match(), and only for uses (affordances)
    for c, o in zip(ctxs, outs):
        calls = [x.name for p in o.rollout.plans for x in p]
        assert calls == (["match"] if "affordance" in c.query.spec else []), (c.query.spec, o.text)
    for r in recs:
        # concise chains whose answer ids are objects of the twin text; a match() chain answers with
        # the objects its results name
        assert r["n_tool_rounds"] == ("<plan>match(" in r["rollout"]) and len(r["reason"]) < 80, r
        assert all(f"#{i} " in r["twin_text"] for i in r["answer_ids"])
        if r["n_tool_rounds"]:
            assert all(f"#{i}" in r["rollout"].split("<results>")[1] for i in r["answer_ids"]), r["rollout"]
