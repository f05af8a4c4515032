"""CLI smoke: chains -> sft -> grpo -> eval -> report -> ship on a tiny config (1 sim image).

The teacher here is a tiny random HF model with ``iou_keep=-1`` (keep everything), so the test
needs no oracle and runs in seconds; the real pipeline uses the oracle teacher.
"""

import json

import yaml

from frs_ros.reasoning.tiny import save_tiny_model
from frs_ros.training.cli import main
from frs_ros.training.config import ConfigError, SFTConfig, load_config

import pytest


def _yaml(path, data):
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_config_rejects_unknown_keys(tmp_path):
    with pytest.raises(ConfigError):
        load_config(SFTConfig, _yaml(tmp_path / "c.yaml", {"learning_rate": 1}))
    cfg = load_config(SFTConfig, _yaml(tmp_path / "c.yaml", {"lr": 1, "nano": {"hidden_size": 64}}))
    assert cfg.lr == 1.0 and cfg.nano.hidden_size == 64 and cfg.nano.num_hidden_layers == 4


@pytest.mark.torch
def test_cli_pipeline_tiny(tmp_path, capsys):
    teacher = save_tiny_model(tmp_path / "teacher")
    fast = {"reasoning_budgets": [4, 4, 4], "max_plan_tokens": 6, "max_new_tokens": 16}
    chains = str(tmp_path / "chains.jsonl")
    assert main(["chains", "--config", _yaml(tmp_path / "chains.yaml", {
        "n_images": 1, "n_episodes": 0, "iou_keep": -1.0, "out": chains,
        "reasoner": {"backend": "hf", "model": str(teacher), **fast}})]) == 0
    stats = json.loads((tmp_path / "chains.jsonl.stats.json").read_text())
    assert stats["kept"] == stats["seen"] > 0
    nano = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
            "num_key_value_heads": 1, "max_position_embeddings": 1024}
    assert main(["sft", "--config", _yaml(tmp_path / "sft.yaml", {
        "chains": [chains], "out": str(tmp_path / "sft"), "nano": nano, "max_steps": 2, "batch_size": 2,
        "lr": 1e-3, "warmup_steps": 0, "log_every": 1})]) == 0
    assert main(["grpo", "--config", _yaml(tmp_path / "grpo.yaml", {
        "init": str(tmp_path / "sft" / "final"), "chains": [chains], "out": str(tmp_path / "grpo"),
        "steps": 1, "group_size": 2, "prompts_per_step": 1, "judge": "lexical", "max_new_tokens": 16}), "lr=1e-4"]) == 0
    systems = {"sft": {"backend": "hf", "model": str(tmp_path / "sft" / "final"), **fast},
               "grpo_no_tools": {"backend": "hf", "model": str(tmp_path / "grpo" / "final"), "tools": False, **fast}}
    ev = {"n_images": 1, "n_episodes": 0, "max_queries": 2, "systems": systems, "out": str(tmp_path / "eval.json")}
    assert main(["report", "--config", _yaml(tmp_path / "report.yaml", {
        "eval": ev, "table_out": str(tmp_path / "table.md"), "img_dir": str(tmp_path / "img"),
        "logs": {"sft": str(tmp_path / "sft" / "training_log.json"), "grpo": str(tmp_path / "grpo" / "training_log.json")}})]) == 0
    res = json.loads((tmp_path / "eval.json").read_text())
    assert set(res["systems"]) == {"sft", "grpo_no_tools"} and res["n_queries"] == 2
    assert "| sft |" in (tmp_path / "table.md").read_text()
    ev_json = tmp_path / "eval.json"
    assert main(["compare", "--a", f"{ev_json}:sft", "--b", f"{ev_json}:grpo_no_tools",
                 "--n-boot", "50", "--out", str(tmp_path / "cmp.json")]) == 0
    cmp = json.loads((tmp_path / "cmp.json").read_text())
    assert (cmp["a"], cmp["b"]) == ("sft", "grpo_no_tools") and cmp["metrics"]["gIoU"]["n"] == 2
    assert "| gIoU |" in capsys.readouterr().out
    # two evals a side are pooled query by query
    assert main(["compare", "--a", f"{ev_json}:sft", f"{ev_json}:sft", "--b", f"{ev_json}:grpo_no_tools",
                 f"{ev_json}:grpo_no_tools", "--n-boot", "50", "--out", str(tmp_path / "cmp2.json")]) == 0
    cmp2 = json.loads((tmp_path / "cmp2.json").read_text())
    assert cmp2["metrics"]["gIoU"]["n"] == 4 and cmp2["metrics"]["gIoU"]["delta"] == pytest.approx(cmp["metrics"]["gIoU"]["delta"])
    with pytest.raises(ValueError, match="name one as FILE:SYSTEM"):
        main(["compare", "--a", str(ev_json), "--b", str(ev_json)])
    with pytest.raises(ValueError, match="as many --a as --b"):
        main(["compare", "--a", f"{ev_json}:sft", f"{ev_json}:sft", "--b", f"{ev_json}:sft"])
    assert (tmp_path / "img" / "training_sft.png").exists() and (tmp_path / "img" / "training_grpo.png").exists()
    assert main(["ship", "--from", str(tmp_path / "grpo" / "final"), "--to", str(tmp_path / "ship"),
                 "--logs", "grpo=" + str(tmp_path / "grpo" / "training_log.json")]) == 0
    from frs_ros.reasoning.hf_backend import load_model
    from frs_ros.reasoning.config import ReasonerConfig

    model, tok = load_model(ReasonerConfig(model=str(tmp_path / "ship")))
    assert model.config.hidden_size == 32 and (tmp_path / "ship" / "training_log.json").exists()


def test_runtime_never_imports_training():
    import subprocess
    import sys

    code = ("import sys, frs_ros.reasoning.api, frs_ros.reasoning.hf_backend, frs_ros.reasoning.oracle, "
            "frs_ros.twin, frs_ros.sim, frs_ros.metrics; "
            "bad = [m for m in sys.modules if m.startswith('frs_ros.training')]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_plot_curves_splits_a_shipped_log_into_its_runs(tmp_path):
    import json

    pytest.importorskip("matplotlib")  # the [train] extra
    from frs_ros.training.report import plot_curves

    shipped = [{"run": "SFT a", "stage": "sft", "step": s, "loss": 1.0 / s} for s in (1, 2)]
    shipped += [{"run": "GRPO", "stage": "grpo", "step": s, "reward": 1.5, "accuracy": 0.5, "format": 0.5,
                 "reasoning": 0.5, "iou": 0.5, "gen_tokens": 10} for s in (1, 2)]
    (tmp_path / "log.json").write_text(json.dumps(shipped))
    written = plot_curves({"student": str(tmp_path / "log.json"), "absent": str(tmp_path / "none.json")},
                          str(tmp_path / "img"))
    assert sorted(p.name for p in written) == ["training_grpo.png", "training_sft.png"]
