"""Query paraphrase augmentation: slots read back from every template, phrasings disjoint from the
held-out test templates and from the probe set, answers untouched."""

import random

import pytest

from frs_ros.sim.queries import TEMPLATES
from frs_ros.training.augment import (PROBE_PARAPHRASES, TRAIN_PARAPHRASES, augment_records, paraphrase,
                                      slots_of)

SLOTS = {"name": "mug", "plural": "mugs", "color": "red", "material": "wooden", "material_noun": "wood",
         "side": "left", "adj": "leftmost", "adj2": "bigger", "prep": "closest to", "end": "shortest",
         "rel": "to the left of", "ref": "bowl", "ordinal": "second", "rank": "2",
         "clause": "could hold a hot drink", "need": "I want to pour myself some hot tea", "occluder": "box"}


@pytest.mark.parametrize("group", sorted(TEMPLATES))
def test_slots_round_trip_through_every_template(group):
    for t in TEMPLATES[group]:
        try:
            text = t.text.format(**SLOTS)
        except KeyError:
            continue
        text = text[0].upper() + text[1:] if t.is_sentence else text
        slots = slots_of(t.template_id, text)
        assert slots is not None, t.template_id
        assert t.text.format(**{**SLOTS, **slots}).lower() == text.lower()


def test_phrasings_are_new_and_train_and_probe_are_disjoint():
    templates = {t.text.lower() for g in TEMPLATES.values() for t in g}
    train = {p.lower() for v in TRAIN_PARAPHRASES.values() for p in v}
    probe = {p.lower() for v in PROBE_PARAPHRASES.values() for p in v}
    assert not train & templates and not probe & templates
    assert not train & probe
    assert set(TRAIN_PARAPHRASES) <= set(TEMPLATES) and set(PROBE_PARAPHRASES) <= set(TEMPLATES)


def test_paraphrase_keeps_the_slots_and_unknown_templates_give_none():
    rng = random.Random(0)
    q = "There are several mugs; which one is the red one?"
    outs = {paraphrase("attribute.color.3", q, rng) for _ in range(40)}
    assert len(outs) > 2 and all("red" in o.lower() and "mug" in o.lower() for o in outs)
    assert paraphrase("attribute.color.3", "a sentence no template wrote", rng) is None
    assert paraphrase("nonsense.group.0", q, rng) is None
    # the need alone is a valid indirect request
    need = paraphrase("affordance.single.2", "I'm cold. Which object here could keep me warm?", random.Random(3))
    assert need is not None


def test_augment_records_changes_only_the_query():
    recs = [{"template_id": "attribute.category.0", "query": "the kettle", "rollout": "<reason>#2 is the kettle.</reason>"
             "<answer>2</answer>", "twin_text": "t"} for _ in range(50)]
    out, n = augment_records(recs, 0.5, seed=1)
    assert 10 < n < 40 and len(out) == 50
    changed = [r for r in out if "query_orig" in r]
    assert len(changed) == n and all("kettle" in r["query"].lower() and r["query_orig"] == "the kettle" for r in changed)
    assert all(r["rollout"] == recs[0]["rollout"] for r in out)
    assert augment_records(recs, 0.5, seed=1)[0] == out  # deterministic
    assert augment_records(recs, 0.0)[1] == 0
