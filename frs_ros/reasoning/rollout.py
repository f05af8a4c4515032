"""The rollout grammar: strict parser, renderer, tool-call syntax and answer checks.

A rollout is what the reasoner (student LLM or oracle teacher) writes after the prompt::

    rollout  := WS "<reason>" TEXT "</reason>"
                ( WS "<plan>" CALLS "</plan>" WS "<results>" TEXT "</results>" )*
                WS "<answer>" ANSWER "</answer>" WS
    CALLS    := call ( ";" call )*                 e.g. describe(4); relation(4, 7)
    call     := NAME "(" [ arg ( "," arg )* ] ")"  NAME = [a-z_][a-z0-9_]*
    arg      := INT | FLOAT | '"' chars '"'        strings escape \\" and \\\\
    ANSWER   := "none" | INT ( "," INT )*           track ids of the twin, no repeats
    WS       := optional whitespace (the renderer writes none)

TEXT may not contain a tag. ``<results>`` holds one line per call, ``name(args): output``,
written by the runtime (never by the model: generation stops at ``</plan>``).

The answer names *twin track ids*; ids that are not in the twin are reported by
:func:`check_answer_ids` (:class:`UnknownTrackIdError`). Constrained decoding in the HF
backend makes such ids impossible for an LM; the check guards every other source.
"""

from __future__ import annotations

import re
from typing import Iterable, Optional, Sequence

from frs_ros.reasoning.types import Rollout, ToolCall

REASON_OPEN, REASON_CLOSE = "<reason>", "</reason>"
PLAN_OPEN, PLAN_CLOSE = "<plan>", "</plan>"
RESULTS_OPEN, RESULTS_CLOSE = "<results>", "</results>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
ANSWER_NONE = "none"
ANSWER_SEPARATOR = ", "
CALL_SEPARATOR = "; "
TAGS = (REASON_OPEN, REASON_CLOSE, PLAN_OPEN, PLAN_CLOSE, RESULTS_OPEN, RESULTS_CLOSE, ANSWER_OPEN, ANSWER_CLOSE)

_TAG_RE = re.compile(r"</?(reason|plan|results|answer)>")
_NAME_RE = re.compile(r"[a-z_][a-z0-9_]*")
_NUM_RE = re.compile(r"-?\d+(\.\d+)?")
_INT_RE = re.compile(r"\d+")


class RolloutParseError(ValueError):
    """A rollout does not follow the grammar. ``position`` is the character offset of the fault."""

    def __init__(self, message: str, position: int = -1, text: str = "") -> None:
        self.position = position
        where = ""
        if position >= 0:
            snippet = text[max(0, position - 20): position + 20].replace("\n", "\\n")
            where = f" (at char {position}: ...{snippet}...)"
        super().__init__(message + where)
        self.reason = message


class UnknownTrackIdError(ValueError):
    """The answer names a track id that is not in the twin."""


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i].isspace():
        i += 1
    return i


def _expect(text: str, i: int, tag: str, context: str) -> int:
    if not text.startswith(tag, i):
        found = text[i: i + 12] if i < len(text) else "end of text"
        raise RolloutParseError(f"expected {tag} {context}, found {found!r}", i, text)
    return i + len(tag)


def _block(text: str, i: int, close: str, name: str) -> tuple[str, int]:
    """Read free text from ``i`` up to ``close``; no other tag may appear inside."""
    m = _TAG_RE.search(text, i)
    if m is None:
        raise RolloutParseError(f"unterminated <{name}>: missing {close}", i, text)
    if m.group(0) != close:
        raise RolloutParseError(f"<{name}> is not closed: found {m.group(0)} before {close}", m.start(), text)
    return text[i: m.start()], m.end()


