"""Stage 2: GRPO on the student's own rollouts, tool pauses included.

Why our own loop (driven by ``accelerate``) rather than TRL's ``GRPOTrainer``: the rollouts must
come from the reasoner's runtime (``frs_ros.reasoning.hf_backend.HFReasoner``: prefix KV-cache
reuse across the G samples of a prompt, generation paused at ``</plan>``, tools run on the
twin, ``<results>`` spliced into the live cache, constrained answer ids). TRL 1.16 can take
such a generator through its experimental ``rollout_func`` + ``env_mask``, but it then expects
per-token generator log-probs, a ``datasets.Dataset`` of prompts and reward functions that see
only text; our reward needs the per-prompt twin masks and the teacher chain, and the tokenizer
is our own word-level one. The update itself is ~40 lines (below), so owning it keeps every
step visible and testable. The math follows the GRPO paper (DeepSeekMath, eq. 3):

    A_i   = (r_i - mean(r)) / (std(r) + eps)                       per group of G rollouts
    ratio = exp(logp_theta - logp_old)                               per model-written token
    L     = -mean_seq mean_tok [ min(ratio A, clip(ratio, 1-eps, 1+eps) A) - beta KL_k3 ]

Loss is only on tokens the model wrote: the prompt and every ``<results>`` block (tool output
spliced in by the runtime) are masked, as in SFT. Groups whose rewards are all equal carry no
signal (A = 0) and are skipped. With ``replay_coef`` > 0 each update adds that times SFT's token
loss on a few teacher chains (PPO-ptx), so behaviours only flat groups see are still trained.
"""

from __future__ import annotations

import copy
import json
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch

from frs_ros.training.chains import ContextMismatchError
from frs_ros.training.config import GRPOConfig
from frs_ros.training.rewards import RewardBreakdown, ReasoningJudge, group_advantages, score_rollout
from frs_ros.training.sft import RESUME_STATE, load_resume_state, save_resume_state, write_log


@dataclass
class RolloutSample:
    """One sampled rollout, tokenised for the update.

    prompt_ids: ``(P,)`` prompt tokens; completion_ids: ``(C,)`` rollout tokens (tool results
    included); model_mask: ``(C,)`` True where the model wrote the token.
    """

    record_id: str
    text: str
    prompt_ids: list[int]
    completion_ids: list[int]
    model_mask: list[bool]
    reward: RewardBreakdown
    generated_tokens: int = 0
    status: str = "ok"
    advantage: float = 0.0


def tokenize_sample(tokenizer: Any, record: dict, text: str, chat_markers: bool = True) -> tuple[list[int], list[int], list[bool]]:
    """``(prompt_ids, completion_ids, model_mask)`` of a rollout text (same split as SFT)."""
    from frs_ros.reasoning.prompt import build_prompt, encode_prompt
    from frs_ros.training.sft import encode_rollout

    p = encode_prompt(tokenizer, build_prompt(record["twin_text"], record["query"], chat_markers=chat_markers))
    c_ids, c_mask = encode_rollout(tokenizer, text)
    return list(p.ids), c_ids, c_mask


