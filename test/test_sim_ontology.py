"""Ontology: coverage, validity, lookup, held-out policy, and that every shape renders."""

import numpy as np
import pytest

from frs_ros.sim.ontology import (
    AFFORDANCES,
    COLORS,
    MATERIALS,
    ONTOLOGY,
    UnknownCategoryError,
    categories_for_split,
    categories_with_affordance,
    check_split,
    get_category,
    held_out_categories,
)
from frs_ros.sim.render import build_parts


def test_at_least_60_categories_with_full_records():
    assert len(ONTOLOGY) >= 60
    for c in ONTOLOGY.values():
        assert c.colors and c.materials and c.affordances and c.supercategory
        assert all(col in COLORS for col in c.colors)
        assert all(m in MATERIALS for m in c.materials)
        assert all(a in AFFORDANCES for a in c.affordances)
        assert 0 < c.size_range_m[0] <= c.size_range_m[1] < 3.0


def test_lookup_by_name_and_synonym():
    assert get_category("Mug").name == "mug"
    assert get_category("coffee mug").name == "mug"
    assert get_category("torch").name == "flashlight"
    with pytest.raises(UnknownCategoryError, match="unknown category"):
        get_category("spaceship")


def test_held_out_categories_only_in_test():
    held = set(held_out_categories())
    assert len(held) >= 5
    for split in ("train", "val"):
        assert not held & {c.name for c in categories_for_split(split)}
    assert held <= {c.name for c in categories_for_split("test")}
    with pytest.raises(ValueError, match="split must be one of"):
        check_split("training")


def test_every_affordance_is_used_and_every_shape_builds():
    for a in AFFORDANCES:
        assert categories_with_affordance(a), f"affordance {a!r} has no category"
    for c in ONTOLOGY.values():
        parts = build_parts(c.shape, np.asarray(c.extent) * c.size_range_m[1], COLORS[c.colors[0]])
        assert parts, c.name
        for kind, centre, rot, params, colour in parts:
            assert kind in ("box", "frustum", "ellipsoid")
            assert np.allclose(rot @ rot.T, np.eye(3))
            assert all(p >= 0 for p in params)
