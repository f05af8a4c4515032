"""Hugging Face causal-LM reasoner with prefix KV-cache reuse, tool pauses and constrained answers.

Speed comes from never recomputing a token twice:

- **Prefix cache.** The prompt is ``[prefix][twin][query]`` (``prompt.py``). After prefilling up
  to each segment boundary the KV cache is snapshotted in :class:`PrefixKVCache`, keyed by the
  token prefix. A later prompt takes the entry with the longest common token prefix, copies it
  and crops it to that length, and prefills only the rest (a new query on the same twin prefills
  only the query tokens; a new twin reuses the instruction prefix).
- **Tool pauses.** Generation stops at ``</plan>``; the tools run; ``<results>..</results>`` is
  tokenised and appended to the *live* cache in one forward pass; decoding resumes (no re-prefill).
- **Grammar forcing.** Tags the grammar already fixes (``<reason>``, ``</reason>`` at the
  reasoning budget, the rest of ``<plan>``/``<answer>`` after the branch token) are fed as one
  chunk instead of being decoded one by one.
- **Constrained answer.** Inside ``<answer>`` only tokens that keep the text a prefix of
  ``none</answer>`` or ``ID(, ID)*</answer>`` over the twin's ids are allowed.

Cancellation is checked before every forward pass.
"""

from __future__ import annotations

import copy
import threading
import time
from collections import OrderedDict
from typing import Any, Callable, Optional, Sequence

import numpy as np

from frs_ros.camera import Frame
from frs_ros.reasoning import rollout as grammar
from frs_ros.reasoning.base import Feedback, FeedbackCallback, ReasonerOutput, ToolExecutor
from frs_ros.reasoning.config import ReasonerConfig, ReasonerLoadError
from frs_ros.reasoning.outcome import Outcome
from frs_ros.reasoning.prompt import build_prompt, encode_prompt, estimate_difficulty, reasoning_budget
from frs_ros.reasoning.rollout import RolloutParseError
from frs_ros.reasoning.types import ToolCall
from frs_ros.twin.types import DigitalTwin

#: Prefill runs in chunks of this many tokens, with a cancel check between chunks.
PREFILL_CHUNK = 256

_ANSWER_CHARS = set("0123456789, ") | set(grammar.ANSWER_NONE) | set(grammar.ANSWER_CLOSE)


#: Model-chosen tokens kept free for ``<answer>`` when the reasoning budget is capped by
#: ``max_new_tokens`` (ids, separators and the closing tag of a few targets).
ANSWER_RESERVE_TOKENS = 16

class Cancelled(Exception):
    """Internal: the cancel event was set between tokens."""


def _torch():
    try:
        import torch
    except ImportError as exc:  # the core install (`pip install -e .`, FRS_TORCH=0 venvs) has no torch
        raise ImportError(f"the 'hf' reasoner needs torch and transformers ({exc}): `pip install -e .[lm]` "
                          "(on a CPU machine install torch from https://download.pytorch.org/whl/cpu first, README), "
                          "or use the 'oracle' reasoner on the simulator") from exc
    return torch


def cache_length(cache: Any) -> int:
    """Number of tokens held by a KV cache (0 for ``None``)."""
    return 0 if cache is None else int(cache.get_seq_length())


def crop_cache(cache: Any, length: int) -> None:
    """Crop a ``DynamicCache`` in place to its first ``length`` tokens.

    transformers 5.x ``DynamicCache.crop`` takes a negative count of tokens to remove.
    """
    n = cache_length(cache)
    if length > n or length < 0:
        raise ValueError(f"cannot crop a cache of {n} tokens to {length}")
    if length < n:
        cache.crop(-(n - length))