def token_logprobs(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Log-prob of each next token: ``(B, T-1)``; entry t is log p(input_ids[t+1] | ids[:t+1])."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1].float()
    logp = torch.log_softmax(logits, dim=-1)
    return logp.gather(-1, input_ids[:, 1:, None]).squeeze(-1)


def collate_samples(samples: Sequence[RolloutSample], pad_id: int) -> dict:
    """Right-padded batch: input_ids/attention_mask ``(B, T)``, loss_mask ``(B, T-1)`` aligned
    with :func:`token_logprobs` (1 where the predicted token was written by the model)."""
    t = max(len(s.prompt_ids) + len(s.completion_ids) for s in samples)
    b = len(samples)
    ids = torch.full((b, t), pad_id, dtype=torch.long)
    att = torch.zeros((b, t), dtype=torch.long)
    loss_mask = torch.zeros((b, t - 1), dtype=torch.float32)
    for i, s in enumerate(samples):
        seq = s.prompt_ids + s.completion_ids
        ids[i, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        att[i, : len(seq)] = 1
        p = len(s.prompt_ids)
        m = torch.tensor(s.model_mask, dtype=torch.float32)
        loss_mask[i, p - 1: p - 1 + len(m)] = m
    adv = torch.tensor([s.advantage for s in samples], dtype=torch.float32)
    return {"input_ids": ids, "attention_mask": att, "loss_mask": loss_mask, "advantages": adv}


def grpo_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    loss_mask: torch.Tensor,
    clip_eps: float = 0.2,
    beta: float = 0.0,
    ref_logp: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, dict]:
    """Clipped policy-gradient loss with optional k3 KL to a reference.

    logp, old_logp, ref_logp, loss_mask: ``(B, T)``; advantages: ``(B,)``.
    Per sequence: mean over its masked tokens; then mean over sequences (GRPO).
    """
    ratio = torch.exp(logp - old_logp)
    a = advantages[:, None]
    per_tok = -torch.min(ratio * a, torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * a)
    kl = torch.zeros_like(logp)
    if beta > 0.0 and ref_logp is not None:
        d = ref_logp - logp
        kl = torch.exp(d) - d - 1.0
        per_tok = per_tok + beta * kl
    n_tok = loss_mask.sum(dim=1).clamp(min=1.0)
    per_seq = (per_tok * loss_mask).sum(dim=1) / n_tok
    loss = per_seq.mean()
    with torch.no_grad():
        clipped = ((ratio - 1.0).abs() > clip_eps).float()
        stats = {
            "kl": float(((kl * loss_mask).sum(dim=1) / n_tok).mean()),
            "clip_frac": float((clipped * loss_mask).sum() / loss_mask.sum().clamp(min=1.0)),
        }
    return loss, stats


def group_logprobs(model: torch.nn.Module, prompt_ids: Sequence[int], completions: Sequence[Sequence[int]],
                   pad_id: int, device: Any = "cpu") -> torch.Tensor:
    """Log-probs ``(G, C)`` of G completions of ONE prompt, the prompt run once (batch 1) and its
    KV cache repeated over the group; entry [g, t] = log p(completion_g[t] | prompt, completion_g[:t]),
    right-padded (values past a completion's end are meaningless: mask them).
    Same values as :func:`token_logprobs` on the concatenated sequences (tested)."""
    from transformers import DynamicCache

    base = model.module if hasattr(model, "module") else model
    for attr in ("base_model", "model"):  # peft wrapper -> the causal LM with lm_head
        if not hasattr(base, "lm_head") and hasattr(base, attr):
            base = getattr(base, attr)
    decoder = base.get_decoder()
    g = len(completions)
    c_max = max(len(c) for c in completions)
    p = torch.tensor([list(prompt_ids)], dtype=torch.long, device=device)
    cache = DynamicCache(config=base.config)
    h_prompt = decoder(input_ids=p, past_key_values=cache, use_cache=True).last_hidden_state[:, -1:]  # (1, 1, D)
    cache.batch_repeat_interleave(g)
    ids = torch.full((g, c_max), pad_id, dtype=torch.long, device=device)
    att = torch.zeros((g, p.shape[1] + c_max), dtype=torch.long, device=device)
    att[:, : p.shape[1]] = 1
    for i, c in enumerate(completions):
        ids[i, : len(c)] = torch.tensor(list(c), dtype=torch.long)
        att[i, p.shape[1]: p.shape[1] + len(c)] = 1
    h = decoder(input_ids=ids, attention_mask=att, past_key_values=cache, use_cache=True).last_hidden_state  # (G, C, D)
    h = torch.cat([h_prompt.expand(g, -1, -1), h[:, :-1]], dim=1)  # position t predicts completion[t]
    logp = torch.log_softmax(base.lm_head(h).float(), dim=-1)
    return logp.gather(-1, ids[:, :, None]).squeeze(-1)


def batch_logprobs(model: torch.nn.Module, mb: Sequence[RolloutSample], pad_id: int, device: Any,
                   shared_prompt: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(logp, loss_mask, advantages)`` of a micro-batch: ``(B, C)`` over completions when all
    samples share one prompt and ``shared_prompt`` (single process), else ``(B, T-1)`` over
    whole sequences (the DDP-safe path through the wrapper's forward)."""
    adv = torch.tensor([s.advantage for s in mb], dtype=torch.float32, device=device)
    if shared_prompt and all(s.prompt_ids == mb[0].prompt_ids for s in mb):
        logp = group_logprobs(model, mb[0].prompt_ids, [s.completion_ids for s in mb], pad_id, device)
        mask = torch.zeros_like(logp)
        for i, s in enumerate(mb):
            mask[i, : len(s.model_mask)] = torch.tensor(s.model_mask, dtype=torch.float32)
        return logp, mask, adv
    b = {k: v.to(device) for k, v in collate_samples(mb, pad_id).items()}
    return token_logprobs(model, b["input_ids"], b["attention_mask"]), b["loss_mask"], adv


def replay_loss(model: torch.nn.Module, tokenizer: Any, records: Sequence[dict], device: Any,
                backward_scale: float = 0.0, backward: Optional[Callable] = None) -> tuple[float, int]:
    """SFT's token loss on the teacher chains (``record["rollout"]``) of ``records``, one record a
    pass (memory stays one sequence); with ``backward_scale`` > 0 each record's loss, times that and
    divided by the number of records, is backpropagated (through ``backward``, e.g.
    ``Accelerator.backward``; default ``Tensor.backward``). Returns (mean loss, records used);
    records without a chain are skipped."""
    from frs_ros.training.sft import encode_example, scored_positions_loss

    examples = [e for e in (encode_example(tokenizer, r) for r in records if r.get("rollout")) if e is not None]
    total = 0.0
    for e in examples:
        ids = e["input_ids"][None].to(device)
        loss, _ = scored_positions_loss(model, ids, torch.ones_like(ids), e["labels"][None].to(device))
        if backward_scale > 0.0:
            scaled = loss * backward_scale / len(examples)
            backward(scaled) if backward is not None else scaled.backward()
        total += float(loss.detach())
    return total / max(1, len(examples)), len(examples)


class EngineSampler:
    """Samples rollouts with the reasoner's HF runtime on the *training* model (tools live).

    The runtime's prefix KV caches must be dropped after every weight update (:meth:`refresh`).
    ``tools=False`` gives the "tools disabled" executor.
    """

    def __init__(self, model: Any, tokenizer: Any, temperature: float, max_new_tokens: int, seed: int = 0,
                 reasoner_overrides: Optional[dict] = None):
        from frs_ros.reasoning.config import ReasonerConfig
        from frs_ros.reasoning.hf_backend import HFReasoner

        d = {"backend": "hf", "model": "<in-memory>", "temperature": float(temperature), "top_p": 1.0,
             "max_new_tokens": int(max_new_tokens), "seed": int(seed)}
        d.update(reasoner_overrides or {})
        self.reasoner = HFReasoner(ReasonerConfig.from_dict(d), model=model, tokenizer=tokenizer)

    def refresh(self) -> None:
        self.reasoner.prefix_cache.clear()

    def sample(self, ctx: Any, n: int, tools: bool = True) -> list[Any]:
        """``n`` ``ReasonerOutput`` s for one :class:`frs_ros.training.chains.QueryContext`."""
        model = self.reasoner.model
        was_training = model.training
        model.eval()
        try:
            return [
                self.reasoner.reason(ctx.query.text, ctx.twin, ctx.twin_text, ctx.frame, ctx.tool_executor(tools))
                for _ in range(n)
            ]
        finally:
            model.train(was_training)


@dataclass
class GRPOResult:
    out_dir: Path
    steps: int
    history: list[dict] = field(default_factory=list)
    wall_s: float = 0.0


def _mean(xs: Sequence[float]) -> float:
    return float(np.mean(xs)) if len(xs) else float("nan")


def score_group(outputs: Sequence[Any], record: dict, ctx: Any, judge: Optional[ReasoningJudge], gamma: float) -> list[RewardBreakdown]:
    """Rewards of G outputs of one prompt (reasoning scored in one batched call when possible)."""
    if judge is not None and gamma != 0.0 and hasattr(judge, "score_many"):
        from frs_ros.training.rewards import parse_or_none

        reasons = [(parse_or_none(o.text).reason if parse_or_none(o.text) is not None else "") for o in outputs]
        judge.score_many([r for r in reasons if r], record["reason"])  # warm the cache in one batch
    return [score_rollout(o.text, ctx.id_masks, ctx.gt_mask, record["reason"], judge, gamma) for o in outputs]


def train_grpo(
    cfg: GRPOConfig,
    model: torch.nn.Module,
    tokenizer: Any,
    records: Sequence[dict],
    context_of: Callable[[dict], Any],
    judge: Optional[ReasoningJudge],
    sampler: Any = None,
    accelerator: Any = None,
    on_log: Optional[Callable[[dict], None]] = None,
    save_dtype: Optional[torch.dtype] = None,
    micro_batch: int = 0,
) -> GRPOResult:
    """Run ``cfg.steps`` GRPO updates; writes ``cfg.out/final`` and ``cfg.out/training_log.*``.

    records: chain records (prompts + teacher reasons); context_of: record -> QueryContext
    (twin, frame, masks; for tools and rewards); sampler: default :class:`EngineSampler`.
    """
    from accelerate import Accelerator

    from frs_ros.training.model import save_checkpoint

    if cfg.replay_coef < 0.0 or (cfg.replay_coef > 0.0 and cfg.replay_per_step < 1):
        raise ValueError(f"grpo replay: replay_coef must be >= 0 and replay_per_step >= 1 when it is on, "
                         f"got {cfg.replay_coef} and {cfg.replay_per_step}")
    torch.set_num_threads(cfg.num_threads)
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    replay_rng = random.Random(cfg.seed + 1)  # its own stream: the prompt order is the same with or without
    micro_batch = micro_batch or cfg.group_size
    acc = accelerator or Accelerator(mixed_precision=cfg.mixed_precision)
    ref_model = None
    if cfg.beta > 0.0:
        ref_model = copy.deepcopy(model).eval()
        for p in ref_model.parameters():
            p.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.99))
    model, opt = acc.prepare(model, opt)
    if ref_model is not None:
        ref_model.to(acc.device)
    raw_model = acc.unwrap_model(model)
    if sampler is None:
        overrides = {"device": str(acc.device), **dict(cfg.reasoner)}
        sampler = EngineSampler(raw_model, tokenizer, cfg.temperature, cfg.max_new_tokens, cfg.seed + acc.process_index,
                                reasoner_overrides=overrides)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    order = list(range(len(records)))
    rng.shuffle(order)
    order = order[acc.process_index:: acc.num_processes]
    cursor = 0
    history: list[dict] = []
    t0 = time.time()
    out_dir = Path(cfg.out)
    first = 1
    if (out_dir / "last" / RESUME_STATE).exists():

        done, _, cursor, history = load_resume_state(out_dir / "last", raw_model, opt)
        order = json.loads((out_dir / "last" / "order.json").read_text())
        first = done + 1
        if on_log and acc.is_main_process:
            on_log({"stage": "grpo", "resumed_at_step": done})
    for step in range(first, cfg.steps + 1):
        for g in opt.param_groups:
            g["lr"] = cfg.lr * min(1.0, step / cfg.warmup_steps) if cfg.warmup_steps else cfg.lr
        t_step = time.time()
        samples: list[RolloutSample] = []
        all_rewards: list[RewardBreakdown] = []
        gen_tokens: list[int] = []
        n_flat = 0
        n_skipped = 0
        n_informative = 0
        n_drawn = 0
        # Dynamic sampling (DAPO, Yu et al. 2025): draw prompts until prompts_per_step of them
        # gave a group with unequal rewards, or max_prompt_draws were drawn. With an SFT student
        # at ~100 % on its training prompts most groups are flat (A = 0); v7's 10 steps trained
        # on 0-12 sequences a step (out/train/grpo_v7.log), so the update was mostly noise.
        max_draws = max(cfg.prompts_per_step, cfg.max_prompt_draws or cfg.prompts_per_step)
        while n_informative < cfg.prompts_per_step and n_drawn < max_draws:
            n_drawn += 1
            if cursor >= len(order):
                rng.shuffle(order)
                cursor = 0
            rec = records[order[cursor]]
            cursor += 1
            try:
                ctx = context_of(rec)
            except ContextMismatchError:
                # the sim or twin changed since this chain was written: its masks and tools would
                # not match the recorded twin text, so the prompt is skipped (counted in the log)
                n_skipped += 1
                continue
            outs = sampler.sample(ctx, cfg.group_size, tools=cfg.tools)
            rewards = score_group(outs, rec, ctx, judge, cfg.gamma)
            all_rewards += rewards
            gen_tokens += [int(getattr(o, "generated_tokens", 0)) for o in outs]
            adv = group_advantages([r.total for r in rewards])
            if np.allclose(adv, 0.0):
                n_flat += 1
                continue
            n_informative += 1
            for o, r, a in zip(outs, rewards, adv):
                p_ids, c_ids, c_mask = tokenize_sample(tokenizer, rec, o.text)
                if not any(c_mask):
                    continue
                samples.append(RolloutSample(rec["id"], o.text, p_ids, c_ids, c_mask, r,
                                             int(getattr(o, "generated_tokens", 0)), getattr(o, "status", "ok"), float(a)))
        t_gen = time.time() - t_step
        loss_val, kl_val, clip_val, replay_val = 0.0, 0.0, 0.0, 0.0
        # one micro-batch per prompt group (its G rollouts share the prompt: see batch_logprobs)
        batches: list[list[RolloutSample]] = []
        for s_ in samples:
            if batches and batches[-1][0].record_id == s_.record_id and len(batches[-1]) < micro_batch:
                batches[-1].append(s_)
            else:
                batches.append([s_])
        shared = acc.num_processes == 1
        # Under DDP every process must run the same number of backward passes: pad with
        # zero-weight passes up to the largest count of micro-batches of any process.
        n_batches = len(batches)
        if acc.num_processes > 1:
            n_batches = int(acc.gather(torch.tensor([len(batches)], device=acc.device)).max())
        if n_batches:
            model.train()
            cached_old: list[torch.Tensor] = []
            if cfg.inner_epochs > 1:
                with torch.no_grad():
                    for mb in batches:
                        cached_old.append(batch_logprobs(model, mb, pad_id, acc.device, shared)[0])
            for _epoch in range(cfg.inner_epochs):
                opt.zero_grad(set_to_none=True)
                for bi, mb in enumerate(batches):
                    logp, loss_mask, advantages = batch_logprobs(model, mb, pad_id, acc.device, shared)
                    old = cached_old[bi] if cached_old else logp.detach()
                    ref = None
                    if ref_model is not None:
                        with torch.no_grad():
                            ref = batch_logprobs(ref_model, mb, pad_id, acc.device, shared)[0]
                    loss, st = grpo_loss(logp, old, advantages, loss_mask, cfg.clip_eps, cfg.beta, ref)
                    # micro-batches are weighted by their share of sequences (mean over sequences)
                    acc.backward(loss * len(mb) / len(samples))
                    loss_val += float(loss.detach()) * len(mb) / len(samples) / cfg.inner_epochs
                    kl_val += st["kl"] * len(mb) / len(samples) / cfg.inner_epochs
                    clip_val += st["clip_frac"] * len(mb) / len(samples) / cfg.inner_epochs
                for _pad in range(n_batches - len(batches)):
                    dummy = torch.full((1, 2), pad_id, dtype=torch.long, device=acc.device)
                    acc.backward(model(input_ids=dummy).logits.sum() * 0.0)
                if cfg.replay_coef > 0.0:
                    # PPO-ptx: SFT's loss on a few teacher chains beside the GRPO loss (GRPOConfig)
                    picked = [records[replay_rng.randrange(len(records))] for _ in range(cfg.replay_per_step)]
                    rl, _ = replay_loss(model, tokenizer, picked, acc.device, cfg.replay_coef, acc.backward)
                    replay_val += rl / cfg.inner_epochs
                if cfg.grad_clip > 0:
                    acc.clip_grad_norm_(params, cfg.grad_clip)
                opt.step()
            opt.zero_grad(set_to_none=True)
            sampler.refresh()
        rec_log = {
            "stage": "grpo",
            "step": step,
            "reward": _mean([r.total for r in all_rewards]),
            "format": _mean([r.format for r in all_rewards]),
            "accuracy": _mean([r.accuracy for r in all_rewards]),
            "reasoning": _mean([r.reasoning for r in all_rewards]),
            "iou": _mean([r.iou for r in all_rewards]),
            "gen_tokens": float(np.mean(gen_tokens)) if gen_tokens else 0.0,
            "prompts_drawn": n_drawn,
            "flat_groups": n_flat,
            "skipped_prompts": n_skipped,
            "trained_seqs": len(samples),
            "loss": loss_val,
            "kl": kl_val,
            "clip_frac": clip_val,
            "replay_loss": replay_val,
            "lr": opt.param_groups[0]["lr"],
            "gen_s": round(t_gen, 1),
            "step_s": round(time.time() - t_step, 1),
            "elapsed_s": round(time.time() - t0, 1),
        }
        history.append(rec_log)
        if on_log and acc.is_main_process and (step % cfg.log_every == 0 or step == cfg.steps):
            on_log(rec_log)
        if cfg.save_every and step % cfg.save_every == 0 and acc.is_main_process:
            save_checkpoint(acc.unwrap_model(model), tokenizer, out_dir / f"step_{step}", cfg, step, "grpo", dtype=save_dtype,
                            adapter_only=cfg.adapter_only)
            write_log(history, out_dir)
            save_resume_state(out_dir / "last", raw_model, opt, step, 0, cursor, history)
            (out_dir / "last" / "order.json").write_text(json.dumps(order))
        if (out_dir / "STOP").exists():  # graceful early stop: touch <out>/STOP, resume later
            break
    acc.wait_for_everyone()
    wall = time.time() - t0
    if acc.is_main_process:
        save_checkpoint(acc.unwrap_model(model), tokenizer, out_dir / "final", cfg, len(history), "grpo",
                        extra={"wall_s": round(wall, 1)}, dtype=save_dtype, adapter_only=cfg.adapter_only)
        write_log(history, out_dir)
    return GRPOResult(out_dir=out_dir, steps=cfg.steps, history=history, wall_s=wall)
