"""Where the time goes: per-stage timings of the whole frs_ros pipeline at real model sizes.

    python bench/run_bench.py --md bench/results/bench_table.md       # full run (~10 min, 2 cores)
    python bench/run_bench.py --quick --out /tmp/bench_quick.json    # miniature models, smoke test
    python bench/run_bench.py --only smollm2                         # SmolLM2 student vs llama.cpp alone (~5 min)
    python bench/run_bench.py --only soak                            # reasoner node soak over DDS (bench/soak.py)

Real sizes with random weights (no weights can be downloaded; speed does not depend on them):
SAM-2.1 hiera-tiny, OWLv2 base/16 @960, Depth-Anything-V2-Small, Qwen3-0.6B and Qwen3-1.7B,
configs in ``bench/configs``. Twins and queries come from the simulator (640x480), so the twin
text, the tool calls and the rollouts have their real sizes. Repeat counts are small (1-3 runs
per stage, 10 optimised and 2 naive queries; see docs/performance.md) so that a full run stays
near 10 min on 2 cores. Prints a Markdown table, writes the JSON results and PNG charts.

The ``smollm2`` section (``bench/smollm2.py``) is different: real weights (the SmolLM2-135M
student, or its base until the student exists) on our runtimes and on llama.cpp, which it
installs on demand outside the venv (``--llama-cpp``, see ``bench/llama_cpp_peer.py``).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402

from frs_ros import optim  # noqa: E402

WISE_VERBOSE_REASON_TOKENS = 112  # WISE: mean reasoning length of verbose chains
WISE_CONCISE_REASON_TOKENS = 23  # WISE: mean reasoning length of concise chains


# ------------------------------------------------------------------------------------------ utils
def timed(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def med(xs) -> float:
    return float(np.median(xs)) if len(xs) else float("nan")


def pct(xs, q) -> float:
    return float(np.percentile(xs, q)) if len(xs) else float("nan")


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def trim_memory() -> None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def machine_info() -> dict:
    cpu = "unknown"
    flags = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name") and cpu == "unknown":
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = line
    mem_gb = 0.0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal"):
                mem_gb = int(line.split()[1]) / 2**20
    import transformers

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "isa": [x for x in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile") if f" {x}" in flags],
        "mem_gb": round(mem_gb, 1),
        "loadavg_start": list(os.getloadavg()),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def git_state() -> dict:
    """The commit measured and the files under frs_ros/ and bench/ that differ from it (a shared
    working tree may hold someone's uncommitted runtime changes)."""
    def git(*args: str) -> str:
        p = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)
        return p.stdout if p.returncode == 0 else ""

    return {"head": git("rev-parse", "--short", "HEAD").strip(),
            "modified": [ln[3:] for ln in git("status", "--porcelain", "--", "frs_ros", "bench").splitlines() if ln.strip()]}


# ------------------------------------------------------------------------------------------ scenes
def make_scenes(n: int, split: str, seed0: int, width: int = 640, height: int = 480):
    """Sim samples with their twins (sim backends: exact masks and labels) and oracle rollouts."""
    from frs_ros.reasoning.api import ReasonSegEngine
    from frs_ros.reasoning.oracle import OracleReasoner
    from frs_ros.sim import SimConfig, generate_image
    from frs_ros.twin.config import TwinConfig
    from frs_ros.twin.tools import run_tool
    from frs_ros.twin.tracker import Tracker

    oracle = OracleReasoner()
    engine = ReasonSegEngine({"backend": "oracle"}, reasoner=oracle)
    scenes = []
    for s in range(seed0, seed0 + n):
        sample = generate_image(s, split, SimConfig(width=width, height=height))
        frame = sample.frames[0]
        twin = Tracker(TwinConfig()).update(frame)
        oracle.reset()
        items = []
        for q in sample.queries:
            tools = (lambda c, tw=twin, fr=frame: run_tool(c, tw, fr))
            oracle.truth.update([q])
            a = engine.answer(q.text, twin, frame, tool_executor=tools)
            if a.ok:
                items.append(SimpleNamespace(query=q, oracle_text=a.reasoning, oracle_ids=a.target_ids, tools=tools))
        scenes.append(SimpleNamespace(sample=sample, frame=frame, twin=twin, items=items))
    return scenes


def bench_tokenizer(train_scenes, vocab_size: int):
    """Byte-level BPE (Qwen-style, the reasoning module's ``build_tokenizer``) fitted on sim prompts,
    naive JSON twins and oracle rollouts: a stand-in for Qwen's tokenizer, which is not on disk."""
    from frs_ros.reasoning.prompt import build_prompt
    from frs_ros.reasoning.tiny import build_tokenizer
    from frs_ros.twin.serialize import naive_json, twin_to_text

    corpus = []
    for sc in train_scenes:
        corpus.append(naive_json(sc.twin))
        for it in sc.items:
            corpus.append(build_prompt(twin_to_text(sc.twin), it.query.text).text)
            corpus.append(it.oracle_text)
    return build_tokenizer(corpus, vocab_size=vocab_size)


# ------------------------------------------------------------------------------------------ stages
def bench_ingest(repeats: int) -> dict:
    """rgb8 + 16UC1 640x480 messages -> Frame (the nodes' ROS-free image codec)."""
    from frs_ros.wire.image_codec import frame_from_msgs

    h, w = 480, 640
    rng = np.random.default_rng(0)
    stamp = SimpleNamespace(sec=1, nanosec=5)
    hdr = SimpleNamespace(stamp=stamp, frame_id="camera_color_optical_frame")
    color = SimpleNamespace(header=hdr, height=h, width=w, encoding="rgb8", is_bigendian=0, step=3 * w,
                            data=rng.integers(0, 255, h * w * 3, dtype=np.uint8).tobytes())
    depth = SimpleNamespace(header=hdr, height=h, width=w, encoding="16UC1", is_bigendian=0, step=2 * w,
                            data=rng.integers(0, 4000, h * w, dtype=np.uint16).tobytes())
    info = SimpleNamespace(header=hdr, height=h, width=w, k=[500.0, 0, 319.5, 0, 500.0, 239.5, 0, 0, 1])
    ts = timed(lambda: frame_from_msgs(color, depth, info), repeats, warmup=2)
    return {"ingest_ms": 1e3 * med(ts), "repeats": repeats}


