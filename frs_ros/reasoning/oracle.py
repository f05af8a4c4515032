"""Oracle teacher for the simulated world: solves a query from ground truth, explains it briefly.

It is the teacher for distillation on sim data (a large LLM teacher implements the same
:class:`~frs_ros.reasoning.base.Reasoner` protocol). Ground truth is allowed here and nowhere
else: the query's sim ``target_ids`` are mapped to twin track ids by mask overlap with
``frame.gt.instance_map``, and ``query.spec`` says in words why they are the answer.

The chain is the format the student learns, so it is regular and short (WISE: rationale
first), written only from what the student can see -- the twin text (labels, ``x``, ``z``,
``size``, ``moved``/``new``/``lost`` flags) -- plus tools where the twin lacks a fact:

- colour (attribute.color, color_only, multi.color, none-by-colour): ``describe(id)`` of the
  candidates whose colour is not yet in the twin;
- material: ``describe(id)`` of the candidates (colour/shape evidence; material itself is not
  observable by the tools);
- temporal (moved, appeared, disappeared, reappeared): ``history(id)`` of the candidates;
- everything else: no tools (positions, depth and sizes are in the twin text).

Reasoning sentences always follow one pattern: *what is asked. what the scene shows. choice.*
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any, Optional

import numpy as np

from frs_ros.camera import Frame
from frs_ros.masks import rle_decode
from frs_ros.reasoning import rollout as grammar
from frs_ros.reasoning.base import Feedback, FeedbackCallback, ReasonerOutput, ToolExecutor
from frs_ros.reasoning.config import ReasonerConfig
from frs_ros.reasoning.types import Rollout, ToolCall
from frs_ros.twin.depth import METRIC_SOURCES, metric_extent_m
from frs_ros.twin.types import DigitalTwin, TwinObject

#: At most this many tool calls in one plan (keeps chains and prefill short).
MAX_CALLS = 6
#: A twin object maps to the sim instance covering at least this fraction of its mask.
MIN_MAP_FRACTION = 0.5


def map_tracks_to_sim(twin: DigitalTwin, frame: Frame) -> dict[int, int]:
    """``{track_id: sim_instance_id}`` for visible twin objects, by majority overlap of the
    twin mask with ``frame.gt.instance_map`` (>= ``MIN_MAP_FRACTION`` of the mask)."""
    imap = np.asarray(frame.gt.instance_map)
    out: dict[int, int] = {}
    for o in twin.objects:
        if not o.visible:
            continue
        m = rle_decode(o.mask)
        if m.shape != imap.shape or not m.any():
            continue
        ids = imap[m]
        vals, counts = np.unique(ids, return_counts=True)
        k = int(np.argmax(counts))
        if vals[k] > 0 and counts[k] >= MIN_MAP_FRACTION * ids.size:
            out[o.track_id] = int(vals[k])
    return out


def _x(o: TwinObject, twin: DigitalTwin) -> float:
    return (o.box[0] + o.box[2]) / 2.0 / twin.intrinsics.width


def _z(o: TwinObject) -> float:
    return float(o.depth.median) if o.depth.valid else math.nan


def _ids(objs: list[TwinObject]) -> str:
    return ", ".join(f"#{o.track_id}" for o in objs)


def _plural(word: str) -> str:
    return word + ("es" if word.endswith(("s", "sh", "ch", "x")) else "s")


class OracleReasoner:
    """Ground-truth teacher (``backend: oracle``). See the module docstring.

    ``observe(twin, frame)`` may be called for every frame of an episode: it remembers which
    sim instance each track is, so tracks that are lost at query time (a disappeared object)
    can still be answered.
    """

    def __init__(self, config: Optional[ReasonerConfig] = None) -> None:
        self.config = config or ReasonerConfig(backend="oracle")
        self._known: dict[int, int] = {}
        self._lock = threading.Lock()

    def observe(self, twin: DigitalTwin, frame: Frame) -> None:
        """Update the track -> sim id memory from one frame with ground truth."""
        if frame is not None and frame.gt is not None:
            with self._lock:
                self._known.update(map_tracks_to_sim(twin, frame))

    def reset(self) -> None:
        with self._lock:
            self._known.clear()

    # ------------------------------------------------------------------ protocol
    def reason(
        self,
        query: str,
        twin: DigitalTwin,
        twin_text: str,
        frame: Optional[Frame],
        tools: Optional[ToolExecutor],
        *,
        max_targets: int = 0,
        cancel: Optional[threading.Event] = None,
        on_feedback: Optional[FeedbackCallback] = None,
        sim_query: Any = None,
    ) -> ReasonerOutput:
        t0 = time.perf_counter()
        if sim_query is None or frame is None or getattr(frame, "gt", None) is None:
            return ReasonerOutput(
                text="", status="error",
                error="the oracle reasoner needs the simulator's query (sim_query=...) and a frame with ground "
                      "truth (frame.gt); use backend 'hf' for real scenes",
            )
        if cancel is not None and cancel.is_set():
            return ReasonerOutput(text="", status="cancelled", error="the query was cancelled before it started")
        self.observe(twin, frame)
        with self._lock:
            sim_of = {tid: sid for tid, sid in self._known.items() if tid in set(twin.ids())}
        chain = _Chain(twin, frame, sim_query, sim_of, tools_ok=tools is not None)
        chain.solve()
        plans, results, t_tools = [], [], 0.0
        warnings = list(chain.warnings)
        if chain.calls and tools is not None:
            if on_feedback is not None:
                on_feedback(Feedback("running_tool", grammar.REASON_OPEN + chain.reason + grammar.REASON_CLOSE, 0))
            t = time.perf_counter()
            outputs = []
            for c in chain.calls:
                try:
                    outputs.append(str(tools(c)))
                except Exception as e:  # tool errors go into <results>, as for the LM
                    outputs.append(f"error: {e}")
            t_tools = time.perf_counter() - t
            plans.append(list(chain.calls))
            results.append(grammar.render_results(chain.calls, outputs))
        elif chain.calls:
            warnings.append("no tool executor: answered without the planned tool calls")
        answer = list(chain.answer)
        if max_targets and len(answer) > max_targets:
            answer = answer[:max_targets]
        rollout = Rollout(reason=chain.reason, plans=plans, results=results, answer_ids=answer)
        rollout.text = grammar.render_rollout(rollout)
        if on_feedback is not None:
            on_feedback(Feedback("answering", rollout.text, 0))
        total = time.perf_counter() - t0
        return ReasonerOutput(
            text=rollout.text, rollout=rollout, status="ok", tool_calls=[c for p in plans for c in p],
            timings_s={"decode": total - t_tools, "tools": t_tools}, warnings=warnings,
        )


class _Chain:
    """Builds the reasoning, the tool calls and the answer for one query."""

    def __init__(self, twin: DigitalTwin, frame: Frame, q: Any, sim_of: dict[int, int], tools_ok: bool = True) -> None:
        self.twin, self.frame, self.q, self.sim_of = twin, frame, q, sim_of
        self.tools_ok = tools_ok
        self.spec = dict(q.spec or {})
        self.gt_objects = frame.gt.objects
        self.reason = ""
        self.calls: list[ToolCall] = []
        self.answer: list[int] = []
        self.warnings: list[str] = []
        targets = set(int(i) for i in q.target_ids)
        self.targets = [o for o in twin.objects if sim_of.get(o.track_id) in targets]
        self.targets.sort(key=lambda o: o.track_id)
        missing = targets - {sim_of[o.track_id] for o in self.targets}
        if missing:
            self.warnings.append(f"sim target(s) {sorted(missing)} have no twin object; answered with the rest")

    # ---- helpers
    def category_of(self, o: TwinObject) -> Optional[str]:
        sid = self.sim_of.get(o.track_id)
        g = self.gt_objects.get(sid) if sid is not None else None
        return g.category if g is not None else None

    def visible(self) -> list[TwinObject]:
        return sorted([o for o in self.twin.objects if o.visible], key=lambda o: o.track_id)

    def of_category(self, cat: str) -> list[TwinObject]:
        return [o for o in self.visible() if self.category_of(o) == cat]

    def name(self, o: TwinObject) -> str:
        return f"#{o.track_id} {o.label}"

    def describe_calls(self, objs: list[TwinObject], key: str = "color") -> list[ToolCall]:
        """describe() for objects whose ``key`` is not yet in the twin (target always first);
        none when no tool executor is available."""
        if not self.tools_ok:
            return []
        need = [o for o in objs if key not in o.attributes]
        need = sorted(need, key=lambda o: (o not in self.targets, o.track_id))[:MAX_CALLS]
        return [ToolCall("describe", (o.track_id,)) for o in sorted(need, key=lambda o: o.track_id)]

    def history_calls(self, objs: list[TwinObject]) -> list[ToolCall]:
        if not self.tools_ok:
            return []
        objs = sorted(objs, key=lambda o: (o not in self.targets, o.track_id))[:MAX_CALLS]
        return [ToolCall("history", (o.track_id,)) for o in sorted(objs, key=lambda o: o.track_id)]

    def done(self, reason: str, answer: Optional[list[TwinObject]] = None, calls: Optional[list[ToolCall]] = None) -> None:
        objs = self.targets if answer is None else answer
        self.reason = " ".join(reason.split())
        self.answer = [o.track_id for o in objs]
        self.calls = calls or []

    # ---- dispatch
    def solve(self) -> None:
        kind = self.spec.get("kind", self.q.kind)
        if kind == "none" or not self.q.target_ids:
            return self.solve_none()
        if not self.targets:
            # the twin has not (yet) got the target: from what the student sees, nothing fits
            self.warnings.append("no twin object for any target: answered none (do not train on this chain)")
            return self.done("Nothing in the scene fits the query.", answer=[])
        fn = getattr(self, f"solve_{kind}", None)
        if fn is None:
            self.warnings.append(f"unknown query kind {kind!r}: answered from ground truth without explanation")
            return self.done(f"The query names {_ids(self.targets)}.")
        fn()

    def colour_reason(self, want: str, cands: list[TwinObject], calls: list[ToolCall], pick: str) -> str:
        """'<cands>; check their colours, pick <pick>.' or, when colours are in the twin, the facts."""
        if calls:
            return f"{want} Colours unknown: describe {_ids(cands)}, pick {pick}."
        known = "; ".join(f"#{o.track_id} {o.attributes['color']}" for o in cands if "color" in o.attributes)
        return f"{want} Colours: {known}." if known else want

    def solve_attribute(self) -> None:
        s = self.spec
        t = self.targets
        if "color" in s and "category" in s:
            cands = self.of_category(s["category"])
            calls = self.describe_calls(cands)
            want = f"Want the {s['color']} {s['category']}. {_plural(s['category']).capitalize()}: {_ids(cands)}."
            reason = self.colour_reason(want, cands, calls, f"the {s['color']} one")
            return self.done(reason if calls else f"{reason} {s['color'].capitalize()}: {_ids(t)}.",
                             calls=calls)
        if "material" in s:
            cands = self.of_category(s["category"])
            calls = self.describe_calls(cands, key="shape")
            want = f"Want the {s['material']} {s['category']}. {_plural(s['category']).capitalize()}: {_ids(cands)}."
            if calls:
                return self.done(f"{want} Material not in the scene: describe them, pick the {s['material']}-looking one.",
                                 calls=calls)
            return self.done(f"{want} The {s['material']} one: {_ids(t)}.")
        if "color" in s:  # the only object of a colour
            cands = self.visible()
            calls = self.describe_calls(cands)
            reason = self.colour_reason(f"Want the only {s['color']} object.", cands, calls, f"the {s['color']} one")
            return self.done(reason if calls else f"{reason} {s['color'].capitalize()}: {_ids(t)}.",
                             calls=calls)
        cat = s.get("category", "object")
        label = t[0].label if t else cat
        same = "" if label == cat else f" (a {cat})"
        return self.done(f"Want the {cat}. {self.name(t[0]) if t else 'It'}{same} is the only one.")

    def solve_multi(self) -> None:
        s = self.spec
        t = self.targets
        if "category" in s:
            return self.done(f"Want every {s['category']}. {_plural(s['category']).capitalize()}: {_ids(t)}.")
        if "color" in s:
            cands = self.visible()
            calls = self.describe_calls(cands)
            reason = self.colour_reason(f"Want everything {s['color']}.", cands, calls, f"all {s['color']} ones")
            return self.done(reason if calls else f"{reason} {s['color'].capitalize()}: {_ids(t)}.",
                             calls=calls)
        aff = s.get("affordance", "")
        return self.done(f"Want all that {_clause(aff)}. " + "; ".join(f"{self.name(o)} {aff}" for o in t) + ".")

    def solve_affordance(self) -> None:
        aff = self.spec.get("affordance", "")
        t = self.targets
        return self.done(f"Need something that {_clause(aff)}. " + "; ".join(f"{self.name(o)} {aff}" for o in t) + ".")

    def solve_spatial(self) -> None:
        s = self.spec
        rel = s.get("relation", "")
        t = self.targets
        cat = s.get("category")
        cands = self.of_category(cat) if cat else self.visible()
        what = cat or "object"
        if rel in ("leftmost", "rightmost"):
            vals = "; ".join(f"#{o.track_id} x={_x(o, self.twin):.2f}" for o in sorted(cands, key=lambda o: _x(o, self.twin)))
            return self.done(f"Want the {rel} {what}. {_plural(what).capitalize()} by x: {vals}. {rel.capitalize()}: {_ids(t)}.")
        if rel in ("nearest", "farthest"):
            vals = "; ".join(f"#{o.track_id} z={_z(o):.2f}" for o in sorted(cands, key=_z))
            return self.done(f"Want the {rel} {what}. {_plural(what).capitalize()} by z: {vals}. {rel.capitalize()}: {_ids(t)}.")
        ref_sid = s.get("reference_id")
        ref = [o for o in self.visible() if self.sim_of.get(o.track_id) == ref_sid]
        words = rel.replace("_", " ")
        if ref:
            r = ref[0]
            axis = "z" if rel in ("in_front_of", "behind") else "x"
            val = (lambda o: _z(o)) if axis == "z" else (lambda o: _x(o, self.twin))
            vals = "; ".join(f"#{o.track_id} {axis}={val(o):.2f}" for o in sorted(cands, key=val))
            return self.done(
                f"Want the {what} {words} the {s.get('reference_category', 'reference')}. Reference {self.name(r)} "
                f"{axis}={val(r):.2f}. {_plural(what).capitalize()}: {vals}. {words.capitalize()} it: {_ids(t)}."
            )
        self.warnings.append(f"reference sim object {ref_sid} has no twin object")
        return self.done(f"Want the {what} {words} the {s.get('reference_category', 'reference')}. It is {_ids(t)}.")

    def solve_comparative(self) -> None:
        s = self.spec
        cat = s.get("category", "object")
        cands = self.of_category(cat)
        t = self.targets
        if s.get("op") == "ordinal":
            side = s.get("from", "left")
            order = sorted(cands, key=lambda o: _x(o, self.twin), reverse=(side == "right"))
            vals = "; ".join(f"#{o.track_id} x={_x(o, self.twin):.2f}" for o in order)
            rank = int(s.get("rank", 1))
            return self.done(f"Want {cat} number {rank} from the {side}. From the {side}: {vals}. Number {rank}: {_ids(t)}.")
        op = s.get("op", "larger")
        vals = "; ".join(f"#{o.track_id} {_size_text(o, self.twin)}" for o in cands)
        return self.done(f"Want the {op} {cat}. Sizes: {vals}. {op.capitalize()}: {_ids(t)}.")

    def solve_temporal(self) -> None:
        ev = self.spec.get("event", "")
        t = self.targets
        objs = sorted(self.twin.objects, key=lambda o: o.track_id)

        def check(prefix: str, cands: list[TwinObject], pick: str) -> None:
            calls = self.history_calls(_with_targets(cands, t))
            tail = f"Check history, {pick}." if calls else f"Answer: {_ids(t)}."
            self.done(f"{prefix} {tail}", calls=calls)

        if ev in ("moved", "moved_most"):
            cands = sorted((o for o in objs if math.isfinite(o.displacement_m) and o.displacement_m > 0.05),
                           key=lambda o: -o.displacement_m)
            vals = "; ".join(f"#{o.track_id} moved={o.displacement_m:.2f}" for o in cands)
            what = "the object that moved most" if ev == "moved_most" else "the object that moved"
            pick = "pick the largest displacement" if ev == "moved_most" else "pick the one that moved"
            return check(f"Want {what}. Moved: {vals or 'none flagged'}.", cands, pick)
        if ev == "appeared":
            cands = [o for o in objs if o.first_seen_ns > self.twin.start_ns]
            return check(f"Want the object that appeared{self.named(t)}. New: {_ids(cands) or 'none flagged'}.",
                         cands, "pick the one first seen late")
        if ev == "disappeared":
            cands = [o for o in objs if not o.visible]
            return check(f"Want the object that disappeared{self.named(t)}. Lost: {_ids(cands) or 'none flagged'}.",
                         cands, "pick the one gone now")
        if ev == "reappeared":
            cands = [o for o in objs if o.gaps_ns and o.visible]
            return check(f"Want the object that was hidden for a while{self.named(t)}.", cands, "pick the one with a hidden gap")
        self.warnings.append(f"unknown temporal event {ev!r}")
        return self.done(f"Want the object with the asked motion. Answer: {_ids(t)}.")

    def named(self, t: list[TwinObject]) -> str:
        """' (a teddy bear)' when the query text names the target's category, else ''."""
        cats = {self.category_of(o) or o.label for o in t}
        text = str(getattr(self.q, "text", "")).lower()
        hit = [c for c in cats if c and c.lower() in text]
        return f" (a {hit[0]})" if len(hit) == 1 else ""

    def solve_none(self) -> None:
        s = self.spec
        if "color" in s and "category" in s:
            cands = self.of_category(s["category"])
            calls = self.describe_calls(cands)
            want = f"Want the {s['color']} {s['category']}. {_plural(s['category']).capitalize()}: {_ids(cands)}."
            reason = self.colour_reason(want, cands, calls, f"the {s['color']} one, if any")
            return self.done(reason if calls else f"{reason} None is {s['color']}.", answer=[], calls=calls)
        if "affordance" in s:
            return self.done(f"Need something that {_clause(s['affordance'])}. Nothing here {s['affordance']}.", answer=[])
        if "category" in s:
            return self.done(f"Want the {s['category']}. No {s['category']} in the scene.", answer=[])
        return self.done("Nothing in the scene fits.", answer=[])


def _clause(aff: str) -> str:
    """Affordance key -> clause ('holds hot drinks' -> 'could hold a hot drink')."""
    try:
        from frs_ros.sim.ontology import AFFORDANCES

        return AFFORDANCES[aff][0]
    except (ImportError, KeyError):
        return aff


def _with_targets(cands: list[TwinObject], targets: list[TwinObject], limit: int = 3) -> list[TwinObject]:
    """The first ``limit`` candidates, the targets always included (history() is per object)."""
    out = list(targets)
    for o in cands:
        if len(out) >= max(limit, len(targets)):
            break
        if o not in out:
            out.append(o)
    return out


def _size_text(o: TwinObject, twin: DigitalTwin) -> str:
    """The size the twin text shows (metric box extent, else % of image area)."""
    if o.depth.valid and o.depth.source in METRIC_SOURCES:
        w, h = metric_extent_m(o.box, o.depth.median, twin.intrinsics)
        return f"size={w:.2f}x{h:.2f}"
    h, w = twin.image_size
    return f"area={100.0 * o.area_px / (h * w):.1f}%"
