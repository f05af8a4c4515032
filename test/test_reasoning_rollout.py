"""Rollout grammar: parser (valid and every kind of malformed input), renderer, answer checks, prompt."""

import pytest

from frs_ros.reasoning.prompt import (
    build_prompt,
    encode_prompt,
    estimate_difficulty,
    query_cues,
    reasoning_budget,
)
from frs_ros.reasoning.rollout import (
    RolloutParseError,
    UnknownTrackIdError,
    answer_prefix_ok,
    check_answer_ids,
    parse_rollout,
    parse_tool_calls,
    render_results,
    render_rollout,
)
from frs_ros.reasoning.types import Rollout, ToolCall


def test_parse_minimal_and_none():
    r = parse_rollout("<reason>Only #3 is a mug.</reason><answer>3</answer>")
    assert r.reason == "Only #3 is a mug." and r.answer_ids == [3] and r.plans == []
    r = parse_rollout("<reason>No cup here.</reason><answer>none</answer>")
    assert r.answer_ids == []


def test_parse_plans_whitespace_and_strings():
    text = (
        '\n<reason>Colour unknown.</reason>\n<plan>describe(4); relation(4, 7); detect("red \\"mug\\"")</plan>'
        "<results>describe(4): #4 mug: red</results>\n"
        "<plan>history(2)</plan><results>history(2): never moved</results><answer>4, 7</answer>\n"
    )
    r = parse_rollout(text)
    assert r.plans == [
        [ToolCall("describe", (4,)), ToolCall("relation", (4, 7)), ToolCall("detect", ('red "mug"',))],
        [ToolCall("history", (2,))],
    ]
    assert r.results == ["describe(4): #4 mug: red", "history(2): never moved"]
    assert r.answer_ids == [4, 7] and r.text == text


def test_render_roundtrip():
    r = Rollout(reason="x", plans=[[ToolCall("detect", ('a "b"',)), ToolCall("relation", (1, 2))]],
                results=["ok"], answer_ids=[1, 2])
    text = render_rollout(r)
    assert text == '<reason>x</reason><plan>detect("a \\"b\\""); relation(1, 2)</plan><results>ok</results><answer>1, 2</answer>'
    back = parse_rollout(text)
    assert (back.reason, back.plans, back.results, back.answer_ids) == (r.reason, r.plans, r.results, r.answer_ids)
    assert render_rollout(Rollout(reason="y")) == "<reason>y</reason><answer>none</answer>"
    # tags in free text are neutralised so the rendering always parses
    assert parse_rollout(render_rollout(Rollout(reason="a <answer> b", answer_ids=[2]))).answer_ids == [2]


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "expected <reason> at the start"),
        ("hello <reason>x</reason><answer>1</answer>", "expected <reason> at the start"),
        ("<reason>x", "unterminated <reason>"),
        ("<reason>x<answer>1</answer>", "<reason> is not closed: found <answer>"),
        ("<reason>x</reason>", "expected <plan> or <answer> after the reasoning, found 'end of text'"),
        ("<reason>x</reason>so<answer>1</answer>", "expected <plan> or <answer>"),
        ("<reason>x</reason><plan>describe(1)</plan><answer>1</answer>", "expected <results> after </plan>"),
        ("<reason>x</reason><plan></plan><results></results><answer>1</answer>", "empty <plan>"),
        ("<reason>x</reason><plan>Describe(1)</plan><results></results><answer>1</answer>", "expected a tool name"),
        ("<reason>x</reason><plan>describe 1</plan><results></results><answer>1</answer>", "expected '(' after tool name"),
        ("<reason>x</reason><plan>describe(a)</plan><results></results><answer>1</answer>", "bad argument in describe"),
        ("<reason>x</reason><plan>detect(\"mug)</plan><results></results><answer>1</answer>", "unterminated string"),
        ("<reason>x</reason><plan>relation(1 2)</plan><results></results><answer>1</answer>", "expected ',' or ')'"),
        ("<reason>x</reason><plan>describe(1) describe(2)</plan><results></results><answer>1</answer>", "expected ';' between"),
        ("<reason>x</reason><plan>describe(1)</plan><results>r<answer>1</answer>", "<results> is not closed"),
        ("<reason>x</reason><answer></answer>", "empty <answer>"),
        ("<reason>x</reason><answer>the mug</answer>", "bad answer item 'the mug'"),
        ("<reason>x</reason><answer>3, none</answer>", "bad answer item 'none'"),
        ("<reason>x</reason><answer>-2</answer>", "bad answer item '-2'"),
        ("<reason>x</reason><answer>3, 3</answer>", "track id 3 repeated"),
        ("<reason>x</reason><answer>3", "unterminated <answer>"),
        ("<reason>x</reason><answer>3</answer> trailing", "text after </answer>"),
    ],
)
def test_malformed(text, message):
    with pytest.raises(RolloutParseError) as e:
        parse_rollout(text)
    assert message in str(e.value)
    if text:
        assert "at char" in str(e.value)  # says where


