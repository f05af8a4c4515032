"""Compact text of the twin for the LLM student (``twin_to_text``) and the verbose baseline.

The student never sees pixels; every token of this text is paid for at prefill on CPU, so
the text carries only what reasoning needs, with rounded numbers and a stable order.

Format (one header line, one line per object ordered by track id, one line of facts)::

    twin t=3.20s depth=sensor objects=4
    red mug #1 x=0.31 z=0.84 size=0.10x0.12
    green bottle? #2 x=0.70 z=1.02 size=0.07x0.21 moved=0.25 v=0.10
    blue mug #4 x=0.52 z=1.10 size=0.08x0.09 new@2.1s lost=0.4s
    white mug #5 x=0.12 z=1.31 size=0.07x0.08
    facts: mugs #1 #5; leftmost mug #5; rightmost mug #1; nearest mug #1; farthest mug #5; ...;
    nearest object #1; ...; moved bottle #2

- ``color label #id``: the dominant colour named at the last keyframe (``attributes['color']``,
  see ``Tracker``), the voted label, then the track id; ``label?``: voted score < 0.5
  (uncertain); ``object`` = unlabelled. The id comes *after* the words that name the object, so
  a student that has written "speaker" copies the id that follows "speaker" in the scene (an
  induction copy; with the id first, the 135 M student named the right object but wrote the
  wrong id in about half of its answers: docs/training.md).
- ``x``: box centre / image width (0 = left edge); ``z``: median depth [m] when metric;
  ``rz`` (unitless, larger = closer) for relative DepthAnything depth; ``z=?`` when unknown.
  ``size`` [m] (w x h) only with metric depth, else ``area`` [% of image].
- ``new@T``: first seen T s after the twin started (omitted for objects present from the start);
  ``lost=T``: not visible for T s; ``moved=D``: displacement since first seen [m] (> 5 cm);
  ``v=S``: current speed [m/s] (> 5 cm/s); then other tool attributes ``key=value``.
- ``facts:`` what a small student cannot compute reliably (sorting, counting), each phrase
  ending in the id(s) it names (:func:`twin_facts`): the members of each label seen twice or
  more (``mugs #1 #5``) and of each colour (``green ones #2 #7``); among visible objects of one
  label, ``leftmost``/``rightmost``/``2nd X from left``/``.. from right``, ``nearest``/
  ``farthest``, ``biggest``/``smallest``; the same over all visible objects (``nearest object``);
  motion: ``moved``, ``moved most``, ``new``, ``lost``, ``was hidden``.
"""

from __future__ import annotations

import json
import math
import re
from typing import Callable, Iterable, Optional

import numpy as np

from frs_ros.twin.depth import METRIC_SOURCES, metric_extent_m
from frs_ros.twin.types import DigitalTwin, TwinObject, twin_to_json

MOVE_REPORT_M = 0.05
SPEED_REPORT_MPS = 0.05
UNCERTAIN_SCORE = 0.5
_ORD = {1: "1st", 2: "2nd", 3: "3rd"}


def _f2(x: float) -> str:
    return f"{x:.2f}"


def _ordinal(n: int) -> str:
    return _ORD.get(n, f"{n}th")


def _x(obj: TwinObject, twin: DigitalTwin) -> float:
    """Box centre / image width (0 = left edge)."""
    return (obj.box[0] + obj.box[2]) / 2 / twin.image_size[1]


def _metric(obj: TwinObject) -> bool:
    return obj.depth.valid and obj.depth.source in METRIC_SOURCES


def _near_key(obj: TwinObject) -> float:
    """Smaller = closer: metric median depth, or minus relative depth (rz: larger = closer)."""
    d = obj.depth
    if not d.valid or not math.isfinite(d.median):
        return math.inf
    return d.median if d.source in METRIC_SOURCES else -d.median


def _size_key(obj: TwinObject, twin: DigitalTwin) -> float:
    """Metric box area [m^2] when depth is metric, else pixel area (groups mix neither: see caller)."""
    if _metric(obj):
        w, h = metric_extent_m(obj.box, obj.depth.median, twin.intrinsics)
        if math.isfinite(w * h):
            return w * h
    return float(obj.area_px)


def plural(word: str) -> str:
    """English plural of a label (regular forms; 'glass' -> 'glasses')."""
    if word.endswith("y") and word[-2:-1] not in "aeiou":
        return word[:-1] + "ies"
    return word + ("es" if word.endswith(("s", "sh", "ch", "x")) else "s")


