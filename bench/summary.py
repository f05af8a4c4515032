"""Derived tables from a ``run_bench.py`` results file (the sections of docs/performance.md).

    python bench/summary.py docs/bench_results.json              # print the sections
    python bench/summary.py docs/bench_results.json --fill docs/performance.md
    python bench/summary.py bench/results/smollm2_results.json     # the SmolLM2 vs llama.cpp tables

``--fill`` replaces the ``__RESULTS__``, ``__LIMIT__``, ``__OPTIMISATIONS__``, ``__AGREEMENT__``,
``__MEMORY__`` and ``__SMOLLM2__`` markers of a document with the tables computed here (every
number comes from the results file; a ``--only smollm2`` results file fills ``__SMOLLM2__`` only).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _f(x, nd=2):
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "n/a"
    return f"{x:.{nd}f}"


def _r(a, b):
    try:
        return f"{a / b:.1f}x" if a and b else "n/a"
    except TypeError:
        return "n/a"


def smollm2_section(R: dict) -> str:
    """The SmolLM2 student vs llama.cpp tables (``bench/smollm2.py``) of a results file."""
    import smollm2

    S = R.get("smollm2")
    if not S:
        return "Not measured in this run (section skipped)."
    if "error" in S:
        return f"Not measured in this run: the section failed: {S['error']}"
    m = R["machine"]
    return (f"Machine: {m['cpu']}, {m['cores']} cores ({', '.join(m['isa'])}), {m['mem_gb']} GB, torch {m['torch']}, "
            f"transformers {m['transformers']}; {m['date_utc']}; commit {R.get('git', {}).get('head', '?')}"
            + (f" + uncommitted {', '.join(R['git']['modified'])}" if R.get("git", {}).get("modified") else "")
            + f"; load average {m['loadavg_start'][0]:.2f} at the start, "
            f"{R.get('loadavg_end', [float('nan')])[0]:.2f} at the end.\n\n" + smollm2.report(S))


def sections(R: dict, table_md: str) -> dict:
    m = R["machine"]
    out = {"SMOLLM2": smollm2_section(R)}
    if "serialise" not in R:  # a --only smollm2 results file
        return out
    out["RESULTS"] = "\n".join([
        "## Results",
        "",
        f"Run on **{m['cpu']}** ({m['cores']} cores, {', '.join(m['isa'])}; {m['mem_gb']} GB RAM; KVM guest), "
        f"torch {m['torch']} with {m['threads']} threads, transformers {m['transformers']}, Python {m['python']}; "
        f"{m['date_utc']}; load average {m['loadavg_start'][0]:.2f} / {m['loadavg_start'][1]:.2f} / "
        f"{m['loadavg_start'][2]:.2f} (1/5/15 min) at the start, {R['loadavg_end'][0]:.2f} at the end; "
        f"the whole run took {R['wall_s']:.0f} s. GPU: none.",
        "",
        table_md.strip(),
        "",
        "![query latency by stage](img/bench_query.png)",
        "![decode vs the bandwidth floor](img/bench_decode.png)",
        "![twin update per frame](img/bench_twin.png)",
    ])
    # ---- limit
    L = ["| model | weights read / token | floor | HF fp32 | lean fp32 | lean int8 | reached (lean) |",
         "|---|---|---:|---:|---:|---:|---:|"]
    for name, M in R["llm"].items():
        L.append(f"| {name} fp32 | {M['bytes_fp32'] / 1e9:.2f} GB | {_f(M['floor_fp32_ms'], 1)} ms | {_f(M['hf_decode_ms'], 1)} ms "
                 f"| {_f(M['lean_fp32_decode_ms'], 1)} ms | | {100 * M['floor_frac_fp32']:.0f} % |")
        L.append(f"| {name} int8 | {M['bytes_int8'] / 1e9:.2f} GB | {_f(M['floor_int8_ms'], 1)} ms | | | "
                 f"{_f(M['lean_int8_decode_ms'], 1)} ms | {100 * M['floor_frac_int8']:.0f} % |")
    bw = R["bandwidth"]
    out["LIMIT"] = "\n".join([
        f"Measured read bandwidth (best probe): **{bw['read_gbps']:.1f} GB/s** ("
        + ", ".join(f"{k} {v / 1e9:.1f}" for k, v in bw["probes"].items()) + " GB/s). "
        "The floor adds the KV cache of the measured context (compact prompt + half the decoded "
        "tokens, fp32 K and V) and one embedding row to the weight bytes.",
        "",
        *L,
    ])
    # ---- optimisations
    O = ["| optimisation | before | after | ratio | measured as |", "|---|---:|---:|---:|---|"]
    S, C = R["serialise"], R["chains"]
    M6 = R["llm"].get("qwen3-0.6b", {})
    O.append(f"| compact twin text instead of JSON | {S['naive_tokens']:.0f} tok | {S['compact_tokens']:.0f} tok | "
             f"{_r(S['naive_tokens'], S['compact_tokens'])} | twin tokens, {S['objects_mean']:.1f} objects/scene |")
    if M6.get("hf_prefill_naive_s"):
        O.append(f"| ... its prefill (Qwen3-0.6B, HF fp32) | {_f(M6['hf_prefill_naive_s'])} s | {_f(M6['hf_prefill_compact_s'])} s | "
                 f"{_r(M6['hf_prefill_naive_s'], M6['hf_prefill_compact_s'])} | prompt {M6['naive_prompt_tokens']} vs {M6['compact_prompt_tokens']} tok |")
    O.append(f"| concise reasoning | 112 tok | {C['reason_tokens_mean']:.1f} tok | {_r(112, C['reason_tokens_mean'])} | "
             f"reasoning tokens: WISE verbose vs our oracle chains (p90 {C['reason_tokens_p90']:.0f}) |")
    E = R.get("e2e")
    if E:
        recs = E["opt"]["records"]
        cold = [r["stages"]["prefill"] for r in recs if r["cached"] < r["prompt"] // 2]
        warm = [r["stages"]["prefill"] for r in recs if r["cached"] >= r["prompt"] // 2]
        O.append(f"| KV-cache reuse across queries on one twin | {_f(float(np.median(cold)) if cold else None)} s | "
                 f"{_f(float(np.median(warm)) if warm else None)} s | {_r(np.median(cold) if cold else None, np.median(warm) if warm else None)} | "
                 f"prefill p50, first query of a twin vs the next ones ({E['opt']['cached_tokens_mean']:.0f} of "
                 f"{E['opt']['prompt_tokens_mean']:.0f} prompt tokens cached on average) |")
        O.append(f"| KV-cache reuse across a tool pause | {_f(E['naive']['reprefill_mean_s'])} s | {_f(E['opt']['resume_mean_s'])} s | "
                 f"{_r(E['naive']['reprefill_mean_s'], E['opt']['resume_mean_s'])} | re-prefill of everything vs appending the results |")
    for name, M in R["llm"].items():
        O.append(f"| lean decode loop ({name}, fp32) | {_f(M['hf_decode_ms'], 1)} ms | {_f(M['lean_fp32_decode_ms'], 1)} ms | "
                 f"{_r(M['hf_decode_ms'], M['lean_fp32_decode_ms'])} | decode ms/token, HF forward + DynamicCache vs lean |")
        O.append(f"| int8 weights ({name}) | {_f(M['lean_fp32_decode_ms'], 1)} ms | {_f(M['lean_int8_decode_ms'], 1)} ms | "
                 f"{_r(M['lean_fp32_decode_ms'], M['lean_int8_decode_ms'])} | decode ms/token, lean fp32 vs lean int8 |")
        O.append(f"| int8 weights, prefill ({name}) | {_f(M['lean_fp32_prefill_compact_s'])} s | {_f(M['lean_int8_prefill_compact_s'])} s | "
                 f"{_r(M['lean_fp32_prefill_compact_s'], M['lean_int8_prefill_compact_s'])} | compact prompt, {M['compact_prompt_tokens']} tok |")
    if M6.get("hf_prefill_compact_eager_s"):
        O.append(f"| SDPA attention (vs eager) | {_f(M6['hf_prefill_compact_eager_s'])} s | {_f(M6['hf_prefill_compact_s'])} s | "
                 f"{_r(M6['hf_prefill_compact_eager_s'], M6['hf_prefill_compact_s'])} | Qwen3-0.6B prefill, compact prompt |")
    V = R.get("vision")
    if V:
        K = R["keyframe_interval"]
        O.append(f"| keyframe-only labels (OWLv2) | {_f(V['owlv2_label_s'])} s | {_f(V['owlv2_label_s'] / K)} s | {K:.1f}x | per frame, 1 keyframe in {K} |")
        O.append(f"| SAM-2 propagation instead of automatic masks | {_f(V['sam2_keyframe_s'])} s | {_f(V['sam2_propagate_s'])} s | "
                 f"{_r(V['sam2_keyframe_s'], V['sam2_propagate_s'])} | per tracking frame ({V['objects']} tracks; re-seed {_f(V['sam2_set_tracks_s'])} s per keyframe) |")
    out["OPTIMISATIONS"] = "\n".join(O)
    # ---- agreement
    A = R.get("agreement") or {}
    if "ref" in A:
        G = [f"On {A['queries']} simulator test queries with the trained nano student `{A['student']}` "
             f"({A['params'] / 1e6:.2f} M parameters); the reference is the exact greedy computation "
             "(HF fp32 forward, no cache reuse, compact twin):", "",
             "| variant | same answer ids as the reference | gIoU | generated tokens | status ok |", "|---|---:|---:|---:|---:|"]
        for k, lab in (("ref", "reference"), ("opt_fp32", "lean decoder fp32 + KV-cache reuse"),
                       ("opt_int8", "lean decoder int8 + KV-cache reuse (the optimised path)"),
                       ("naive_json", "verbose JSON twin (same model)"),
                       ("unbounded", "unbounded reasoning, unconstrained answer")):
            a = A[k]
            G.append(f"| {lab} | {100 * a['agree_with_ref']:.1f} % | {a['giou']:.3f} | {a['generated_tokens_mean']:.1f} | {100 * a['ok']:.0f} % |")
        out["AGREEMENT"] = "\n".join(G)
    else:
        out["AGREEMENT"] = f"Not measured in this run: {A.get('skipped', 'section skipped')}."
    # ---- memory
    r = R.get("rss") or {}
    Mm = []
    if r:
        Mm.append(f"- Student path (Qwen3-0.6B size, lean int8, in a separate process, after a 600-token prefill "
                  f"and 24 decoded tokens): **{r['rss_student_int8_gb']:.2f} GB RSS** "
                  f"({r['rss_after_load_gb']:.2f} GB right after loading; the process started at {r['rss_before_model_gb']:.2f} GB). "
                  f"Building it from the fp32 model is a one-time peak of {r['peak_rss_incl_fp32_build_gb']:.2f} GB.")
    Mm.append(f"- The whole benchmark process peaked at {R.get('bench_peak_rss_gb', float('nan')):.1f} GB RSS (it holds the "
              "Qwen3-1.7B fp32 model and its lean copies at once).")
    Mm.append("- GPU memory: n/a (no GPU).")
    out["MEMORY"] = "\n".join(Mm)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("--table", default="", help="the Markdown table printed by run_bench (--md file)")
    ap.add_argument("--fill", default="")
    a = ap.parse_args(argv)
    R = json.loads(Path(a.results).read_text())
    table = Path(a.table).read_text() if a.table else ""
    sec = sections(R, table)
    if a.fill:
        doc = Path(a.fill).read_text()
        for k, v in sec.items():
            doc = doc.replace(f"__{k}__", v)
        Path(a.fill).write_text(doc)
    else:
        for k, v in sec.items():
            print(f"### {k}\n{v}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
