"""Decode and prefill timings of the LM runtimes against the memory-bandwidth floor.

    python -m frs_ros.reasoning.lm.bench                      # SmolLM2-135M size, random weights, 2 threads
    python -m frs_ros.reasoning.lm.bench --model DIR --runtimes lean-int8,lean-fp32,transformers

Per runtime (through the :class:`frs_ros.reasoning.lm.CausalLM` protocol, so Python overhead
counts): prefill of a ``--prompt-tokens`` prompt in one call [tokens/s] (best of ``--repeats``),
greedy decode of ``--decode-tokens`` tokens after it [ms/token] (median and best of the per-run
means, each run from a copy of the prefilled cache), the bytes one decoded token reads (weights
as stored + one embedding row + the KV cache as stored at the mid-decode context,
:func:`frs_ros.perf.decode_bytes_per_token`), the floor at the higher of two bandwidth probes
(before and after the timings) and the fraction of it reached. Speed does not depend on the
weights, so random weights of the real architecture (the default) time the real model.

Prints a markdown table; ``--json PATH`` writes the numbers. Needs an idle machine: on a shared
2-core host other processes' load shows up directly in the times (two threads that meet at a
barrier 150 times per token wait for each other whenever one is descheduled), so each row says
how much of the CPUs other processes used while it was timed (``/proc/stat``).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import time
from typing import Any, Sequence

__all__ = ["time_runtime", "run", "main"]


def _cpu_snapshot() -> tuple[float, float, float]:
    """(wall [s], CPU time busy on the whole machine [s], CPU time of this process [s]) — Linux /proc/stat."""
    with open("/proc/stat") as f:
        v = [float(x) for x in f.readline().split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    busy = (sum(v) - v[3] - (v[4] if len(v) > 4 else 0.0)) / tick  # everything but idle and iowait
    t = os.times()
    return time.perf_counter(), busy, t.user + t.system


def other_cpu_share(before: tuple[float, float, float], after: tuple[float, float, float]) -> float:
    """Share of the machine's CPUs that other processes used between two :func:`_cpu_snapshot` s
    (0 = the timings had the machine to themselves; 0.5 on 2 cores = one core busy elsewhere)."""
    wall = after[0] - before[0]
    others = (after[1] - before[1]) - (after[2] - before[2])
    return max(0.0, others) / max(wall * (os.cpu_count() or 1), 1e-9)


def time_runtime(lm: Any, prompt: Sequence[int], decode_tokens: int, repeats: int) -> dict:
    """Prefill and decode timings of one :class:`~frs_ros.reasoning.lm.CausalLM` (see the module docstring)."""
    snap0 = _cpu_snapshot()
    prefill = []
    for _ in range(repeats + 1):  # the first run warms up (page faults, thread pool)
        cache = lm.new_cache()
        t = time.perf_counter()
        logits0 = lm.forward(list(prompt), cache)
        prefill.append(time.perf_counter() - t)
    prefill = prefill[1:]
    snap1 = _cpu_snapshot()
    runs = []
    for i in range(repeats + 1):
        c = copy.deepcopy(cache)
        logits = logits0
        t = time.perf_counter()
        for _ in range(decode_tokens):
            logits = lm.forward([int(logits.argmax())], c)
        if i:
            runs.append(1e3 * (time.perf_counter() - t) / decode_tokens)
    snap2 = _cpu_snapshot()
    return {
        "prefill_s": min(prefill), "prefill_tok_s": len(prompt) / min(prefill),
        "decode_ms": statistics.median(runs), "decode_ms_best": min(runs), "decode_ms_runs": runs,
        "other_cpu_prefill": other_cpu_share(snap0, snap1), "other_cpu_decode": other_cpu_share(snap1, snap2),
    }


def _bytes_per_token(lm: Any, cfg: Any, context: int) -> float:
    """Bytes one decoded token reads at ``context`` cached tokens [bytes]."""
    from frs_ros import perf

    import torch

    from frs_ros.reasoning.lm.lean import LeanCausalLM

    hd = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    # the KV cache as stored: fp16 on the native kernel, fp32 otherwise
    kv_bytes = lm.new_cache().k.element_size() if isinstance(lm, LeanCausalLM) else 4.0
    kv = dict(n_layers=cfg.num_hidden_layers, n_kv_heads=cfg.num_key_value_heads, head_dim=hd, context_tokens=context,
              kv_bytes_per_value=float(kv_bytes))
    if isinstance(lm, LeanCausalLM):  # the matrices as stored (int8 + scales, or fp32), one embedding row
        per = 1.0 if lm.decoder.weights == "int8" else 4.0
        return perf.decode_bytes_per_token(0, per, hidden_size=cfg.hidden_size,
                                           other_bytes=lm.decoder.linear_weight_bytes(), **kv)
    # transformers fp32: every projection + the (tied) head, one embedding row
    n_linear = sum(m.weight.numel() for m in lm.model.modules() if isinstance(m, torch.nn.Linear))
    return perf.decode_bytes_per_token(n_linear, 4.0, hidden_size=cfg.hidden_size, **kv)


def run(model: Any, runtimes: Sequence[str], *, threads: int = 2, prompt_tokens: int = 500, decode_tokens: int = 32,
        repeats: int = 3, seed: int = 0) -> dict:
    """Time ``runtimes`` (``reasoner.runtime`` names) on the HF causal LM ``model``; returns a JSON-able dict."""
    import torch

    from frs_ros import perf
    from frs_ros.native import SIMD_LEVELS
    from frs_ros.reasoning.config import ReasonerConfig
    from frs_ros.reasoning.lm import build_lm
    from frs_ros.reasoning.lm.lean import LeanCausalLM

    torch.set_num_threads(threads)
    cfg = model.config
    g = torch.Generator().manual_seed(seed)
    prompt = torch.randint(0, cfg.vocab_size, (prompt_tokens,), generator=g).tolist()
    bw0 = perf.measure_memory_bandwidth()
    out: dict = {"threads": threads, "prompt_tokens": prompt_tokens, "decode_tokens": decode_tokens, "repeats": repeats,
                 "params": perf.count_parameters(model), "rows": {}}
    for rt in runtimes:
        lm = build_lm(ReasonerConfig(model="bench", runtime=rt), model)
        row = {"runtime": lm.runtime, "warning": lm.runtime_warning}
        if isinstance(lm, LeanCausalLM) and lm.decoder.kernel != "torch":
            row["simd"] = SIMD_LEVELS[lm.decoder.simd_level()]
        row.update(time_runtime(lm, prompt, decode_tokens, repeats))
        row["bytes_per_token"] = _bytes_per_token(lm, cfg, prompt_tokens + decode_tokens // 2)
        out["rows"][rt] = row
        del lm
    bw1 = perf.measure_memory_bandwidth()
    bps = max(bw0.read_bps, bw1.read_bps)
    out["bandwidth_gbps"] = {"before": bw0.read_gbps, "after": bw1.read_gbps, "floor": bps / 1e9,
                             "probes_before": {k: v / 1e9 for k, v in bw0.probes.items()},
                             "probes_after": {k: v / 1e9 for k, v in bw1.probes.items()}}
    for row in out["rows"].values():
        row["floor_ms"] = 1e3 * perf.decode_floor_s(row["bytes_per_token"], bps)
        row["floor_fraction"] = perf.floor_fraction(row["decode_ms"] / 1e3, row["floor_ms"] / 1e3)
        row["floor_fraction_best"] = perf.floor_fraction(row["decode_ms_best"] / 1e3, row["floor_ms"] / 1e3)
    return out


def table(res: dict) -> str:
    """The markdown table of :func:`run`'s result."""
    bw = res["bandwidth_gbps"]
    lines = [
        f"{res['params'] / 1e6:.1f} M parameters, {res['threads']} threads, prompt {res['prompt_tokens']} tokens, "
        f"decode {res['decode_tokens']} tokens x {res['repeats']} runs; read bandwidth {bw['before']:.1f} / "
        f"{bw['after']:.1f} GB/s (before / after; floor at {bw['floor']:.1f})",
        "",
        "| runtime | prefill tok/s | decode ms/token (median / best run) | MB read per token | floor ms "
        "| floor reached (median / best) | CPU used by others (prefill / decode) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in res["rows"].values():
        name = row["runtime"] + (f", {row['simd']}" if "simd" in row else "")
        lines.append(f"| {name} | {row['prefill_tok_s']:.0f} | {row['decode_ms']:.2f} / {row['decode_ms_best']:.2f} | "
                     f"{row['bytes_per_token'] / 1e6:.1f} | {row['floor_ms']:.2f} | "
                     f"{100 * row['floor_fraction']:.0f} % / {100 * row['floor_fraction_best']:.0f} % | "
                     f"{100 * row['other_cpu_prefill']:.0f} % / {100 * row['other_cpu_decode']:.0f} % |")
    return "\n".join(lines)


def _load(model: str) -> Any:
    import torch

    if model == "random-smollm2-135m":
        from transformers import LlamaForCausalLM

        from frs_ros.reasoning.tiny import smollm2_135m_config

        torch.manual_seed(0)
        return LlamaForCausalLM(smollm2_135m_config()).eval()
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32, local_files_only=True).eval()


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="random-smollm2-135m",
                    help="an HF model directory, or 'random-smollm2-135m' (the real architecture, random weights)")
    ap.add_argument("--runtimes", default="lean-int8,transformers", help="comma-separated reasoner.runtime names")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt-tokens", type=int, default=500)
    ap.add_argument("--decode-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default="", help="also write the numbers to this file")
    a = ap.parse_args(argv)
    res = run(_load(a.model), [r.strip() for r in a.runtimes.split(",") if r.strip()], threads=a.threads,
              prompt_tokens=a.prompt_tokens, decode_tokens=a.decode_tokens, repeats=a.repeats)
    res["model"] = a.model
    print(table(res))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