def twin_facts(twin: DigitalTwin) -> list[str]:
    """The ``facts:`` phrases of the twin text, each ending in the id(s) it names (module doc).

    Order facts are only written when unambiguous: ties (equal keys) give none.
    """
    vis = sorted((o for o in twin.objects if o.visible), key=lambda o: o.track_id)
    facts: list[str] = []

    def ids(objs) -> str:
        return " ".join(f"#{o.track_id}" for o in sorted(objs, key=lambda o: o.track_id))

    def extremes(objs: list[TwinObject], key, lo: str, hi: str) -> None:
        vals = sorted(((key(o), o.track_id, o) for o in objs if math.isfinite(key(o))), key=lambda v: (v[0], v[1]))
        if len(vals) < 2:
            return
        if vals[0][0] < vals[1][0]:
            facts.append(f"{lo} #{vals[0][2].track_id}")
        if vals[-1][0] > vals[-2][0]:
            facts.append(f"{hi} #{vals[-1][2].track_id}")

    groups: dict[str, list[TwinObject]] = {}
    for o in vis:
        if o.label != "object":
            groups.setdefault(o.label, []).append(o)
    for label, objs in groups.items():
        if len(objs) < 2:
            continue
        facts.append(f"{plural(label)} {ids(objs)}")
        order = sorted(objs, key=lambda o: (_x(o, twin), o.track_id))
        n = len(order)
        xs = [_x(o, twin) for o in order]
        if all(b > a for a, b in zip(xs[:-1], xs[1:])):
            facts.append(f"leftmost {label} #{order[0].track_id}")
            facts.append(f"rightmost {label} #{order[-1].track_id}")
            for i, o in enumerate(order[1:-1], start=2):
                facts.append(f"{_ordinal(i)} {label} from left #{o.track_id}")
                facts.append(f"{_ordinal(n + 1 - i)} {label} from right #{o.track_id}")
        extremes(objs, _near_key, f"nearest {label}", f"farthest {label}")
        metric = all(_metric(o) for o in objs)
        extremes(objs, (lambda o: _size_key(o, twin)) if metric else (lambda o: float(o.area_px)),
                 f"smallest {label}", f"biggest {label}")
    colors: dict[str, list[TwinObject]] = {}
    for o in vis:
        if o.attributes.get("color"):
            colors.setdefault(str(o.attributes["color"]), []).append(o)
    for color in sorted(colors):
        if len(colors[color]) >= 2:
            facts.append(f"{color} ones {ids(colors[color])}")
    if len(vis) >= 2:
        extremes(vis, _near_key, "nearest object", "farthest object")
        extremes(vis, lambda o: _x(o, twin), "leftmost object", "rightmost object")
        metric = all(_metric(o) for o in vis)
        extremes(vis, (lambda o: _size_key(o, twin)) if metric else (lambda o: float(o.area_px)),
                 "smallest object", "biggest object")
    objs = sorted(twin.objects, key=lambda o: o.track_id)
    moved = [o for o in objs if math.isfinite(o.displacement_m) and o.displacement_m > MOVE_REPORT_M]
    for o in moved:
        facts.append(f"moved {o.label} #{o.track_id}")
    if len(moved) >= 2:
        top = sorted(moved, key=lambda o: -o.displacement_m)
        if top[0].displacement_m > top[1].displacement_m:
            facts.append(f"moved most {top[0].label} #{top[0].track_id}")
    for o in objs:
        if o.first_seen_ns > twin.start_ns:
            facts.append(f"new {o.label} #{o.track_id}")
    for o in objs:
        if not o.visible:
            facts.append(f"lost {o.label} #{o.track_id}")
    for o in vis:
        if o.gaps_ns:
            facts.append(f"was hidden {o.label} #{o.track_id}")
    return facts