class PrefixKVCache:
    """LRU store of KV caches keyed by the token prefix they encode.

    ``lookup(ids)`` returns ``(n, cache)``: a *copy* of the stored cache with the longest common
    prefix with ``ids``, cropped to ``n`` tokens (``n <= len(ids) - 1``, so at least one token is
    left to prefill and produce logits), or ``(0, None)``.
    """

    def __init__(self, max_entries: int = 4) -> None:
        self.max_entries = int(max_entries)
        self._entries: "OrderedDict[tuple[int, ...], Any]" = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()

    @staticmethod
    def _common(a: Sequence[int], b: Sequence[int]) -> int:
        m = min(len(a), len(b))
        if m == 0:
            return 0
        x = np.asarray(a[:m]) != np.asarray(b[:m])
        idx = np.flatnonzero(x)
        return int(idx[0]) if idx.size else m

    def lookup(self, ids: Sequence[int]) -> tuple[int, Any]:
        best_key, best_n = None, 0
        for key in self._entries:
            n = min(self._common(key, ids), len(ids) - 1)
            if n > best_n:
                best_key, best_n = key, n
        if best_key is None:
            return 0, None
        self._entries.move_to_end(best_key)
        cache = copy.deepcopy(self._entries[best_key])
        crop_cache(cache, best_n)
        return best_n, cache

    def put(self, ids: Sequence[int], cache: Any) -> None:
        key = tuple(int(i) for i in ids)
        if cache_length(cache) != len(key):
            raise ValueError(f"cache holds {cache_length(cache)} tokens but the key has {len(key)}")
        if key in self._entries:
            self._entries.move_to_end(key)
            return
        self._entries[key] = copy.deepcopy(cache)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)


