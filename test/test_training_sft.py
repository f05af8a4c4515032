"""SFT: loss masking (prompt + tool results), a 2-step run on a tiny random Qwen3, checkpoints."""

import json

import pytest
from conftest import TORCH_MISSING

torch = pytest.importorskip("torch", reason=TORCH_MISSING)

from safetensors.torch import load_file  # noqa: E402

from frs_ros.reasoning.prompt import encode_prompt  # noqa: E402
from frs_ros.training.config import NanoModelConfig, SFTConfig  # noqa: E402
from frs_ros.training.model import build_nano_student, read_training_state  # noqa: E402
from frs_ros.training.sft import IGNORE_INDEX, encode_example, lr_factor, masked_token_loss, prompt_of, split_rollout, train_sft  # noqa: E402
from frs_ros.training.tokenizer import fit_tokenizer  # noqa: E402

TWIN = "twin t=0.00s img=320x240 depth=sensor objects=2\n#1 mug x=0.31 y=0.62 z=0.84\n#2 bowl x=0.12 y=0.80 z=0.75"
RECORDS = [
    {"twin_text": TWIN, "query": "Which object holds soup?",
     "rollout": "<reason>a bowl holds soup</reason><plan>describe(2)</plan><results>describe(2): white ceramic bowl</results><answer>2</answer>"},
    {"twin_text": TWIN, "query": "the mug", "rollout": "<reason>the mug is 1</reason><answer>1</answer>"},
    {"twin_text": TWIN, "query": "a zebra", "rollout": "<reason>no zebra</reason><answer>none</answer>"},
]
TINY = NanoModelConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=2, max_position_embeddings=512)


def _tok(records=None):
    texts = []
    for r in records or RECORDS:
        texts += [prompt_of(r).text, r["rollout"]]
    return fit_tokenizer(texts, include_ontology=False)


def test_split_rollout():
    segs = split_rollout(RECORDS[0]["rollout"])
    assert [t for _, t in segs] == [True, False, True]
    assert segs[1][0] == "<results>describe(2): white ceramic bowl</results>"
    assert split_rollout("<reason>x</reason><answer>1</answer>") == [("<reason>x</reason><answer>1</answer>", True)]


def test_loss_masks_prompt_and_results():
    tok = _tok()
    ex = encode_example(tok, RECORDS[0])
    ids, labels = ex["input_ids"].tolist(), ex["labels"].tolist()
    n_prompt = len(encode_prompt(tok, prompt_of(RECORDS[0])).ids)
    assert all(l == IGNORE_INDEX for l in labels[:n_prompt])
    trained = [tok.convert_ids_to_tokens(i) for i, l in zip(ids, labels) if l != IGNORE_INDEX]
    text = tok.convert_tokens_to_string(trained)
    assert "<results>" not in trained and "</results>" not in trained
    assert "white" not in text and "ceramic" not in text       # tool output is not trained on
    assert trained[0] == "<reason>" and "</plan>" in trained and trained[-1] == tok.eos_token
    assert "<answer>" in trained and "2" in "".join(trained)
    # every non-masked label equals its input id
    assert all(l == i for i, l in zip(ids, labels) if l != IGNORE_INDEX)
    assert encode_example(tok, RECORDS[0], max_len=5) is None


def test_masked_token_loss_ignores_masked_positions():
    logits = torch.zeros(1, 4, 5)
    logits[0, 0, 3] = 10.0                                   # predicts token 3 at position 1
    labels = torch.tensor([[IGNORE_INDEX, 3, IGNORE_INDEX, IGNORE_INDEX]])
    loss, n = masked_token_loss(logits, labels)
    assert n == 1 and loss.item() < 1e-3


def test_lr_schedule():
    assert lr_factor(0, 10, 100) == 0.1
    assert lr_factor(9, 10, 100) == 1.0
    assert abs(lr_factor(100, 10, 100) - 0.1) < 1e-9


