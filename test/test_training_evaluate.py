"""Held-out evaluation (``frs_ros.training.evaluate``): per-query records and paired comparisons.

Real sim contexts (one test image, one short test episode) and the oracle teacher; the second
system is the oracle failing every other query (a parse error: an empty answer mask).
"""

import json

import numpy as np
import pytest

from frs_ros.reasoning.base import ReasonerOutput
from frs_ros.training.config import EvalConfig
from frs_ros.training.evaluate import build_system, compare_markdown, compare_systems, evaluate, pick_system


class _FailEveryOther:
    """The oracle, but every second query ends in a parse error (no answer, empty mask)."""

    def __init__(self, inner):
        self.inner, self.truth, self.n = inner, inner.truth, 0

    def observe(self, twin, frame):
        self.inner.observe(twin, frame)

    def reset(self):
        self.inner.reset()

    def reason(self, *args):
        self.n += 1
        out = self.inner.reason(*args)
        return out if self.n % 2 else ReasonerOutput(text="", status="parse_error")


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "eval.json"
    cfg = EvalConfig(split="test", n_images=1, n_episodes=1, episode_frames=6, seed0=900000, out=str(out))
    oracle = build_system({"backend": "oracle"})
    systems = {"oracle": oracle, "half": (_FailEveryOther(build_system({"backend": "oracle"})[0]), True)}
    res = evaluate(cfg, systems=systems)
    assert json.loads(out.read_text())["systems"]["oracle"]["per_query"] == res["systems"]["oracle"]["per_query"]
    return res


def test_per_query_records_add_up_to_the_summary(result):
    s = result["systems"]["oracle"]
    q = s["per_query"]
    assert len(q) == s["n_queries"] == result["n_queries"]
    img = [r for r in q if r["sample"] == "image"]
    vid = [r for r in q if r["sample"] == "episode"]
    assert len(img) == s["n_image"] and len(vid) == s["n_video"] and img and vid
    assert np.mean([r["iou"] for r in img]) == pytest.approx(s["gIoU"], abs=1e-6)
    assert sum(r["i"] for r in img) / sum(r["u"] for r in img) == pytest.approx(s["cIoU"])
    assert np.mean([r["jf"] for r in vid]) == pytest.approx(s["J&F"], abs=1e-6)
    assert all(r["query"] and r["kind"] for r in q)


def test_compare_finds_the_failed_queries(result):
    _, a = pick_system(result, "oracle", "eval.json")
    _, b = pick_system(result, "half", "eval.json")
    cmp = compare_systems(a, b, n_boot=300)
    half = result["systems"]["half"]
    for metric in ("gIoU", "J&F"):
        m = cmp["metrics"][metric]
        assert m["a"] == pytest.approx(result["systems"]["oracle"][metric], abs=1e-6)
        assert m["b"] == pytest.approx(half[metric], abs=1e-6)
        assert m["delta"] == pytest.approx(m["b"] - m["a"]) and m["lo"] <= m["delta"] <= m["hi"]
    # the failed queries are the only ones that can lose; none can win
    failed = sum(1 for k in range(result["n_queries"]) if k % 2)
    losses = cmp["metrics"]["gIoU"]["losses"] + cmp["metrics"]["J&F"]["losses"]
    assert 0 < losses <= failed and all(m["wins"] == 0 for m in cmp["metrics"].values())
    table = compare_markdown(cmp)
    assert "| gIoU |" in table and "| J&F |" in table and "oracle" in table
    same = compare_systems(a, a, n_boot=100)
    assert all(m["delta"] == 0.0 and m["lo"] == m["hi"] == 0.0 for m in same["metrics"].values())


def test_compare_rejects_other_queries_and_old_results(result):
    _, a = pick_system(result, "oracle", "eval.json")
    fewer = dict(a, per_query=a["per_query"][:-1])
    with pytest.raises(ValueError, match="different queries"):
        compare_systems(a, fewer)
    with pytest.raises(ValueError, match="name one as FILE:SYSTEM"):
        pick_system(result, None, "eval.json")
    with pytest.raises(ValueError, match="no system 'sft'"):
        pick_system(result, "sft", "eval.json")
    old = {"systems": {"x": {k: v for k, v in a.items() if k != "per_query"}}}
    with pytest.raises(ValueError, match="no per-query records"):
        pick_system(old, None, "old.json")
