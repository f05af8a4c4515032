"""The demo end to end (small and short), parametrised on the reasoner."""

import os

import pytest

pytestmark = [pytest.mark.ros, pytest.mark.slow]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STUDENT = os.path.join(ROOT, "models", "smollm2_student")


def _reasoners():
    yield pytest.param({"reasoner.backend": "oracle"}, id="oracle")
    # the shipped student (SmolLM2-135M base from its pip package + the LoRA adapter in the repo),
    # on the shipped runtime: what `make demo` runs
    yield pytest.param({"reasoner.backend": "hf", "reasoner.model": "smollm2-135m", "reasoner.adapter": STUDENT,
                        "reasoner.runtime": "lean-int8"}, id="smollm2_student")


@pytest.mark.torch  # the oracle answers affordance queries through match(): MiniLM embedder (sentence-transformers, torch)
@pytest.mark.parametrize("reasoner", list(_reasoners()))
def test_demo_runs_and_writes_overlays_and_a_bag(tmp_path, reasoner):
    from frs_ros.data.bags import bag_topics, read_messages
    from frs_ros.demo import run_demo

    summary = run_demo(tmp_path, seed=0, n_frames=12, rate_hz=15.0, width=160, height=120, reasoner=reasoner)
    assert summary["goals"], "no goals were sent"
    if reasoner["reasoner.backend"] == "oracle":
        assert all(g["status"] == "ok" for g in summary["goals"]), summary["goals"]
        scored = [g["iou"] for g in summary["goals"] if g["iou"] is not None]
        assert scored and min(scored) >= 0.9
    else:  # a learned student may miss a query; it must answer every goal with a parsed rollout
        assert all(g["status"] == "ok" for g in summary["goals"]), summary["goals"]
    assert list(tmp_path.glob("*.png"))
    topics = bag_topics(tmp_path / "bag")
    assert topics["/frs/targets"] == "frs_ros/msg/TargetArray"
    arrays = [m for _, _, _, m in read_messages(tmp_path / "bag", ["/frs/targets"])]
    assert len(arrays) >= len(summary["goals"])


def test_demo_with_a_tiny_random_hf_student(tmp_path):
    """The hf path through the nodes (prefill, decode, KV reuse, feedback), with a tiny random Qwen3:
    its answers are random, but every goal must finish with a parsed rollout and valid ids."""
    pytest.importorskip("transformers")
    from frs_ros.demo import run_demo
    from frs_ros.reasoning.tiny import save_tiny_model

    model = save_tiny_model(tmp_path / "tiny")
    summary = run_demo(tmp_path / "out", seed=0, n_frames=10, rate_hz=15.0, width=160, height=120,
                       reasoner={"reasoner.backend": "hf", "reasoner.model": str(model), "reasoner.max_new_tokens": 64})
    assert summary["goals"]
    assert all(g["status"] in ("ok", "error") for g in summary["goals"]), summary["goals"]
    assert any(g["status"] == "ok" for g in summary["goals"])
