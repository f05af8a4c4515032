"""Stage 1: supervised fine-tuning on teacher chains kept by rejection sampling.

Loss is on the rollout tokens only: the prompt (instruction + twin + query) is masked, and so
is every ``<results>...</results>`` block (tool output, written by the runtime, never by the
model; generation stops at ``</plan>``). Tokenisation goes through the reasoner's
``encode_prompt`` (segment by segment) so training sees exactly the ids the runtime feeds.

The loop is plain PyTorch driven by ``accelerate.Accelerator`` (1..N processes/GPUs with
``accelerate launch``; mixed precision from the config). Full fine-tuning for the nano
student, LoRA (peft) for HF LLMs (``lora_r > 0``).
"""

from __future__ import annotations

import csv
import json
import math
import random
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

import torch

from frs_ros.training.config import SFTConfig, config_to_dict

IGNORE_INDEX = -100
_RESULTS_RE = re.compile(r"<results>.*?</results>", re.DOTALL)


def split_rollout(rollout: str) -> list[tuple[str, bool]]:
    """Split a rollout into ``(text, trained)`` segments; ``<results>..</results>`` blocks
    (tags included, the runtime writes them) are ``trained=False``. Empty segments dropped."""
    out: list[tuple[str, bool]] = []
    i = 0
    for m in _RESULTS_RE.finditer(rollout):
        if m.start() > i:
            out.append((rollout[i: m.start()], True))
        out.append((m.group(0), False))
        i = m.end()
    if i < len(rollout):
        out.append((rollout[i:], True))
    return out


def encode_rollout(tokenizer: Any, rollout: str) -> tuple[list[int], list[bool]]:
    """Token ids of a rollout and, per token, whether the model wrote it (False inside results)."""
    ids: list[int] = []
    trained: list[bool] = []
    for text, is_model in split_rollout(rollout):
        seg = [int(t) for t in tokenizer.encode(text, add_special_tokens=False)]
        ids += seg
        trained += [is_model] * len(seg)
    return ids, trained


def prompt_of(record: dict, chat_markers: bool = True):
    """The reasoner's prompt (``frs_ros.reasoning.prompt.build_prompt``) of a chain record."""
    from frs_ros.reasoning.prompt import build_prompt

    return build_prompt(record["twin_text"], record["query"], chat_markers=chat_markers)


def encode_example(tokenizer: Any, record: dict, max_len: int = 0, add_eos: bool = True) -> Optional[dict]:
    """``{"input_ids": (T,), "labels": (T,)}`` long tensors of one chain record, or ``None``
    if longer than ``max_len`` (0 = no limit). Labels are -100 on the prompt and tool results."""
    from frs_ros.reasoning.prompt import encode_prompt

    p = encode_prompt(tokenizer, prompt_of(record))
    r_ids, r_trained = encode_rollout(tokenizer, record["rollout"])
    ids = list(p.ids) + r_ids
    labels = [IGNORE_INDEX] * len(p.ids) + [t if keep else IGNORE_INDEX for t, keep in zip(r_ids, r_trained)]
    if add_eos and tokenizer.eos_token_id is not None:
        ids.append(int(tokenizer.eos_token_id))
        labels.append(int(tokenizer.eos_token_id))
    if max_len and len(ids) > max_len:
        return None
    return {"input_ids": torch.tensor(ids, dtype=torch.long), "labels": torch.tensor(labels, dtype=torch.long)}


