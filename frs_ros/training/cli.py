"""``frs-train``: chains -> SFT -> GRPO -> eval -> report, each step one YAML config.

    python -m frs_ros.training.cli chains --config config/train_chains.yaml
    python -m frs_ros.training.cli sft    --config config/train_sft_nano.yaml
    python -m frs_ros.training.cli grpo   --config config/train_grpo_nano.yaml
    python -m frs_ros.training.cli eval   --config config/train_eval.yaml
    python -m frs_ros.training.cli report --config config/train_report.yaml
    python -m frs_ros.training.cli ship   --from out/train/grpo_smollm2/final --to models/smollm2_student
    python -m frs_ros.training.cli compare --a out/train/eval/sft.json --b out/train/eval/grpo.json[:SYSTEM]

Any config key can be overridden on the command line: ``... sft --config X.yaml lr=3e-4``.
On GPUs the same commands run under ``accelerate launch`` (``accelerate launch -m
frs_ros.training.cli sft --config config/train_sft_qwen3_0_6b.yaml``): the loops use
``accelerate.Accelerator``; chain generation and eval shard samples over processes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Optional, Sequence

from frs_ros.training.config import (
    ChainsConfig,
    EvalConfig,
    GRPOConfig,
    ReportConfig,
    SFTConfig,
    config_to_dict,
    load_config,
    parse_overrides,
)


def _log(msg: str) -> None:
    print(msg, flush=True)


def _fmt(rec: dict) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in rec.items())


def cmd_chains(cfg: ChainsConfig) -> dict:
    from accelerate import PartialState

    from frs_ros.training.chains import generate_chains, iter_contexts

    state = PartialState()
    out = cfg.out
    shard = (state.process_index, state.num_processes)
    if state.num_processes > 1:  # every process writes its own shard: <out>.<i>-of-<n>
        out = f"{cfg.out}.{state.process_index}-of-{state.num_processes}"
    from dataclasses import replace

    cfg = replace(cfg, out=out)
    contexts = iter_contexts(cfg.split, cfg.n_images, cfg.n_episodes, cfg.seed0, cfg.episode_frames, cfg.twin_backend,
                             shard=shard)
    stats = generate_chains(cfg, contexts=contexts, log=_log)
    summary = stats.to_json()
    _log(f"chains: kept {summary['kept']}/{summary['seen']} -> {out}")
    _log(json.dumps({k: summary[k] for k in ("per_kind", "rejected")}))
    return summary


def _tokenizer_for(cfg: SFTConfig, records: list[dict]):
    """Fit the nano student's tokenizer on the chains (+ extra files), or load the one named."""
    from frs_ros.training.sft import prompt_of
    from frs_ros.training.tokenizer import fit_tokenizer, load_tokenizer

    if cfg.tokenizer:
        return load_tokenizer(cfg.tokenizer)
    texts = []
    extra = []
    if cfg.fit_tokenizer_on:
        from frs_ros.training.sft import read_chains

        extra = read_chains(cfg.fit_tokenizer_on)
    for r in list(records) + extra:
        texts += [prompt_of(r).text, r["rollout"]]
    return fit_tokenizer(texts)


def build_student_for_sft(cfg: SFTConfig, records: list[dict]):
    """``(model, tokenizer)``: the nano student from scratch, or a HF LLM (+ LoRA if lora_r > 0)."""
    from frs_ros.training.model import apply_lora, build_nano_student, count_parameters, load_student

    if cfg.model == "nano":
        tok = _tokenizer_for(cfg, records)
        model = build_nano_student(cfg.nano, tok, seed=cfg.seed)
    else:
        model, tok = load_student(cfg.model, adapter=cfg.init_adapter)
        if cfg.tokenizer:
            from frs_ros.training.tokenizer import load_tokenizer

            tok = load_tokenizer(cfg.tokenizer)
    if cfg.lora_r > 0 and not cfg.init_adapter:
        model = apply_lora(model, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout)
    _log(f"sft: model {cfg.model}: {count_parameters(model)} params, {count_parameters(model, True)} trainable, "
         f"vocab {len(tok)}")
    return model, tok