def bench_vision(model_dir: Path, scene, quick: bool, repeats: int) -> dict:
    from models import save_vision_model

    from frs_ros.twin.backends import build_twin_backends
    from frs_ros.twin.config import TwinConfig

    out: dict = {"params_m": {}, "sources": {}}
    paths = {}
    for k in ("sam2", "owlv2", "depth"):
        p, n, src = save_vision_model(k, model_dir, quick=quick)
        paths[k] = str(p)
        out["params_m"][k] = n / 1e6
        out["sources"][k] = src
    cfg = TwinConfig(segmenter="sam2", labeler="owlv2", depth="depth_anything_v2", sam2_model=paths["sam2"],
                     owlv2_model=paths["owlv2"], depth_model=paths["depth"])
    be = build_twin_backends(cfg)
    frame = scene.frame
    gt_masks = {o.track_id: o.mask.decode() for o in scene.twin.objects}
    masks = list(gt_masks.values())
    out["objects"] = len(masks)
    out["points_per_side"] = cfg.points_per_side
    seg = be.segmenter
    log(f"vision: SAM-2 keyframe (automatic masks, {cfg.points_per_side}^2 points)")
    out["sam2_keyframe_s"] = med(timed(lambda: seg.segment(frame), repeats, warmup=0 if not quick else 1))
    log("vision: SAM-2 image encoder alone")

    def encode():
        with torch.no_grad():
            seg.image_model.get_image_embeddings(seg._pixels(frame))

    out["sam2_encoder_s"] = med(timed(encode, 1, warmup=0))
    log("vision: SAM-2 video: seed tracks + propagate")
    out["sam2_set_tracks_s"] = med(timed(lambda: seg.set_tracks(frame, gt_masks), 1, warmup=0))
    seg.set_tracks(frame, gt_masks)
    # a tracking frame: memory attention over the conditioning frame + the frames since
    out["sam2_propagate_s"] = med(timed(lambda: seg.propagate(frame), repeats + 2, warmup=0))
    log("vision: OWLv2 labels")
    out["owlv2_label_s"] = med(timed(lambda: be.labeler.label(frame, masks), repeats, warmup=0 if not quick else 1))
    log("vision: Depth-Anything-V2")
    out["depth_s"] = med(timed(lambda: be.depth.estimate(frame), repeats, warmup=1))
    del be
    trim_memory()
    return out


def bench_serialise(scenes, tok) -> dict:
    from frs_ros.reasoning.prompt import build_prompt, encode_prompt
    from frs_ros.twin.serialize import count_tokens_proxy, naive_json, twin_to_text

    c_t, n_t, c_tok, n_tok, c_proxy, n_proxy, objs = [], [], [], [], [], [], []
    for sc in scenes:
        c_t += timed(lambda: twin_to_text(sc.twin), 5)
        n_t += timed(lambda: naive_json(sc.twin), 5)
        c, n = twin_to_text(sc.twin), naive_json(sc.twin)
        c_tok.append(len(tok.encode(c, add_special_tokens=False)))
        n_tok.append(len(tok.encode(n, add_special_tokens=False)))
        c_proxy.append(count_tokens_proxy(c))
        n_proxy.append(count_tokens_proxy(n))
        objs.append(len(sc.twin.objects))
    q = scenes[0].items[0].query.text
    pc = encode_prompt(tok, build_prompt(twin_to_text(scenes[0].twin), q))
    return {
        "objects_mean": float(np.mean(objs)),
        "compact_ms": 1e3 * med(c_t), "naive_ms": 1e3 * med(n_t),
        "compact_tokens": float(np.mean(c_tok)), "naive_tokens": float(np.mean(n_tok)),
        "compact_tokens_proxy": float(np.mean(c_proxy)), "naive_tokens_proxy": float(np.mean(n_proxy)),
        "prompt_prefix_tokens": pc.boundaries[0],
    }


def chain_stats(scenes, tok) -> dict:
    """Reasoning/rollout lengths of the oracle teacher's chains (the student imitates them)."""
    from frs_ros.reasoning import rollout as grammar

    reason, rollout, with_tools = [], [], 0
    for sc in scenes:
        for it in sc.items:
            r = grammar.parse_rollout(it.oracle_text)
            reason.append(len(tok.encode(r.reason, add_special_tokens=False)))
            rollout.append(len(tok.encode(it.oracle_text, add_special_tokens=False)))
            with_tools += bool(r.plans)
    return {"queries": len(reason), "reason_tokens_mean": float(np.mean(reason)),
            "reason_tokens_p90": pct(reason, 90), "rollout_tokens_mean": float(np.mean(rollout)),
            "with_tools_frac": with_tools / max(1, len(reason))}


