"""Oracle teacher for the simulated world: solves a query from ground truth, explains it briefly.

It is the teacher for distillation on sim data (a large LLM teacher implements the same
:class:`~frs_ros.reasoning.base.Reasoner` protocol). Ground truth is allowed here and nowhere
else: the query's sim ``target_ids`` are mapped to twin track ids by mask overlap with
``frame.gt.instance_map``, and ``query.spec`` says in words why they are the answer.

The chain is the format the student learns, so it is regular and short (WISE: a concise
rationale; ~10 tokens). It names the object with the twin text's own words followed by the id
-- "speaker #6 plays music.", "rightmost plate #4.", "mugs #1 #5.", "moved soccer ball #2.",
"No pencil here." -- so that the student, having written the words, copies the id that follows
them in the scene (see ``frs_ros.twin.serialize``: the twin text carries dominant colours and a
``facts:`` line with order, group and motion facts, so the chains need no tool calls;
relations to a reference object cite the two coordinates). When the twin text does not show the
deciding fact for the target (a colour named otherwise, an order seen otherwise), the answer is
still right but the chain is flagged ``DO_NOT_TRAIN`` in its warnings and chain generation
drops it.
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
from frs_ros.reasoning.outcome import Outcome
from frs_ros.reasoning.types import Rollout, ToolCall
from frs_ros.sim.types import QueryBook
from frs_ros.twin.serialize import object_line, plural, twin_facts
from frs_ros.twin.types import DigitalTwin, TwinObject

#: Marker in a warning: the chain's answer is right but the twin text cannot justify it, so
#: chain generation drops it (a student cannot learn it from what it sees).
DO_NOT_TRAIN = "do not train on this chain"
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


def _plural(word: str) -> str:
    return word + ("es" if word.endswith(("s", "sh", "ch", "x")) else "s")


class OracleReasoner:
    """Ground-truth teacher (``backend: oracle``). See the module docstring.

    ``observe(twin, frame)`` may be called for every frame of an episode: it remembers which
    sim instance each track is, so tracks that are lost at query time (a disappeared object)
    can still be answered.

    truth: the simulator's queries with their ground truth (:class:`~frs_ros.sim.types.QueryBook`,
        text -> ``Query``), given here and not with each query, so the ``Reasoner`` protocol carries
        nothing oracle-only. The reasoner node shares its book (filled from ``/frs/sim/queries`` or
        the in-process sim camera); offline tools ``truth.update([query])`` before they ask.
    """

    def __init__(self, config: Optional[ReasonerConfig] = None, *, truth: Optional[QueryBook] = None) -> None:
        self.config = config or ReasonerConfig(backend="oracle")
        self.truth = truth if truth is not None else QueryBook()
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
    ) -> ReasonerOutput:
        t0 = time.perf_counter()
        sim_query = self.truth.get(query)
        if sim_query is None or frame is None or getattr(frame, "gt", None) is None:
            return ReasonerOutput(
                text="", status=Outcome.ERROR,
                error="the oracle reasoner needs the simulator's query in its truth book (OracleReasoner(truth=...); "
                      "the sim camera publishes them on /frs/sim/queries) and a frame with ground truth (frame.gt); "
                      "use backend 'hf' for real scenes",
            )
        if cancel is not None and cancel.is_set():
            return ReasonerOutput(text="", status=Outcome.CANCELLED, error="the query was cancelled before it started")
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
            text=rollout.text, rollout=rollout, status=Outcome.OK, tool_calls=[c for p in plans for c in p],
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
        #: the twin text's object lines and facts phrases (what the student sees)
        self.lines = {o.track_id: object_line(o, twin) for o in twin.objects}
        self.facts = twin_facts(twin)
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
            self.warnings.append(f"no twin object for any target: answered none ({DO_NOT_TRAIN})")
            return self.done("Nothing here fits.", answer=[])
        fn = getattr(self, f"solve_{kind}", None)
        if fn is None:
            self.warnings.append(f"unknown query kind {kind!r}: answered from ground truth without explanation")
            return self.done(f"{self.group(self.targets)}.")
        fn()

    # Every chain cites the twin text that decides it, in the text's own word order, so that the
    # id comes right after the words that name the object (an induction copy for the student):
    # "speaker #6 plays music.", "rightmost plate #4.", "No pencil here." When the twin text does
    # not show the deciding fact for the target (a colour the describe rule names otherwise, an
    # order our box centres see otherwise), the chain is flagged DO_NOT_TRAIN.
    def need_fact(self, fact: str) -> None:
        if fact not in self.facts:
            self.warnings.append(f"the twin facts do not say '{fact}' ({DO_NOT_TRAIN})")

    def need_color(self, objs: list[TwinObject], color: str) -> None:
        for o in objs:
            if o.attributes.get("color") != color:
                self.warnings.append(
                    f"twin colour of #{o.track_id} is {o.attributes.get('color')!r}, query says {color!r} ({DO_NOT_TRAIN})")

    def named(self, o: TwinObject, with_color: bool = False) -> str:
        """'speaker #6' (or 'grey speaker #6'): the object's words and id as its twin line has them."""
        c = o.attributes.get("color")
        return f"{c} {o.label} #{o.track_id}" if with_color and c else f"{o.label} #{o.track_id}"

    def group(self, objs: list[TwinObject], with_color: bool = False) -> str:
        """'cutting board #1, plates #4 #7': objects of one label listed as the facts list them."""
        by: dict[str, list[TwinObject]] = {}
        for o in sorted(objs, key=lambda o: o.track_id):
            by.setdefault(o.label, []).append(o)
        out = []
        for label, os_ in by.items():
            if len(os_) == 1:
                out.append(self.named(os_[0], with_color))
            else:
                out.append(f"{plural(label)} " + " ".join(f"#{o.track_id}" for o in os_))
        return ", ".join(out)

    def solve_attribute(self) -> None:
        s = self.spec
        t = self.targets
        if "color" in s and "category" in s:
            self.need_color(t, s["color"])
            return self.done(f"{self.named(t[0], with_color=True)}.")
        if "material" in s:
            # material is not observable by the twin: the teacher knows it, the student guesses
            return self.done(f"{_MATERIAL_WORD.get(s['material'], s['material'])} {self.named(t[0])}.")
        if "color" in s:  # the only object of a colour
            self.need_color(t, s["color"])
            return self.done(f"{self.named(t[0], with_color=True)}.")
        return self.done(f"{self.named(t[0])}.")

    def solve_multi(self) -> None:
        s = self.spec
        t = self.targets
        if "category" in s:
            fact = f"{plural(t[0].label)} " + " ".join(f"#{o.track_id}" for o in t)
            self.need_fact(fact)
            return self.done(f"{fact}.")
        if "color" in s:
            fact = f"{s['color']} ones " + " ".join(f"#{o.track_id}" for o in t)
            self.need_fact(fact)
            return self.done(f"{fact}.")
        aff = s.get("affordance", "")
        if aff and self.can_match():
            return self.by_match(aff, t)
        return self.done(f"{self.group(t)}: each {aff}.")

    def solve_affordance(self) -> None:
        aff = self.spec.get("affordance", "")
        if aff and self.can_match():
            return self.by_match(aff, self.targets)
        return self.done(f"{self.group(self.targets)} {aff}.")

    # What an object is for is world knowledge a 135 M student gets wrong on unseen categories
    # (affordance gIoU 0.63 for the SFT student without the tool); the match() tool ranks the
    # twin's labels by sentence embedding and the chain answers with what it returns. A chain where
    # the tool's objects are not the targets is flagged DO_NOT_TRAIN (the answer stays the truth).
    def can_match(self) -> bool:
        """Tools are on and match()'s sentence embedder loads; without it (the core install, no
        torch) the chain names the use itself, flagged DO_NOT_TRAIN (training chains use the tool)."""
        if not self.tools_ok:
            return False
        from frs_ros.text_embed import shared_embedder

        try:
            shared_embedder()
        except RuntimeError as e:
            self.warnings.append(f"match() is unavailable ({e}); answered without it ({DO_NOT_TRAIN})")
            return False
        return True

    def by_match(self, aff: str, targets: list[TwinObject]) -> None:
        from frs_ros.twin.tools import match_ids

        got = match_ids(aff, self.twin)
        if set(got) != {o.track_id for o in targets}:
            self.warnings.append(f"match({aff!r}) gives {sorted(got)}, the targets are "
                                 f"{sorted(o.track_id for o in targets)} ({DO_NOT_TRAIN})")
        return self.done(f"What {aff}?", answer=targets, calls=[ToolCall("match", (aff,))])

    def solve_spatial(self) -> None:
        s = self.spec
        rel = s.get("relation", "")
        t = self.targets
        cat = s.get("category")
        if rel in ("leftmost", "rightmost", "nearest", "farthest"):
            fact = f"{rel} {t[0].label if cat else 'object'} #{t[0].track_id}"
            self.need_fact(fact)
            return self.done(f"{fact}.")
        ref_sid = s.get("reference_id")
        ref = [o for o in self.visible() if self.sim_of.get(o.track_id) == ref_sid]
        words = rel.replace("_", " ")
        if ref:
            r = ref[0]
            axis = "z" if rel in ("in_front_of", "behind") else "x"
            val = (lambda o: _z(o)) if axis == "z" else (lambda o: _x(o, self.twin))
            return self.done(f"{self.named(r)} {axis}={val(r):.2f}; {t[0].label} {words} it: "
                             f"{self.named(t[0])} {axis}={val(t[0]):.2f}.")
        self.warnings.append(f"reference sim object {ref_sid} has no twin object ({DO_NOT_TRAIN})")
        return self.done(f"{t[0].label} {words} the {s.get('reference_category', 'reference')}: {self.named(t[0])}.")

    def solve_comparative(self) -> None:
        s = self.spec
        t = self.targets
        if s.get("op") == "ordinal":
            side = s.get("from", "left")
            rank = int(s.get("rank", 1))
            fact = f"{_ORDINAL_WORD.get(rank, rank)} {t[0].label} from {side} #{t[0].track_id}"
            # the facts name the ends of a row 'leftmost'/'rightmost', never '1st'/'Nth .. from'
            n = sum(1 for o in self.visible() if o.label == t[0].label)
            end = {1: side, n: "right" if side == "left" else "left"}.get(rank)
            if end is not None:
                fact = f"{end}most {t[0].label} #{t[0].track_id}"
        else:
            fact = f"{'biggest' if s.get('op', 'larger') == 'larger' else 'smallest'} {t[0].label} #{t[0].track_id}"
        self.need_fact(fact)
        return self.done(f"{fact}.")

    def solve_temporal(self) -> None:
        ev = self.spec.get("event", "")
        t = self.targets
        o = t[0]
        word = {"moved": "moved", "moved_most": "moved most", "appeared": "new", "disappeared": "lost",
                "reappeared": "was hidden"}.get(ev)
        if word is None:
            self.warnings.append(f"unknown temporal event {ev!r}")
            return self.done(f"{self.named(o)}.")
        fact = f"{word} {self.named(o)}"
        self.need_fact(fact)
        return self.done(f"{fact}.")

    def solve_none(self) -> None:
        s = self.spec
        # "No red mug here." must not contradict the twin text (a label or colour named otherwise)
        for o in self.visible():
            if "category" in s and o.label == s["category"] and ("color" not in s or o.attributes.get("color") == s["color"]):
                self.warnings.append(f"the twin shows {self.named(o, with_color='color' in s)}, the answer is none "
                                     f"({DO_NOT_TRAIN})")
        if "color" in s and "category" in s:
            return self.done(f"No {s['color']} {s['category']} here.", answer=[])
        if "affordance" in s:
            if self.can_match():
                return self.by_match(s["affordance"], [])
            return self.done(f"Nothing here {s['affordance']}.", answer=[])
        if "category" in s:
            return self.done(f"No {s['category']} here.", answer=[])
        return self.done("Nothing here fits.", answer=[])


_ORDINAL_WORD = {1: "1st", 2: "2nd", 3: "3rd", 4: "4th"}
_MATERIAL_WORD = {"wood": "wooden"}
