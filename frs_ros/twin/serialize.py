"""Compact text of the twin for the LLM student (``twin_to_text``) and the verbose baseline.

The student never sees pixels; every token of this text is paid for at prefill on CPU, so
the text carries only what reasoning needs, with rounded numbers and a stable order.

Format (one header line, one line per object, ordered by track id)::

    twin t=3.20s img=320x240 depth=sensor objects=3 | x,y: box centre / image size; z: median depth m; size: w x h m
    #1 mug x=0.31 y=0.62 z=0.84 size=0.10x0.12
    #2 bottle? x=0.70 y=0.55 z=1.02 size=0.07x0.21 moved=0.25 v=0.10 color=green
    #4 bowl x=0.12 y=0.80 z=0.75 size=0.16x0.06 new@2.1s lost=0.4s

- ``label?``: voted label score < 0.5 (uncertain); ``object`` = unlabelled.
- ``z`` metres when the depth is metric; ``rz`` (unitless, larger = closer) for relative
  DepthAnything depth; ``z=?`` when unknown. ``size`` only with metric depth, else ``area`` [% of image].
- ``new@T``: first seen T s after the twin started (omitted for objects present from the start);
  ``lost=T``: not visible for T s; ``moved=D``: displacement since first seen [m] (> 5 cm);
  ``v=S``: current speed [m/s] (> 5 cm/s); then tool attributes ``key=value``.
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


def _f2(x: float) -> str:
    return f"{x:.2f}"


def object_line(obj: TwinObject, twin: DigitalTwin) -> str:
    """One object's line (see module docstring)."""
    h, w = twin.image_size
    x0, y0, x1, y1 = obj.box
    parts = [f"#{obj.track_id}", obj.label + ("?" if obj.score < UNCERTAIN_SCORE and obj.label != "object" else "")]
    parts.append(f"x={_f2((x0 + x1) / 2 / w)} y={_f2((y0 + y1) / 2 / h)}")
    d = obj.depth
    metric = d.valid and d.source in METRIC_SOURCES
    if metric:
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
        v = obj.attributes[k]
        if isinstance(v, float):
            v = _f2(v)
        parts.append(f"{k}={str(v).replace(' ', '_')}")
    return " ".join(parts)


def twin_to_text(twin: DigitalTwin, max_objects: Optional[int] = None) -> str:
    """Compact, deterministic text of ``twin`` (header + one line per object, by track id).

    max_objects: keep at most this many objects — visible before lost, then larger area first —
    and say in the header how many were left out; the kept ones are still listed by id.
    """
    objs = list(twin.objects)
    omitted = 0
    if max_objects is not None and len(objs) > max_objects:
        keep = sorted(objs, key=lambda o: (not o.visible, -o.area_px, o.track_id))[:max_objects]
        omitted = len(objs) - len(keep)
        objs = keep
    objs.sort(key=lambda o: o.track_id)
    h, w = twin.image_size
    head = (
        f"twin t={(twin.stamp_ns - twin.start_ns) * 1e-9:.2f}s img={w}x{h} depth={twin.depth_source} "
        f"objects={len(twin.objects)}"
    )
    if omitted:
        head += f" (showing {len(objs)}, {omitted} small/lost omitted)"
    head += " | x,y: box centre / image size; z: median depth m; size: w x h m"
    return "\n".join([head] + [object_line(o, twin) for o in objs])


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
