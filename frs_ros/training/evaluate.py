"""Held-out evaluation of reasoners on the sim test split (unseen templates and categories).

Every system answers the same queries (one pass over the samples, all systems per query):

- images: gIoU / cIoU (``frs_ros.metrics.GIoUCIoU``, LISA convention) of the answered mask;
- episodes (video): J, F, J&F (``frs_ros.metrics.video_jf``): the answered track ids' masks on
  every frame of the episode against the targets' visible masks;
- format validity: % of rollouts the reasoner's parser accepts (status 'ok');
- mean generated tokens (model-chosen tokens, from ``ReasonerOutput.generated_tokens``).

A system is a reasoner config dict (``ReasonerConfig.from_dict``) plus an optional
``tools: false`` (tool calls still pause generation, but every result reads "tools disabled").
"""

from __future__ import annotations

import json
import random
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from frs_ros.training.config import EvalConfig, config_to_dict


def build_system(spec: dict) -> tuple[Any, bool]:
    """``(reasoner, tools_enabled)`` from a system spec (reasoner config + optional ``tools``)."""
    from frs_ros.reasoning.api import build_reasoner
    from frs_ros.reasoning.config import ReasonerConfig

    spec = dict(spec)
    tools = bool(spec.pop("tools", True))
    return build_reasoner(ReasonerConfig.from_dict(spec)), tools


@dataclass
class SystemScores:
    """Running scores of one system."""

    name: str
    image: Any = None
    video: list = field(default_factory=list)  # (J, F) of each episode query (expression)
    valid: int = 0
    total: int = 0
    gen_tokens: list = field(default_factory=list)
    per_kind: dict = field(default_factory=lambda: defaultdict(list))
    latency_s: list = field(default_factory=list)
    tool_calls: int = 0
    statuses: dict = field(default_factory=lambda: defaultdict(int))
    # one record per query, in query order, for paired comparisons (``frs-train compare``): kind,
    # sample ('image' or 'episode'), iou (the answered mask on the query's frame), i and u
    # (image: pixels), jf (episode: (J + F) / 2 over its frames)
    per_query: list = field(default_factory=list)

    def __post_init__(self) -> None:
        from frs_ros.metrics import GIoUCIoU

        self.image = GIoUCIoU()

    def summary(self) -> dict:
        from frs_ros.metrics import VideoJF

        out = {"system": self.name, "n_queries": self.total}
        if self.image.n:
            out.update({"gIoU": self.image.giou, "cIoU": self.image.ciou, "n_image": self.image.n})
        if self.video:
            v = VideoJF.of_expressions(self.video)
            out.update({"J": v.j, "F": v.f, "J&F": v.jf, "n_video": len(self.video)})
        out["format_valid_pct"] = 100.0 * self.valid / max(1, self.total)
        out["mean_gen_tokens"] = float(np.mean(self.gen_tokens)) if self.gen_tokens else 0.0
        out["mean_latency_s"] = float(np.mean(self.latency_s)) if self.latency_s else 0.0
        out["tool_calls_per_query"] = self.tool_calls / max(1, self.total)
        out["iou_per_kind"] = {k: float(np.mean(v)) for k, v in sorted(self.per_kind.items())}
        out["statuses"] = dict(self.statuses)
        out["per_query"] = self.per_query
        return out


