"""Training curves as PNG (matplotlib, headless): SFT loss, GRPO reward terms."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def _smooth(y: np.ndarray, k: int) -> np.ndarray:
    """Trailing moving average over ``k`` points (``k <= 1``: unchanged)."""
    if k <= 1 or len(y) < 2:
        return y
    c = np.cumsum(np.insert(y, 0, 0.0))
    out = np.empty_like(y, dtype=float)
    for i in range(len(y)):
        lo = max(0, i + 1 - k)
        out[i] = (c[i + 1] - c[lo]) / (i + 1 - lo)
    return out


def plot_curves(logs: dict, img_dir: str) -> list[Path]:
    """``logs``: run name -> ``training_log.json`` path. Writes ``training_sft.png`` (loss of
    every SFT run) and ``training_grpo.png`` (reward, accuracy, format, reasoning, IoU per GRPO
    run) under ``img_dir``; returns the written paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs: dict[str, list] = {}
    for name, p in logs.items():
        if not Path(p).exists():
            continue
        h = json.loads(Path(p).read_text())
        if h and "run" in h[0]:  # a shipped log (``frs-train ship --logs``): the runs it merged, in order
            for r in h:
                runs.setdefault(r["run"], []).append(r)
        else:
            runs[name] = h
    out_dir = Path(img_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    sft = {n: h for n, h in runs.items() if h and h[0].get("stage") == "sft"}
    grpo = {n: h for n, h in runs.items() if h and h[0].get("stage") == "grpo"}
    if sft:
        fig, ax = plt.subplots(figsize=(6, 3.6))
        offset = 0  # SFT runs listed in order are phases of one training: steps continue
        for name, h in sft.items():
            ax.plot([offset + r["step"] for r in h], [r["loss"] for r in h], label=name)
            offset += h[-1]["step"]
        ax.set_xlabel("optimizer step (phases continue)")
        ax.set_ylabel("masked token cross-entropy")
        ax.set_yscale("log")
        ax.set_title("Stage 1 SFT on kept teacher chains")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        p = out_dir / "training_sft.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        written.append(p)
    if grpo:
        keys = [("reward", "total reward"), ("accuracy", "accuracy (IoU>0.5)"), ("format", "format"),
                ("reasoning", "reasoning score"), ("gen_tokens", "generated tokens")]
        fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 3.2))
        for ax, (k, title) in zip(axes, keys):
            for name, h in grpo.items():
                x = np.array([r["step"] for r in h])
                y = np.array([r.get(k, np.nan) for r in h], dtype=float)
                win = max(1, len(y) // 15)
                ax.plot(x, _smooth(y, win), label=name)
            ax.set_title(title, fontsize=9)
            ax.set_xlabel("GRPO step", fontsize=8)
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=7)
        fig.suptitle("Stage 2 GRPO (rollout means, moving average)", fontsize=10)
        fig.tight_layout()
        p = out_dir / "training_grpo.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        written.append(p)
    return written