def parse_tool_calls(plan: str, offset: int = 0, text: Optional[str] = None) -> list[ToolCall]:
    """Parse ``name(arg, "str"); name(arg)`` into tool calls.

    offset/text: where ``plan`` sits in a larger rollout, so errors point into it.
    Raises :class:`RolloutParseError` for an empty plan or bad syntax.
    """
    full = text if text is not None else plan
    calls: list[ToolCall] = []
    i = 0
    n = len(plan)

    def err(msg: str, j: int) -> RolloutParseError:
        return RolloutParseError(msg, offset + j, full)

    if not plan.strip():
        raise err("empty <plan>: write at least one tool call like describe(3)", 0)
    while True:
        while i < n and plan[i].isspace():
            i += 1
        m = _NAME_RE.match(plan, i)
        if m is None:
            raise err(f"expected a tool name (lowercase identifier), found {plan[i:i + 10]!r}", i)
        name = m.group(0)
        i = m.end()
        if i >= n or plan[i] != "(":
            raise err(f"expected '(' after tool name {name!r}", i)
        i += 1
        args: list = []
        while True:
            while i < n and plan[i] == " ":
                i += 1
            if i < n and plan[i] == ")" and not args:
                i += 1
                break
            if i < n and plan[i] == '"':
                j = i + 1
                buf = []
                while j < n and plan[j] != '"':
                    if plan[j] == "\\" and j + 1 < n:
                        j += 1
                    buf.append(plan[j])
                    j += 1
                if j >= n:
                    raise err(f"unterminated string argument in {name}(...)", i)
                args.append("".join(buf))
                i = j + 1
            else:
                mm = _NUM_RE.match(plan, i)
                if mm is None:
                    raise err(f"bad argument in {name}(...): expected a number or a \"quoted string\"", i)
                args.append(float(mm.group(0)) if mm.group(1) else int(mm.group(0)))
                i = mm.end()
            while i < n and plan[i] == " ":
                i += 1
            if i < n and plan[i] == ",":
                i += 1
                continue
            if i < n and plan[i] == ")":
                i += 1
                break
            raise err(f"expected ',' or ')' in {name}(...)", i)
        calls.append(ToolCall(name=name, args=tuple(args)))
        while i < n and plan[i].isspace():
            i += 1
        if i >= n:
            return calls
        if plan[i] != ";":
            raise err("expected ';' between tool calls", i)
        i += 1


def parse_answer(body: str, offset: int = 0, text: Optional[str] = None) -> list[int]:
    """``"3, 7"`` -> ``[3, 7]``; ``"none"`` -> ``[]``. Raises on anything else or repeats."""
    full = text if text is not None else body
    s = body.strip()
    if s == ANSWER_NONE:
        return []
    if not s:
        raise RolloutParseError("empty <answer>: write track ids like 3, 7 or the word none", offset, full)
    ids: list[int] = []
    for part in s.split(","):
        p = part.strip()
        if not _INT_RE.fullmatch(p):
            raise RolloutParseError(
                f"bad answer item {p!r}: expected a track id (non-negative integer) or 'none' alone", offset, full
            )
        v = int(p)
        if v in ids:
            raise RolloutParseError(f"track id {v} repeated in <answer>", offset, full)
        ids.append(v)
    return ids


def parse_rollout(text: str) -> Rollout:
    """Strictly parse a full rollout (see module docstring). Raises :class:`RolloutParseError`."""
    if not isinstance(text, str):
        raise RolloutParseError(f"rollout must be a str, got {type(text).__name__}")
    i = _skip_ws(text, 0)
    i = _expect(text, i, REASON_OPEN, "at the start of the rollout")
    reason, i = _block(text, i, REASON_CLOSE, "reason")
    plans: list[list[ToolCall]] = []
    results: list[str] = []
    while True:
        i = _skip_ws(text, i)
        if text.startswith(PLAN_OPEN, i):
            start = i + len(PLAN_OPEN)
            body, i = _block(text, start, PLAN_CLOSE, "plan")
            plans.append(parse_tool_calls(body, start, text))
            i = _skip_ws(text, i)
            i = _expect(text, i, RESULTS_OPEN, "after </plan>")
            res, i = _block(text, i, RESULTS_CLOSE, "results")
            results.append(res)
            continue
        if text.startswith(ANSWER_OPEN, i):
            start = i + len(ANSWER_OPEN)
            body, i = _block(text, start, ANSWER_CLOSE, "answer")
            answer_ids = parse_answer(body, start, text)
            j = _skip_ws(text, i)
            if j != len(text):
                raise RolloutParseError("text after </answer>: the rollout must end with the answer", j, text)
            return Rollout(reason=reason.strip(), plans=plans, results=results, answer_ids=answer_ids, text=text)
        found = text[i: i + 12] if i < len(text) else "end of text"
        raise RolloutParseError(f"expected <plan> or <answer> after the reasoning, found {found!r}", i, text)


def render_tool_calls(calls: Sequence[ToolCall]) -> str:
    """``[describe(4), describe(7)]`` -> ``'describe(4); describe(7)'``."""
    return CALL_SEPARATOR.join(_render_call(c) for c in calls)


