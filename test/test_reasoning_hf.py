"""HF backend on a tiny random Qwen3 saved and loaded like a real checkpoint.

Covers: constrained answers only name twin ids; a scripted rollout with a tool pause (executor
called, results appended to the live cache, no re-prefill); cache reuse gives the same logits as a
full prefill and reuses the prefix tokens; cancellation; the engine API around the backend.
"""

import threading
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from frs_ros.camera import CameraIntrinsics, Frame  # noqa: E402
from frs_ros.masks import rle_encode  # noqa: E402
from frs_ros.reasoning.api import ReasonSegEngine  # noqa: E402
from frs_ros.reasoning.config import InvalidQueryError, ReasonerConfig, ReasonerLoadError  # noqa: E402
from frs_ros.reasoning.hf_backend import HFReasoner, PrefixKVCache, crop_cache, load_model  # noqa: E402
from frs_ros.reasoning.prompt import build_prompt, encode_prompt  # noqa: E402
from frs_ros.reasoning.rollout import parse_rollout  # noqa: E402
from frs_ros.reasoning.tiny import save_tiny_model  # noqa: E402
from frs_ros.reasoning.types import ToolCall  # noqa: E402
from frs_ros.twin.types import DigitalTwin, TwinObject  # noqa: E402

H, W = 48, 64
TWIN_TEXT = "twin t=0.00s img=64x48\n#3 mug x=0.20 y=0.30 z=0.80\n#7 bowl x=0.60 y=0.40 z=0.90\n#12 plate x=0.80 y=0.70 z=1.10"


def _obj(i: int, label: str) -> TwinObject:
    m = np.zeros((H, W), bool)
    m[i: i + 5, i: i + 6] = True
    return TwinObject(track_id=i, mask=rle_encode(m), box=(i, i, i + 6, i + 5), area_px=30, label=label, score=0.9,
                      centroid_m=np.array([0.1, 0.0, 0.8]))


def _twin() -> DigitalTwin:
    k = CameraIntrinsics(fx=60, fy=60, cx=31.5, cy=23.5, width=W, height=H)
    return DigitalTwin(stamp_ns=0, frame_id="cam", intrinsics=k, objects=[_obj(3, "mug"), _obj(7, "bowl"), _obj(12, "plate")])


def _frame(twin: DigitalTwin) -> Frame:
    return Frame(rgb=np.zeros((H, W, 3), np.uint8), intrinsics=twin.intrinsics)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return str(save_tiny_model(tmp_path_factory.mktemp("tiny_qwen3"), corpus=[TWIN_TEXT]))


@pytest.fixture()
def reasoner(model_dir):
    return HFReasoner(ReasonerConfig(model=model_dir, local_files_only=True))


class Script:
    """Logits processor that makes the model write ``text`` (longest matching token first)."""

    def __init__(self, tokenizer, text: str):
        self.tok, self.text = tokenizer, text
        self.pieces = [(i, tokenizer.decode([i])) for i in range(len(tokenizer))]

    def __call__(self, input_ids, scores):
        full = self.tok.decode(input_ids[0].tolist())
        done = full[full.rfind("<|im_start|>assistant\n") + len("<|im_start|>assistant\n"):]
        assert self.text.startswith(done), f"off script: {done!r}"
        rest = self.text[len(done):]
        out = torch.full_like(scores, -1e9)
        for i, s in self.pieces:
            if s and rest.startswith(s):
                out[0, i] = 1000.0 * len(s)
        return out


def test_load_error_is_actionable(tmp_path):
    with pytest.raises(ReasonerLoadError, match="set reasoner.model to the local directory"):
        load_model(ReasonerConfig(model=str(tmp_path / "missing"), local_files_only=True))


def test_constrained_answer_only_valid_ids(reasoner):
    twin = _twin()
    for seed, max_targets in [(0, 0), (2, 1), (3, 2)]:
        r = HFReasoner(ReasonerConfig(model=reasoner.config.model, temperature=1.5, seed=seed,
                                      reasoning_budgets=(6, 6, 6), max_plan_tokens=6),
                       model=reasoner.model, tokenizer=reasoner.tokenizer)
        out = r.reason("the mug", twin, TWIN_TEXT, None, lambda c: "ok", max_targets=max_targets)
        assert out.status == "ok", (out.error, out.text)
        rollout = parse_rollout(out.text)
        assert set(rollout.answer_ids) <= {3, 7, 12}
        assert not max_targets or len(rollout.answer_ids) <= max_targets
    # the constraint itself: after '<answer>1' only '2' (-> 12) or nothing-closing tokens may follow
    allowed = {reasoner.decode([i]) for i in reasoner.allowed_answer_tokens("1", [3, 7, 12], 0)}
    assert allowed and all(s[0] == "2" for s in allowed)
    allowed = {reasoner.decode([i]) for i in reasoner.allowed_answer_tokens("", [3, 7, 12], 0)}
    assert {"3", "7", "1", "n"} & allowed and not {"2", "5", ","} & allowed