def cmd_sft(cfg: SFTConfig) -> dict:
    import torch

    from frs_ros.training.sft import read_chains, train_sft

    torch.set_num_threads(cfg.num_threads)
    records = read_chains(cfg.chains, cfg.max_examples)
    if cfg.kind_repeat:
        from frs_ros.training.sft import repeat_kinds

        records = repeat_kinds(records, cfg.kind_repeat)
        _log(f"sft: {len(records)} records after kind_repeat {dict(cfg.kind_repeat)}")
    if cfg.augment_prob > 0:
        from frs_ros.training.augment import augment_records

        records, n_aug = augment_records(records, cfg.augment_prob, cfg.seed)
        _log(f"sft: {n_aug} of {len(records)} queries re-said with a training paraphrase")
    model, tok = build_student_for_sft(cfg, records)
    res = train_sft(cfg, model, tok, records, on_log=lambda r: _log("sft " + _fmt(r)))
    _log(f"sft: {res.steps} steps in {res.wall_s:.0f} s, dropped {res.dropped_too_long} too long -> {res.out_dir / 'final'}")
    return {"steps": res.steps, "wall_s": res.wall_s, "out": str(res.out_dir / "final")}


def cmd_grpo(cfg: GRPOConfig) -> dict:
    import torch

    from frs_ros.training.chains import ContextCache
    from frs_ros.training.grpo import train_grpo
    from frs_ros.training.model import apply_lora, load_student
    from frs_ros.training.rewards import build_judge
    from frs_ros.training.sft import read_chains

    torch.set_num_threads(cfg.num_threads)
    records = read_chains(cfg.chains, cfg.max_prompts)
    if cfg.hard_fraction > 0:
        records = _hard_first(records, cfg.hard_fraction, cfg.seed)
    if cfg.augment_prob > 0:
        from frs_ros.training.augment import augment_records

        records, n_aug = augment_records(records, cfg.augment_prob, cfg.seed)
        _log(f"grpo: {n_aug} of {len(records)} prompts re-said with a training paraphrase")
    model, tok = load_student(cfg.init, adapter=cfg.init_adapter)
    if cfg.lora_r > 0 and not cfg.init_adapter:
        model = apply_lora(model, cfg.lora_r, cfg.lora_alpha)
    judge = build_judge(cfg.judge) if cfg.gamma != 0.0 else None
    res = train_grpo(cfg, model, tok, records, ContextCache(), judge, on_log=lambda r: _log("grpo " + _fmt(r)))
    _log(f"grpo: {res.steps} steps in {res.wall_s:.0f} s -> {res.out_dir / 'final'}")
    return {"steps": res.steps, "wall_s": res.wall_s, "out": str(res.out_dir / "final")}


def _hard_first(records: list[dict], fraction: float, seed: int) -> list[dict]:
    """Oversample difficulty >= 2 prompts so that ``fraction`` of the pool is hard."""
    import random

    rng = random.Random(seed)
    hard = [r for r in records if int(r.get("difficulty", 1)) >= 2]
    easy = [r for r in records if int(r.get("difficulty", 1)) < 2]
    if not hard or not easy:
        return records
    n_easy = int(len(hard) * (1 - fraction) / max(fraction, 1e-6))
    pool = hard + rng.sample(easy, min(len(easy), n_easy))
    rng.shuffle(pool)
    return pool


def cmd_eval(cfg: EvalConfig) -> dict:
    from frs_ros.training.evaluate import evaluate, markdown_table

    try:
        import torch
    except ImportError:  # `pip install -e .` without [lm]: the oracle needs no torch (an 'hf' system says what to install)
        torch = None
    if torch is not None:
        torch.set_num_threads(cfg.num_threads)
    result = evaluate(cfg, log=_log)
    _log(markdown_table(result))
    return result