def test_parse_error_position_points_at_fault():
    text = "<reason>x</reason><plan>describe(1); bad</plan><results></results><answer>1</answer>"
    with pytest.raises(RolloutParseError) as e:
        parse_rollout(text)
    assert text[e.value.position:].startswith("</plan>")  # '(' expected right after 'bad'


def test_non_str():
    with pytest.raises(RolloutParseError, match="must be a str"):
        parse_rollout(None)  # type: ignore[arg-type]


def test_tool_calls_numbers():
    assert parse_tool_calls("f(1.5, -2, 3)") == [ToolCall("f", (1.5, -2, 3))]
    assert parse_tool_calls("ping()") == [ToolCall("ping", ())]


def test_render_results_does_not_repeat_call():
    calls = [ToolCall("describe", (4,)), ToolCall("relation", (1, 2))]
    text = render_results(calls, ["describe(4): #4 mug: red", "left\nof <answer>"])
    assert text == "describe(4): #4 mug: red\nrelation(1, 2): left of [answer]"


def test_check_answer_ids():
    check_answer_ids([1, 2], [1, 2, 3])
    check_answer_ids([], [1])
    with pytest.raises(UnknownTrackIdError, match=r"track id\(s\) \[9\] that are not in the twin"):
        check_answer_ids([1, 9], [1, 2])
    with pytest.raises(ValueError, match="max_targets"):
        check_answer_ids([1, 2], [1, 2], max_targets=1)


def test_answer_prefix_ok():
    ids = [1, 12, 5]
    for ok in ["", "n", "none</answer>", "1", "12", "1, ", "12, 5</", "5, 1, 12</answer>"]:
        assert answer_prefix_ok(ok, ids), ok
    for bad in ["3", "no ", "none, 1", "1,2", "1, 1</answer>", "13", "01", "5</answer>x", "1 "]:
        assert not answer_prefix_ok(bad, ids), bad
    assert answer_prefix_ok("1,", ids)  # prefix of the separator ", "
    assert answer_prefix_ok("1, 1", ids)  # may still become "1, 12"
    assert not answer_prefix_ok("1, ", ids, max_targets=1)
    assert answer_prefix_ok("1</answer>", ids, max_targets=1)
    assert answer_prefix_ok("none</answer>", [])
    assert not answer_prefix_ok("1", [])


def test_prompt_order_and_segments():
    p = build_prompt("twin t=0.00s\n#1 mug\n", "  the   red\nmug ")
    assert p.text.index("#1 mug") < p.text.index("Query: the red mug")
    assert p.prefix.startswith("<|im_start|>system") and p.query.endswith("<|im_start|>assistant\n")
    q2 = build_prompt("twin t=0.00s\n#1 mug", "a bowl")
    assert (q2.prefix, q2.twin) == (p.prefix, p.twin)  # only the query segment differs
    plain = build_prompt("#1 mug", "x", chat_markers=False)
    assert "<|im_start|>" not in plain.text


def test_encode_prompt_boundaries():
    class Tok:
        def encode(self, s, add_special_tokens=False):
            return [ord(c) for c in s]

    p = build_prompt("#1 mug", "cup")
    ids = encode_prompt(Tok(), p)
    assert ids.boundaries == (len(p.prefix), len(p.prefix) + len(p.twin)) and len(ids) == len(p.text)


def test_difficulty_and_budget():
    assert estimate_difficulty("the mug") == 1
    assert "temporal" in query_cues("the cup that was moving earlier")
    assert estimate_difficulty("the biggest thing that was moving before the bowl fell") == 3
    assert estimate_difficulty("the mug", n_objects=20) == 2
    assert reasoning_budget(1, (24, 40, 64)) == 24 and reasoning_budget(9, (24, 40, 64)) == 64
    with pytest.raises(ValueError):
        reasoning_budget(1, ())