def test_tool_pause_and_resume(reasoner):
    twin = _twin()
    calls = []

    def tools(call: ToolCall) -> str:
        calls.append(call)
        return f"describe({call.args[0]}): #3 mug: red"

    script = ("<reason>Colour is not in the scene.</reason><plan>describe(3)</plan>"
              "<results>describe(3): #3 mug: red</results><reason_unused>")
    # the runtime writes <results>; the model writes the rest
    script = script.replace("<reason_unused>", "<answer>3</answer>")
    reasoner.logits_processors.append(Script(reasoner.tokenizer, script))
    feedback = []
    out = reasoner.reason("the red mug", twin, TWIN_TEXT, None, tools, on_feedback=feedback.append)
    assert out.status == "ok", out.error
    assert out.text == script
    assert calls == [ToolCall("describe", (3,))]
    assert out.rollout.answer_ids == [3] and out.rollout.results == ["describe(3): #3 mug: red"]
    rollout_tokens = len(reasoner.tokenizer.encode(out.text, add_special_tokens=False))
    # every token ran through the model exactly once: prompt + rollout, no re-prefill after the pause
    assert out.kv_tokens == out.prompt_tokens + (out.generated_tokens + out.forced_tokens)
    assert out.processed_tokens == out.prompt_tokens - out.cached_tokens + out.generated_tokens + out.forced_tokens
    assert abs(out.generated_tokens + out.forced_tokens - rollout_tokens) <= 3  # tokenisation may split differently
    stages = [f.stage for f in feedback]
    assert stages.index("running_tool") < stages.index("answering")
    assert out.timings_s["tools"] >= 0 and out.timings_s["resume"] > 0


def test_appending_to_cache_equals_full_prefill(reasoner):
    ids = encode_prompt(reasoner.tokenizer, build_prompt(TWIN_TEXT, "the mug")).ids
    tail = reasoner.encode("<reason>x</reason><plan>describe(3)</plan><results>describe(3): red</results>")
    full = reasoner.forward(list(ids) + tail, reasoner.new_cache())
    cache = reasoner.new_cache()
    reasoner.forward(list(ids), cache)
    chunked = reasoner.forward(tail, cache)
    assert torch.allclose(full, chunked, atol=1e-4)


def test_cache_reuse_same_logits_and_reused_tokens(model_dir):
    base = HFReasoner(ReasonerConfig(model=model_dir))
    nocache = HFReasoner(ReasonerConfig(model=model_dir, use_cache_reuse=False), model=base.model, tokenizer=base.tokenizer)
    p1 = encode_prompt(base.tokenizer, build_prompt(TWIN_TEXT, "the mug"))
    p2 = encode_prompt(base.tokenizer, build_prompt(TWIN_TEXT, "something to eat soup from"))
    p3 = encode_prompt(base.tokenizer, build_prompt("twin t=1.00s\n#5 cup", "the cup"))
    l1, _, c1 = base.prefill(p1.ids, p1.boundaries, True)
    l2, cache2, c2 = base.prefill(p2.ids, p2.boundaries, True)
    l3, _, c3 = base.prefill(p3.ids, p3.boundaries, True)
    assert c1 == 0 and c2 == p2.boundaries[1] and c3 >= p3.boundaries[0]  # twin reused, then the prefix
    for p, l in [(p1, l1), (p2, l2), (p3, l3)]:
        ref, _, c = nocache.prefill(p.ids, p.boundaries, False)
        assert c == 0 and torch.allclose(ref, l, atol=1e-4)
    # the engine path reports the reuse too
    twin = _twin()
    a = base.reason("the mug", twin, TWIN_TEXT, None, None)
    b = base.reason("the bowl", twin, TWIN_TEXT, None, None)
    assert a.cached_tokens == p1.boundaries[1] and b.cached_tokens == p1.boundaries[1]
    assert b.processed_tokens == b.prompt_tokens - b.cached_tokens + b.generated_tokens + b.forced_tokens