def bench_llm(name: str, quick: bool, tok, scene, bw: optim.BandwidthResult, decode_tokens: int,
              naive_prefill: bool) -> dict:
    """Prefill and decode of one LLM: HF (transformers forward + DynamicCache), lean fp32, lean int8."""
    from models import build_qwen3

    from frs_ros.reasoning.prompt import build_prompt, encode_prompt
    from frs_ros.twin.serialize import naive_json, twin_to_text

    log(f"{name}: building random-weight model")
    model = build_qwen3(name, quick)
    cfg = model.config
    out: dict = {"params": optim.count_parameters(model)}
    q = scene.items[0].query.text
    p_compact = list(encode_prompt(tok, build_prompt(twin_to_text(scene.twin), q)).ids)
    p_naive = list(encode_prompt(tok, build_prompt(naive_json(scene.twin), q)).ids)
    out["compact_prompt_tokens"], out["naive_prompt_tokens"] = len(p_compact), len(p_naive)

    def hf_prefill(ids, attn="sdpa"):
        model.config._attn_implementation = attn
        from transformers import DynamicCache

        c = DynamicCache(config=cfg)
        with torch.inference_mode():
            model(input_ids=torch.tensor([ids]), past_key_values=c, use_cache=True, logits_to_keep=1)
        return c

    log(f"{name}: prefill (compact {len(p_compact)} tok, sdpa vs eager)")
    heavy = out["params"] > 1e9  # keep the 1.7B section short: one timed prefill, no eager comparison
    out["hf_prefill_compact_s"] = med(timed(lambda: hf_prefill(p_compact), 1 if heavy else 2))
    if not heavy:
        out["hf_prefill_compact_eager_s"] = med(timed(lambda: hf_prefill(p_compact, "eager"), 1, warmup=0))
    model.config._attn_implementation = "sdpa"
    if naive_prefill:
        log(f"{name}: prefill naive JSON prompt ({len(p_naive)} tok)")
        out["hf_prefill_naive_s"] = med(timed(lambda: hf_prefill(p_naive), 1, warmup=0))

    # HF decode: one transformers forward per token on a DynamicCache (what generate does),
    # at 1 and at all threads like the lean decoder (the better is kept: a fair baseline)
    n_threads = torch.get_num_threads()
    thread_options = sorted({1, n_threads})
    log(f"{name}: HF decode x{decode_tokens}")
    best = (float("inf"), n_threads)
    for th in thread_options:
        cache = hf_prefill(p_compact)

        def hf_steps():
            with torch.inference_mode():
                for _ in range(decode_tokens):
                    model(input_ids=torch.tensor([[7]]), past_key_values=cache, use_cache=True, logits_to_keep=1)

        torch.set_num_threads(th)
        try:
            ms = 1e3 * med(timed(hf_steps, 1, warmup=0)) / decode_tokens
        finally:
            torch.set_num_threads(n_threads)
        out[f"hf_decode_ms_{th}threads"] = ms
        best = min(best, (ms, th))
        del cache
    out["hf_decode_ms"], out["hf_decode_threads"] = best

    def lean_decode(dec, tag):
        """ms/token at each thread count (decode threads only; prefill keeps all); best kept."""
        dec.reset()
        dec.prefill(p_compact)
        base = dec.cache.length
        best = (float("inf"), n_threads)
        for th in thread_options:
            dec.decode_threads = th

            def steps():
                dec.cache.crop(base)
                for _ in range(decode_tokens):
                    dec.forward([7])

            ms = 1e3 * med(timed(steps, 1 if heavy else 2, warmup=1)) / decode_tokens
            out[f"lean_{tag}_decode_ms_{th}threads"] = ms
            best = min(best, (ms, th))
        dec.decode_threads = 0
        out[f"lean_{tag}_decode_threads"] = best[1]
        return best[0]

    log(f"{name}: lean fp32")
    dec = optim.LeanDecoder(model, weights="fp32")
    out["lean_fp32_decode_ms"] = lean_decode(dec, "fp32")
    dec.reset()
    out["lean_fp32_prefill_compact_s"] = med(timed(lambda: (dec.reset(), dec.prefill(p_compact)), 1, warmup=0))
    out["bytes_fp32"] = dec.linear_weight_bytes()
    del dec
    trim_memory()
    log(f"{name}: lean int8, torch kernel (fbgemm dynamic int8)")
    dec8t = optim.LeanDecoder(model, weights="int8", kernel="torch")
    out["lean_int8torch_decode_ms"] = lean_decode(dec8t, "int8torch")
    out["lean_int8torch_prefill_compact_s"] = med(timed(lambda: (dec8t.reset(), dec8t.prefill(p_compact)), 1, warmup=0))
    out["bytes_int8torch"] = dec8t.linear_weight_bytes()
    del dec8t
    trim_memory()
    log(f"{name}: lean int8, native kernel (quantising)")
    t = time.perf_counter()
    dec8 = optim.LeanDecoder(model, weights="int8")  # 'auto': the native C kernel where it builds
    out["int8_quantise_s"] = time.perf_counter() - t
    out["int8_kernel"] = dec8.kernel
    out["lean_int8_decode_ms"] = lean_decode(dec8, "int8")
    out["lean_int8_prefill_compact_s"] = med(timed(lambda: (dec8.reset(), dec8.prefill(p_compact)), 1, warmup=0))
    out["bytes_int8"] = dec8.linear_weight_bytes()
    # the bandwidth again, next to the decode timings (a shared host's bandwidth drifts): the
    # floor uses the higher of the two measurements, i.e. the stricter floor
    bw_now = optim.measure_memory_bandwidth()
    out["bandwidth_at_decode_gbps"] = bw_now.read_gbps
    read_bps = max(bw.read_bps, bw_now.read_bps)
    out["floor_bandwidth_gbps"] = read_bps / 1e9
    # the floor: weights + KV cache + one embedding row read per token
    ctx = len(p_compact) + decode_tokens // 2
    kv = dict(n_layers=cfg.num_hidden_layers, n_kv_heads=cfg.num_key_value_heads, head_dim=cfg.head_dim,
              context_tokens=ctx, hidden_size=cfg.hidden_size)
    for w, nbytes, per in (("fp32", out["bytes_fp32"], 4.0), ("int8", out["bytes_int8"], 1.0),
                           ("int8torch", out["bytes_int8torch"], 1.0)):
        b = nbytes + optim.decode_bytes_per_token(0, per, **kv)
        out[f"floor_{w}_ms"] = 1e3 * optim.decode_floor_s(b, read_bps)
        out[f"floor_frac_{w}"] = optim.floor_fraction(out[f"lean_{w}_decode_ms"] / 1e3, out[f"floor_{w}_ms"] / 1e3)
    out["floor_frac_hf_fp32"] = optim.floor_fraction(out["hf_decode_ms"] / 1e3, out["floor_fp32_ms"] / 1e3)
    del dec8, model
    trim_memory()
    return out