def score_output(scores: SystemScores, ctx: Any, output: Any, latency_s: float) -> None:
    """Add one reasoner output on one query context to ``scores``."""
    from frs_ros.metrics import expression_jf, intersection_union, iou_of_counts

    scores.total += 1
    scores.statuses[str(output.status)] += 1
    scores.latency_s.append(latency_s)
    scores.gen_tokens.append(int(getattr(output, "generated_tokens", 0)))
    ok = output.status == "ok" and output.rollout is not None
    scores.valid += ok
    ids = list(output.rollout.answer_ids) if ok else []
    if ok:
        scores.tool_calls += sum(len(p) for p in output.rollout.plans)
    pred = ctx.answer_mask(ids) if ok else np.zeros_like(ctx.gt_mask)
    i, u = intersection_union(pred, ctx.gt_mask)
    iou = iou_of_counts(i, u, empty_union=1.0)
    scores.per_kind[ctx.query.kind].append(iou)
    rec = {"query": ctx.query.text, "kind": ctx.query.kind, "iou": round(iou, 6)}
    if ctx.sample == "episode" and ctx.video is not None:
        preds, gts = [], []
        for id_masks, gt_rle in ctx.video:
            m = np.zeros(ctx.gt_mask.shape, dtype=bool)
            for tid in ids:
                if tid in id_masks:
                    m |= id_masks[tid].decode()
            preds.append(m)
            gts.append(gt_rle.decode())
        j, f = expression_jf(preds, gts)
        scores.video.append((j, f))
        rec.update(sample="episode", jf=round(0.5 * (j + f), 6))
    else:
        scores.image.add_counts(i, u)  # the I and U above: the masks are counted once
        rec.update(sample="image", i=int(i), u=int(u))
    scores.per_query.append(rec)


def evaluate(
    cfg: EvalConfig,
    systems: Optional[dict[str, tuple[Any, bool]]] = None,
    contexts: Optional[Any] = None,
    log: Optional[Callable[[str], None]] = None,
) -> dict:
    """Run every system on the held-out queries; returns and writes ``cfg.out`` (JSON)."""
    from frs_ros.training.chains import iter_contexts, run_teacher

    if systems is None:
        systems = {name: build_system(spec) for name, spec in cfg.systems.items()}
    if contexts is None:
        contexts = iter_contexts(cfg.split, cfg.n_images, cfg.n_episodes, cfg.seed0, cfg.episode_frames,
                                 cfg.twin_backend, with_video=True)
    scores = {name: SystemScores(name) for name in systems}
    t0 = time.time()
    n = 0
    if cfg.paraphrase not in ("", "probe"):
        raise ValueError(f"eval.paraphrase must be '' or 'probe', got {cfg.paraphrase!r}")
    rng = random.Random(cfg.seed0)
    for ctx in contexts:
        if cfg.max_queries and n >= cfg.max_queries:
            break
        if cfg.paraphrase == "probe":
            from frs_ros.training.augment import PROBE_PARAPHRASES, paraphrase

            text = paraphrase(ctx.query.template_id, ctx.query.text, rng, PROBE_PARAPHRASES)
            if text is None:
                continue
            ctx = replace(ctx, query=replace(ctx.query, text=text))
        n += 1
        for name, (reasoner, tools) in systems.items():
            t = time.perf_counter()
            try:
                out = run_teacher(reasoner, ctx, tools=tools)
            except Exception as e:  # noqa: BLE001 - a crash is a failed query for this system, counted
                from frs_ros.reasoning.base import ReasonerOutput
                from frs_ros.reasoning.outcome import Outcome

                out = ReasonerOutput(text="", status=Outcome.ERROR, error=f"{type(e).__name__}: {e}")
            score_output(scores[name], ctx, out, time.perf_counter() - t)
        if log and n % 100 == 0:
            log(f"eval: {n} queries, {time.time() - t0:.0f} s")
    result = {
        "config": config_to_dict(cfg),
        "n_queries": n,
        "wall_s": round(time.time() - t0, 1),
        "systems": {name: s.summary() for name, s in scores.items()},
    }
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    return result


def markdown_table(result: dict) -> str:
    """The ablation table (one row per system) as GitHub markdown."""
    head = "| system | gIoU | cIoU | J&F (video) | format valid % | mean gen. tokens | tool calls / query |"
    sep = "|---|---:|---:|---:|---:|---:|---:|"
    rows = [head, sep]

    def f(x: Any, pct: bool = False) -> str:
        if x is None:
            return "–"
        return f"{100 * x:.1f}" if pct else f"{x:.1f}"

    for name, s in result["systems"].items():
        # a rule-based teacher chooses no tokens: "–" rather than a misleading 0
        gen = f"{s['mean_gen_tokens']:.1f}" if s["mean_gen_tokens"] > 0 else "–"
        rows.append(
            f"| {name} | {f(s.get('gIoU'), True)} | {f(s.get('cIoU'), True)} | {f(s.get('J&F'), True)} | "
            f"{s['format_valid_pct']:.1f} | {gen} | {s['tool_calls_per_query']:.2f} |"
        )
    return "\n".join(rows)


