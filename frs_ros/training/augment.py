"""Query paraphrase augmentation for SFT: the same spec, said the way users say it.

The sim's query templates (``frs_ros.sim.queries.TEMPLATES``) are a few fixed phrasings per
query group; a student trained only on them learns the templates, not the language (the nano
student failed on "Where's the basket?"). Here a chain's query is re-said with a phrasing from
:data:`TRAIN_PARAPHRASES` — shorter, chattier, indirect ("I'm thirsty." instead of "something that
could hold a cold drink"). The slots (category name, colour, side, clause, need ...) are read back
from the original text by inverting its template, so no simulator state is needed and the chain's
answer and reasoning stay valid.

These phrasings are for training only. The held-out test templates (``held_out=True``) are never
used here, and :data:`PROBE_PARAPHRASES` (a disjoint set, checked by a test) is kept for the
paraphrase probe of the report, which measures how well the student generalises to wordings it
never saw.
"""

from __future__ import annotations

import random
import re
from functools import lru_cache
from typing import Optional

#: group -> phrasings used for training augmentation (str.format over the template's slots).
TRAIN_PARAPHRASES: dict[str, list[str]] = {
    "attribute.category": ["where's the {name}?", "find the {name}", "show me the {name}", "the {name} please",
                           "Could you point at the {name}?", "I need the {name}.", "locate the {name}",
                           "{name}?", "Is there a {name} here?"],
    "attribute.color": ["find the {color} {name}", "the {name} in {color}", "I want the {color} {name}.",
                        "which {name} is {color}?", "{color} {name} please"],
    "attribute.material": ["the {name} of {material_noun}", "{material} {name} please",
                           "which {name} is {material}?"],
    "attribute.color_only": ["anything {color}", "which object is {color}?", "find something {color}",
                             "the thing colored {color}"],
    "spatial.extreme": ["the {name} furthest {side}", "which {name} is most to the {side}?",
                        "the {name} at the {side} end", "{adj} {name} please",
                        "the {name} right at the {side} side of the picture", "the {name} farthest over to the {side}",
                        "the {name} nearest to the {side} side", "Of the {plural}, which one is furthest {side}?",
                        "the {side}-most {name}", "the {name} by the {side} border of the view",
                        "I want the {name} that is the most {side} of them all."],
    "spatial.depth": ["{adj} {name}", "which {name} is {prep} the robot?", "find the {name} {prep} the camera",
                      "the {name} that is {prep} us", "Which {name} has the {end} depth?",
                      "the {name} at the {end} range from the robot", "Of the {plural}, the one {prep} the camera."],
    "spatial.relation": ["the {name} that's {rel} the {ref}", "which {name} is {rel} the {ref}?",
                         "find a {name} {rel} the {ref}"],
    "comparative.size": ["which {name} is {adj}?", "the {adj2} one of the {plural}", "give me the {adj2} {name}"],
    "comparative.ordinal": ["the {ordinal} {name} starting from the {side}", "from the {side}, the {ordinal} {name}",
                            "count {plural} from the {side}: the {ordinal} one",
                            "Counting from the {side}, which {name} comes {ordinal}?"],
    "affordance.single": ["{need}.", "{need}. What can I use?", "{need}. Anything here for that?",
                          "is there something that {clause}?", "find me something that {clause}",
                          "what here {clause}?"],
    "multi.category": ["find all {plural}", "where are the {plural}?", "all {plural} please", "every {name} here"],
    "multi.color": ["all {color} things", "which objects are {color}?", "find everything {color}"],
    "multi.affordance": ["{need}. Show me everything I could use.", "which things {clause}?",
                         "find all that {clause}"],
    # Temporal wordings: episodes give ~150 temporal chains, so the student sees each event's
    # fact word ("moved", "moved most", "new", "lost", "was hidden") under many phrasings.
    "temporal.moved": ["what moved?", "which thing was moved?", "the item that got moved",
                       "the object somebody shifted", "Which item was pushed somewhere else?",
                       "the thing that is in a different spot now", "something got relocated; which one?",
                       "the object that was displaced", "Which thing did someone move around?",
                       "the item whose position changed"],
    "temporal.moved_most": ["what moved the farthest?", "which object moved the most?",
                            "the thing that covered the greatest distance", "Which item was moved furthest?",
                            "the object with the largest displacement", "Which one travelled the longest path?",
                            "the item that was carried the farthest"],
    "temporal.appeared": ["what appeared?", "the new object", "which thing was added?",
                          "the item that arrived later", "Something new turned up. Which one?",
                          "the object that was brought in", "Which item entered the scene?",
                          "the thing that was absent at first", "what got placed here during the video?",
                          "the late arrival"],
    "temporal.disappeared": ["what is missing now?", "which object was removed?", "the thing that got taken away",
                             "the item that left the scene", "Which object disappeared from view for good?",
                             "the thing that's no longer here", "Someone took an object away for good. Which one?",
                             "the object that was carried off", "what went missing?",
                             "Which item can't be seen anymore at the end?"],
    "temporal.reappeared": ["what was hidden for a while?", "which object got blocked from view?",
                            "the thing that was covered for a moment", "Which item was briefly out of view?",
                            "the object that got occluded and then showed again", "what disappeared and returned?",
                            "the item that was temporarily hidden", "Which object reappeared after being hidden?",
                            "something was blocked by the {occluder}; which thing?"],
}