def test_two_step_sft_tiny_qwen3(tmp_path):
    tok = _tok()
    model = build_nano_student(TINY, tok, seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = SFTConfig(out=str(tmp_path / "sft"), lr=1e-3, max_steps=2, batch_size=2, warmup_steps=0, log_every=1)
    res = train_sft(cfg, model, tok, RECORDS)
    assert res.steps == 2 and len(res.history) == 2
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in res.history)
    changed = sum(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert changed > 0
    final = tmp_path / "sft" / "final"
    state = read_training_state(final)
    assert state["step"] == 2 and state["stage"] == "sft" and state["config"]["lr"] == 1e-3
    from transformers import AutoModelForCausalLM

    again = AutoModelForCausalLM.from_pretrained(final)
    assert again.config.hidden_size == 32 and again.config.vocab_size == len(tok)
    sd = load_file(str(final / "model.safetensors"))
    for k, v in again.state_dict().items():
        if k in sd:
            assert torch.equal(v, model.state_dict()[k])
    log = json.loads((tmp_path / "sft" / "training_log.json").read_text())
    assert log[-1]["step"] == 2


def test_scored_positions_loss_equals_full_loss():
    from frs_ros.training.sft import collate, scored_positions_loss

    tok = _tok()
    model = build_nano_student(TINY, tok, seed=3)
    b = collate([encode_example(tok, r) for r in RECORDS], tok.pad_token_id)
    full, n1 = masked_token_loss(model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits, b["labels"])
    fast, n2 = scored_positions_loss(model, b["input_ids"], b["attention_mask"], b["labels"])
    assert n1 == n2 and abs(full.item() - fast.item()) < 1e-5


def _assert_shared_prefix_matches_full(model, b, p):
    """shared_prefix_loss over prefix length ``p`` gives the loss, count and gradients of the full pass."""
    from frs_ros.training.sft import scored_positions_loss, shared_prefix_loss

    a, n1 = scored_positions_loss(model, b["input_ids"], b["attention_mask"], b["labels"])
    a.backward()
    g1 = [x.grad.clone() for x in model.parameters()]
    model.zero_grad()
    c, n2 = shared_prefix_loss(model, b["input_ids"], b["attention_mask"], b["labels"], p)
    c.backward()
    assert n1 == n2 and abs(a.item() - c.item()) < 1e-5
    assert all(torch.allclose(x, y.grad, atol=1e-5) for x, y in zip(g1, model.parameters()))


def test_shared_prefix_loss_equals_full_loss_and_grads():
    from frs_ros.reasoning.prompt import encode_prompt
    from frs_ros.training.sft import collate

    tok = _tok()
    model = build_nano_student(TINY, tok, seed=4)
    b = collate([encode_example(tok, r) for r in RECORDS], tok.pad_token_id)
    p = encode_prompt(tok, prompt_of(RECORDS[0])).boundaries[0]
    _assert_shared_prefix_matches_full(model, b, p)


OTHER_TWIN = "twin t=0.00s depth=sensor objects=1\n#4 red cup x=0.50 z=1.00 size=0.08x0.10"
GROUPED = RECORDS + [
    {"twin_text": OTHER_TWIN, "query": "the cup", "rollout": "<reason>#4 is the cup.</reason><answer>4</answer>"},
    {"twin_text": OTHER_TWIN, "query": "a plate", "rollout": "<reason>No plate here.</reason><answer>none</answer>"},
]


def test_twin_grouped_batches_never_mix_twins():
    from frs_ros.training.sft import twin_grouped_batches

    keys = ["a", "b", "a", "c", "a", "b", "a"]
    batches = twin_grouped_batches(keys, batch_size=3, seed=0)
    assert sorted(i for b in batches for i in b) == list(range(7))
    assert all(len({keys[i] for i in b}) == 1 and len(b) <= 3 for b in batches)
    assert batches == twin_grouped_batches(keys, batch_size=3, seed=0)  # deterministic


def test_twin_prefix_shared_loss_equals_full_loss_and_grads():
    """The [instruction + twin] prefix of a twin group runs once: same loss and gradients."""
    from frs_ros.training.sft import collate

    tok = _tok(GROUPED)
    model = build_nano_student(TINY, tok, seed=5)
    b = collate([encode_example(tok, r) for r in RECORDS], tok.pad_token_id)
    p = encode_prompt(tok, prompt_of(RECORDS[0])).boundaries[1]  # instruction + twin
    assert p > encode_prompt(tok, prompt_of(RECORDS[0])).boundaries[0]
    _assert_shared_prefix_matches_full(model, b, p)


def test_sft_resumes_exactly_where_it_stopped(tmp_path):
    """4 steps in one run == 2 steps, a new process state, then resume to 4 (weights, log)."""
    tok = _tok(GROUPED)
    base = dict(lr=1e-3, batch_size=2, warmup_steps=1, log_every=1, group_by_twin=True, save_every=2)
    straight = build_nano_student(TINY, tok, seed=6)
    train_sft(SFTConfig(out=str(tmp_path / "a"), max_steps=4, **base), straight, tok, GROUPED)
    first = build_nano_student(TINY, tok, seed=6)
    train_sft(SFTConfig(out=str(tmp_path / "b"), max_steps=2, **base), first, tok, GROUPED)
    assert (tmp_path / "b" / "last" / "optimizer.pt").exists()
    again = build_nano_student(TINY, tok, seed=99)  # other init: everything must come from the state
    res = train_sft(SFTConfig(out=str(tmp_path / "b"), max_steps=4, **base), again, tok, GROUPED)
    assert res.steps == 4 and [h["step"] for h in res.history] == [1, 2, 3, 4]
    for (k, v), w in zip(straight.state_dict().items(), again.state_dict().values()):
        assert torch.allclose(v, w, atol=1e-6), k
    # resume=False starts over
    fresh = build_nano_student(TINY, tok, seed=6)
    res = train_sft(SFTConfig(out=str(tmp_path / "b"), max_steps=1, resume=False, **base), fresh, tok, GROUPED)
    assert [h["step"] for h in res.history] == [1]


def test_repeat_kinds_copies_rare_kinds_next_to_their_original_and_rejects_bad_counts():
    from frs_ros.training.sft import repeat_kinds

    recs = [{"kind": "temporal", "id": "a"}, {"kind": "spatial", "id": "b"}, {"id": "c"}]
    out = repeat_kinds(recs, {"temporal": 3})
    assert [r["id"] for r in out] == ["a", "a", "a", "b", "c"]
    assert repeat_kinds(recs, {}) == recs
    for bad in (0, 1.5, True, "2"):
        with pytest.raises(ValueError, match="kind_repeat\\['temporal'\\]"):
            repeat_kinds(recs, {"temporal": bad})