def cmd_report(cfg: ReportConfig) -> dict:
    from frs_ros.training.evaluate import markdown_table
    from frs_ros.training.report import plot_curves

    if cfg.run_eval:
        result = cmd_eval(cfg.eval)
    else:
        result = json.loads(Path(cfg.eval.out).read_text())
    for extra in cfg.merge_results:
        other = json.loads(Path(extra).read_text())
        if (other["config"]["split"], other["config"]["seed0"], other["n_queries"]) != \
                (result["config"]["split"], result["config"]["seed0"], result["n_queries"]):
            raise ValueError(f"{extra} was evaluated on other queries than {cfg.eval.out}; cannot merge")
        result["systems"] = {**other["systems"], **result["systems"]}
    table = markdown_table(result)
    out = Path(cfg.table_out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table + "\n")
    images = plot_curves(cfg.logs, cfg.img_dir) if cfg.logs else []
    _log(table)
    for p in images:
        _log(f"curve: {p}")
    return {"table": str(out), "images": [str(p) for p in images]}


def cmd_ship(src: str, dst: str, logs: Sequence[str] = (), configs: Sequence[str] = ()) -> dict:
    """Copy a checkpoint to ``dst`` with fp16 weights, plus training logs and resolved configs.

    A LoRA adapter checkpoint (``adapter_config.json``) ships as the adapter alone (fp16, ~10 MB);
    the base model comes from its pip package (``reasoner.model``), merged at load time."""
    import torch

    from frs_ros.training.model import load_student, read_training_state, save_checkpoint

    state = read_training_state(src)
    dst_p = Path(dst)
    if dst_p.exists():
        shutil.rmtree(dst_p)
    if (Path(src) / "adapter_config.json").exists():
        from safetensors.torch import load_file, save_file

        dst_p.mkdir(parents=True)
        # the tokenizer is the base model's (loaded from reasoner.model); peft's README is boilerplate
        skip = {"adapter_model.safetensors", "adapter_config.json", "tokenizer.json", "tokenizer_config.json",
                "chat_template.jinja", "README.md", "special_tokens_map.json"}
        for f in Path(src).iterdir():
            if f.is_file() and f.name not in skip:
                shutil.copy(f, dst_p / f.name)
        acfg = json.loads((Path(src) / "adapter_config.json").read_text())
        base = state["config"].get("model") or state["config"].get("init") or ""
        if base:  # the name users pass as reasoner.model, not this machine's cache path
            acfg["base_model_name_or_path"] = base
        (dst_p / "adapter_config.json").write_text(json.dumps(acfg, indent=2))
        w = load_file(str(Path(src) / "adapter_model.safetensors"))
        save_file({k: v.to(torch.float16) for k, v in w.items()}, str(dst_p / "adapter_model.safetensors"))
    else:
        model, tok = load_student(src)
        save_checkpoint(model, tok, dst_p, state["config"], state["step"], state["stage"],
                        extra={k: v for k, v in state.items() if k not in ("config", "step", "stage")},
                        dtype=torch.float16)
    # logs: "run=path/to/training_log.json" (or a bare path) -> one merged training_log.json/.csv
    merged = []
    for item in logs:
        run, _, path = item.rpartition("=") if "=" in item else ("", "", item)
        pp = Path(path)
        if not pp.exists():
            raise FileNotFoundError(f"training log {pp} does not exist")
        for rec in json.loads(pp.read_text()):
            merged.append({"run": run or pp.parent.name, **rec})
    if merged:
        from frs_ros.training.sft import write_log

        write_log(merged, dst_p)
    (dst_p / "configs").mkdir(exist_ok=True)
    for p in configs:
        pp = Path(p)
        if pp.exists():
            shutil.copy(pp, dst_p / "configs" / pp.name)
    size = sum(f.stat().st_size for f in dst_p.rglob("*") if f.is_file())
    _log(f"ship: {src} -> {dst} ({size / 1e6:.1f} MB)")
    return {"bytes": size}