#: group -> phrasings kept out of training, for the report's paraphrase probe.
PROBE_PARAPHRASES: dict[str, list[str]] = {
    "attribute.category": ["Where is the {name} located?", "Can I see the {name}?", "Mark the {name} for me."],
    "attribute.color": ["I'm after the {color} {name}.", "Get me the {name} that looks {color}."],
    "attribute.color_only": ["Which thing here looks {color}?", "Highlight whatever looks {color}."],
    "spatial.extreme": ["Which {name} sits on the {side} side?", "Give me the {name} nearest the {side} border."],
    "spatial.depth": ["Which {name} is {prep} where I'm standing?", "The {name} {prep} the lens."],
    "comparative.size": ["Out of the {plural}, the {adj2} one.", "I want whichever {name} is {adj}."],
    "affordance.single": ["{need}. Which object would help?", "{need}. Got anything?"],
    "multi.category": ["Highlight all {plural} you see.", "Show me each and every {name}."],
    "multi.affordance": ["{need}. Mark every object that would work."],
    "temporal.moved": ["Something changed place. Which object?"],
    "temporal.appeared": ["Which item arrived during the clip?"],
}


@lru_cache(maxsize=None)
def _template_regex(text: str) -> Optional[re.Pattern]:
    """A regex reading the slots back out of a filled template (case-insensitive first letter)."""
    parts = re.split(r"(\{[a-z_0-9]+\})", text)
    seen: set[str] = set()
    out = []
    for p in parts:
        m = re.fullmatch(r"\{([a-z_0-9]+)\}", p)
        if m is None:
            out.append(re.escape(p))
        elif m.group(1) in seen:
            out.append(f"(?P={m.group(1)})")
        else:
            seen.add(m.group(1))
            out.append(f"(?P<{m.group(1)}>.+?)")
    return re.compile("^" + "".join(out) + "$", re.IGNORECASE)


def _template(template_id: str):
    from frs_ros.sim.queries import TEMPLATES

    group = template_id.rsplit(".", 1)[0]
    for t in TEMPLATES.get(group, []):
        if t.template_id == template_id:
            return group, t
    return group, None


def _fill_number(slots: dict) -> None:
    """Add ``name`` from ``plural`` or ``plural`` from ``name`` (ontology plurals, else +s)."""
    from frs_ros.sim.ontology import ONTOLOGY

    plurals = {c.name: c.plural_name for c in ONTOLOGY.values()}
    if "plural" in slots and "name" not in slots:
        p = slots["plural"]
        sing = next((n for n, pl in plurals.items() if pl == p), None)
        slots["name"] = sing or (p[:-2] if p.endswith("es") and p[:-2].endswith(("s", "sh", "ch", "x")) else p.rstrip("s"))
    elif "name" in slots and "plural" not in slots:
        n = slots["name"]
        slots["plural"] = plurals.get(n) or n + ("es" if n.endswith(("s", "sh", "ch", "x")) else "s")


def slots_of(template_id: str, query: str) -> Optional[dict]:
    """The slot values of ``query`` written with template ``template_id`` (None if it does not match)."""
    group, t = _template(template_id)
    if t is None:
        return None
    m = _template_regex(t.text).match(query.strip())
    if m is None:
        return None
    slots = dict(m.groupdict())
    _fill_number(slots)
    if "need" in slots:  # sentence templates capitalise the first letter: keep the need as written
        slots["need"] = slots["need"][0].upper() + slots["need"][1:]
    return slots


def paraphrase(template_id: str, query: str, rng: random.Random,
               pool: Optional[dict[str, list[str]]] = None) -> Optional[str]:
    """``query`` said with a random phrasing of its group from ``pool`` (default the training
    pool), or None when the template is unknown, the text does not match it, or no phrasing
    fits its slots."""
    pool = TRAIN_PARAPHRASES if pool is None else pool
    group = template_id.rsplit(".", 1)[0]
    slots = slots_of(template_id, query)
    if slots is None:
        return None
    usable = []
    for p in pool.get(group, []):
        try:
            usable.append(p.format(**slots))
        except KeyError:
            continue
    if not usable:
        return None
    text = usable[rng.randrange(len(usable))]
    return text[0].upper() + text[1:] if text[:1].islower() and rng.random() < 0.5 else text


def augment_records(records: list[dict], prob: float, seed: int = 0) -> tuple[list[dict], int]:
    """Records with the query re-said (probability ``prob`` each; ``query_orig`` keeps the
    original). Returns ``(records, number changed)``. Deterministic for a seed."""
    rng = random.Random(seed)
    out, n = [], 0
    for r in records:
        if prob > 0 and rng.random() < prob and r.get("template_id"):
            new = paraphrase(r["template_id"], r["query"], rng)
            if new is not None and new != r["query"]:
                r = {**r, "query": new, "query_orig": r["query"]}
                n += 1
        out.append(r)
    return out, n