def test_prefix_cache_copy_and_crop(reasoner):
    store = PrefixKVCache(max_entries=2)
    cache = reasoner.new_cache()
    reasoner.forward([5, 6, 7, 8], cache)
    store.put([5, 6, 7, 8], cache)
    n, c = store.lookup([5, 6, 9, 9, 9])
    assert n == 2 and c.get_seq_length() == 2 and cache.get_seq_length() == 4  # a cropped copy
    n, c = store.lookup([5, 6, 7, 8])
    assert n == 3  # one token is always left to produce logits
    assert store.lookup([1, 2]) == (0, None)
    with pytest.raises(ValueError):
        crop_cache(c, 10)


def test_cancel_between_tokens(reasoner):
    ev = threading.Event()

    def fb(f):
        if f.generated_tokens >= 3:
            ev.set()

    out = reasoner.reason("the mug", _twin(), TWIN_TEXT, None, None, cancel=ev, on_feedback=fb)
    assert out.status == "cancelled" and out.generated_tokens == 3 and out.rollout is None


def test_engine_cancel_from_other_thread_is_prompt(model_dir):
    r = HFReasoner(ReasonerConfig(model=model_dir, reasoning_budgets=(200, 200, 200), max_new_tokens=400))
    r.logits_processors.append(lambda ids, scores: (time.sleep(0.02), scores)[1])  # ~20 ms per token
    eng = ReasonSegEngine(r.config, reasoner=r, twin_serialiser=lambda t: TWIN_TEXT)
    twin = _twin()
    ev = threading.Event()
    box = {}
    th = threading.Thread(target=lambda: box.setdefault("a", eng.answer("the mug", twin, _frame(twin), cancel=ev)))
    th.start()
    time.sleep(0.3)
    t0 = time.perf_counter()
    ev.set()
    th.join(timeout=5)
    assert not th.is_alive() and time.perf_counter() - t0 < 2.0  # one token step (the rest would take > 4 s)
    assert box["a"].status == "cancelled" and not box["a"].targets and not box["a"].mask.any()


def test_engine_answer_targets_and_validation(model_dir, reasoner):
    eng = ReasonSegEngine(reasoner.config, reasoner=reasoner, twin_serialiser=lambda t: TWIN_TEXT)
    twin = _twin()
    reasoner.logits_processors.append(Script(reasoner.tokenizer, "<reason>Two dishes.</reason><answer>7, 12</answer>"))
    ans = eng.answer("the dishes", twin, _frame(twin), tool_executor=lambda c: "")
    assert ans.ok and ans.target_ids == [7, 12]
    assert ans.mask.sum() == 60 and ans.targets[0].box == (7, 7, 13, 12) and ans.targets[0].mask.shape == (H, W)
    assert ans.prompt_tokens > ans.cached_tokens >= 0 and ans.generated_tokens > 0
    for k in ("serialise", "prefill", "decode", "tools", "masks", "total"):
        assert k in ans.timings_s
    reasoner.logits_processors.clear()  # the script wants two ids; the constraint allows one
    ans = eng.answer("the dishes", twin, _frame(twin), max_targets=1, tool_executor=lambda c: "")
    assert ans.ok and len(ans.target_ids) <= 1
    for bad in ["", "   \n", 3, "x" * 600]:
        with pytest.raises(InvalidQueryError):
            eng.answer(bad, twin, None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="frame is"):
        eng.answer("x", twin, Frame(rgb=np.zeros((10, 10, 3), np.uint8), intrinsics=CameraIntrinsics(1, 1, 5, 5, 10, 10)))


def test_engine_threads_serialised(model_dir, reasoner):
    eng = ReasonSegEngine(reasoner.config, reasoner=reasoner, twin_serialiser=lambda t: TWIN_TEXT)
    twin = _twin()
    results = []
    ths = [threading.Thread(target=lambda q=q: results.append(eng.answer(q, twin, None, tool_executor=lambda c: "x")))
           for q in ("the mug", "the bowl", "the plate")]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    assert len(results) == 3 and all(r.status == "ok" for r in results)
    assert all(set(r.target_ids) <= {3, 7, 12} for r in results)


def test_cancel_during_chunked_prefill(reasoner, monkeypatch):
    import frs_ros.reasoning.hf_backend as hb

    monkeypatch.setattr(hb, "PREFILL_CHUNK", 16)
    ev = threading.Event()
    calls = []
    orig = reasoner.forward

    def forward(ids, cache):
        calls.append(len(ids))
        ev.set()  # cancel arrives while the first chunk runs
        return orig(ids, cache)

    reasoner.forward = forward
    out = reasoner.reason("the mug", _twin(), TWIN_TEXT, None, None, cancel=ev)
    assert out.status == "cancelled" and calls == [16] and out.generated_tokens == 0