def _eval_ref(ref: str) -> tuple[dict, Optional[str], str]:
    """``FILE`` or ``FILE:SYSTEM`` -> (the eval result, the system name or None, FILE)."""
    path, name = ref, None
    if not Path(ref).exists() and ":" in ref:
        path, name = ref.rsplit(":", 1)
    if not Path(path).exists():
        raise FileNotFoundError(f"no eval result {path!r} (write one with `frs-train eval --config ...`)")
    return json.loads(Path(path).read_text()), name, path


def cmd_compare(a_refs: Sequence[str], b_refs: Sequence[str], n_boot: int = 10000, out: Optional[str] = None) -> dict:
    """Paired comparison of two evaluated systems (see ``evaluate.compare_systems``); prints a table.

    Each side is one or more ``FILE[:SYSTEM]`` evals; the i-th of ``a_refs`` and of ``b_refs`` must be
    scored on the same queries, and several are pooled (e.g. two disjoint held-out sets)."""
    from frs_ros.training.evaluate import compare_markdown, compare_systems, pick_system

    if len(a_refs) != len(b_refs) or not a_refs:
        raise ValueError(f"compare needs as many --a as --b evals (paired one to one), got {len(a_refs)} and {len(b_refs)}")

    def pooled(refs: Sequence[str]) -> dict:
        systems = [pick_system(*_eval_ref(r)[:2], r)[1] for r in refs]
        return dict(systems[0], per_query=[q for s in systems for q in s["per_query"]])

    result = compare_systems(pooled(a_refs), pooled(b_refs), n_boot=n_boot)
    result["a_evals"], result["b_evals"] = list(a_refs), list(b_refs)
    _log(compare_markdown(result))
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(result, indent=2))
    return result


COMMANDS = {
    "chains": (ChainsConfig, cmd_chains),
    "sft": (SFTConfig, cmd_sft),
    "grpo": (GRPOConfig, cmd_grpo),
    "eval": (EvalConfig, cmd_eval),
    "report": (ReportConfig, cmd_report),
}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="frs-train", description="Distil the FastReasonSeg student (chains, SFT, GRPO, eval, report).")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (cls, _) in COMMANDS.items():
        p = sub.add_parser(name, help=f"{name} ({cls.__name__})")
        p.add_argument("--config", default=None, help="YAML file overriding the defaults of " + cls.__name__)
        p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
        p.add_argument("overrides", nargs="*", help="key=value overrides (values parsed as YAML)")
    ship = sub.add_parser("ship", help="export a checkpoint (fp16) with logs and configs, e.g. to models/smollm2_student")
    ship.add_argument("--from", dest="src", required=True)
    ship.add_argument("--to", dest="dst", required=True)
    ship.add_argument("--logs", nargs="*", default=[])
    ship.add_argument("--configs", nargs="*", default=[])
    cmp = sub.add_parser("compare", help="paired comparison of two evaluated systems on the same queries "
                                         "(b - a with a bootstrap interval), e.g. GRPO against its SFT")
    cmp.add_argument("--a", nargs="+", required=True, metavar="FILE[:SYSTEM]",
                     help="eval result(s) of the baseline; several are pooled")
    cmp.add_argument("--b", nargs="+", required=True, metavar="FILE[:SYSTEM]",
                     help="eval result(s) of the system compared with it, on the same queries as --a, in order")
    cmp.add_argument("--n-boot", type=int, default=10000, help="bootstrap resamples (default 10000)")
    cmp.add_argument("--out", default=None, help="also write the comparison as JSON here")
    args = parser.parse_args(argv)
    if args.command == "compare":
        cmd_compare(args.a, args.b, args.n_boot, args.out)
        return 0
    if args.command == "ship":
        cmd_ship(args.src, args.dst, args.logs, args.configs)
        return 0
    cls, fn = COMMANDS[args.command]
    cfg = load_config(cls, args.config, parse_overrides(args.overrides))
    if args.print_config:
        print(json.dumps(config_to_dict(cfg), indent=2))
        return 0
    fn(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