def pick_system(result: dict, name: Optional[str], where: str) -> tuple[str, dict]:
    systems = result["systems"]
    if name is None:
        if len(systems) != 1:
            raise ValueError(f"{where} holds {len(systems)} systems ({', '.join(systems)}); name one as FILE:SYSTEM")
        name = next(iter(systems))
    if name not in systems:
        raise ValueError(f"{where} has no system {name!r}; it has: {', '.join(systems)}")
    if "per_query" not in systems[name]:
        raise ValueError(f"{where}: system {name!r} has no per-query records (written before they were kept); "
                         "run frs-train eval again")
    return name, systems[name]


def compare_systems(a: dict, b: dict, n_boot: int = 10000, level: float = 0.95, seed: int = 0) -> dict:
    """Paired comparison of system ``b`` against ``a`` (``summary()`` dicts of one eval each, on the
    same queries): per metric, ``b - a`` with its paired-bootstrap interval and the queries each wins
    (``frs_ros.metrics.paired_bootstrap``). Raises ``ValueError`` when the queries differ."""
    from frs_ros.metrics import PAIRED_STATS, paired_bootstrap

    qa, qb = a["per_query"], b["per_query"]
    key = [(r["query"], r["kind"], r["sample"]) for r in qa]
    if key != [(r["query"], r["kind"], r["sample"]) for r in qb]:
        raise ValueError(f"{a['system']!r} and {b['system']!r} were scored on different queries "
                         f"({len(qa)} and {len(qb)}); compare evals of the same split, seed and sizes")
    img = [k for k, r in enumerate(qa) if r["sample"] == "image"]
    vid = [k for k, r in enumerate(qa) if r["sample"] == "episode"]

    def comps(q: list, rows: list, fields: tuple) -> np.ndarray:
        return np.array([[q[k][f] for f in fields] for k in rows], np.float64).reshape(len(rows), len(fields))

    out = {"a": a["system"], "b": b["system"], "level": level, "n_boot": n_boot, "metrics": {}}
    for metric, rows, fields in (("gIoU", img, ("iou",)), ("cIoU", img, ("i", "u")), ("J&F", vid, ("jf",))):
        if not rows:
            continue
        ca, cb = comps(qa, rows, fields), comps(qb, rows, fields)
        if metric == "cIoU":  # a query "wins" on its own IoU; the statistic uses I and U
            wa, wb = comps(qa, rows, ("iou",)), comps(qb, rows, ("iou",))
            d = paired_bootstrap(np.hstack([wa, ca]), np.hstack([wb, cb]),
                                 lambda c: PAIRED_STATS["cIoU"](c[:, 1:]), n_boot, level, seed)
        else:
            d = paired_bootstrap(ca, cb, PAIRED_STATS[metric], n_boot, level, seed)
        out["metrics"][metric] = {"a": PAIRED_STATS[metric](ca), "b": PAIRED_STATS[metric](cb), "delta": d.delta,
                                  "lo": d.lo, "hi": d.hi, "n": d.n, "wins": d.wins, "losses": d.losses}
    return out


def compare_markdown(cmp: dict) -> str:
    """The paired comparison as a GitHub markdown table (percentage points)."""
    pct = int(round(100 * cmp["level"]))
    rows = [f"| metric | {cmp['a']} | {cmp['b']} | b - a | {pct} % interval (paired bootstrap, "
            f"{cmp['n_boot']} resamples) | queries b better / worse / same |", "|---|---:|---:|---:|---|---|"]
    for metric, m in cmp["metrics"].items():
        rows.append(f"| {metric} | {100 * m['a']:.1f} | {100 * m['b']:.1f} | {100 * m['delta']:+.1f} | "
                    f"[{100 * m['lo']:+.1f}, {100 * m['hi']:+.1f}] | {m['wins']} / {m['losses']} / "
                    f"{m['n'] - m['wins'] - m['losses']} of {m['n']} |")
    return "\n".join(rows)