class HFReasoner:
    """Causal-LM backend. Build with a config (loads ``config.model``) or pass model + tokenizer.

    model: an HF causal LM, run on the runtime ``config.runtime`` names (see
        :func:`frs_ros.reasoning.lm.build_lm`), or an already built
        :class:`frs_ros.reasoning.lm.CausalLM`, used as it is. ``self.lm`` is the runtime every
        forward pass goes through; ``self.model`` the HF module of the transformers runtime
        (training toggles its train/eval mode), else the runtime itself (a lean runtime keeps its
        own copy of the weights: the HF model is not kept).
    ``reason(...)`` implements :class:`frs_ros.reasoning.base.Reasoner`. Not thread-safe on its
    own: :class:`frs_ros.reasoning.api.ReasonSegEngine` holds a lock around it.
    """

    def __init__(self, config: ReasonerConfig, model: Any = None, tokenizer: Any = None) -> None:
        torch = _torch()
        from frs_ros.reasoning.lm import CausalLM, build_lm
        from frs_ros.reasoning.lm.transformers_lm import TransformersLM

        self.config = config
        if model is None or tokenizer is None:
            model, tokenizer = load_model(config)
        #: the runtime: new_cache(), forward(ids, cache) -> logits (V,), runtime, runtime_warning
        self.lm: CausalLM = model if isinstance(model, CausalLM) else build_lm(config, model)
        self.model = self.lm.model if isinstance(self.lm, TransformersLM) else self.lm
        self.tokenizer = tokenizer
        self.prefix_cache = PrefixKVCache(config.cache_entries)
        self._generator = torch.Generator(device="cpu").manual_seed(int(config.seed))
        self._answer_candidates: Optional[list[tuple[int, str]]] = None
        self._banned = sorted(set(int(i) for i in (tokenizer.all_special_ids or [])))
        self._enc_cache: dict[str, list[int]] = {}
        #: HF-style logits processors ``(input_ids (1, n) long, scores (1, V) float) -> scores``
        #: applied before every token choice (``input_ids`` = prompt + rollout so far); used for
        #: scripted rollouts in tests and extra penalties in training.
        self.logits_processors: list[Callable[[Any, Any], Any]] = []
        #: tokens run through the model (prefill + decode + forced) since construction.
        self.processed_tokens = 0

    @property
    def runtime(self) -> str:
        """How the model runs, for logs ('transformers'; the lean runtimes say their kernel)."""
        return self.lm.runtime

    @property
    def runtime_warning(self) -> str:
        """Why the runtime is not the one asked for ('' = it is; e.g. no C compiler for lean-int8)."""
        return self.lm.runtime_warning

    # ---- token helpers
    def encode(self, text: str) -> list[int]:
        """Token ids of a text fragment (no special tokens), memoised for fixed tags."""
        if text in self._enc_cache:
            return self._enc_cache[text]
        ids = [int(t) for t in self.tokenizer.encode(text, add_special_tokens=False)]
        if len(text) <= 16:
            self._enc_cache[text] = ids
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def new_cache(self) -> Any:
        """An empty KV cache of the runtime."""
        return self.lm.new_cache()

    def forward(self, ids: Sequence[int], cache: Any) -> Any:
        """Append ``ids`` to ``cache`` (in place) and return the last position's logits ``(V,)`` fp32."""
        self.processed_tokens += len(ids)
        return self.lm.forward(ids, cache)

    def prefill(self, prompt_ids: Sequence[int], boundaries: Sequence[int], reuse: bool,
                check_cancel: Optional[Callable[[], None]] = None) -> tuple[Any, Any, int]:
        """Prefill a prompt, reusing and storing prefix caches at ``boundaries``.

        Long spans run in chunks of ``PREFILL_CHUNK`` tokens with ``check_cancel()`` between
        them, so a cancel does not wait for a whole CPU prefill (seconds).
        Returns ``(logits (V,), cache, cached_tokens)``.
        """
        ids = list(prompt_ids)
        n, cache = self.prefix_cache.lookup(ids) if reuse else (0, None)
        if cache is None:
            cache = self.new_cache()
        cached = n
        for b in boundaries:
            if reuse and n < b < len(ids):
                self._forward_chunked(ids[n:b], cache, check_cancel)
                n = b
                self.prefix_cache.put(ids[:b], cache)
        logits = self._forward_chunked(ids[n:], cache, check_cancel)
        return logits, cache, cached

    def _forward_chunked(self, ids: Sequence[int], cache: Any, check_cancel: Optional[Callable[[], None]]) -> Any:
        logits = None
        for i in range(0, len(ids), PREFILL_CHUNK):
            if check_cancel is not None:
                check_cancel()
            logits = self.forward(ids[i: i + PREFILL_CHUNK], cache)
        return logits

    # ---- token choice
    def _pick(self, logits: Any, allowed: Optional[Sequence[int]] = None, context: Sequence[int] = ()) -> int:
        torch = _torch()
        logits = logits.clone()
        if self.logits_processors:
            inp = torch.tensor([list(context)], dtype=torch.long)
            for proc in self.logits_processors:
                logits = proc(inp, logits[None])[0]
        if allowed is not None:
            mask = torch.full_like(logits, float("-inf"))
            idx = torch.tensor(list(allowed), dtype=torch.long, device=logits.device)
            mask[idx] = 0.0
            logits = logits + mask
        elif self._banned:
            logits[torch.tensor(self._banned, dtype=torch.long, device=logits.device)] = float("-inf")
        t = self.config.temperature
        if t <= 0:  # numpy's argmax on CPU (same first-maximum rule): ~5 us over 49152 logits against torch's ~55 (measured)
            return int(np.argmax(logits.detach().numpy())) if logits.device.type == "cpu" else int(torch.argmax(logits).item())
        probs = torch.softmax(logits / t, dim=-1)
        if self.config.top_p < 1.0:
            sp, si = torch.sort(probs, descending=True)
            keep = torch.cumsum(sp, dim=-1) - sp < self.config.top_p
            filt = torch.zeros_like(probs)
            filt[si[keep]] = sp[keep]
            probs = filt / filt.sum()
        return int(torch.multinomial(probs.cpu(), 1, generator=self._generator).item())

    def answer_candidates(self) -> list[tuple[int, str]]:
        """(token id, text) of every vocabulary token made only of answer characters (cached)."""
        if self._answer_candidates is None:
            tok = self.tokenizer
            vocab_size = len(tok)
            raw = tok.convert_ids_to_tokens(list(range(vocab_size)))
            # byte-level BPE writes a space as 'Ġ'; sentencepiece as '▁'
            ok_raw = _ANSWER_CHARS | {"Ġ", "▁"}
            banned = set(self._banned)
            cands = []
            for i, r in enumerate(raw):
                if r is None or i in banned or not r or not set(r) <= ok_raw:
                    continue
                s = self.decode([i])
                if s and set(s) <= _ANSWER_CHARS:
                    cands.append((i, s))
            self._answer_candidates = cands
        return self._answer_candidates

    def allowed_answer_tokens(self, body: str, ids: Sequence[int], max_targets: int) -> list[int]:
        """Tokens that keep ``<answer>`` + body + token a valid answer prefix."""
        return [i for i, s in self.answer_candidates() if grammar.answer_prefix_ok(body + s, ids, max_targets)]

    # ---- the rollout loop
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
        cfg = self.config
        run = _Run(self, cancel, on_feedback)
        prompt = build_prompt(twin_text, query, chat_markers=cfg.chat_markers)
        pids = encode_prompt(self.tokenizer, prompt)
        out = ReasonerOutput(text="", prompt_tokens=len(pids))
        run.prompt_ids = list(pids.ids)
        processed0 = self.processed_tokens
        t0 = time.perf_counter()
        try:
            run.check_cancel()
            run.logits, run.cache, out.cached_tokens = self.prefill(pids.ids, pids.boundaries, cfg.use_cache_reuse,
                                                                    run.check_cancel)
            out.timings_s["prefill"] = time.perf_counter() - t0
            budget = reasoning_budget(estimate_difficulty(query, len(twin.objects)), cfg.reasoning_budgets)
            # A budget as large as max_new_tokens could only ever end in 'max_tokens': keep room to answer.
            budget = min(budget, max(1, cfg.max_new_tokens - ANSWER_RESERVE_TOKENS))
            run.generate_rollout(twin, tools, budget, max_targets)
            out.status = Outcome.OK
        except Cancelled:
            out.status, out.error = Outcome.CANCELLED, "the query was cancelled before the answer was complete"
        except _Stop as e:
            out.status, out.error = Outcome(e.status), str(e)
        out.timings_s.setdefault("prefill", time.perf_counter() - t0)
        out.timings_s["decode"] = run.t_decode
        out.timings_s["tools"] = run.t_tools
        out.timings_s["resume"] = run.t_resume
        out.text = run.text
        out.generated_tokens = run.n_generated
        out.forced_tokens = run.n_forced
        out.tool_calls = run.calls
        out.processed_tokens = self.processed_tokens - processed0
        out.kv_tokens = cache_length(run.cache)
        out.warnings = run.warnings
        if out.status is Outcome.OK:
            try:
                out.rollout = grammar.parse_rollout(run.text)
            except RolloutParseError as e:
                out.status, out.error = Outcome.PARSE_ERROR, f"the model wrote a malformed rollout: {e}"
        return out