# ------------------------------------------------------------------------------------------ e2e
def bench_e2e(quick: bool, tok, scenes, n_opt: int, n_naive: int, decode_cap: int, decode_threads: int = 0,
              naive_decode_threads: int = 0) -> dict:
    """End-to-end query latency, optimised vs naive, Qwen3-0.6B size, scripted rollouts."""
    from models import build_qwen3
    from pipelines import ScriptedRollout, naive_answer, naive_script, verbose_reason

    from frs_ros.reasoning.api import ReasonSegEngine
    from frs_ros.reasoning.config import ReasonerConfig
    from frs_ros.reasoning.prompt import build_prompt, encode_prompt
    from frs_ros.twin.serialize import naive_json, twin_to_text

    model = build_qwen3("qwen3-0.6b", quick)
    script = ScriptedRollout(tok)
    # budgets above the oracle chains' lengths in the bench tokenizer, so the scripted chains are
    # followed (the student's own budgets (24, 40, 64) are in its own tokenizer's units)
    cfg = ReasonerConfig(model="random-qwen3-0.6b", max_new_tokens=decode_cap, reasoning_budgets=(96, 128, 160))
    dec = optim.LeanDecoder(model, weights="int8")
    dec.decode_threads = decode_threads
    reasoner = optim.lean_hf_reasoner(cfg, optim.LeanCausalLM(dec), tok)
    reasoner.logits_processors.append(script)
    engine = ReasonSegEngine(cfg, reasoner=reasoner)
    opt, per_stage = [], {}
    cold, warm = [], []
    done = 0
    log("e2e: optimised queries")
    # scenes with a tool-using query first (every query of a scene in order: the first is cold,
    # the next ones reuse the twin's KV cache)
    ordered = sorted(scenes, key=lambda sc: not any("<plan>" in it.oracle_text for it in sc.items))
    for sc in ordered:
        for j, it in enumerate(sc.items):
            if done >= n_opt:
                break
            start = len(encode_prompt(tok, build_prompt(twin_to_text(sc.twin), it.query.text)).ids)
            script.set(it.oracle_text, start)
            script.seconds = 0.0
            a = engine.answer(it.query.text, sc.twin, sc.frame, tool_executor=it.tools)
            a.timings_s["decode"] -= script.seconds  # bench scaffolding, not part of the pipeline
            a.timings_s["total"] -= script.seconds
            a.timings_s["script_s"] = script.seconds
            rec = {"query": it.query.text, "total_s": a.timings_s["total"], "stages": dict(a.timings_s), "prompt": a.prompt_tokens,
                   "cached": a.cached_tokens, "generated": a.generated_tokens, "status": a.status,
                   "same_as_script": (a.reasoning == it.oracle_text), "ids": a.target_ids, "oracle_ids": it.oracle_ids,
                   "tools": bool(a.rollout and a.rollout.plans)}
            opt.append(rec)
            (cold if j == 0 else warm).append(rec["total_s"])
            for k, v in a.timings_s.items():
                per_stage.setdefault(k, []).append(v)
            done += 1
    out = {
        "opt": {
            "n": len(opt), "p50_s": med([r["total_s"] for r in opt]), "p95_s": pct([r["total_s"] for r in opt], 95),
            "cold_p50_s": med(cold), "warm_p50_s": med(warm),
            "stages_p50_s": {k: med(v) for k, v in per_stage.items()},
            "prompt_tokens_mean": float(np.mean([r["prompt"] for r in opt])),
            "cached_tokens_mean": float(np.mean([r["cached"] for r in opt])),
            "generated_tokens_mean": float(np.mean([r["generated"] for r in opt])),
            "followed_script": sum(r["same_as_script"] for r in opt),
            "with_tools": sum(r["tools"] for r in opt),
            "tools_mean_s": 1e3 * float(np.mean([r["stages"].get("tools", 0.0) for r in opt if r["tools"]] or [np.nan])),
            "resume_mean_s": float(np.mean([r["stages"].get("resume", 0.0) for r in opt if r["tools"]] or [np.nan])),
            "records": opt,
        }
    }
    del reasoner, engine, dec
    trim_memory()
    log("e2e: naive queries")
    naive = []
    # the naive baseline on the first queries (with and without tools when available)
    chosen = []
    for sc in ordered:  # the queries the optimised path answered, so the pairs are like for like
        for it in sc.items:
            if len(chosen) < n_opt:
                chosen.append((sc, it))
    with_tools = [c for c in chosen if "<plan>" in c[1].oracle_text]
    without = [c for c in chosen if "<plan>" not in c[1].oracle_text]
    pick = (with_tools[:1] + without[: max(0, n_naive - 1)]) if with_tools else without[:n_naive]
    for sc, it in pick[:n_naive]:
        tj = naive_json(sc.twin)
        verbose = verbose_reason(twin_to_text(sc.twin), it.query.text, tok, WISE_VERBOSE_REASON_TOKENS)
        text = naive_script(it.oracle_text, verbose)
        r = naive_answer(model, tok, tj, it.query.text, it.tools, script, text, max_new_tokens=1024,
                         decode_threads=naive_decode_threads)
        naive.append({"query": it.query.text, "total_s": r.timings_s["total"], "stages": r.timings_s, "prompt": r.prompt_tokens,
                      "generated": r.generated_tokens, "processed": r.processed_tokens, "status": r.status,
                      "same_as_script": r.text == text, "ids": r.answer_ids, "oracle_ids": it.oracle_ids,
                      "tools": "<plan>" in it.oracle_text})
    out["naive"] = {
        "n": len(naive), "p50_s": med([r["total_s"] for r in naive]), "p95_s": pct([r["total_s"] for r in naive], 95),
        "stages_p50_s": {k: med([r["stages"][k] for r in naive]) for k in ("prefill", "decode", "tools", "resume", "total")},
        "with_tools": sum(r["tools"] for r in naive),
        "tools_mean_s": 1e3 * float(np.mean([r["stages"]["tools"] for r in naive if r["tools"]] or [np.nan])),
        "reprefill_mean_s": float(np.mean([r["stages"]["resume"] for r in naive if r["tools"]] or [np.nan])),
        "prompt_tokens_mean": float(np.mean([r["prompt"] for r in naive])) if naive else float("nan"),
        "generated_tokens_mean": float(np.mean([r["generated"] for r in naive])) if naive else float("nan"),
        "processed_tokens_mean": float(np.mean([r["processed"] for r in naive])) if naive else float("nan"),
        "followed_script": sum(r["same_as_script"] for r in naive),
        "records": naive,
    }
    out["speedup_p50"] = out["naive"]["p50_s"] / out["opt"]["p50_s"]
    # like-for-like: the naive queries through the optimised path (already run above, or now)
    by_q = {r["query"]: r for r in opt}
    pairs = []
    for (sc, it), nr in zip(pick[:n_naive], naive):
        o = by_q.get(it.query.text)
        pairs.append({"query": it.query.text, "naive_s": nr["total_s"], "opt_s": o["total_s"] if o else None,
                      "same_ids": (o is not None and o["ids"] == nr["ids"]), "naive_ids": nr["ids"],
                      "opt_ids": o["ids"] if o else None})
    out["pairs"] = pairs
    del model
    trim_memory()
    return out


