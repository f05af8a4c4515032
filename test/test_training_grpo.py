"""GRPO: loss math, masking of tool results, and a 1-step update on a tiny random Qwen3
with rollouts from the reasoner's HF runtime (tool pauses live)."""

import numpy as np
import pytest
from conftest import TORCH_MISSING

torch = pytest.importorskip("torch", reason=TORCH_MISSING)

from frs_ros.reasoning.base import ReasonerOutput  # noqa: E402
from frs_ros.reasoning.rollout import parse_rollout  # noqa: E402
from frs_ros.sim.types import Query  # noqa: E402
from frs_ros.training.chains import QueryContext  # noqa: E402
from frs_ros.training.config import GRPOConfig, NanoModelConfig  # noqa: E402
from frs_ros.training.grpo import EngineSampler, collate_samples, grpo_loss, tokenize_sample, train_grpo, RolloutSample  # noqa: E402
from frs_ros.training.model import build_nano_student, read_training_state  # noqa: E402
from frs_ros.training.rewards import LexicalJudge, RewardBreakdown  # noqa: E402
from frs_ros.training.tokenizer import fit_tokenizer  # noqa: E402
from frs_ros.twin import Tracker, TwinConfig, twin_to_text  # noqa: E402
from frs_ros.twin.synthetic import Shape2D, make_frame  # noqa: E402

TINY = NanoModelConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=2, max_position_embeddings=1024)


def _context():
    shapes = [Shape2D(1, "mug", "rect", 15, 20, 10, 12, 1.0, (200, 30, 30), "red"),
              Shape2D(2, "bowl", "disc", 45, 25, 14, 14, 1.2, (30, 30, 200), "blue")]
    frame = make_frame(shapes)
    tracker = Tracker(TwinConfig(segmenter="sim", labeler="sim"))
    twin = tracker.update(frame)
    id_masks = {o.track_id: o.mask.decode() for o in twin.objects}
    q = Query(text="the red mug", kind="attribute", target_ids=[1])
    mug_tid = [o.track_id for o in twin.objects if o.label.startswith("mug")][0]
    rec = {"id": "t-0", "twin_text": twin_to_text(twin), "query": q.text,
           "reason": f"the mug is {mug_tid}", "sample": "image", "seed": 0, "split": "train", "query_index": 0}
    ctx = QueryContext("image", 0, "train", 0, 0, q, frame, twin, rec["twin_text"], tracker.backends, id_masks,
                       frame.gt.union_mask([1]))
    return rec, ctx, mug_tid


def _tok(rec):
    from frs_ros.training.sft import prompt_of

    return fit_tokenizer([prompt_of(rec).text, "<reason>the mug is 1 2 red</reason><plan>describe(1)</plan>"
                          "<results>describe(1): x</results><answer>1, 2</answer><answer>none</answer>"],
                         include_ontology=False)


def test_grpo_loss_hand_computed():
    logp = torch.zeros(2, 3, requires_grad=True)
    old = torch.zeros(2, 3)
    adv = torch.tensor([1.0, -1.0])
    mask = torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
    loss, st = grpo_loss(logp, old, adv, mask)
    assert loss.item() == pytest.approx(0.0)   # ratio 1: -(1*1 + -1*1)/2 = 0
    loss.backward()
    # d/dlogp of -ratio*A = -A on masked tokens, averaged per sequence then over 2 sequences
    assert torch.allclose(logp.grad, torch.tensor([[-0.25, -0.25, 0.0], [0.0, 0.5, 0.0]]))
    # clipping: ratio e^1 with A>0 is clipped at 1.2 -> no gradient
    logp2 = torch.ones(1, 1, requires_grad=True)
    l2, st2 = grpo_loss(logp2, torch.zeros(1, 1), torch.tensor([1.0]), torch.ones(1, 1), clip_eps=0.2)
    assert l2.item() == pytest.approx(-1.2) and st2["clip_frac"] == 1.0
    l2.backward()
    assert logp2.grad.item() == 0.0
    # KL k3 is 0 when ref == policy and positive otherwise
    _, st3 = grpo_loss(torch.zeros(1, 2), torch.zeros(1, 2), torch.tensor([0.0]), torch.ones(1, 2), beta=0.1,
                       ref_logp=torch.full((1, 2), -1.0))
    assert st3["kl"] == pytest.approx(np.exp(-1) + 1 - 1)


