"""Reasoning-segmentation queries with ground truth for simulated images and episodes.

Each query comes from a *spec* -- a small structured program such as
``{"kind": "spatial", "relation": "nearest", "category": "cup"}`` -- evaluated on the ground
truth of the frame where it is asked; the text is one of several paraphrase templates. The
oracle teacher reads ``spec`` to solve and explain the query.

Unambiguity: an object is *clear* when it shows >= ``SimConfig.min_visible_px`` pixels and
*faint* when it shows fewer but > 0. A query is kept only if its targets are all clear and
no faint object also satisfies the description (a half-hidden second red mug would make
"the red mug" ambiguous). Singular queries need exactly one target; ``multi`` at least two;
``none`` queries need that *no present object at all* (even fully hidden) satisfies them.
Ordering relations (leftmost, nearest, larger, ...) need a clear margin to the runner-up.

Held-out templates (``held_out=True`` below) are used only in the ``test`` split.
Difficulty follows JiTBench levels: 1 explicit category, 2 attribute/spatial/comparative,
3 implicit (affordance), multi-hop (relations, ordinals) and temporal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from frs_ros.camera import Frame
from frs_ros.sim.ontology import AFFORDANCES, ONTOLOGY, categories_for_split, check_split, get_category
from frs_ros.sim.types import QUERY_KINDS, Query, SimObject

# Margins that make an ordering unambiguous to a human looking at the image.
MARGIN_PX = 12.0  # horizontal centroid gap [px]
MARGIN_DEPTH_M = 0.15  # depth gap [m]
SIZE_RATIO = 1.3  # larger/smaller
MOVE_MIN_M = 0.15  # net displacement that counts as 'moved' [m]
MOVE_RATIO = 1.4  # 'moved the most'

_MATERIAL_ADJ = {
    "ceramic": "ceramic",
    "glass": "glass",
    "plastic": "plastic",
    "metal": "metal",
    "wood": "wooden",
    "fabric": "fabric",
    "paper": "paper",
    "cardboard": "cardboard",
    "leather": "leather",
    "rubber": "rubber",
    "stone": "stone",
    "wax": "wax",
}
_ORDINALS = {2: "second", 3: "third", 4: "fourth"}


@dataclass(frozen=True)
class Template:
    """template_id: '<kind>.<variant>.<n>'; text: str.format pattern over spec slots."""

    template_id: str
    is_sentence: bool
    text: str
    held_out: bool = False


def _t(group: str, items: list[tuple[bool, str, bool]]) -> list[Template]:
    return [Template(f"{group}.{i}", s, txt, h) for i, (s, txt, h) in enumerate(items)]


S, P, H = True, False, True  # readability: sentence / phrase / held out
TEMPLATES: dict[str, list[Template]] = {
    "attribute.category": _t("attribute.category", [
        (P, "the {name}", False),
        (P, "{name}", False),
        (S, "Please segment the {name} in this image.", False),
        (S, "Can you show me where the {name} is?", False),
        (P, "that {name} over there", H),
        (S, "I'm looking for the {name}; where is it?", H),
    ]),
    "attribute.color": _t("attribute.color", [
        (P, "the {color} {name}", False),
        (P, "{color} {name}", False),
        (S, "Segment the {color} {name}.", False),
        (S, "There are several {plural}; which one is the {color} one?", False),
        (P, "the {name} that is {color}", H),
        (S, "Point out the {name} whose colour is {color}.", H),
    ]),
    "attribute.material": _t("attribute.material", [
        (P, "the {material} {name}", False),
        (P, "the {name} made of {material_noun}", False),
        (S, "Find the {name} that is made of {material_noun}.", False),
        (S, "Which of the {plural} is the {material} one?", False),
        (P, "the {name} which is {material}", H),
        (S, "Show me the {name} manufactured from {material_noun}.", H),
    ]),
    "attribute.color_only": _t("attribute.color_only", [
        (P, "the {color} object", False),
        (P, "the {color} thing", False),
        (S, "Show me the only {color} object here.", False),
        (P, "whatever is {color}", H),
        (S, "Exactly one thing in view is {color}; segment it.", H),
    ]),
    "spatial.extreme": _t("spatial.extreme", [
        (P, "the {adj} {name}", False),
        (P, "the {name} on the far {side}", False),
        (S, "Of all the {plural}, segment the one furthest to the {side}.", False),
        (S, "Which {name} is the {adj} one in the picture?", False),
        (P, "the {name} closest to the {side} edge of the image", H),
        (S, "Looking at the image, pick out the {name} that sits farthest {side}.", H),
    ]),
    "spatial.depth": _t("spatial.depth", [
        (P, "the {adj} {name}", False),
        (P, "the {name} {prep} the camera", False),
        (S, "Which {name} is {prep} me?", False),
        (S, "Segment the {name} that is {prep} the camera.", False),
        (P, "the {name} at the {end} distance", H),
        (S, "Judging by depth, find the {name} {prep} the viewer.", H),
    ]),
    "spatial.relation": _t("spatial.relation", [
        (P, "the {name} {rel} the {ref}", False),
        (P, "{name} {rel} {ref}", False),
        (S, "Segment the {name} that is {rel} the {ref}.", False),
        (S, "Find the {ref} first; which {name} is {rel} it?", False),
        (P, "the {name} located {rel} the {ref}", H),
        (S, "Use the {ref} as a landmark and find the {name} {rel} it.", H),
    ]),
    "comparative.size": _t("comparative.size", [
        (P, "the {adj} of the two {plural}", False),
        (P, "the {adj2} {name}", False),
        (S, "There are two {plural}; segment the {adj} one.", False),
        (S, "Comparing the {plural}, which one is {adj}?", False),
        (P, "the {name} that is {adj} than the other", H),
        (S, "Between the two {plural}, I want the {adj2} one.", H),
    ]),
    "comparative.ordinal": _t("comparative.ordinal", [
        (P, "the {ordinal} {name} from the {side}", False),
        (P, "{ordinal} {name} counting from the {side}", False),
        (S, "Counting from the {side}, segment the {ordinal} {name}.", False),
        (S, "Several {plural} stand in a row; which is the {ordinal} one from the {side}?", False),
        (P, "{name} number {rank} from the {side}", H),
        (S, "Go along the {plural} from the {side} and stop at the {ordinal} one.", H),
    ]),
    "affordance.single": _t("affordance.single", [
        (P, "something that {clause}", False),
        (P, "the object that {clause}", False),
        (S, "{need}. Which object here {clause}?", False),
        (S, "{need} - what in this scene {clause}?", False),
        (P, "the thing that {clause}", H),
        (S, "{need}. Point to something that {clause}.", H),
    ]),
    "multi.category": _t("multi.category", [
        (P, "all the {plural}", False),
        (P, "every {name}", False),
        (S, "Segment all of the {plural} in the image.", False),
        (S, "How many {plural} are there? Show me all of them.", False),
        (P, "each {name} you can see", H),
        (S, "Highlight every single {name} in the scene.", H),
    ]),
    "multi.color": _t("multi.color", [
        (P, "all the {color} objects", False),
        (P, "everything {color}", False),
        (S, "Segment everything that is {color}.", False),
        (P, "every {color} thing", H),
        (S, "Mark all items whose colour is {color}.", H),
    ]),
    "multi.affordance": _t("multi.affordance", [
        (P, "everything that {clause}", False),
        (P, "all the objects that {clause}", False),
        (S, "{need}. Show me all the objects that {clause}.", False),
        (P, "any object that {clause}", H),
        (S, "{need}. Which things here {clause}? Mark all of them.", H),
    ]),
    "temporal.moved": _t("temporal.moved", [
        (P, "the object that was moved", False),
        (P, "the {name} that moved", False),
        (S, "Something was moved while the camera was recording; segment it.", False),
        (S, "Which object changed its position during the video?", False),
        (P, "the thing someone slid to a new place", H),
        (S, "One item is no longer where it started; which one?", H),
    ]),
    "temporal.moved_most": _t("temporal.moved_most", [
        (P, "the object that moved the most", False),
        (P, "the object that travelled farthest", False),
        (S, "Several things moved; which one travelled the farthest?", False),
        (P, "the biggest mover", H),
        (S, "Of the objects that changed place, segment the one that went the longest way.", H),
    ]),
    "temporal.appeared": _t("temporal.appeared", [
        (P, "the object that appeared", False),
        (P, "the {name} that was put down", False),
        (S, "Something was placed in the scene during the video; segment it.", False),
        (S, "Which object was not there at the beginning?", False),
        (P, "the newcomer", H),
        (S, "An item showed up halfway through the clip; find it.", H),
    ]),
    "temporal.disappeared": _t("temporal.disappeared", [
        (P, "the object that disappeared", False),
        (P, "the {name} that was taken away", False),
        (S, "One object was removed during the video; segment it while it was still there.", False),
        (S, "Which object is missing at the end of the clip?", False),
        (P, "the thing that is gone now", H),
        (S, "Something vanished from the scene; show me where it was.", H),
    ]),
    "temporal.reappeared": _t("temporal.reappeared", [
        (P, "the object that was hidden for a while", False),
        (P, "the {name} that was briefly blocked", False),
        (S, "Something was briefly blocked from view when the {occluder} passed; segment it.", False),
        (S, "Which object went out of sight and then came back?", False),
        (P, "the thing that went out of sight and came back", H),
        (S, "The {occluder} passed in front of something; which object was hidden?", H),
    ]),
}


def held_out_template_ids() -> set[str]:
    return {t.template_id for group in TEMPLATES.values() for t in group if t.held_out}


# ----------------------------------------------------------------------------------------
# Candidate specs
# ----------------------------------------------------------------------------------------
@dataclass
class _Candidate:
    kind: str
    group: str
    spec: dict
    targets: list[int]
    difficulty: int
    slots: dict


class _View:
    """Ground truth of one frame split into clear / faint / all present objects."""

    def __init__(self, frame: Frame, min_px: int) -> None:
        self.objects: list[SimObject] = list(frame.gt.objects.values())
        self.clear = [o for o in self.objects if o.visible_px >= min_px]
        self.faint = [o for o in self.objects if 0 < o.visible_px < min_px]
        self.categories = {o.category for o in self.objects}

    def select(self, pred) -> tuple[list[SimObject], bool]:
        """(clear matches, ok) -- ok is False when a faint object also matches."""
        return [o for o in self.clear if pred(o)], not any(pred(o) for o in self.faint)


def _u(o: SimObject) -> float:
    return o.extras["visible_centroid_px"][0]


def _z(o: SimObject) -> float:
    return o.extras["median_depth_m"]


def _safe_synonyms() -> dict[str, list[str]]:
    """Synonyms that cannot be read as another category ('bottle' would also name the
    spray bottle, 'can' the trash can), so using them keeps the query unambiguous."""
    names = {c.name: [c.name, *c.synonyms] for c in ONTOLOGY.values()}
    out: dict[str, list[str]] = {}
    for cat, aliases in names.items():
        others = [a for other, al in names.items() if other != cat for a in al]
        out[cat] = [
            s for s in aliases[1:]
            if not s.endswith("s")  # plural would be ill-formed ('tissueses')
            and not any(f" {s} " in f" {o} " or f" {o} " in f" {s} " for o in others)
        ]
    return out


_SYNONYMS = _safe_synonyms()
SYNONYM_PROB = 0.2


def _slots_for(cat_name: str, rng: Optional[np.random.Generator] = None) -> dict:
    """Template slots naming a category; with ``rng``, sometimes a safe synonym."""
    cat = get_category(cat_name)
    syn = _SYNONYMS.get(cat.name, [])
    if rng is not None and syn and rng.random() < SYNONYM_PROB:
        name = syn[int(rng.integers(len(syn)))]
        return {"name": name, "plural": name + ("es" if name.endswith(("s", "sh", "ch", "x")) else "s")}
    return {"name": cat.name, "plural": cat.plural_name}


def _ordered_unique(values: list[float], margin: float) -> bool:
    v = sorted(values)
    return all(b - a >= margin for a, b in zip(v[:-1], v[1:]))


def _image_candidates(view: _View, split: str, rng: np.random.Generator) -> list[_Candidate]:
    out: list[_Candidate] = []
    by_cat: dict[str, list[SimObject]] = {}
    for o in view.clear:
        by_cat.setdefault(o.category, []).append(o)

    for cat, objs in by_cat.items():
        slots = _slots_for(cat, rng)
        same, ok = view.select(lambda o, c=cat: o.category == c)
        if not ok:
            continue
        if len(same) == 1:
            out.append(_Candidate("attribute", "attribute.category", {"category": cat}, [same[0].instance_id], 1, slots))
        if len(same) >= 2:
            out.append(_Candidate("multi", "multi.category", {"category": cat}, [o.instance_id for o in same], 1, slots))
            # Colour / material that picks out exactly one of several.
            for o in same:
                m, ok2 = view.select(lambda x, c=cat, col=o.color: x.category == c and x.color == col)
                if ok2 and len(m) == 1:
                    out.append(_Candidate("attribute", "attribute.color", {"category": cat, "color": o.color},
                                          [o.instance_id], 2, {**slots, "color": o.color}))
                if o.material in _MATERIAL_ADJ:
                    m, ok2 = view.select(lambda x, c=cat, mat=o.material: x.category == c and x.material == mat)
                    if ok2 and len(m) == 1:
                        out.append(_Candidate("attribute", "attribute.material", {"category": cat, "material": o.material},
                                              [o.instance_id], 2,
                                              {**slots, "material": _MATERIAL_ADJ[o.material], "material_noun": o.material}))
            # Leftmost / rightmost.
            us = [_u(o) for o in same]
            if _ordered_unique(us, MARGIN_PX):
                order = sorted(same, key=_u)
                for side, adj, tgt in (("left", "leftmost", order[0]), ("right", "rightmost", order[-1])):
                    out.append(_Candidate("spatial", "spatial.extreme", {"relation": adj, "category": cat},
                                          [tgt.instance_id], 2, {**slots, "side": side, "adj": adj}))
                if len(same) >= 3:
                    for rank in range(2, min(len(same), 4) + 1):
                        for side, seq in (("left", order), ("right", order[::-1])):
                            out.append(_Candidate("comparative", "comparative.ordinal",
                                                  {"op": "ordinal", "category": cat, "from": side, "rank": rank},
                                                  [seq[rank - 1].instance_id], 3,
                                                  {**slots, "side": side, "rank": rank, "ordinal": _ORDINALS[rank]}))
            # Nearest / farthest by depth of the visible surface.
            zs = [_z(o) for o in same]
            zord = sorted(same, key=_z)
            if sorted(zs)[1] - sorted(zs)[0] >= MARGIN_DEPTH_M:
                out.append(_Candidate("spatial", "spatial.depth", {"relation": "nearest", "category": cat},
                                      [zord[0].instance_id], 2, {**slots, "adj": "nearest", "prep": "closest to", "end": "shortest"}))
            if sorted(zs)[-1] - sorted(zs)[-2] >= MARGIN_DEPTH_M:
                out.append(_Candidate("spatial", "spatial.depth", {"relation": "farthest", "category": cat},
                                      [zord[-1].instance_id], 2, {**slots, "adj": "farthest", "prep": "farthest from", "end": "greatest"}))
            # Larger / smaller of exactly two.
            if len(same) == 2:
                a, b = sorted(same, key=lambda o: o.size_m)
                if b.size_m >= SIZE_RATIO * a.size_m:
                    out.append(_Candidate("comparative", "comparative.size", {"op": "larger", "category": cat},
                                          [b.instance_id], 2, {**slots, "adj": "larger", "adj2": "bigger"}))
                    out.append(_Candidate("comparative", "comparative.size", {"op": "smaller", "category": cat},
                                          [a.instance_id], 2, {**slots, "adj": "smaller", "adj2": "smaller"}))

    # Whole-scene nearest / farthest object.
    if len(view.clear) >= 2:
        zord = sorted(view.clear, key=_z)
        faint_z = [o.extras["median_depth_m"] for o in view.faint]
        slots = {"name": "object", "plural": "objects"}
        if _z(zord[1]) - _z(zord[0]) >= MARGIN_DEPTH_M and all(z - _z(zord[0]) >= MARGIN_DEPTH_M for z in faint_z):
            out.append(_Candidate("spatial", "spatial.depth", {"relation": "nearest", "category": None},
                                  [zord[0].instance_id], 2, {**slots, "adj": "nearest", "prep": "closest to", "end": "shortest"}))

    # Relations to a unique reference object (multi-hop).
    for ref in view.clear:
        refs, ok = view.select(lambda o, c=ref.category: o.category == c)
        if not ok or len(refs) != 1:
            continue
        rb = ref.extras["box_px"]
        for cat, objs in by_cat.items():
            if cat == ref.category:
                continue
            all_c, ok = view.select(lambda o, c=cat: o.category == c)
            if not ok or len(all_c) < 2:
                continue
            rels = {
                "in front of": lambda o: _z(o) < _z(ref) - 0.1 and _overlap_u(o.extras["box_px"], rb) >= 0.3,
                "behind": lambda o: _z(o) > _z(ref) + 0.1 and _overlap_u(o.extras["box_px"], rb) >= 0.3,
                "to the left of": lambda o: o.extras["box_px"][2] <= rb[0] + 2,
                "to the right of": lambda o: o.extras["box_px"][0] >= rb[2] - 2,
            }
            for rel, pred in rels.items():
                m = [o for o in all_c if pred(o)]
                if len(m) == 1:
                    out.append(_Candidate("spatial", "spatial.relation",
                                          {"relation": rel.replace(" ", "_"), "category": cat,
                                           "reference_id": ref.instance_id, "reference_category": ref.category},
                                          [m[0].instance_id], 3,
                                          {**_slots_for(cat), "rel": rel, "ref": ref.category}))

    # Unique colour among everything visible.
    for col in sorted({o.color for o in view.clear}):  # sorted: set order varies per process
        m, ok = view.select(lambda o, c=col: o.color == c)
        if ok and len(m) == 1:
            out.append(_Candidate("attribute", "attribute.color_only", {"color": col}, [m[0].instance_id], 2, {"color": col}))
        elif ok and len(m) >= 2:
            out.append(_Candidate("multi", "multi.color", {"color": col}, [o.instance_id for o in m], 2, {"color": col}))

    # Affordances (implicit).
    for aff, (clause, need) in AFFORDANCES.items():
        m, ok = view.select(lambda o, a=aff: a in ONTOLOGY[o.category].affordances)
        if not ok:
            continue
        slots = {"clause": clause, "need": need}
        if len(m) == 1:
            out.append(_Candidate("affordance", "affordance.single", {"affordance": aff}, [m[0].instance_id], 3, slots))
        elif len(m) >= 2 and clause.startswith(("can ", "could ")):
            out.append(_Candidate("multi", "multi.affordance", {"affordance": aff}, [o.instance_id for o in m], 3, slots))

    # No target: an absent category / affordance / colour of a present category.
    allowed = [c for c in categories_for_split(split)]
    absent = [c for c in allowed if c.name not in view.categories]
    for _ in range(3):
        if not absent:
            break
        c = absent[int(rng.integers(len(absent)))]
        out.append(_Candidate("none", "attribute.category", {"category": c.name, "mimics": "attribute"}, [], 1,
                              {"name": c.name, "plural": c.plural_name}))
    present_affs = {a for o in view.objects for a in ONTOLOGY[o.category].affordances}
    absent_affs = [a for a in AFFORDANCES if a not in present_affs]
    if absent_affs:
        a = absent_affs[int(rng.integers(len(absent_affs)))]
        clause, need = AFFORDANCES[a]
        out.append(_Candidate("none", "affordance.single", {"affordance": a, "mimics": "affordance"}, [], 3,
                              {"clause": clause, "need": need}))
    for cat, objs in by_cat.items():
        # Like the positive colour queries, only where several instances make colour matter
        # (so a no-target query cannot be told apart by its form).
        if len(objs) < 2:
            continue
        have = {o.color for o in view.objects if o.category == cat}
        missing = [c for c in ONTOLOGY[cat].colors if c not in have]
        if missing:
            col = missing[int(rng.integers(len(missing)))]
            out.append(_Candidate("none", "attribute.color", {"category": cat, "color": col, "mimics": "attribute"}, [], 2,
                                  {**_slots_for(cat), "color": col}))
    return out


def _overlap_u(a, b) -> float:
    """Horizontal overlap of two boxes as a fraction of the narrower one."""
    inter = min(a[2], b[2]) - max(a[0], b[0])
    return max(inter, 0) / max(min(a[2] - a[0], b[2] - b[0]), 1)


def _ev_frame(events: list[dict], etype: str, iid: int) -> Optional[int]:
    """A representative frame of an object's event: mid-slide ('moved'), first frame
    present ('added'), first frame absent ('removed'), mid-hiding ('occluded')."""
    for ev in events:
        if ev["type"] == etype and ev["instance_id"] == iid:
            if etype == "moved":
                return (int(ev["start"]) + int(ev["end"])) // 2
            if etype == "occluded":
                hidden = ev["hidden_frames"] or [ev["start"]]
                return int(hidden[len(hidden) // 2])
            return int(ev["frame"])
    return None


def _temporal_candidates(frames: list[Frame], f: int, events: list[dict], view: _View,
                         min_px: int) -> list[_Candidate]:
    """Temporal specs asked at frame ``f`` (uses every frame up to ``f``)."""
    out: list[_Candidate] = []
    g0, gf = frames[0].gt, frames[f].gt
    clear_ids = {o.instance_id for o in view.clear}
    faint_ids = {o.instance_id for o in view.faint}

    # Net displacement between frame 0 and f of objects present throughout.
    moved = []
    for iid, o in gf.objects.items():
        if iid in g0.objects and o.extras["role"] == "object":
            d = float(np.linalg.norm(o.position_m - g0.objects[iid].position_m))
            if d >= MOVE_MIN_M:
                moved.append((d, o))
    if len(moved) == 1 and moved[0][1].instance_id in clear_ids:
        o = moved[0][1]
        out.append(_Candidate("temporal", "temporal.moved", {"event": "moved", "event_frame": _ev_frame(events, "moved", o.instance_id)}, [o.instance_id], 3,
                              _slots_for(o.category)))
    if len(moved) >= 2:
        moved.sort(key=lambda x: x[0])
        d1, top = moved[-1]
        if d1 >= MOVE_RATIO * moved[-2][0] and top.instance_id in clear_ids:
            out.append(_Candidate("temporal", "temporal.moved_most", {"event": "moved_most", "event_frame": _ev_frame(events, "moved", top.instance_id)},
                                  [top.instance_id], 3,
                                  _slots_for(top.category)))

    appeared = [o for iid, o in gf.objects.items() if iid not in g0.objects and o.extras["role"] == "object"]
    if len(appeared) == 1 and appeared[0].instance_id in clear_ids:
        o = appeared[0]
        out.append(_Candidate("temporal", "temporal.appeared", {"event": "appeared", "event_frame": _ev_frame(events, "added", o.instance_id)}, [o.instance_id], 3,
                              _slots_for(o.category)))

    gone = [o for iid, o in g0.objects.items() if iid not in gf.objects and o.extras["role"] == "object"]
    if len(gone) == 1:
        o = gone[0]
        until = o.extras["present_until"]
        seen = [k for k in range(until) if frames[k].gt.objects[o.instance_id].visible_px >= min_px]
        if seen:
            out.append(_Candidate("temporal", "temporal.disappeared",
                                  {"event": "disappeared", "eval_frames": seen,
                                   "event_frame": _ev_frame(events, "removed", o.instance_id)}, [o.instance_id], 3,
                                  _slots_for(o.category)))

    for ev in events:
        if (
            ev["type"] == "occluded"
            and ev["verified"]
            and not ev.get("also_hidden")
            and ev["end"] < f
            and ev["instance_id"] in clear_ids
        ):
            o = gf.objects[ev["instance_id"]]
            occ = frames[ev["start"]].gt.objects.get(ev["occluder_id"])
            occ_name = occ.category if occ is not None else "object"
            out.append(_Candidate("temporal", "temporal.reappeared",
                                  {"event": "reappeared", "occluder_id": ev["occluder_id"],
                                   "event_frame": _ev_frame(events, "occluded", o.instance_id)}, [o.instance_id], 3,
                                  {**_slots_for(o.category), "occluder": occ_name}))
    # A target that is only faint now makes the query unfair.
    return [c for c in out if not (set(c.targets) & faint_ids) or c.spec.get("event") == "disappeared"]


# ----------------------------------------------------------------------------------------
# Text
# ----------------------------------------------------------------------------------------
def _pick_template(group: str, split: str, rng: np.random.Generator, want_sentence: bool, slots: dict) -> Template:
    templates = TEMPLATES[group]
    usable = [t for t in templates if _formattable(t, slots)]
    held = [t for t in usable if t.held_out]
    seen = [t for t in usable if not t.held_out]
    if split != "test":
        usable = seen
    elif held and seen:
        # Test split: half of the queries use a held-out phrasing, half a training one, so
        # the effect of unseen phrasings is measurable.
        usable = held if rng.random() < 0.5 else seen
    pref = [t for t in usable if t.is_sentence == want_sentence]
    pool = pref or usable
    if not pool:
        raise RuntimeError(f"no usable template in group {group!r} for slots {sorted(slots)}")
    return pool[int(rng.integers(len(pool)))]


def _formattable(t: Template, slots: dict) -> bool:
    try:
        t.text.format(**slots)
    except KeyError:
        return False
    return True


def _capitalise(text: str, is_sentence: bool) -> str:
    return text[0].upper() + text[1:] if is_sentence and text else text


def generate_queries(
    frames: list[Frame],
    events: list[dict],
    split: str,
    rng: np.random.Generator,
    n_queries: int,
    min_visible_px: int,
) -> list[Query]:
    """Up to ``n_queries`` distinct, unambiguous queries for an image (1 frame) or episode.

    Kinds are drawn round-robin in a random order so every available kind is represented;
    within a kind a spec is drawn at random. For episodes, non-temporal queries are asked at
    a random frame of the second half; temporal ones at a frame after all events ended.
    ``spec`` always carries ``kind``, ``frame_index`` and ``eval_frames`` (the frames whose
    masks of ``target_ids`` are the answer).
    """
    check_split(split)
    n = len(frames)
    video = n > 1
    if video:
        last_event = max([_event_end(e) for e in events] + [n // 2])
        f_temporal = int(rng.integers(min(last_event + 1, n - 1), n))
        f_static = int(rng.integers(n // 2, n))
    else:
        f_temporal = f_static = 0
    view_s = _View(frames[f_static], min_visible_px)
    cands = _image_candidates(view_s, split, rng)
    for c in cands:
        c.spec["frame_index"] = f_static
    if video:
        view_t = _View(frames[f_temporal], min_visible_px)
        tc = _temporal_candidates(frames, f_temporal, events, view_t, min_visible_px)
        for c in tc:
            c.spec["frame_index"] = f_temporal
        cands += tc

    by_kind: dict[str, list[_Candidate]] = {}
    for c in cands:
        by_kind.setdefault(c.kind, []).append(c)
    kinds = [k for k in QUERY_KINDS if k in by_kind]
    if video and "temporal" in by_kind:
        kinds.remove("temporal")
        kinds.insert(0, "temporal")  # temporal queries are the point of episodes: first pick
        rest = kinds[1:]
        rng.shuffle(rest)
        # Temporal twice per round: events are what episodes are for.
        half = len(rest) // 2
        kinds = ["temporal"] + rest[:half] + ["temporal"] + rest[half:]
    else:
        rng.shuffle(kinds)

    queries: list[Query] = []
    seen: set[str] = set()
    i = 0
    while len(queries) < n_queries and any(by_kind.get(k) for k in kinds):
        kind = kinds[i % len(kinds)]
        i += 1
        pool = by_kind.get(kind)
        if not pool:
            continue
        c = pool.pop(int(rng.integers(len(pool))))
        key = repr((c.group, sorted(c.spec.items(), key=lambda kv: kv[0])))
        if key in seen:
            continue
        seen.add(key)
        want_sentence = bool(rng.random() < 0.5)
        tpl = _pick_template(c.group, split, rng, want_sentence, c.slots)
        text = _capitalise(tpl.text.format(**c.slots), tpl.is_sentence)
        f = c.spec["frame_index"]
        eval_frames = c.spec.pop("eval_frames", None) or list(range(f, n))
        spec = {"kind": c.kind, **c.spec, "eval_frames": eval_frames}
        queries.append(
            Query(
                text=text,
                kind=c.kind,
                target_ids=sorted(c.targets),
                difficulty=c.difficulty,
                is_sentence=tpl.is_sentence,
                frame_index=f,
                spec=spec,
                template_id=tpl.template_id,
                split=split,
            )
        )
    return queries


def _event_end(ev: dict) -> int:
    if ev["type"] in ("moved", "occluded"):
        return int(ev["end"])
    return int(ev["frame"])