def collate(batch: Sequence[dict], pad_id: int) -> dict:
    """Right-pad to the longest: input_ids/labels/attention_mask ``(B, T)``."""
    t = max(len(b["input_ids"]) for b in batch)
    ids = torch.full((len(batch), t), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), t), IGNORE_INDEX, dtype=torch.long)
    att = torch.zeros((len(batch), t), dtype=torch.long)
    for i, b in enumerate(batch):
        n = len(b["input_ids"])
        ids[i, :n] = b["input_ids"]
        labels[i, :n] = b["labels"]
        att[i, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": att}


def length_bucketed_batches(lengths: Sequence[int], batch_size: int, seed: int, pool: int = 64) -> list[list[int]]:
    """Shuffled batches of indices with similar lengths (less padding on CPU).

    Indices are shuffled, cut into pools of ``batch_size * pool``, each pool sorted by length and
    cut into batches; the batches are then shuffled. Deterministic for a seed.
    """
    rng = random.Random(seed)
    idx = list(range(len(lengths)))
    rng.shuffle(idx)
    batches = []
    step = batch_size * pool
    for s in range(0, len(idx), step):
        chunk = sorted(idx[s: s + step], key=lambda i: lengths[i])
        batches += [chunk[j: j + batch_size] for j in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def twin_grouped_batches(keys: Sequence[str], batch_size: int, seed: int) -> list[list[int]]:
    """Batches of indices whose records share a twin (``keys[i]`` = its twin text), at most
    ``batch_size`` each, in a shuffled order. Deterministic for a seed."""
    rng = random.Random(seed)
    groups: dict[str, list[int]] = {}
    for i, k in enumerate(keys):
        groups.setdefault(k, []).append(i)
    batches = []
    for idx in groups.values():
        rng.shuffle(idx)
        batches += [idx[j: j + batch_size] for j in range(0, len(idx), batch_size)]
    rng.shuffle(batches)
    return batches


def lr_factor(step: int, warmup: int, total: int, min_ratio: float = 0.1) -> float:
    """Linear warm-up to 1, then cosine decay to ``min_ratio`` at ``total`` (nanoGPT style)."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if total <= warmup:
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def read_chains(paths: Iterable[str], max_examples: int = 0) -> list[dict]:
    """Records of one or more chain JSONL files (see :mod:`frs_ros.training.chains`)."""
    out: list[dict] = []
    for path in paths:
        with open(path) as f:
            for line in f:
                # a line without its newline is still being written by a running `chains`
                if line.strip() and line.endswith("\n"):
                    out.append(json.loads(line))
                    if max_examples and len(out) >= max_examples:
                        return out
    return out


def repeat_kinds(records: Sequence[dict], repeat: dict) -> list[dict]:
    """``records`` with each record of kind k listed ``repeat[k]`` times (default 1), copies
    next to their original. Raises on a count < 1 or not an integer, naming the kind."""
    for kind, n in repeat.items():
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"kind_repeat[{kind!r}] must be an integer >= 1, got {n!r}")
    out: list[dict] = []
    for r in records:
        out += [r] * repeat.get(r.get("kind", ""), 1)
    return out


def masked_token_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Mean next-token cross-entropy over label positions != -100.

    logits ``(B, T, V)``, labels ``(B, T)`` (unshifted: position t predicts labels[t+1]).
    Returns (loss, number of scored tokens).
    """
    shift_logits = logits[:, :-1].float()
    shift_labels = labels[:, 1:]
    n = int((shift_labels != IGNORE_INDEX).sum())
    loss = torch.nn.functional.cross_entropy(
        shift_logits.reshape(-1, shift_logits.shape[-1]), shift_labels.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"
    )
    return loss / max(n, 1), n


def scored_positions_loss(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                          labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Same value as :func:`masked_token_loss` on the full logits, but the LM head runs only at
    the positions that predict a scored token (most of a sequence is masked prompt).

    Works for HF causal LMs exposing ``get_decoder()``/``lm_head`` (Qwen3, also under peft);
    anything else falls back to the full logits.
    """
    base = model
    for attr in ("module", "base_model", "model"):  # DDP / peft wrappers
        if not hasattr(base, "lm_head") and hasattr(base, attr):
            base = getattr(base, attr)
    if not hasattr(base, "lm_head") or not hasattr(base, "get_decoder"):
        out = model(input_ids=input_ids, attention_mask=attention_mask)
        return masked_token_loss(out.logits, labels)
    hidden = base.get_decoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, T, D)
    target = labels[:, 1:]
    keep = target != IGNORE_INDEX  # (B, T-1)
    n = int(keep.sum())
    h = hidden[:, :-1][keep]  # (N, D)
    logits = base.lm_head(h).float()  # (N, V)
    loss = torch.nn.functional.cross_entropy(logits, target[keep], reduction="sum")
    return loss / max(n, 1), n


def shared_prefix_loss(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                       labels: torch.Tensor, prefix_len: int) -> tuple[torch.Tensor, int]:
    """:func:`scored_positions_loss` when every row starts with the same ``prefix_len`` tokens
    (the prompt's instruction segment, ~1/3 of a nano sequence) and no label falls inside it:
    the prefix runs once (batch 1), its KV cache is repeated over the batch, and only the rest
    of each row runs. Same value and gradients as the full forward (tested)."""
    from transformers import DynamicCache

    base = model.module if hasattr(model, "module") else model
    if prefix_len < 1 or not hasattr(base, "lm_head") or not hasattr(base, "get_decoder") \
            or bool((labels[:, : prefix_len + 1] != IGNORE_INDEX).any()) \
            or not bool((input_ids[:, :prefix_len] == input_ids[:1, :prefix_len]).all()):
        return scored_positions_loss(model, input_ids, attention_mask, labels)
    decoder = base.get_decoder()
    cache = DynamicCache(config=base.config)
    decoder(input_ids=input_ids[:1, :prefix_len], past_key_values=cache, use_cache=True)
    cache.batch_repeat_interleave(input_ids.shape[0])
    hidden = decoder(input_ids=input_ids[:, prefix_len:], attention_mask=attention_mask, past_key_values=cache,
                     use_cache=True).last_hidden_state  # (B, T - prefix_len, D)
    target = labels[:, prefix_len + 1:]
    keep = target != IGNORE_INDEX
    n = int(keep.sum())
    logits = base.lm_head(hidden[:, :-1][keep]).float()
    loss = torch.nn.functional.cross_entropy(logits, target[keep], reduction="sum")
    return loss / max(n, 1), n


RESUME_STATE = "resume_state.json"


def save_resume_state(path: Path, model: torch.nn.Module, opt: Any, step: int, epoch: int, batch_index: int,
                      history: list[dict]) -> None:
    """Write what :func:`load_resume_state` needs to continue exactly here: the trainable
    weights (the LoRA adapter, or all weights), the optimizer state, step / epoch / next batch
    index and the log. Written to a temporary folder and renamed, so a kill never leaves a
    half-written state."""
    import shutil

    from safetensors.torch import save_file

    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    trainable = {k: v.detach().contiguous() for k, v in model.named_parameters() if v.requires_grad}
    save_file(trainable, str(tmp / "trainable.safetensors"))
    torch.save(opt.state_dict(), tmp / "optimizer.pt")
    (tmp / RESUME_STATE).write_text(json.dumps({"step": step, "epoch": epoch, "batch_index": batch_index,
                                                "history": history}))
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)


def load_resume_state(path: Path, model: torch.nn.Module, opt: Any) -> tuple[int, int, int, list[dict]]:
    """Load a state written by :func:`save_resume_state` into ``model`` and ``opt``;
    returns ``(step, epoch, batch_index, history)``."""
    from safetensors.torch import load_file

    st = json.loads((path / RESUME_STATE).read_text())
    weights = load_file(str(path / "trainable.safetensors"))
    params = dict(model.named_parameters())
    missing = [k for k in weights if k not in params]
    if missing:
        raise ValueError(f"{path}: the resume state does not fit this model (e.g. {missing[:2]}); "
                         "delete it or train into another out folder")
    with torch.no_grad():
        for k, v in weights.items():
            params[k].copy_(v)
    opt.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
    return int(st["step"]), int(st["epoch"]), int(st["batch_index"]), list(st["history"])


def write_log(history: list[dict], out_dir: Path, name: str = "training_log") -> None:
    """history -> ``name.json`` and ``name.csv`` in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.json").write_text(json.dumps(history, indent=1))
    keys: list[str] = []
    for h in history:
        keys += [k for k in h if k not in keys]
    with open(out_dir / f"{name}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(history)


@dataclass
class SFTResult:
    out_dir: Path
    steps: int
    history: list[dict]
    dropped_too_long: int
    wall_s: float


def train_sft(
    cfg: SFTConfig,
    model: torch.nn.Module,
    tokenizer: Any,
    records: Sequence[dict],
    accelerator: Any = None,
    on_log: Optional[Callable[[dict], None]] = None,
    save_dtype: Optional[torch.dtype] = None,
) -> SFTResult:
    """Run SFT; writes ``cfg.out/final`` (checkpoint) and ``cfg.out/training_log.{json,csv}``.

    ``model`` is already built (nano or HF, LoRA-wrapped if wanted); ``records`` are chain
    records. Steps = ``cfg.max_steps`` or ``ceil(epochs * batches / grad_accum)``.
    """
    from accelerate import Accelerator

    from frs_ros.training.model import save_checkpoint

    torch.set_num_threads(cfg.num_threads)
    torch.manual_seed(cfg.seed)
    acc = accelerator or Accelerator(mixed_precision=cfg.mixed_precision, gradient_accumulation_steps=cfg.grad_accum)
    from frs_ros.reasoning.prompt import encode_prompt as _encode_prompt

    examples = []
    dropped = 0
    for r in records:
        ex = encode_example(tokenizer, r, cfg.max_len)
        if ex is None:
            dropped += 1
        else:
            ex["twin_key"] = r["twin_text"]
            ex["twin_len"] = _encode_prompt(tokenizer, prompt_of(r)).boundaries[1]
            examples.append(ex)
    if not examples:
        raise ValueError(f"no SFT examples left (all {dropped} longer than max_len={cfg.max_len})")
    lengths = [len(e["input_ids"]) for e in examples]
    from frs_ros.reasoning.prompt import encode_prompt

    # the instruction segment every prompt starts with (its KV is computed once per batch); with
    # group_by_twin the whole [instruction + twin] prefix of the batch's twin is shared
    prefix_len = encode_prompt(tokenizer, prompt_of(records[0])).boundaries[0] if records else 0
    twin_keys = [e["twin_key"] for e in examples]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    batches_per_epoch = math.ceil(len(examples) / cfg.batch_size)
    total = cfg.max_steps or max(1, math.ceil(cfg.epochs * batches_per_epoch / cfg.grad_accum))
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.95))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg.warmup_steps, total))
    # The scheduler is stepped by hand once per optimizer step (accelerate's wrapper would step
    # it once per process), so the schedule is the same on 1..N processes.
    model, opt = acc.prepare(model, opt)
    out_dir = Path(cfg.out)
    history: list[dict] = []
    step, epoch, t0 = 0, 0, time.time()
    skip = 0  # batches of the current epoch already trained (resume)
    if cfg.resume and (out_dir / "last" / RESUME_STATE).exists():
        step, epoch, skip, history = load_resume_state(out_dir / "last", acc.unwrap_model(model), opt)
        with warnings.catch_warnings():  # replaying the schedule: no optimizer step belongs to it
            warnings.simplefilter("ignore", UserWarning)
            for _ in range(step):
                sched.step()
        if on_log and acc.is_main_process:
            on_log({"stage": "sft", "resumed_at_step": step, "epoch": epoch})
    tokens_seen = 0
    run_loss, run_n = 0.0, 0
    next_batch = skip
    while step < total:
        if cfg.group_by_twin:
            batches = twin_grouped_batches(twin_keys, cfg.batch_size, cfg.seed + epoch)
        else:
            batches = length_bucketed_batches(lengths, cfg.batch_size, cfg.seed + epoch)
        # Each process takes its share of batches (accelerate's launcher sets num_processes).
        batches = batches[acc.process_index:: acc.num_processes]
        for bi, b in enumerate(batches):
            if bi < skip:
                continue
            batch = collate([examples[i] for i in b], pad_id)
            batch = {k: v.to(acc.device) for k, v in batch.items()}
            shared = examples[b[0]]["twin_len"] if cfg.group_by_twin else prefix_len
            with acc.accumulate(model):
                if acc.num_processes > 1:  # DDP syncs gradients only through the wrapper's forward
                    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
                    loss, n_tok = masked_token_loss(out.logits, batch["labels"])
                else:
                    loss, n_tok = shared_prefix_loss(model, batch["input_ids"], batch["attention_mask"],
                                                     batch["labels"], shared)
                acc.backward(loss)
                if acc.sync_gradients and cfg.grad_clip > 0:
                    acc.clip_grad_norm_(params, cfg.grad_clip)
                opt.step()
                opt.zero_grad(set_to_none=True)
            run_loss += float(loss.detach()) * n_tok
            run_n += n_tok
            next_batch = bi + 1
            tokens_seen += int(batch["attention_mask"].sum())
            if not acc.sync_gradients:
                continue
            step += 1
            sched.step()
            if step % cfg.log_every == 0 or step == total:
                rec = {
                    "stage": "sft",
                    "step": step,
                    "epoch": round(epoch + (bi + 1) / max(1, len(batches)), 3),
                    "loss": run_loss / max(run_n, 1),
                    "lr": sched.get_last_lr()[0],
                    "tokens": tokens_seen,
                    "elapsed_s": round(time.time() - t0, 1),
                }
                history.append(rec)
                run_loss, run_n = 0.0, 0
                if on_log and acc.is_main_process:
                    on_log(rec)
            if cfg.save_every and step % cfg.save_every == 0 and acc.is_main_process:
                save_checkpoint(acc.unwrap_model(model), tokenizer, out_dir / f"step_{step}", cfg, step, "sft",
                                adapter_only=cfg.adapter_only)
                save_resume_state(out_dir / "last", acc.unwrap_model(model), opt, step, epoch, bi + 1, history)
            if step >= total or (out_dir / "STOP").exists():
                break
        skip = 0
        if step >= total or (out_dir / "STOP").exists():  # graceful early stop: touch <out>/STOP
            break
        epoch += 1
    acc.wait_for_everyone()
    wall = time.time() - t0
    if acc.is_main_process:
        save_checkpoint(
            acc.unwrap_model(model), tokenizer, out_dir / "final", cfg, step, "sft",
            extra={"examples": len(examples), "dropped_too_long": dropped, "wall_s": round(wall, 1)}, dtype=save_dtype,
            adapter_only=cfg.adapter_only,
        )
        save_resume_state(out_dir / "last", acc.unwrap_model(model), opt, step, epoch, next_batch, history)
        write_log(history, out_dir)
    return SFTResult(out_dir=out_dir, steps=step, history=history, dropped_too_long=dropped, wall_s=wall)