def object_line(obj: TwinObject, twin: DigitalTwin) -> str:
    """One object's line (see module docstring)."""
    h, w = twin.image_size
    label = obj.label + ("?" if obj.score < UNCERTAIN_SCORE and obj.label != "object" else "")
    color = obj.attributes.get("color")
    parts = [f"{color} {label}" if color else label, f"#{obj.track_id}"]
    parts.append(f"x={_f2(_x(obj, twin))}")
    d = obj.depth
    if _metric(obj):
        parts.append(f"z={_f2(d.median)}")
        bw, bh = metric_extent_m(obj.box, d.median, twin.intrinsics)
        parts.append(f"size={_f2(bw)}x{_f2(bh)}")
    else:
        parts.append(f"rz={_f2(d.median)}" if d.valid else "z=?")
        parts.append(f"area={100.0 * obj.area_px / (h * w):.1f}%")
    if obj.first_seen_ns > twin.start_ns:
        parts.append(f"new@{(obj.first_seen_ns - twin.start_ns) * 1e-9:.1f}s")
    if not obj.visible:
        parts.append(f"lost={(twin.stamp_ns - obj.last_seen_ns) * 1e-9:.1f}s")
    disp = obj.displacement_m
    if math.isfinite(disp) and disp > MOVE_REPORT_M:
        parts.append(f"moved={_f2(disp)}")
    speed = obj.speed_mps
    if math.isfinite(speed) and speed > SPEED_REPORT_MPS and obj.visible:
        parts.append(f"v={_f2(speed)}")
    for k in sorted(obj.attributes):
        if k in _LINE_SKIP:
            continue
        v = obj.attributes[k]
        if isinstance(v, float):
            v = _f2(v)
        parts.append(f"{k}={str(v).replace(' ', '_')}")
    return " ".join(parts)


#: attributes not repeated as key=value: the colour leads the line; sizes are in ``size=``
_LINE_SKIP = {"color", "width_m", "height_m"}


def twin_to_text(twin: DigitalTwin, max_objects: Optional[int] = None) -> str:
    """Compact, deterministic text of ``twin`` (header, one line per object by track id, facts).

    max_objects: keep at most this many object lines — visible before lost, then larger area
    first — and say in the header how many were left out; the kept ones are still listed by id.
    Facts are computed over all objects, listed or not.
    """
    objs = list(twin.objects)
    omitted = 0
    if max_objects is not None and len(objs) > max_objects:
        keep = sorted(objs, key=lambda o: (not o.visible, -o.area_px, o.track_id))[:max_objects]
        omitted = len(objs) - len(keep)
        objs = keep
    objs.sort(key=lambda o: o.track_id)
    head = f"twin t={(twin.stamp_ns - twin.start_ns) * 1e-9:.2f}s depth={twin.depth_source} objects={len(twin.objects)}"
    if omitted:
        head += f" (showing {len(objs)}, {omitted} small/lost omitted)"
    lines = [head] + [object_line(o, twin) for o in objs]
    facts = twin_facts(twin)
    if facts:
        lines.append("facts: " + "; ".join(facts))
    return "\n".join(lines)


def naive_json(twin: DigitalTwin) -> str:
    """The baseline a straightforward implementation feeds: every per-frame field of every object
    as indented JSON with full float precision. Left out, to keep the comparison conservative:
    masks (no one feeds RLE counts to an LLM) and the centroid ``history`` list (it alone would
    make the naive text ~30x larger on 30-frame episodes)."""
    d = twin_to_json(twin)
    for o in d["objects"]:
        o.pop("mask", None)
        o.pop("history", None)
    return json.dumps(d, indent=2)


_PROXY = re.compile(r"[A-Za-z]+|\d|[^\sA-Za-z\d]")


def count_tokens_proxy(text: str) -> int:
    """Tokenizer proxy: each alphabetic run, each single digit and each punctuation character is a
    token (Qwen-style BPEs split numbers digit by digit, which this mirrors)."""
    return len(_PROXY.findall(text))


def bpe_counter(corpus: Iterable[str], vocab_size: int = 2000) -> Callable[[str], int]:
    """Train a byte-level BPE (``tokenizers``) on ``corpus`` and return a token counter.

    A stand-in for a Qwen-like BPE without hub access: trained on both the compact and the
    naive texts so neither format is favoured by the vocabulary.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    # digits split individually, like Qwen's pre-tokenizer
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator(list(corpus), trainer=trainer)
    return lambda text: len(tok.encode(text).ids)


def token_report(twins: list[DigitalTwin]) -> dict:
    """Mean token counts of ``twin_to_text`` vs ``naive_json`` over ``twins`` (proxy and BPE)."""
    compact = [twin_to_text(t) for t in twins]
    naive = [naive_json(t) for t in twins]
    bpe = bpe_counter(compact + naive)
    out = {}
    for name, fn in (("proxy", count_tokens_proxy), ("bpe", bpe)):
        c = float(np.mean([fn(s) for s in compact]))
        n = float(np.mean([fn(s) for s in naive]))
        out[name] = {"compact_mean": c, "naive_mean": n, "ratio": n / c if c else math.nan}
    return out