def _render_call(call: ToolCall) -> str:
    def fmt(a) -> str:
        if isinstance(a, str):
            return '"' + a.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return str(a)

    return f"{call.name}({', '.join(fmt(a) for a in call.args)})"


def render_answer(ids: Iterable[int]) -> str:
    """``[3, 7]`` -> ``'3, 7'``; ``[]`` -> ``'none'``."""
    ids = list(ids)
    return ANSWER_NONE if not ids else ANSWER_SEPARATOR.join(str(int(i)) for i in ids)


def render_results(calls: Sequence[ToolCall], outputs: Sequence[str]) -> str:
    """One line per call: ``describe(4): ...``. Tags in outputs are neutralised, newlines flattened."""
    if len(calls) != len(outputs):
        raise ValueError(f"{len(calls)} calls but {len(outputs)} outputs")
    lines = []
    for c, o in zip(calls, outputs):
        o = sanitise_text(str(o)).replace("\n", " ").strip()
        # twin tools already start their line with the call (``describe(4): ...``)
        lines.append(o if o.startswith(c.name + "(") else f"{_render_call(c)}: {o}")
    return "\n".join(lines)


def sanitise_text(text: str) -> str:
    """Remove rollout tags from free text (so tool output can never break the grammar)."""
    return _TAG_RE.sub(lambda m: m.group(0).replace("<", "[").replace(">", "]"), text)


def render_rollout(rollout: Rollout) -> str:
    """Canonical text of a rollout (no whitespace between blocks). Inverse of :func:`parse_rollout`."""
    if len(rollout.plans) != len(rollout.results):
        raise ValueError(f"{len(rollout.plans)} plans but {len(rollout.results)} results")
    parts = [REASON_OPEN, sanitise_text(rollout.reason), REASON_CLOSE]
    for calls, res in zip(rollout.plans, rollout.results):
        if not calls:
            raise ValueError("a <plan> needs at least one tool call")
        parts += [PLAN_OPEN, render_tool_calls(calls), PLAN_CLOSE, RESULTS_OPEN, sanitise_text(res), RESULTS_CLOSE]
    parts += [ANSWER_OPEN, render_answer(rollout.answer_ids), ANSWER_CLOSE]
    return "".join(parts)


def check_answer_ids(answer_ids: Sequence[int], twin_ids: Iterable[int], max_targets: int = 0) -> None:
    """Raise :class:`UnknownTrackIdError` if the answer names ids not in the twin.

    max_targets: 0 = no limit; otherwise more ids than this raise ``ValueError``.
    """
    known = set(int(i) for i in twin_ids)
    unknown = [i for i in answer_ids if i not in known]
    if unknown:
        raise UnknownTrackIdError(
            f"answer names track id(s) {unknown} that are not in the twin (ids: {sorted(known)})"
        )
    if max_targets and len(answer_ids) > max_targets:
        raise ValueError(f"answer names {len(answer_ids)} targets but max_targets is {max_targets}")


def answer_prefix_ok(s: str, allowed_ids: Iterable[int], max_targets: int = 0) -> bool:
    """Whether ``s`` (text after ``<answer>``) can still be completed to a valid answer.

    Valid answers: ``none</answer>`` or ``ID(, ID)*</answer>`` with ids from ``allowed_ids``,
    no repeats, at most ``max_targets`` (0 = no limit). Used by constrained decoding.
    """
    allowed = [str(int(a)) for a in allowed_ids]
    close = ANSWER_CLOSE
    if (ANSWER_NONE + close).startswith(s):
        return True
    limit = max_targets if max_targets > 0 else len(allowed)
    used: list[str] = []
    i = 0
    while True:
        m = _INT_RE.match(s, i)
        digits = m.group(0) if m else ""
        i += len(digits)
        if i == len(s):
            if not digits:
                return len(used) < limit and any(a not in used for a in allowed)
            return len(used) < limit and any(a.startswith(digits) and a not in used for a in allowed)
        if not digits or digits not in allowed or digits in used:
            return False
        used.append(digits)
        rest = s[i:]
        if rest.startswith(ANSWER_SEPARATOR):
            if len(used) >= limit:
                return False
            i += len(ANSWER_SEPARATOR)
            continue
        if ANSWER_SEPARATOR.startswith(rest):
            return len(used) < limit and any(a not in used for a in allowed)
        return close.startswith(rest) or rest == close


def answer_complete(s: str) -> bool:
    """Whether ``s`` (text after ``<answer>``) is a finished answer ending in ``</answer>``."""
    return s.endswith(ANSWER_CLOSE)
