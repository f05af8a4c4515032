"""Reasoner benchmarks (not tests): oracle accuracy on the simulator, LM prompt-processing speed.

    python -m frs_ros.reasoning.bench oracle --images 200 --episodes 20
    python -m frs_ros.reasoning.bench timing --threads 2

``oracle``: gIoU (mean per-query IoU, empty union = 1) of the oracle teacher on sim samples
with the ``sim`` twin backend. For episodes the tracker runs over all frames, the query is
answered on the twin of its ``frame_index``, and the answered tracks' masks are scored on
every frame of ``spec['eval_frames']`` (per-query IoU = mean over those frames).

``timing``: a real-size Qwen3-0.6B with random weights (speed does not depend on weights):
first query vs a repeated query on the same twin (prefix-cache reuse), and a tool-pause resume.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from typing import Optional

import numpy as np

from frs_ros.masks import mask_iou, rle_decode


def _union(twin, ids, shape) -> np.ndarray:
    out = np.zeros(shape, dtype=bool)
    for o in twin.objects:
        if o.track_id in ids and o.visible:
            out |= rle_decode(o.mask)
    return out


def oracle_benchmark(n_images: int = 200, n_episodes: int = 20, split: str = "val", n_frames: int = 30,
                     seed0: int = 0, verbose: bool = False) -> dict:
    """gIoU of the oracle teacher on ``n_images`` images + ``n_episodes`` episodes of ``split``."""
    from frs_ros.reasoning.api import ReasonSegEngine
    from frs_ros.reasoning.oracle import DO_NOT_TRAIN, OracleReasoner
    from frs_ros.sim import generate_episode, generate_image
    from frs_ros.twin.config import TwinConfig
    from frs_ros.twin.tools import run_tool
    from frs_ros.twin.tracker import Tracker

    oracle = OracleReasoner()
    engine = ReasonSegEngine({"backend": "oracle"}, reasoner=oracle)
    per_kind: dict[str, list[float]] = defaultdict(list)
    tools_used = 0
    untrainable: dict[str, int] = defaultdict(int)  # per kind: chains flagged DO_NOT_TRAIN
    chain_chars: list[int] = []
    failures: list[str] = []
    samples = [("image", s) for s in range(seed0, seed0 + n_images)] + [("episode", s) for s in range(seed0, seed0 + n_episodes)]
    for kind, seed in samples:
        sample = generate_image(seed, split) if kind == "image" else generate_episode(seed, split, n_frames)
        tracker = Tracker(TwinConfig())
        oracle.reset()
        twins = []
        for fr in sample.frames:
            tw = tracker.update(fr)
            oracle.observe(tw, fr)
            twins.append(tw)
        for q in sample.queries:
            f = q.frame_index if q.frame_index >= 0 else len(sample.frames) - 1
            twin, frame = twins[f], sample.frames[f]
            oracle.truth.update([q])
            ans = engine.answer(q.text, twin, frame,
                                tool_executor=lambda c, tw=twin, fr=frame: run_tool(c, tw, fr))
            if not ans.ok:
                failures.append(f"{kind} {seed} {q.kind}: {ans.status} {ans.error}")
                per_kind[q.kind].append(0.0)
                continue
            ids = set(ans.target_ids)
            evals = q.spec.get("eval_frames") or [f]
            ious = [mask_iou(_union(twins[e], ids, twins[e].image_size), sample.frames[e].gt.union_mask(q.target_ids))
                    for e in evals]
            iou = float(np.mean(ious))
            per_kind[q.kind].append(iou)
            tools_used += bool(ans.rollout.plans)
            untrainable[q.kind] += any(DO_NOT_TRAIN in w for w in ans.warnings)
            chain_chars.append(len(ans.rollout.reason))
            if iou < 0.9 and verbose:
                print(f"low IoU {iou:.2f} {kind} {seed} {q.kind} {q.spec} -> {ans.reasoning}")
    all_iou = [v for vs in per_kind.values() for v in vs]
    return {
        "giou": float(np.mean(all_iou)) if all_iou else float("nan"),
        "queries": len(all_iou),
        "per_kind": {k: {"n": len(v), "giou": float(np.mean(v))} for k, v in sorted(per_kind.items())},
        "with_tools": tools_used,
        "do_not_train": sum(untrainable.values()),
        "do_not_train_per_kind": {k: v for k, v in sorted(untrainable.items()) if v},
        "mean_reason_chars": float(np.mean(chain_chars)) if chain_chars else 0.0,
        "failures": failures[:10],
    }


def timing_benchmark(threads: int = 2, n_objects: int = 10, decode_steps: int = 8, dtype: str = "float32") -> dict:
    """Prompt-processing time of a real-size Qwen3-0.6B (random weights) with and without reuse."""
    import torch
    from transformers import Qwen3ForCausalLM

    from frs_ros.reasoning.config import ReasonerConfig
    from frs_ros.reasoning.hf_backend import HFReasoner
    from frs_ros.reasoning.prompt import build_prompt, encode_prompt
    from frs_ros.reasoning.tiny import build_tokenizer, qwen3_0_6b_config

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    tok = build_tokenizer(vocab_size=600)
    cfg = qwen3_0_6b_config()
    model = Qwen3ForCausalLM(cfg).to(getattr(torch, dtype)).eval()
    r = HFReasoner(ReasonerConfig(model="random-qwen3-0.6b", dtype=dtype), model=model, tokenizer=tok)
    rng = np.random.default_rng(0)
    labels = ["mug", "bowl", "plate", "bottle", "book", "phone", "apple", "spoon", "laptop", "vase"]
    colors = ["red", "white", "blue", "green", "black"]
    lines = ["twin t=0.00s depth=sensor objects=%d" % n_objects]
    for i in range(1, n_objects + 1):
        lines.append(f"{colors[i % len(colors)]} {labels[i % len(labels)]} #{i} x={rng.random():.2f} "
                     f"z={0.5 + rng.random():.2f} size={0.05 + 0.2 * rng.random():.2f}x{0.05 + 0.2 * rng.random():.2f}")
    lines.append("facts: " + "; ".join(f"{w} object #{i}" for w, i in
                                        (("nearest", 1), ("farthest", 2), ("leftmost", 3), ("rightmost", 4))))
    twin_text = "\n".join(lines)
    out: dict = {"threads": threads, "dtype": dtype, "params_m": sum(p.numel() for p in model.parameters()) / 1e6}

    def timed_prefill(query: str, reuse: bool) -> tuple[float, int, int]:
        p = encode_prompt(tok, build_prompt(twin_text, query))
        t = time.perf_counter()
        _, cache, cached = r.prefill(p.ids, p.boundaries, reuse)
        return time.perf_counter() - t, len(p), cached

    t_first, n_prompt, c_first = timed_prefill("the red mug on the left", True)
    t_second, n2, c_second = timed_prefill("something I could drink hot tea from", True)
    t_full, _, _ = timed_prefill("something I could drink hot tea from", False)
    out.update(prompt_tokens=n_prompt, first_query_s=t_first, first_cached=c_first,
               repeat_query_s=t_second, repeat_prompt_tokens=n2, repeat_cached=c_second, full_prefill_s=t_full)
    # tool pause: decode some tokens, append a <results> block to the live cache, decode on
    p = encode_prompt(tok, build_prompt(twin_text, "the red mug"))
    logits, cache, _ = r.prefill(p.ids, p.boundaries, True)
    steps = []
    for _ in range(decode_steps):
        t = time.perf_counter()
        logits = r.forward([int(torch.argmax(logits))], cache)
        steps.append(time.perf_counter() - t)
    results = r.encode("<results>describe(4): #4 mug: red (81% of pixels), round, 0.09x0.11 m (w x h)\n"
                       "describe(7): #7 mug: blue (77% of pixels), round, 0.10x0.12 m (w x h)</results>")
    kv_before = cache.get_seq_length()
    t = time.perf_counter()
    logits = r.forward(results, cache)
    t_resume = time.perf_counter() - t
    t = time.perf_counter()
    r.forward([int(torch.argmax(logits))], cache)
    t_after = time.perf_counter() - t
    # the alternative: re-prefill the whole prompt + rollout so far + results from scratch
    total = kv_before + len(results)
    t = time.perf_counter()
    r.forward(list(range(5, 5 + total)), r.new_cache())
    t_reprefill = time.perf_counter() - t
    out.update(decode_ms_per_token=1000 * float(np.median(steps)), resume_tokens=len(results), resume_s=t_resume,
               kv_tokens_before_resume=kv_before, first_token_after_resume_s=t_after, reprefill_instead_s=t_reprefill)
    return out


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m frs_ros.reasoning.bench", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    o = sub.add_parser("oracle")
    o.add_argument("--images", type=int, default=200)
    o.add_argument("--episodes", type=int, default=20)
    o.add_argument("--split", default="val")
    o.add_argument("--frames", type=int, default=30)
    o.add_argument("--verbose", action="store_true")
    t = sub.add_parser("timing")
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--objects", type=int, default=10)
    t.add_argument("--dtype", default="float32")
    a = ap.parse_args(argv)
    if a.what == "oracle":
        res = oracle_benchmark(a.images, a.episodes, a.split, a.frames, verbose=a.verbose)
    else:
        res = timing_benchmark(a.threads, a.objects, dtype=a.dtype)
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