def test_reasoning_budget_never_eats_the_answer(model_dir):
    """A reasoning budget >= max_new_tokens (e.g. ROS defaults with a small max_new_tokens) is capped
    so that a model that never closes </reason> still gets to answer instead of failing max_tokens."""
    twin = _twin()
    r = HFReasoner(ReasonerConfig(model=model_dir, local_files_only=True, reasoning_budgets=(80, 80, 96),
                                  max_new_tokens=40))
    out = r.reason("the mug", twin, TWIN_TEXT, _frame(twin), None)
    assert out.status == "ok", (out.status, out.warnings)
    assert out.generated_tokens <= 40


def test_lean_runtimes_from_config(model_dir):
    """``reasoner.runtime``: lean-fp32 writes the transformers runtime's rollouts; lean-int8 runs
    the int8 decoder (native kernel) through the same prefix cache / grammar / constraints."""
    from frs_ros.reasoning.api import build_reasoner
    from frs_ros.reasoning.lm.lean import LeanCausalLM

    twin = _twin()
    answers = {}
    for runtime in ("transformers", "lean-fp32", "lean-int8"):
        r = build_reasoner(ReasonerConfig(model=model_dir, local_files_only=True, runtime=runtime, max_new_tokens=32))
        if runtime != "transformers":
            assert isinstance(r.model, LeanCausalLM) and r.lm is r.model
            assert r.model.decoder.weights == runtime.split("-")[1]
        assert r.runtime == {"transformers": "transformers", "lean-fp32": "lean-fp32 (torch kernel)",
                             "lean-int8": "lean-int8 (native kernel)"}[runtime]
        assert r.runtime_warning == ""
        eng = ReasonSegEngine(r.config, reasoner=r, twin_serialiser=lambda t: TWIN_TEXT)
        assert (eng.runtime, eng.runtime_warning) == (r.runtime, "")  # what the node logs
        first = eng.answer("the mug", twin, _frame(twin), tool_executor=lambda c: "")
        again = eng.answer("the bowl", twin, _frame(twin), tool_executor=lambda c: "")
        assert first.status == again.status == "ok" and set(first.target_ids) <= {3, 7, 12}
        assert again.cached_tokens > 0  # the twin prefix is reused on the lean caches too
        answers[runtime] = (first.reasoning, first.target_ids, again.reasoning, again.target_ids)
    assert answers["lean-fp32"] == answers["transformers"]
    with pytest.raises(ValueError, match="reasoner.runtime = .onnx. is not one of"):
        ReasonerConfig(runtime="onnx")
    with pytest.raises(ValueError, match="runs on the CPU"):
        ReasonerConfig(runtime="lean-int8", device="cuda")


def test_lean_int8_runs_a_llama_model_and_refuses_other_architectures(tmp_path):
    """SmolLM2's family (``LlamaForCausalLM``: no q/k norm, GQA, tied head) on the ROS default
    runtime; an architecture the lean decoder does not implement is a load error that says what to set."""
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    from frs_ros.reasoning.api import build_reasoner

    llama_dir = save_tiny_model(tmp_path / "llama", corpus=[TWIN_TEXT], family="llama")
    r = build_reasoner(ReasonerConfig(model=str(llama_dir), local_files_only=True, runtime="lean-int8",
                                      max_new_tokens=32))
    assert r.runtime == "lean-int8 (native kernel)" and r.runtime_warning == ""
    twin = _twin()
    eng = ReasonSegEngine(r.config, reasoner=r, twin_serialiser=lambda t: TWIN_TEXT)
    first = eng.answer("the mug", twin, _frame(twin), tool_executor=lambda c: "")
    again = eng.answer("the bowl", twin, _frame(twin), tool_executor=lambda c: "")
    assert first.status == again.status == "ok" and set(first.target_ids) <= {3, 7, 12}
    assert again.cached_tokens > 0

    other = tmp_path / "qwen2"
    tok = AutoTokenizer.from_pretrained(llama_dir)
    Qwen2ForCausalLM(Qwen2Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                 num_attention_heads=2, num_key_value_heads=1)).save_pretrained(other)
    tok.save_pretrained(other)
    with pytest.raises(ReasonerLoadError, match="use runtime: transformers"):
        build_reasoner(ReasonerConfig(model=str(other), local_files_only=True, runtime="lean-int8"))