def test_tool_results_are_not_trained():
    rec, _, _ = _context()
    tok = _tok(rec)
    text = "<reason>the mug</reason><plan>describe(1)</plan><results>describe(1): red</results><answer>1</answer>"
    p, c, m = tokenize_sample(tok, rec, text)
    toks = tok.convert_ids_to_tokens(c)
    masked = [t for t, keep in zip(toks, m) if not keep]
    assert masked[0] == "<results>" and masked[-1] == "</results>" and "▁red" in masked
    s = RolloutSample("t", text, p, c, m, RewardBreakdown(0.5, 1, 0, 1.5, 1, True), advantage=1.0)
    b = collate_samples([s], 0)
    assert b["loss_mask"].shape == (1, len(p) + len(c) - 1)
    assert int(b["loss_mask"].sum()) == sum(m)
    assert b["loss_mask"][0, : len(p) - 1].sum() == 0


class _Scripted:
    """Sampler returning fixed rollouts: half right, half wrong (so advantages are non-zero)."""

    def __init__(self, good, bad):
        self.texts = [good, bad]

    def refresh(self):
        pass

    def sample(self, ctx, n, tools=True):
        return [ReasonerOutput(text=self.texts[i % 2], rollout=parse_rollout(self.texts[i % 2]), generated_tokens=5)
                for i in range(n)]


def test_one_step_grpo_scripted_changes_params(tmp_path):
    rec, ctx, mug = _context()
    tok = _tok(rec)
    model = build_nano_student(TINY, tok)
    before = [p.detach().clone() for p in model.parameters()]
    other = [t for t in ctx.id_masks if t != mug][0]
    sampler = _Scripted(f"<reason>the mug is {mug}</reason><answer>{mug}</answer>",
                        f"<reason>the mug is {other}</reason><answer>{other}</answer>")
    cfg = GRPOConfig(out=str(tmp_path / "g"), steps=1, group_size=4, prompts_per_step=1, lr=1e-3, gamma=0.5)
    res = train_grpo(cfg, model, tok, [rec], lambda r: ctx, LexicalJudge(), sampler=sampler)
    h = res.history[0]
    assert h["accuracy"] == 0.5 and h["trained_seqs"] == 4 and np.isfinite(h["loss"])
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    state = read_training_state(tmp_path / "g" / "final")
    assert state["stage"] == "grpo" and state["step"] == 1 and state["config"]["gamma"] == 0.5


class _FlatThenMixed(_Scripted):
    """Every rollout right (a flat group) for the first ``n_flat`` prompts, then half right."""

    def __init__(self, good, bad, n_flat):
        super().__init__(good, bad)
        self.n_flat, self.calls = n_flat, 0

    def sample(self, ctx, n, tools=True):
        self.calls += 1
        texts = [self.texts[0]] * n if self.calls <= self.n_flat else [self.texts[i % 2] for i in range(n)]
        return [ReasonerOutput(text=t, rollout=parse_rollout(t), generated_tokens=5) for t in texts]


@pytest.mark.parametrize("max_draws, drawn, trained", [(0, 1, 0), (4, 3, 4), (2, 2, 0)])
def test_dynamic_sampling_draws_past_flat_groups(tmp_path, max_draws, drawn, trained):
    rec, ctx, mug = _context()
    tok = _tok(rec)
    model = build_nano_student(TINY, tok)
    other = [t for t in ctx.id_masks if t != mug][0]
    sampler = _FlatThenMixed(f"<reason>the mug is {mug}</reason><answer>{mug}</answer>",
                             f"<reason>the mug is {other}</reason><answer>{other}</answer>", n_flat=2)
    cfg = GRPOConfig(out=str(tmp_path / "g"), steps=1, group_size=4, prompts_per_step=1, lr=1e-3, gamma=0.0,
                     max_prompt_draws=max_draws)
    h = train_grpo(cfg, model, tok, [rec], lambda r: ctx, None, sampler=sampler).history[0]
    # 0 = the old behaviour (one draw, flat, nothing trained); 4 = it draws until a mixed group
    # (third prompt) and stops there; 2 = the cap is hit before one is found
    assert (h["prompts_drawn"], h["trained_seqs"], h["flat_groups"]) == (drawn, trained, min(drawn, 2))