# ------------------------------------------------------------------------------------------ agreement
def bench_agreement(student: Path, scenes, max_queries: int) -> dict:
    """Answer agreement of the optimised path with the exact reference, on a trained student.

    reference: HF fp32, no cache reuse, compact twin (the exact greedy computation).
    Each variant changes one thing; 'agree' = identical answer id list; gIoU against the sim
    ground truth (mean per-query IoU, empty-vs-empty = 1).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from frs_ros.masks import mask_iou
    from frs_ros.reasoning.api import ReasonSegEngine
    from frs_ros.reasoning.config import ReasonerConfig
    from frs_ros.reasoning.hf_backend import HFReasoner
    from frs_ros.twin.serialize import naive_json

    tok = AutoTokenizer.from_pretrained(student)
    model = AutoModelForCausalLM.from_pretrained(student, dtype=torch.float32).eval()
    base: dict = dict(model=str(student))
    extra = _find_key(_read_json(student / "training_state.json"), "reasoner") or {}
    base.update({k: (tuple(v) if isinstance(v, list) else v) for k, v in extra.items()
                 if k in ("chat_markers", "reasoning_budgets", "max_new_tokens", "max_plan_tokens", "max_tool_rounds")})

    def engine(kind: str):
        if kind == "ref":
            c = ReasonerConfig(**base, use_cache_reuse=False)
            return ReasonSegEngine(c, reasoner=HFReasoner(c, model=model, tokenizer=tok))
        if kind == "naive_json":
            c = ReasonerConfig(**base, use_cache_reuse=False)
            return ReasonSegEngine(c, reasoner=HFReasoner(c, model=model, tokenizer=tok), twin_serialiser=naive_json)
        if kind == "unbounded":
            c = ReasonerConfig(**{**base, "reasoning_budgets": (256, 256, 256), "max_new_tokens": 320},
                               use_cache_reuse=False, constrain_answer=False)
            return ReasonSegEngine(c, reasoner=HFReasoner(c, model=model, tokenizer=tok))
        c = ReasonerConfig(**base, use_cache_reuse=True)
        w = "int8" if kind == "opt_int8" else "fp32"
        return ReasonSegEngine(c, reasoner=optim.lean_hf_reasoner(c, optim.LeanCausalLM(optim.LeanDecoder(model, weights=w)), tok))

    kinds = ("ref", "opt_fp32", "opt_int8", "naive_json", "unbounded")
    engines = {k: engine(k) for k in kinds}
    res: dict = {k: {"ids": [], "iou": [], "gen": [], "status": []} for k in kinds}
    n = 0
    for sc in scenes:
        for it in sc.items:
            if n >= max_queries:
                break
            gt = sc.frame.gt.union_mask(it.query.target_ids)
            for k in kinds:
                a = engines[k].answer(it.query.text, sc.twin, sc.frame, tool_executor=it.tools)
                res[k]["ids"].append(list(a.target_ids) if a.ok else None)
                res[k]["iou"].append(mask_iou(a.mask, gt) if a.ok else 0.0)
                res[k]["gen"].append(a.generated_tokens)
                res[k]["status"].append(a.status)
            n += 1
    ref = res["ref"]["ids"]
    out = {"student": str(student), "queries": n, "params": optim.count_parameters(model)}
    for k in kinds:
        ids = res[k]["ids"]
        out[k] = {
            "agree_with_ref": float(np.mean([a == b for a, b in zip(ids, ref)])),
            "giou": float(np.mean(res[k]["iou"])),
            "generated_tokens_mean": float(np.mean(res[k]["gen"])),
            "ok": float(np.mean([s == "ok" for s in res[k]["status"]])),
        }
    return out


def _read_json(p: Path) -> dict:
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return {}


def _find_key(d: Any, key: str) -> Any:
    """First value under ``key`` in a nested dict (the reasoner settings a student was trained with)."""
    if isinstance(d, dict):
        if isinstance(d.get(key), dict):
            return d[key]
        for v in d.values():
            r = _find_key(v, key)
            if r:
                return r
    return None


# ------------------------------------------------------------------------------------------ RSS
def rss_probe(quick: bool, vocab: int) -> dict:
    """Child process: the optimised student path alone (Qwen3-0.6B size, lean int8) -> RSS."""
    from models import build_qwen3

    before = optim.rss_bytes()
    model = build_qwen3("qwen3-0.6b", quick)
    dec = optim.LeanDecoder(model, weights="int8")
    del model
    trim_memory()
    after_load = optim.rss_bytes()
    ids = list(range(10, 10 + 600))
    dec.generate(ids, 24)
    return {"rss_before_model_gb": before / 1e9, "rss_student_int8_gb": optim.rss_bytes() / 1e9,
            "rss_after_load_gb": after_load / 1e9, "peak_rss_incl_fp32_build_gb": optim.peak_rss_bytes() / 1e9}


# ------------------------------------------------------------------------------------------ report
def fmt(x, nd=2) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "n/a"
    if isinstance(x, float) and x != 0 and abs(x) < 10 ** (-nd):
        return f"{x:.1e}"
    return f"{x:.{nd}f}"


def report(R: dict) -> str:
    m = R["machine"]
    L: list[str] = []
    L.append(f"Machine: {m['cpu']}, {m['cores']} cores ({', '.join(m['isa'])}), {m['mem_gb']} GB, "
             f"torch {m['torch']} ({m['threads']} threads), load avg at start {m['loadavg_start'][0]:.2f}, "
             f"at end {R.get('loadavg_end', [float('nan')])[0]:.2f}; {m['date_utc']}"
             + ("  **QUICK MODE (miniature models)**" if R["quick"] else ""))
    bw = R["bandwidth"]
    L.append(f"Memory bandwidth (read, best probe): {bw['read_gbps']:.1f} GB/s; "
             + ", ".join(f"{k} {v / 1e9:.1f}" for k, v in bw["probes"].items()) + " GB/s")
    L.append("")
    L.append("| stage | naive | optimised | ratio | notes |")
    L.append("|---|---:|---:|---:|---|")

    def row(stage, naive, opt, note="", unit="", nd=2):
        ratio = naive / opt if (naive and opt and np.isfinite(naive) and np.isfinite(opt) and opt > 0) else float("nan")
        r = f"{fmt(ratio, 1)}x" if np.isfinite(ratio) else "-"
        L.append(f"| {stage} | {fmt(naive, nd)}{unit} | {fmt(opt, nd)}{unit} | {r} | {note} |")

    row("ingest rgb8+16UC1 640x480 -> Frame", R["ingest"]["ingest_ms"], R["ingest"]["ingest_ms"], "same code", " ms")
    V = R.get("vision")
    if V:
        K = R["keyframe_interval"]
        key = V["sam2_keyframe_s"] + V["owlv2_label_s"] + V["sam2_set_tracks_s"]
        naive_rgbd = V["sam2_keyframe_s"] + V["owlv2_label_s"]
        opt_rgbd = V["sam2_propagate_s"] + key / K
        row("SAM-2 hiera-t: keyframe masks / tracking frame", V["sam2_keyframe_s"], V["sam2_propagate_s"],
            f"{V['points_per_side']}^2 points vs video propagation of {V['objects']} tracks; image encoder alone "
            f"{fmt(V.get('sam2_encoder_s'))} s", " s")
        row("OWLv2 B/16 @960 labels", V["owlv2_label_s"], V["owlv2_label_s"] / K, f"every frame vs keyframes (1/{K})", " s")
        row("Depth-Anything-V2-S (colour-only camera)", V["depth_s"], V["depth_s"], "every frame in both", " s")
        row("twin update per frame, RGB-D camera", naive_rgbd, opt_rgbd,
            f"FPS {fmt(1 / naive_rgbd)} -> {fmt(1 / opt_rgbd)}", " s")
        row("twin update per frame, colour-only", naive_rgbd + V["depth_s"], opt_rgbd + V["depth_s"],
            f"FPS {fmt(1 / (naive_rgbd + V['depth_s']))} -> {fmt(1 / (opt_rgbd + V['depth_s']))}", " s")
    S = R["serialise"]
    row("twin serialisation (JSON vs compact)", S["naive_ms"], S["compact_ms"], f"{S['objects_mean']:.1f} objects", " ms")
    row("twin tokens (JSON vs compact)", S["naive_tokens"], S["compact_tokens"], "bench BPE tokenizer", "", 0)
    C = R["chains"]
    L.append(f"| reasoning tokens (verbose vs concise) | {WISE_VERBOSE_REASON_TOKENS} | {C['reason_tokens_mean']:.1f} | "
             f"{WISE_VERBOSE_REASON_TOKENS / C['reason_tokens_mean']:.1f}x | oracle chains (p90 {C['reason_tokens_p90']:.0f}); "
             f"WISE concise {WISE_CONCISE_REASON_TOKENS} |")
    for name, M in R["llm"].items():
        row(f"{name} prefill compact prompt ({M['compact_prompt_tokens']} tok)", M.get("hf_prefill_naive_s"),
            M["hf_prefill_compact_s"], f"naive = JSON prompt {M['naive_prompt_tokens']} tok; eager attention "
            f"{fmt(M.get('hf_prefill_compact_eager_s'))} s vs SDPA; lean fp32 {fmt(M['lean_fp32_prefill_compact_s'])} s, "
            f"lean int8 torch kernel {fmt(M.get('lean_int8torch_prefill_compact_s'))} s, "
            f"lean int8 {M.get('int8_kernel', 'native')} kernel {fmt(M['lean_int8_prefill_compact_s'])} s", " s")
        row(f"{name} decode (HF fp32 -> lean int8 {M.get('int8_kernel', 'native')})", M["hf_decode_ms"], M["lean_int8_decode_ms"],
            f"lean fp32 {fmt(M['lean_fp32_decode_ms'], 1)} ms; lean int8 torch kernel {fmt(M.get('lean_int8torch_decode_ms'), 1)} ms; "
            f"HF at 1/2 threads {fmt(M.get('hf_decode_ms_1threads'), 1)}/"
            f"{fmt(M.get('hf_decode_ms_2threads'), 1)} ms; lean decode threads (best of "
            + ", ".join(f"{t}: fp32 {fmt(M.get(f'lean_fp32_decode_ms_{t}threads'), 1)} / int8 torch "
                        f"{fmt(M.get(f'lean_int8torch_decode_ms_{t}threads'), 1)} / int8 {fmt(M.get(f'lean_int8_decode_ms_{t}threads'), 1)} ms"
                        for t in (1, 2)) + ")", " ms/tok", 1)
        L.append(f"| {name} decode vs bandwidth floor | fp32 floor {fmt(M['floor_fp32_ms'], 1)} ms | int8 floor "
                 f"{fmt(M['floor_int8_ms'], 1)} ms | | reached: HF fp32 {100 * M['floor_frac_hf_fp32']:.0f} %, lean fp32 "
                 f"{100 * M['floor_frac_fp32']:.0f} %, lean int8 torch kernel {100 * M.get('floor_frac_int8torch', float('nan')):.0f} %, "
                 f"**lean int8 {M.get('int8_kernel', 'native')} kernel {100 * M['floor_frac_int8']:.0f} %** "
                 f"(bandwidth {fmt(M.get('floor_bandwidth_gbps'), 1)} GB/s: the higher of the start and at-decode "
                 f"{fmt(M.get('bandwidth_at_decode_gbps'), 1)} GB/s probes) |")
    E = R.get("e2e")
    if E:
        n, o = E["naive"], E["opt"]
        row("query: prompt tokens processed", n["processed_tokens_mean"] - n["generated_tokens_mean"],
            o["prompt_tokens_mean"] - o["cached_tokens_mean"], "naive re-reads prompt at every tool pause", "", 0)
        row("query: prefill", n["stages_p50_s"]["prefill"], o["stages_p50_s"].get("prefill"), "p50", " s")
        row("query: decode", n["stages_p50_s"]["decode"], o["stages_p50_s"].get("decode"),
            f"{n['generated_tokens_mean']:.0f} vs {o['generated_tokens_mean']:.0f} tokens", " s")
        row("query: tools (mean)", n["tools_mean_s"], o["tools_mean_s"], f"twin tools, same code; queries with tools {n['with_tools']}/{n['n']} vs {o['with_tools']}/{o['n']}", " ms", 2)
        row("query: resume after tool pause (mean)", n["reprefill_mean_s"], o["resume_mean_s"], "naive: re-prefill of prompt + rollout + results; opt: results appended to the live cache", " s")
        same = sum(p["same_ids"] for p in E.get("pairs", []))
        row("query: same queries, end-to-end (mean)", float(np.mean([p["naive_s"] for p in E["pairs"]])),
            float(np.mean([p["opt_s"] for p in E["pairs"] if p["opt_s"] is not None] or [np.nan])),
            f"same answer ids on {same}/{len(E['pairs'])} (scripted chains: by construction)", " s")
        row("**query end-to-end p50 (Qwen3-0.6B size)**", n["p50_s"], o["p50_s"],
            f"p95 {fmt(n['p95_s'])} vs {fmt(o['p95_s'])} s; n={n['n']} vs {o['n']}; opt cold {fmt(o['cold_p50_s'])} / "
            f"warm {fmt(o['warm_p50_s'])} s", " s")
    A = R.get("agreement")
    L.append("")
    if A and "ref" in A:
        L.append(f"Answer agreement on {A['queries']} sim test queries, student `{A['student']}` "
                 f"({A['params'] / 1e6:.1f} M params); reference = HF fp32, no cache reuse, compact twin:")
        L.append("")
        L.append("| variant | same answer ids as reference | gIoU | generated tokens | ok |")
        L.append("|---|---:|---:|---:|---:|")
        for k, lab in (("ref", "reference"), ("opt_fp32", "lean fp32 + KV reuse"), ("opt_int8", "lean int8 + KV reuse (optimised)"),
                       ("naive_json", "verbose JSON twin"), ("unbounded", "unbounded reasoning, unconstrained answer")):
            a = A[k]
            L.append(f"| {lab} | {100 * a['agree_with_ref']:.1f} % | {a['giou']:.3f} | {a['generated_tokens_mean']:.1f} | {100 * a['ok']:.0f} % |")
    elif A:
        L.append(f"Answer agreement: {A.get('skipped', 'not run')}")
    if R.get("rss"):
        r = R["rss"]
        L.append("")
        L.append(f"Student path RSS (Qwen3-0.6B size, lean int8, separate process, after answering): "
                 f"{r['rss_student_int8_gb']:.2f} GB (peak incl. the one-time fp32 build: {r['peak_rss_incl_fp32_build_gb']:.2f} GB). GPU memory: n/a (CPU run).")
    if R.get("smollm2"):
        import smollm2

        L.append("")
        L.append(smollm2.report(R["smollm2"]) if "error" not in R["smollm2"]
                 else f"SmolLM2 student vs llama.cpp: the section failed: {R['smollm2']['error']}")
    L.append(f"Bench wall time: {R.get('wall_s', float('nan')):.0f} s.")
    return "\n".join(L)


def charts(R: dict, prefix: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    E = R.get("e2e")
    if E:
        fig, ax = plt.subplots(figsize=(7.5, 3.2))
        stages = ["prefill", "decode", "tools", "resume"]
        colors = ["#4c72b0", "#dd8452", "#55a868", "#8172b3"]
        right = 0.0
        for i, lab in enumerate(("naive", "opt")):
            recs = E[lab]["records"]
            left = 0.0
            for st, c in zip(stages, colors):
                v = float(np.mean([r["stages"].get(st, 0.0) for r in recs]))
                ax.barh(i, v, left=left, color=c, label=st if i == 0 else None)
                left += v
            tot = float(np.mean([r["total_s"] for r in recs]))
            ax.text(left, i, f" {tot:.2f} s", va="center")
            right = max(right, left)
        ax.set_xlim(0, right * 1.2)
        ax.set_yticks([0, 1], ["naive", "optimised"])
        ax.set_xlabel("query latency, mean by stage [s] (Qwen3-0.6B size, CPU)")
        ax.legend(loc="upper right", fontsize=8)
        ax.set_title(f"end-to-end query: p50 {E['naive']['p50_s']:.1f} s -> {E['opt']['p50_s']:.2f} s ({E['speedup_p50']:.0f}x)")
        fig.tight_layout()
        f = f"{prefix}query.png"
        fig.savefig(f, dpi=110)
        plt.close(fig)
        files.append(f)
    V = R.get("vision")
    if V:
        K = R["keyframe_interval"]
        fig, ax = plt.subplots(figsize=(7, 2.8))
        parts = {
            "naive": [("SAM-2 masks", V["sam2_keyframe_s"]), ("OWLv2", V["owlv2_label_s"]), ("depth model", V["depth_s"])],
            "optimised": [("SAM-2 propagate", V["sam2_propagate_s"]),
                          (f"keyframe / {K}", (V["sam2_keyframe_s"] + V["owlv2_label_s"] + V["sam2_set_tracks_s"]) / K),
                          ("depth model", V["depth_s"])],
        }
        colors = {"SAM-2 masks": "#4c72b0", "OWLv2": "#dd8452", "depth model": "#937860",
                  "SAM-2 propagate": "#55a868", f"keyframe / {K}": "#8172b3"}
        for i, lab in enumerate(("naive", "optimised")):
            left = 0.0
            for name, v in parts[lab]:
                ax.barh(i, v, left=left, color=colors[name], label=name)
                left += v
            ax.text(left, i, f" {left:.1f} s ({1 / left:.2f} FPS)", va="center")
        h, l = ax.get_legend_handles_labels()
        uniq = dict(zip(l, h))
        ax.legend(uniq.values(), uniq.keys(), fontsize=7, loc="upper right")
        ax.set_xlim(0, ax.get_xlim()[1] * 1.35)
        ax.set_yticks([0, 1], ["naive", "optimised"])
        ax.set_xlabel("twin update per frame [s], colour-only camera (CPU)")
        fig.tight_layout()
        f = f"{prefix}twin.png"
        fig.savefig(f, dpi=110)
        plt.close(fig)
        files.append(f)
    if R["llm"]:
        fig, ax = plt.subplots(figsize=(7, 3.2))
        names = list(R["llm"])
        x = np.arange(len(names))
        wdt = 0.14
        series = [("HF fp32", "hf_decode_ms"), ("lean fp32", "lean_fp32_decode_ms"), ("floor fp32", "floor_fp32_ms"),
                  ("lean int8 torch", "lean_int8torch_decode_ms"), ("lean int8 native", "lean_int8_decode_ms"),
                  ("floor int8", "floor_int8_ms")]
        for i, (lab, key) in enumerate(series):
            vals = [R["llm"][nm].get(key, np.nan) for nm in names]
            ax.bar(x + (i - 2.5) * wdt, vals, wdt, label=lab, hatch="//" if "floor" in lab else None,
                   edgecolor="black" if "floor" in lab else None)
        ax.set_xticks(x, names)
        ax.set_ylabel("decode ms / token")
        bws = [R["llm"][nm].get("floor_bandwidth_gbps", R["bandwidth"]["read_gbps"]) for nm in names]
        ax.set_title(f"decode vs bandwidth floor ({', '.join(f'{b:.1f}' for b in bws)} GB/s)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        f = f"{prefix}decode.png"
        fig.savefig(f, dpi=110)
        plt.close(fig)
        files.append(f)
    return files


# ------------------------------------------------------------------------------------------ smollm2
def run_smollm2(a, scenes) -> dict:
    """The SmolLM2 student vs llama.cpp section (``bench/smollm2.py``) with the command-line knobs."""
    import smollm2

    log("smollm2: SmolLM2-135M student, our runtimes vs llama.cpp")
    try:
        return smollm2.run(
            scenes, student=Path(a.smollm2_student), threads=a.smollm2_threads, llama_mode=a.llama_cpp,
            gguf_types=tuple(filter(None, a.gguf_types.split(","))),
            n_queries=a.smollm2_queries if not a.quick else 4, decode_tokens=32 if not a.quick else 8,
            repeats=7 if not a.quick else 1, runtimes=tuple(filter(None, a.smollm2_runtimes.split(","))),
            rss=not a.quick, log=lambda msg: log(f"smollm2: {msg}"),
        )
    except Exception as e:  # noqa: BLE001 - the last section must not lose the run's other results
        import traceback

        log(f"smollm2 section failed: {type(e).__name__}: {e}\n{traceback.format_exc()}")
        return {"error": f"{type(e).__name__}: {e}"}


# ------------------------------------------------------------------------------------------ main


def _write_results(R: dict, table: str, a) -> Path:
    """Print the table; write the results JSON to ``a.out`` and the table to ``a.md`` (if set)."""
    print(table)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(R, indent=1, default=str))
    if a.md:
        Path(a.md).write_text(table + "\n")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="", help="JSON results file (default bench/results/bench_results.json, "
                    "with --only smollm2 bench/results/smollm2_results.json)")
    ap.add_argument("--img-prefix", default=str(ROOT / "docs" / "img" / "bench_"), help="PNG chart path prefix")
    ap.add_argument("--md", default="", help="also write the Markdown table here")
    ap.add_argument("--quick", action="store_true", help="miniature models (smoke test of the bench code)")
    ap.add_argument("--model-dir", default="/tmp/frs_bench_models", help="cache of random-weight vision models")
    ap.add_argument("--llms", default="qwen3-0.6b,qwen3-1.7b")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    ap.add_argument("--scenes", type=int, default=6, help="sim test scenes for the query benchmark")
    ap.add_argument("--opt-queries", type=int, default=10)
    ap.add_argument("--naive-queries", type=int, default=2)
    ap.add_argument("--decode-tokens", type=int, default=12)
    ap.add_argument("--keyframe-interval", type=int, default=10)
    ap.add_argument("--vision-repeats", type=int, default=1)
    ap.add_argument("--student", default=str(ROOT / "models" / "nano_student"))
    ap.add_argument("--agreement-queries", type=int, default=30)
    ap.add_argument("--vocab", type=int, default=4000, help="bench BPE tokenizer vocabulary")
    ap.add_argument("--skip", default="", help="comma list of sections to skip: vision,llm,e2e,agreement,rss,smollm2")
    ap.add_argument("--only", default="", choices=["", "smollm2", "soak"],
                    help="run only this section (smollm2: the SmolLM2 student vs llama.cpp; soak: bench/soak.py "
                    "with its defaults, needs the sourced install/)")
    ap.add_argument("--smollm2-student", default=str(ROOT / "models" / "smollm2_student"),
                    help="the SmolLM2 student: a peft LoRA adapter dir (merged over the smollm2-135m base) or a full "
                    "HF dir; when it does not exist the base model stands in")
    ap.add_argument("--llama-cpp", default="auto", choices=["auto", "no-install", "skip"],
                    help="llama.cpp peer rows: auto = install llama-cpp-python into ~/.cache/frs_ros/bench-peers "
                    "when missing (prints the time), no-install = use it only if already there, skip")
    ap.add_argument("--gguf-types", default="q8_0,q4_1", help="llama.cpp quantisations (q8_0, q4_0, q4_1)")
    ap.add_argument("--smollm2-threads", type=int, default=2)
    ap.add_argument("--smollm2-queries", type=int, default=20)
    ap.add_argument("--smollm2-runtimes", default="transformers,lean-int8", help="our runtimes in the smollm2 section")
    ap.add_argument("--rss-probe", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.only == "soak":
        # its own interpreter: the soak spawns the node's process, which re-imports __main__, and this
        # file imports torch (measured: the node's RSS 290 MB instead of 104 MB)
        return subprocess.call([sys.executable, str(Path(__file__).resolve().parent / "soak.py")])
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.rss_probe:
        print(json.dumps(rss_probe(a.quick, a.vocab)))
        return 0
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    skip = set(filter(None, a.skip.split(",")))
    if not a.out:
        a.out = str(ROOT / "bench" / "results" / ("smollm2_results.json" if a.only == "smollm2" else "bench_results.json"))
        if a.only == "smollm2" and not a.md:
            a.md = str(ROOT / "bench" / "results" / "smollm2_table.md")
    t0 = time.perf_counter()
    R: dict = {"quick": a.quick, "machine": machine_info(), "git": git_state(), "keyframe_interval": a.keyframe_interval,
               "llm": {}}
    if a.only == "smollm2":
        log("only the smollm2 section")
        R["smollm2"] = run_smollm2(a, make_scenes(4 if not a.quick else 1, "test", 1000))
        R["loadavg_end"] = list(os.getloadavg())
        R["wall_s"] = time.perf_counter() - t0
        import smollm2

        m = R["machine"]
        body = (smollm2.report(R["smollm2"]) if "error" not in R["smollm2"]
                else f"The section failed: {R['smollm2']['error']}")
        table = (f"Machine: {m['cpu']}, {m['cores']} cores ({', '.join(m['isa'])}), {m['mem_gb']} GB, torch {m['torch']}, "
                 f"transformers {m['transformers']}; load avg at start {m['loadavg_start'][0]:.2f}, at end "
                 f"{R['loadavg_end'][0]:.2f}; {m['date_utc']}; commit {R['git']['head']}"
                 + (f" + uncommitted {', '.join(R['git']['modified'])}" if R['git']['modified'] else "") + "\n\n" + body)
        out = _write_results(R, table, a)
        log(f"wrote {out}{', ' + a.md if a.md else ''} in {R['wall_s']:.0f} s")
        return 0
    log("bandwidth probe")
    bw = optim.measure_memory_bandwidth(nbytes=(64 if a.quick else 512) * 2**20, repeats=3 if a.quick else 5)
    R["bandwidth"] = {"read_gbps": bw.read_gbps, "copy_gbps": bw.copy_bps / 1e9, "probes": bw.probes}
    R["ingest"] = bench_ingest(20 if a.quick else 50)
    log("scenes + oracle rollouts")
    test_scenes = make_scenes(a.scenes if not a.quick else 3, "test", 1000)
    train_scenes = make_scenes(4 if a.quick else 24, "train", 0)
    tok = bench_tokenizer(train_scenes, a.vocab if not a.quick else 1000)
    R["tokenizer_vocab"] = len(tok)
    R["serialise"] = bench_serialise(test_scenes + train_scenes[:8], tok)
    R["chains"] = chain_stats(test_scenes + train_scenes, tok)
    if "vision" not in skip:
        R["vision"] = bench_vision(Path(a.model_dir), test_scenes[0], a.quick, a.vision_repeats)
    if "llm" not in skip:
        for name in filter(None, a.llms.split(",")):
            R["llm"][name] = bench_llm(name, a.quick, tok, test_scenes[0], bw, a.decode_tokens if not a.quick else 4,
                                       naive_prefill=(name == "qwen3-0.6b"))
    if "e2e" not in skip:
        th = R["llm"].get("qwen3-0.6b", {}).get("lean_int8_decode_threads", 0)
        th_hf = R["llm"].get("qwen3-0.6b", {}).get("hf_decode_threads", 0)
        R["e2e"] = bench_e2e(a.quick, tok, test_scenes, a.opt_queries, a.naive_queries, 256, th, th_hf)
        R["e2e"]["decode_threads"] = {"optimised": th, "naive": th_hf}
    if "agreement" not in skip:
        st = Path(a.student)
        if (st / "config.json").exists():
            log(f"agreement on {st}")
            # the simulator's default image size: the distribution the student was trained on
            agree_scenes = make_scenes(12 if not a.quick else 2, "test", 2000, width=320, height=240)
            R["agreement"] = bench_agreement(st, agree_scenes, a.agreement_queries if not a.quick else 6)
        else:
            R["agreement"] = {"skipped": f"no trained student at {st} when this ran"}
    if "rss" not in skip:
        log("RSS probe (child process)")
        cmd = [sys.executable, __file__, "--rss-probe"] + (["--quick"] if a.quick else [])
        if a.threads:
            cmd += ["--threads", str(a.threads)]
        p = subprocess.run(cmd, capture_output=True, text=True)
        try:
            R["rss"] = json.loads(p.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            R["rss"] = None
            log(f"RSS probe failed: {p.stderr[-500:]}")
    if "smollm2" not in skip:
        R["smollm2"] = run_smollm2(a, test_scenes)
    R["loadavg_end"] = list(os.getloadavg())
    R["bench_peak_rss_gb"] = optim.peak_rss_bytes() / 1e9
    R["wall_s"] = time.perf_counter() - t0
    table = report(R)
    out = _write_results(R, table, a)
    Path(a.img_prefix).parent.mkdir(parents=True, exist_ok=True)
    files = charts(R, Path(a.img_prefix))
    log(f"wrote {out}, {', '.join(files)} in {R['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
