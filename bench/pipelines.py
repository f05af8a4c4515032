"""The two query pipelines the benchmark compares, on the same twins and queries.

- **optimised**: the project's runtime (``ReasonSegEngine`` + ``HFReasoner``: compact twin,
  prefix KV-cache reuse across queries and tool pauses, concise reasoning budget, constrained
  answer) running on :class:`frs_ros.optim.LeanCausalLM` (lean decode loop, int8 weights).
- **naive**: what a straightforward implementation does: verbose JSON twin, HF ``generate`` on
  the fp32 model with no cache reuse, unconstrained and unbounded reasoning, and after each
  tool pause the whole text (prompt + rollout so far + results) is prefilled again.

With random weights (real sizes) the rollouts are *scripted*: :class:`ScriptedRollout` is a
logits processor that makes the model write a given rollout text token by token, so every
token is still a real forward pass of the real-size model (the processor only picks which).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch

from frs_ros.reasoning import rollout as grammar
from frs_ros.reasoning.prompt import build_prompt, encode_prompt


class ScriptedRollout:
    """HF-style logits processor ``(input_ids (1, n), scores (1, V)) -> scores`` that raises the
    logit of the next token of ``script`` (continuing the rollout text decoded from position
    ``start`` of ``input_ids``). Once the text leaves the script it stops steering."""

    def __init__(self, tokenizer: Any) -> None:
        self.tok = tokenizer
        self.script: Optional[str] = None
        self.start = 0
        self.steered = 0
        self.diverged = False
        self.seconds = 0.0  # time spent in this processor (bench scaffolding, subtracted from decode)

    def set(self, script: Optional[str], start: int) -> None:
        self.script, self.start, self.steered, self.diverged = script, int(start), 0, False

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        t0 = time.perf_counter()
        try:
            return self._steer(input_ids, scores)
        finally:
            self.seconds += time.perf_counter() - t0

    def _steer(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.script is None:
            return scores
        text = self.tok.decode(input_ids[0, self.start:].tolist(), skip_special_tokens=False,
                               clean_up_tokenization_spaces=False)
        if not self.script.startswith(text):
            self.diverged = True
            return scores
        rest = self.script[len(text):]
        if not rest:
            return scores
        nxt = self.tok.encode(rest, add_special_tokens=False)[0]
        scores = scores.clone()
        scores[..., nxt] = scores.max() + 100.0
        self.steered += 1
        return scores


def verbose_reason(twin_text: str, query: str, tokenizer: Any, n_tokens: int) -> str:
    """A verbose chain of ``n_tokens`` tokens (the naive baseline's unbounded reasoning): it walks
    through the scene object by object, as long chains do, cut at the token count."""
    lines = [ln for ln in twin_text.splitlines()[1:] if ln.strip()]
    parts = [f"The user asks: \"{query}\". Let me go through every object in the scene carefully."]
    k = 0
    while True:
        ln = lines[k % len(lines)] if lines else "no objects"
        parts.append(f" Object {ln} could be relevant; I check whether it matches the request and its position.")
        k += 1
        ids = tokenizer.encode("".join(parts), add_special_tokens=False)
        if len(ids) >= n_tokens:
            return tokenizer.decode(ids[:n_tokens], skip_special_tokens=False, clean_up_tokenization_spaces=False)


def naive_script(oracle_text: str, verbose: str) -> str:
    """The oracle rollout with its reasoning replaced by a verbose chain."""
    i = oracle_text.index(grammar.REASON_CLOSE)
    return grammar.REASON_OPEN + verbose + oracle_text[i:]


class _StopOnText:
    """HF stopping criterion: stop when the decoded new text ends with one of ``tags``; records
    the time of its first call (= prefill + first token done)."""

    def __init__(self, tokenizer: Any, start: int, tags: tuple[str, ...], eos: Optional[int],
                 decode_threads: int = 0) -> None:
        self.tok, self.start, self.tags, self.eos = tokenizer, start, tags, eos
        self.t_first: Optional[float] = None
        self.decode_threads = decode_threads

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kw: Any) -> torch.Tensor:
        if self.t_first is None:
            self.t_first = time.perf_counter()
            if self.decode_threads:  # prefill done: decode on its best thread count
                torch.set_num_threads(self.decode_threads)
        last = int(input_ids[0, -1])
        text = self.tok.decode(input_ids[0, self.start:].tolist(), skip_special_tokens=False,
                               clean_up_tokenization_spaces=False)
        # a BPE token may straddle a tag: stop once a plan is closed and not yet answered by
        # results, or once the answer is closed
        plan_open = text.rfind(grammar.PLAN_CLOSE) > text.rfind(grammar.RESULTS_OPEN)
        done = plan_open or grammar.ANSWER_CLOSE in text or (self.eos is not None and last == self.eos)
        return torch.tensor([done], dtype=torch.bool)


@dataclass
class NaiveResult:
    answer_ids: list[int]
    status: str
    text: str
    prompt_tokens: int
    generated_tokens: int
    processed_tokens: int
    timings_s: dict = field(default_factory=dict)


def naive_answer(model: Any, tokenizer: Any, twin_json: str, query: str, tools: Optional[Callable],
                 script: Optional[ScriptedRollout] = None, script_text: Optional[str] = None,
                 max_new_tokens: int = 1024, decode_threads: int = 0) -> NaiveResult:
    """The straightforward pipeline (see module docstring). Greedy."""
    from transformers import LogitsProcessorList, StoppingCriteriaList

    t0 = time.perf_counter()
    p_ids = list(encode_prompt(tokenizer, build_prompt(twin_json, query)).ids)
    text = ""  # the rollout so far; re-tokenised and re-read in full at every generate call
    timings = {"prefill": 0.0, "decode": 0.0, "tools": 0.0, "resume": 0.0}
    first = True
    processed = 0
    status = "ok"
    if script is not None:
        script.set(script_text, len(p_ids))
        script.seconds = 0.0
    eos = tokenizer.eos_token_id
    generated = 0
    while True:
        inp = torch.tensor([p_ids + [int(i) for i in tokenizer.encode(text, add_special_tokens=False)]])
        stop = _StopOnText(tokenizer, len(p_ids), (grammar.PLAN_CLOSE, grammar.ANSWER_CLOSE), eos, decode_threads)
        t = time.perf_counter()
        threads = torch.get_num_threads()
        with torch.inference_mode():
            try:
                out = model.generate(
                    inp, max_new_tokens=max_new_tokens - generated, do_sample=False, num_beams=1,
                    logits_processor=LogitsProcessorList([script] if script is not None else []),
                    stopping_criteria=StoppingCriteriaList([stop]), pad_token_id=eos, eos_token_id=None,
                )
            finally:
                torch.set_num_threads(threads)
        t_end = time.perf_counter()
        new = out[0, inp.shape[1]:].tolist()
        t_first = stop.t_first or t_end
        # the whole context is read again at every call: after a tool pause that is a re-prefill
        timings["prefill" if first else "resume"] += t_first - t
        first = False
        timings["decode"] += t_end - t_first
        processed += inp.shape[1] + len(new)
        generated += len(new)
        text = tokenizer.decode(out[0, len(p_ids):].tolist(), skip_special_tokens=False,
                                clean_up_tokenization_spaces=False)
        cut = text.find(grammar.PLAN_CLOSE, text.rfind(grammar.PLAN_OPEN))
        if text.rfind(grammar.PLAN_OPEN) > text.rfind(grammar.RESULTS_CLOSE) and cut >= 0 \
                and tools is not None and generated < max_new_tokens:
            text = text[: cut + len(grammar.PLAN_CLOSE)]  # a BPE token may run past the tag
            body = text[text.rfind(grammar.PLAN_OPEN) + len(grammar.PLAN_OPEN): -len(grammar.PLAN_CLOSE)]
            t = time.perf_counter()
            try:
                calls = grammar.parse_tool_calls(body)
                outputs = []
                for c in calls:
                    try:
                        outputs.append(str(tools(c)))
                    except Exception as e:  # noqa: BLE001 - tool errors go into <results>
                        outputs.append(f"error: {e}")
                res = grammar.RESULTS_OPEN + grammar.render_results(calls, outputs) + grammar.RESULTS_CLOSE
            except grammar.RolloutParseError:
                res = grammar.RESULTS_OPEN + "error: malformed plan" + grammar.RESULTS_CLOSE
            timings["tools"] += time.perf_counter() - t
            text += res
            continue
        break
    if grammar.ANSWER_CLOSE in text:
        text = text[: text.index(grammar.ANSWER_CLOSE) + len(grammar.ANSWER_CLOSE)]
    if script is not None:
        timings["decode"] -= script.seconds  # bench scaffolding, not part of the pipeline
        timings["script_s"] = script.seconds
    answer: list[int] = []
    try:
        answer = list(grammar.parse_rollout(text).answer_ids)
    except grammar.RolloutParseError:
        status = "parse_error"
    timings["total"] = time.perf_counter() - t0
    return NaiveResult(answer, status, text, len(p_ids), generated, processed, timings)
