"""A/B decode timing of two variants of the lean-int8 runtime on the SmolLM2-135M architecture.

Random weights (speed does not depend on them), real sizes: 30 layers, hidden 576, 9 / 3 heads,
head_dim 64, intermediate 1536, tied 49152 x 576 head. Variant A: the native kernel built from a
given C source (default: the file at git ``--ref``, HEAD) on a decoder whose packed weights are in
huge pages or not, and its KV caches likewise (``--huge-a``); variant B: the working tree's kernel, ``--huge-b``. Each has its
own decoder (own weight copy); a ``--ctx``-token prompt is prefilled once, then A and B alternate
for ``--rounds`` rounds (order flipped every round), each decoding ``--tokens`` greedy tokens
from a copy of the prefilled cache through ``LeanDecoder.forward`` + ``argmax`` (the Python
per-token work included). Printed: per variant the median over rounds of each round's median
token time (robust to a few tokens preempted on a shared machine) and of each round's mean, the
ratios, whether the greedy tokens agree, and the load average.

    nice -n 5 python bench/decode_ab.py --rounds 20 --threads 2             # HEAD (no huge pages) vs this tree
    nice -n 5 python bench/decode_ab.py --rounds 20 --huge-a 1 --huge-b 1   # the kernels alone
"""

from __future__ import annotations

import argparse
import ctypes
import copy
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from frs_ros import native  # noqa: E402
from frs_ros.reasoning.lm.lean import KVCache, LeanDecoder  # noqa: E402


def build(src: Path, out: Path) -> ctypes.CDLL:
    cc = native._compiler()
    subprocess.run([cc, *native._BASE_FLAGS, "-march=native", str(src), "-o", str(out), "-lm"], check=True)
    lib = ctypes.CDLL(str(out))
    ref = native.load_causal_lm_int8()  # the same signatures as the working tree's build
    for f in ("frs_forward", "frs_embed_packed"):
        getattr(lib, f).restype, getattr(lib, f).argtypes = getattr(ref, f).restype, getattr(ref, f).argtypes
    return lib


def smollm2(seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                      num_attention_heads=9, num_key_value_heads=3, head_dim=64, max_position_embeddings=8192,
                      rms_norm_eps=1e-5, rope_theta=100000.0, tie_word_embeddings=True)
    torch.manual_seed(seed)
    m = LlamaForCausalLM(cfg).float().eval()
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.05)
    return m


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ref", default="HEAD", help="git ref of kernel A's source")
    ap.add_argument("--src-a", default="", help="kernel A's C source (instead of --ref)")
    ap.add_argument("--ctx", type=int, default=500)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--huge-a", type=int, default=0,
                    help="variant A keeps its packed weights and KV caches in huge pages (1) or not (0)")
    ap.add_argument("--huge-b", type=int, default=1, help="the same for B")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    tmp = Path(tempfile.mkdtemp())
    src_a = Path(a.src_a) if a.src_a else tmp / "a.c"
    if not a.src_a:
        src_a.write_bytes(subprocess.run(["git", "-C", str(ROOT), "show", f"{a.ref}:frs_ros/native/causal_lm_int8.c"],
                                         check=True, capture_output=True).stdout)
    libs = {"A": build(src_a, tmp / "a.so"), "B": native.load_causal_lm_int8()}
    model = smollm2()
    decs = {}
    huge = {"A": bool(a.huge_a), "B": bool(a.huge_b)}
    for k in ("A", "B"):  # one decoder each: its own weight copy
        LeanDecoder.huge_pages = KVCache.huge_pages = huge[k]
        decs[k] = LeanDecoder(model, weights="int8", kernel="native", max_len=a.ctx + a.tokens + 8)
        decs[k]._lib = libs[k]
        decs[k]._bind_native()
    del model
    ids = torch.randint(0, 49152, (a.ctx,), generator=torch.Generator().manual_seed(1)).tolist()
    start = {}
    for k, dec in decs.items():
        KVCache.huge_pages = huge[k]
        c = dec.new_cache(a.ctx + a.tokens + 8)
        start[k] = (c, dec.prefill(ids, c))
    ms = {k: [] for k in libs}  # mean ms/token of each round
    tok_ms = {k: [] for k in libs}  # median ms of a token in each round (robust to a few preempted tokens)
    toks = {}
    for r in range(a.rounds):
        for k in (("A", "B") if r % 2 == 0 else ("B", "A")):
            dec = decs[k]
            KVCache.huge_pages = huge[k]  # the round's cache copy (KVCache.__deepcopy__) as the variant keeps it
            cache, logits = copy.deepcopy(start[k][0]), start[k][1]
            out, per = [], []
            t0 = time.perf_counter()
            for _ in range(a.tokens):
                t = time.perf_counter()
                tok = int(logits.argmax())
                out.append(tok)
                logits = dec.forward([tok], cache)
                per.append(1e3 * (time.perf_counter() - t))
            ms[k].append(1e3 * (time.perf_counter() - t0) / a.tokens)
            tok_ms[k].append(statistics.median(per))
            toks[k] = out
    load = os.getloadavg()
    for k in libs:
        print(f"{k}: per-round mean ms/token: median {statistics.median(ms[k]):.3f}, min {min(ms[k]):.3f}; "
              f"per-round median token: median {statistics.median(tok_ms[k]):.3f}, min {min(tok_ms[k]):.3f}; rounds "
              + " ".join(f"{v:.2f}" for v in tok_ms[k]))
    ratio = [b / a_ for a_, b in zip(tok_ms["A"], tok_ms["B"])]
    print(f"B/A: ratio of medians {statistics.median(tok_ms['B']) / statistics.median(tok_ms['A']):.4f} (token medians), "
          f"{statistics.median(ms['B']) / statistics.median(ms['A']):.4f} (round means); median per-round ratio "
          f"{statistics.median(ratio):.4f}; "
          f"greedy tokens identical: {toks['A'] == toks['B']}; loadavg {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
          f"ctx {a.ctx}, {a.tokens} tokens x {a.rounds} rounds, {a.threads} threads")


if __name__ == "__main__":
    main()