class _Stop(Exception):
    def __init__(self, status: Outcome, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Run:
    """State of one rollout: the live cache, the rollout token ids/text and counters."""

    def __init__(self, r: HFReasoner, cancel: Optional[threading.Event], on_feedback: Optional[FeedbackCallback]):
        self.r = r
        self.cancel = cancel
        self.on_feedback = on_feedback
        self.cache: Any = None
        self.logits: Any = None
        self.ids: list[int] = []
        self.text = ""
        self.n_generated = 0
        self.n_forced = 0
        self.t_decode = 0.0
        self.t_tools = 0.0
        self.t_resume = 0.0
        self.calls: list[ToolCall] = []
        self.stage = "reasoning"
        self.prompt_ids: list[int] = []
        self.warnings: list[str] = []

    def check_cancel(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled()

    def feedback(self) -> None:
        if self.on_feedback is not None:
            self.on_feedback(Feedback(stage=self.stage, reasoning_so_far=self.text, generated_tokens=self.n_generated))

    def _append(self, ids: Sequence[int]) -> None:
        self.check_cancel()
        self.logits = self.r.forward(ids, self.cache)
        self.ids.extend(ids)
        self.text = self.r.decode(self.ids)

    def rewind(self, n_ids: int, n_cache: int, logits: Any) -> None:
        """Drop everything after a mark: crop the KV cache (no recomputation) and the rollout."""
        crop_cache(self.cache, n_cache)
        del self.ids[n_ids:]
        self.text = self.r.decode(self.ids)
        self.logits = logits

    def force(self, text: str) -> None:
        """Append grammar text the model does not need to choose (one forward pass)."""
        ids = self.r.encode(text)
        t = time.perf_counter()
        self._append(ids)
        self.t_decode += time.perf_counter() - t
        self.n_forced += len(ids)

    def step(self, allowed: Optional[Sequence[int]] = None, close: Optional[tuple[str, str]] = None) -> None:
        """Let the model choose one token (within ``allowed``) and append it.

        close: (open tag, close tag) of the current block; a token running past the close tag
            is replaced by the forced rest of the tag.
        """
        if self.n_generated >= self.r.config.max_new_tokens and allowed is None:
            raise _Stop(Outcome.MAX_TOKENS, f"the rollout exceeded max_new_tokens={self.r.config.max_new_tokens}")
        t = time.perf_counter()
        tok = self.r._pick(self.logits, allowed, self.prompt_ids + self.ids)
        if close is not None:
            # a BPE token can straddle a tag (e.g. '><' after '</reason'): append only up to the
            # end of the closing tag, so the block ends exactly there
            new_text = self.r.decode(self.ids + [tok])
            open_tag, close_tag = close
            start = new_text.rfind(open_tag) + len(open_tag)
            j = new_text.find(close_tag, start)
            if j >= 0 and j + len(close_tag) < len(new_text):
                self.t_decode += time.perf_counter() - t
                self.force(new_text[len(self.text): j + len(close_tag)])
                self.feedback()
                return
        self._append([tok])
        self.t_decode += time.perf_counter() - t
        self.n_generated += 1
        self.feedback()

    def branch(self, options: Sequence[str]) -> str:
        """Let the model choose between fixed tags (e.g. ``<plan>`` / ``<answer>``) and force the rest."""
        seqs = [self.r.encode(o) for o in options]
        if len(options) == 1:
            self.force(options[0])
            return options[0]
        k = 0
        while all(len(s) > k for s in seqs) and len({s[k] for s in seqs}) == 1:
            k += 1
        if k:
            self.force(self.r.decode(seqs[0][:k]))
        firsts = [s[k] for s in seqs]
        t = time.perf_counter()
        tok = self.r._pick(self.logits, firsts, self.prompt_ids + self.ids)
        self.t_decode += time.perf_counter() - t
        choice = options[firsts.index(tok)]
        rest = seqs[firsts.index(tok)][k:]
        t = time.perf_counter()
        self._append(rest)
        self.t_decode += time.perf_counter() - t
        self.n_generated += 1
        self.n_forced += len(rest) - 1
        return choice

    def _body_since(self, open_tag: str) -> str:
        return self.text[self.text.rfind(open_tag) + len(open_tag):]

    def generate_block(self, open_tag: str, close_tag: str, budget: int) -> str:
        """Decode until ``close_tag``; force it at ``budget`` tokens. Returns the block body."""
        n = 0
        while not self.text.endswith(close_tag):
            body = self._body_since(open_tag)
            m = grammar._TAG_RE.search(body)
            if m is not None and m.group(0) != close_tag:
                raise _Stop(Outcome.PARSE_ERROR, f"the model wrote {m.group(0)} inside {open_tag}: expected {close_tag}")
            if n >= budget:
                self.force(close_tag)
                break
            self.step(close=(open_tag, close_tag))
            n += 1
        body = self._body_since(open_tag)
        return body[: len(body) - len(close_tag)]

    def generate_rollout(self, twin: DigitalTwin, tools: Optional[ToolExecutor], budget: int, max_targets: int) -> None:
        cfg = self.r.config
        self.stage = "reasoning"
        self.force(grammar.REASON_OPEN)
        self.generate_block(grammar.REASON_OPEN, grammar.REASON_CLOSE, budget)
        rounds = 0
        plans_allowed = True
        while True:
            can_plan = plans_allowed and tools is not None and rounds < cfg.max_tool_rounds
            mark = (len(self.ids), cache_length(self.cache), self.logits.clone())
            choice = self.branch([grammar.PLAN_OPEN, grammar.ANSWER_OPEN] if can_plan else [grammar.ANSWER_OPEN])
            if choice == grammar.ANSWER_OPEN:
                break
            body = self.generate_block(grammar.PLAN_OPEN, grammar.PLAN_CLOSE, cfg.max_plan_tokens)
            try:
                calls = grammar.parse_tool_calls(body)
            except RolloutParseError as e:
                # a malformed plan is dropped: crop the live cache back to before <plan> and answer
                self.rewind(*mark)
                self.warnings.append(f"dropped a malformed plan ({e.reason}); answered without it")
                plans_allowed = False
                continue
            self.stage = "running_tool"
            self.feedback()
            t = time.perf_counter()
            outputs = [_run_tool(tools, c) for c in calls]
            results = grammar.render_results(calls, outputs)
            self.calls.extend(calls)
            self.t_tools += time.perf_counter() - t
            self.stage = "reasoning"
            t = time.perf_counter()
            self.force(grammar.RESULTS_OPEN + results + grammar.RESULTS_CLOSE)
            self.t_resume += time.perf_counter() - t
            rounds += 1
        self.stage = "answering"
        self.feedback()
        ids = twin.ids()
        if not cfg.constrain_answer:
            self.generate_block(grammar.ANSWER_OPEN, grammar.ANSWER_CLOSE, cfg.max_new_tokens)
            return
        while not grammar.answer_complete(self._body_since(grammar.ANSWER_OPEN)):
            allowed = self.r.allowed_answer_tokens(self._body_since(grammar.ANSWER_OPEN), ids, max_targets)
            if not allowed:
                raise _Stop(Outcome.ERROR, "no vocabulary token can continue the answer (tokenizer lacks digits or tags)")
            self.step(allowed)


def _run_tool(tools: ToolExecutor, call: ToolCall) -> str:
    try:
        return str(tools(call))
    except Exception as e:  # a tool error is information for the model, not a crash
        return f"error: {e}"


def load_model(config: ReasonerConfig) -> tuple[Any, Any]:
    """Load tokenizer + causal LM (+ merged LoRA adapter) from ``config.model``/``config.adapter``.

    Raises :class:`ReasonerLoadError` with what to do when the files are not available.
    """
    torch = _torch()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from frs_ros.reasoning.base_models import BaseModelError, resolve_model

    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[config.dtype]
    try:
        path = resolve_model(config.model)  # built-in names ('smollm2-135m') -> converted HF directory
    except BaseModelError as e:
        raise ReasonerLoadError(str(e)) from e
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=config.local_files_only)
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=dtype, local_files_only=config.local_files_only
        )
    except Exception as e:
        raise ReasonerLoadError(
            f"could not load the reasoner LM from '{config.model}': {type(e).__name__}: "
            f"{str(e).splitlines()[0][:200] if str(e) else ''}. Download it on a connected machine "
            f"(`huggingface-cli download {config.model}`) and set reasoner.model to the local directory"
        ) from e
    if config.adapter:
        try:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, config.adapter).merge_and_unload()
        except Exception as e:
            raise ReasonerLoadError(
                f"could not load the LoRA adapter from '{config.adapter}': {type(e).__name__}: {e}. "
                "Point reasoner.adapter at a directory written by peft's save_pretrained, or set it to ''"
            ) from e
    model.to(torch.device(config.device))
    return model.eval(), tokenizer
