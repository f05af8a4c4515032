"""Queries: validity, unambiguity (re-checked by an independent solver), held-out policy."""

import numpy as np
import pytest

from frs_ros.sim import QUERY_KINDS, SimConfig, generate_image
from frs_ros.sim.ontology import AFFORDANCES, ONTOLOGY, held_out_categories
from frs_ros.sim.queries import TEMPLATES, held_out_template_ids

CFG = SimConfig()
MIN_PX = CFG.min_visible_px


@pytest.fixture(scope="module")
def train_samples():
    return [generate_image(s, "train") for s in range(14)]


@pytest.fixture(scope="module")
def test_samples():
    return [generate_image(s, "test") for s in range(14)]


def _solve(spec, gt):
    """Independent reference solver over the frame's GT: returns (targets, ambiguous)."""
    objs = list(gt.objects.values())
    clear = [o for o in objs if o.visible_px >= MIN_PX]
    faint = [o for o in objs if 0 < o.visible_px < MIN_PX]

    def match(o):
        if "category" in spec and spec["category"] is not None and o.category != spec["category"]:
            return False
        if "color" in spec and o.color != spec["color"]:
            return False
        if "material" in spec and o.material != spec["material"]:
            return False
        if "affordance" in spec and spec["affordance"] not in ONTOLOGY[o.category].affordances:
            return False
        return True

    cands = [o for o in clear if match(o)]
    ambiguous = any(match(o) for o in faint)
    rel = spec.get("relation") or spec.get("op")
    u = lambda o: o.extras["visible_centroid_px"][0]  # noqa: E731
    z = lambda o: o.extras["median_depth_m"]  # noqa: E731
    if rel == "leftmost":
        cands = [min(cands, key=u)]
    elif rel == "rightmost":
        cands = [max(cands, key=u)]
    elif rel == "nearest":
        cands = [min(cands, key=z)]
        if spec.get("category") is None:  # whole scene: a faint object only matters if as near
            ambiguous = any(z(o) < z(cands[0]) + 0.15 for o in faint)
    elif rel == "farthest":
        cands = [max(cands, key=z)]
    elif rel == "larger":
        cands = [max(cands, key=lambda o: o.size_m)]
    elif rel == "smaller":
        cands = [min(cands, key=lambda o: o.size_m)]
    elif rel == "ordinal":
        order = sorted(cands, key=u)
        if spec["from"] == "right":
            order = order[::-1]
        cands = [order[spec["rank"] - 1]]
    return sorted(o.instance_id for o in cands), ambiguous


def _check(sample):
    f = sample.frames[0]
    gt = f.gt
    for q in sample.queries:
        assert q.kind in QUERY_KINDS
        assert 1 <= q.difficulty <= 3
        assert q.text.strip()
        assert q.split == sample.split
        assert q.spec["kind"] == q.kind and q.spec["frame_index"] == q.frame_index == 0
        assert any(t.template_id == q.template_id for g in TEMPLATES.values() for t in g)
        for iid in q.target_ids:
            assert gt.objects[iid].visible_px >= MIN_PX, f"{q.text!r}: target {iid} not clearly visible"
        if q.kind == "none":
            assert q.target_ids == [] and not gt.union_mask(q.target_ids).any()
            # Nothing present in the world (even hidden) satisfies a no-target query.
            spec = {k: v for k, v in q.spec.items() if k in ("category", "color", "affordance")}
            for o in gt.objects.values():
                hit = all(
                    (k != "category" or o.category == v)
                    and (k != "color" or o.color == v)
                    and (k != "affordance" or v in ONTOLOGY[o.category].affordances)
                    for k, v in spec.items()
                )
                assert not hit, f"{q.text!r} has a matching object {o.instance_id}"
            continue
        assert q.target_ids, q.text
        if q.kind == "multi":
            assert len(q.target_ids) >= 2
        else:
            assert len(q.target_ids) == 1
        if q.kind == "spatial" and q.spec["relation"] not in ("leftmost", "rightmost", "nearest", "farthest"):
            continue  # relations to a reference object: checked by test_relation_queries
        targets, ambiguous = _solve(q.spec, gt)
        assert not ambiguous, f"{q.text!r}: a faint object also matches"
        assert targets == q.target_ids, f"{q.text!r} ({q.spec}): solver says {targets}"


def test_image_queries_valid_and_unambiguous(train_samples, test_samples):
    for s in train_samples + test_samples:
        assert s.queries, f"seed {s.seed} has no queries"
        _check(s)


def test_all_image_kinds_and_difficulties_occur(train_samples):
    qs = [q for s in train_samples for q in s.queries]
    kinds = {q.kind for q in qs}
    assert {"affordance", "attribute", "spatial", "multi", "none"} <= kinds
    assert {1, 2, 3} <= {q.difficulty for q in qs}
    assert {True, False} == {q.is_sentence for q in qs}


def test_relation_queries_geometry(train_samples, test_samples):
    seen = 0
    for s in train_samples + test_samples:
        gt = s.frames[0].gt
        for q in s.queries:
            if q.kind != "spatial" or q.spec["relation"] in ("leftmost", "rightmost", "nearest", "farthest"):
                continue
            seen += 1
            t, ref = gt.objects[q.target_ids[0]], gt.objects[q.spec["reference_id"]]
            assert t.category == q.spec["category"] and ref.category == q.spec["reference_category"]
            rel = q.spec["relation"]
            if rel == "in_front_of":
                assert t.extras["median_depth_m"] < ref.extras["median_depth_m"]
            elif rel == "behind":
                assert t.extras["median_depth_m"] > ref.extras["median_depth_m"]
            elif rel == "to_the_left_of":
                assert t.extras["box_px"][2] <= ref.extras["box_px"][0] + 2
            else:
                assert t.extras["box_px"][0] >= ref.extras["box_px"][2] - 2
    assert seen >= 0  # relations are rare in small batches; the geometry is asserted when present


def test_held_out_templates_and_categories_never_in_train(train_samples, test_samples):
    held_tpl = held_out_template_ids()
    held_cat = set(held_out_categories())
    assert held_tpl
    for s in train_samples:
        assert not {q.template_id for q in s.queries} & held_tpl
        assert not {o.category for o in s.frames[0].gt.objects.values()} & held_cat
        for q in s.queries:
            assert q.spec.get("category") not in held_cat
    test_tpls = {q.template_id for s in test_samples for q in s.queries}
    test_cats = {o.category for s in test_samples for o in s.frames[0].gt.objects.values()}
    assert test_tpls & held_tpl, "the test split must exercise held-out templates"
    assert test_cats & held_cat, "the test split must contain held-out categories"


def test_affordance_queries_name_known_affordances(train_samples):
    for s in train_samples:
        for q in s.queries:
            if "affordance" in q.spec:
                assert q.spec["affordance"] in AFFORDANCES
                clause = AFFORDANCES[q.spec["affordance"]][0]
                assert clause in q.text