def test_one_step_grpo_with_engine_rollouts(tmp_path):
    rec, ctx, _ = _context()
    tok = _tok(rec)
    model = build_nano_student(TINY, tok, seed=1)
    sampler = EngineSampler(model, tok, temperature=1.0, max_new_tokens=24, seed=0,
                            reasoner_overrides={"reasoning_budgets": [6, 6, 6], "max_plan_tokens": 6})
    outs = sampler.sample(ctx, 3)
    assert len(outs) == 3 and all(o.text.startswith("<reason>") for o in outs)
    cfg = GRPOConfig(out=str(tmp_path / "g"), steps=1, group_size=6, prompts_per_step=1, lr=1e-3, gamma=0.0,
                     max_new_tokens=24)
    res = train_grpo(cfg, model, tok, [rec], lambda r: ctx, None, sampler=sampler)
    h = res.history[0]
    assert np.isfinite(h["loss"]) and np.isfinite(h["reward"])
    from transformers import AutoModelForCausalLM

    again = AutoModelForCausalLM.from_pretrained(tmp_path / "g" / "final")
    assert again.config.vocab_size == len(tok)


def test_group_logprobs_match_full_sequences():
    from frs_ros.training.grpo import group_logprobs, token_logprobs

    rec, _, _ = _context()
    tok = _tok(rec)
    model = build_nano_student(TINY, tok, seed=2)
    texts = ["<reason>the mug</reason><answer>1</answer>",
             "<reason>x</reason><plan>describe(1)</plan><results>describe(1): red</results><answer>1, 2</answer>"]
    toks = [tokenize_sample(tok, rec, t) for t in texts]
    p = toks[0][0]
    g = group_logprobs(model, p, [c for _, c, _ in toks], 0)
    for i, (pi, c, _) in enumerate(toks):
        ids = torch.tensor([pi + c])
        full = token_logprobs(model, ids, torch.ones_like(ids))[0, len(pi) - 1:]
        assert torch.allclose(g[i, : len(c)], full, atol=1e-4)


def test_replay_term_trains_the_teacher_chain_beside_grpo(tmp_path):
    """replay_coef > 0: each update also lowers SFT's loss on teacher chains (PPO-ptx); its loss
    is logged, and the update differs from GRPO alone (same seed, same rollouts)."""
    from frs_ros.training.grpo import replay_loss

    rec, ctx, mug = _context()
    rec = dict(rec, rollout=f"<reason>the mug is {mug}</reason><answer>{mug}</answer>")
    tok = _tok(rec)
    other = [t for t in ctx.id_masks if t != mug][0]
    texts = (f"<reason>the mug is {mug}</reason><answer>{mug}</answer>",
             f"<reason>the mug is {other}</reason><answer>{other}</answer>")
    params = {}
    for coef in (0.0, 1.0):
        model = build_nano_student(TINY, tok, seed=3)
        cfg = GRPOConfig(out=str(tmp_path / f"g{coef}"), steps=1, group_size=4, prompts_per_step=1, lr=1e-3,
                         gamma=0.0, replay_coef=coef, replay_per_step=2)
        h = train_grpo(cfg, model, tok, [rec], lambda r: ctx, None, sampler=_Scripted(*texts)).history[0]
        assert h["trained_seqs"] == 4 and (h["replay_loss"] > 0.0) == (coef > 0.0)
        params[coef] = [p.detach().clone() for p in model.parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(params[0.0], params[1.0]))
    # the replayed loss alone: a few plain SGD steps on it lower it; records without a chain are skipped
    model = build_nano_student(TINY, tok, seed=3)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    first, n = replay_loss(model, tok, [rec, {k: v for k, v in rec.items() if k != "rollout"}], "cpu")
    assert n == 1
    for _ in range(5):
        opt.zero_grad()
        replay_loss(model, tok, [rec], "cpu", backward_scale=1.0)
        opt.step()
    assert replay_loss(model, tok, [rec], "cpu")[0] < first
    with pytest.raises(ValueError, match="replay"):
        train_grpo(GRPOConfig(out=str(tmp_path / "bad"), replay_coef=-1.0), model, tok, [rec], lambda r: ctx, None,
                   sampler=_Scripted(*texts))
