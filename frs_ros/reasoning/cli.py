"""``frs-ask``: ask a reasoning-segmentation query about a sim scene or an RGB-D image.

Examples::

    frs-ask --sim-seed 3                               # list the scene's generated queries
    frs-ask --sim-seed 3 --query-index 0 --overlay out.png           # oracle teacher
    frs-ask --sim-seed 3 --episode "the object that moved" --reasoner hf --model /models/nano
    frs-ask "the mug I can drink from" --image rgb.png --depth depth.png \\
        --fx 525 --fy 525 --cx 319.5 --cy 239.5 --reasoner hf --model Qwen/Qwen3-0.6B

Depth files: 16-bit PNG in millimetres (0 = invalid) or ``.npy`` float metres (NaN/0 = invalid).
The oracle reasoner needs a generated sim query (ground truth); free text needs ``--reasoner hf``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional

import numpy as np

from frs_ros.camera import CameraIntrinsics, Frame


class CliError(RuntimeError):
    """A usage problem reported as one line and exit code 2."""


def load_rgb(path: str) -> np.ndarray:
    """An image file -> ``(H, W, 3)`` uint8 RGB."""
    import cv2

    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise CliError(f"cannot read the colour image {path!r} (missing file or unknown format)")
    return np.ascontiguousarray(bgr[:, :, ::-1])


def load_depth(path: str) -> np.ndarray:
    """16-bit PNG [mm] or ``.npy`` [m] -> ``(H, W)`` float32 metres, NaN where invalid."""
    if path.endswith(".npy"):
        d = np.load(path).astype(np.float32)
    else:
        import cv2

        raw = cv2.imread(path, cv2.IMREAD_UNCHANGED)
        if raw is None:
            raise CliError(f"cannot read the depth image {path!r}")
        if raw.dtype != np.uint16 or raw.ndim != 2:
            raise CliError(f"depth PNG {path!r} must be single-channel 16-bit millimetres, got {raw.dtype} {raw.shape}")
        d = raw.astype(np.float32) / 1000.0
    if d.ndim != 2:
        raise CliError(f"depth must be 2-D, got shape {d.shape}")
    d[~np.isfinite(d) | (d <= 0)] = np.nan
    return d


def overlay_image(rgb: np.ndarray, answer, twin) -> np.ndarray:
    """RGB ``(H, W, 3)`` uint8 with the answer mask tinted red, target boxes and track ids."""
    import cv2

    out = rgb.astype(np.float32).copy()
    m = answer.mask
    out[m] = 0.45 * out[m] + 0.55 * np.array([255.0, 30.0, 30.0])
    out = out.astype(np.uint8)
    bgr = np.ascontiguousarray(out[:, :, ::-1])
    for t in answer.targets:
        x0, y0, x1, y1 = t.box
        cv2.rectangle(bgr, (x0, y0), (x1 - 1, y1 - 1), (0, 255, 255), 1)
        cv2.putText(bgr, f"#{t.track_id} {t.label}", (x0, max(10, y0 - 3)), cv2.FONT_HERSHEY_SIMPLEX, 0.35,
                    (0, 255, 255), 1, cv2.LINE_AA)
    return bgr[:, :, ::-1].copy()


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="frs-ask", description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n", 2)[2])
    ap.add_argument("query", nargs="?", default=None, help="the query text (sim: optional, see --query-index)")
    src = ap.add_argument_group("scene")
    src.add_argument("--sim-seed", type=int, default=None, help="generate a simulated scene with this seed")
    src.add_argument("--episode", action="store_true", help="a video episode instead of a still image")
    src.add_argument("--frames", type=int, default=30, help="episode length [frames]")
    src.add_argument("--split", default="val", help="sim split: train | val | test")
    src.add_argument("--query-index", type=int, default=None, help="ask the sim scene's generated query number N")
    src.add_argument("--image", default=None, help="RGB image file")
    src.add_argument("--depth", default=None, help="depth: 16-bit PNG [mm] or .npy [m]")
    for k in ("fx", "fy", "cx", "cy"):
        src.add_argument(f"--{k}", type=float, default=None, help=f"camera {k} [px]")
    src.add_argument("--segmenter", default="sam2", help="twin segmenter for --image (sam2)")
    src.add_argument("--labeler", default="owlv2", help="twin labeler for --image (owlv2 | none)")
    rs = ap.add_argument_group("reasoner")
    rs.add_argument("--reasoner", choices=("oracle", "hf"), default=None, help="default: oracle for sim, hf for images")
    rs.add_argument("--model", default=None, help="HF model id or local directory (hf)")
    rs.add_argument("--adapter", default="", help="LoRA adapter directory (hf)")
    rs.add_argument("--device", default="cpu")
    rs.add_argument("--max-targets", type=int, default=0)
    rs.add_argument("--no-tools", action="store_true", help="answer without tool calls")
    out = ap.add_argument_group("output")
    out.add_argument("--overlay", default=None, help="save an overlay PNG of the answer here")
    out.add_argument("--json", action="store_true", help="print the answer as JSON")
    return ap


def _sim_scene(a):
    from frs_ros.sim import generate_episode, generate_image
    from frs_ros.twin.config import TwinConfig
    from frs_ros.twin.tracker import Tracker

    sample = generate_episode(a.sim_seed, a.split, a.frames) if a.episode else generate_image(a.sim_seed, a.split)
    tracker = Tracker(TwinConfig())
    twins = [tracker.update(f) for f in sample.frames]
    return sample, tracker, twins


def main(argv: Optional[list[str]] = None) -> int:
    a = _parser().parse_args(argv)
    try:
        return _run(a)
    except CliError as e:
        print(f"frs-ask: {e}", file=sys.stderr)
        return 2


def _run(a) -> int:
    from frs_ros.reasoning.api import ReasonSegEngine, build_reasoner
    from frs_ros.sim.types import QueryBook
    from frs_ros.reasoning.config import InvalidQueryError, ReasonerConfig, ReasonerLoadError

    if (a.sim_seed is None) == (a.image is None):
        raise CliError("give exactly one scene: --sim-seed N or --image rgb.png")
    sim_query = None
    observe = []
    if a.sim_seed is not None:
        sample, tracker, twins = _sim_scene(a)
        if a.query is None and a.query_index is None:
            print(f"sim {'episode' if a.episode else 'image'} seed={a.sim_seed} split={a.split}: {len(sample.queries)} queries")
            for i, q in enumerate(sample.queries):
                print(f"  [{i}] {q.kind:<11} d={q.difficulty} frame={q.frame_index}: {q.text}")
            print("ask one with --query-index N (or pass query text)")
            return 0
        if a.query_index is not None:
            if not 0 <= a.query_index < len(sample.queries):
                raise CliError(f"--query-index must be in 0..{len(sample.queries) - 1}")
            sim_query = sample.queries[a.query_index]
        else:
            sim_query = next((q for q in sample.queries if q.text.strip().lower() == a.query.strip().lower()), None)
        f = sim_query.frame_index if sim_query is not None and sim_query.frame_index >= 0 else len(sample.frames) - 1
        twin, frame = twins[f], sample.frames[f]
        observe = list(zip(twins[: f + 1], sample.frames[: f + 1]))
        query = sim_query.text if sim_query is not None else a.query
        backend = a.reasoner or "oracle"
        if backend == "oracle" and sim_query is None:
            raise CliError("the oracle only answers the scene's generated queries: use --query-index N, or --reasoner hf")
    else:
        if a.query is None:
            raise CliError("give the query text")
        if None in (a.fx, a.fy, a.cx, a.cy):
            raise CliError("--image needs the intrinsics --fx --fy --cx --cy [px]")
        rgb = load_rgb(a.image)
        depth = load_depth(a.depth) if a.depth else None
        h, w = rgb.shape[:2]
        frame = Frame(rgb=rgb, depth=depth, intrinsics=CameraIntrinsics(a.fx, a.fy, a.cx, a.cy, w, h))
        from frs_ros.twin.config import TwinConfig
        from frs_ros.twin.tracker import Tracker

        try:
            tracker = Tracker(TwinConfig(segmenter=a.segmenter, labeler=a.labeler, depth="sensor" if depth is not None else "depth_anything_v2"))
            twin = tracker.update(frame)
        except Exception as e:  # model load errors carry their own instructions
            raise CliError(f"could not build the digital twin: {e}") from e
        query = a.query
        backend = a.reasoner or "hf"
        if backend == "oracle":
            raise CliError("the oracle needs simulator ground truth: use --sim-seed, or --reasoner hf")
    cfg = {"backend": backend, "device": a.device, "use_tools": not a.no_tools}
    if a.model:
        cfg["model"] = a.model
    if a.adapter:
        cfg["adapter"] = a.adapter
    try:
        config = ReasonerConfig.from_dict(cfg)
        truth = QueryBook([sim_query] if sim_query is not None else [])
        engine = ReasonSegEngine(config, reasoner=build_reasoner(config, truth=truth))
    except ReasonerLoadError as e:
        raise CliError(str(e)) from e
    if backend == "oracle":
        for tw, fr in observe:
            engine.reasoner.observe(tw, fr)
    from frs_ros.twin.tools import run_tool

    try:
        ans = engine.answer(query, twin, frame, max_targets=a.max_targets,
                            tool_executor=lambda c: run_tool(c, tracker if a.sim_seed is None else twin, frame))
    except InvalidQueryError as e:
        raise CliError(str(e)) from e
    if a.overlay:
        import cv2

        Path(a.overlay).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(a.overlay, overlay_image(frame.rgb, ans, twin)[:, :, ::-1])
    if a.json:
        print(json.dumps({
            "query": query, "status": ans.status, "error": ans.error, "reasoning": ans.reasoning,
            "targets": [{"track_id": t.track_id, "label": t.label, "box": list(t.box), "area_px": int(t.mask.sum()),
                         "centroid_m": [None if not np.isfinite(v) else float(v) for v in t.centroid_m]} for t in ans.targets],
            "prompt_tokens": ans.prompt_tokens, "cached_tokens": ans.cached_tokens, "generated_tokens": ans.generated_tokens,
            "timings_s": ans.timings_s, "warnings": ans.warnings,
        }, indent=2))
    else:
        print(f"query:     {query}")
        print(f"reasoning: {ans.reasoning}")
        names = ", ".join(f"#{t.track_id} {t.label}" for t in ans.targets) or "none"
        print(f"answer:    {names}  (status {ans.status}{': ' + ans.error if ans.error else ''})")
        if sim_query is not None:
            print(f"truth:     sim ids {sim_query.target_ids} ({sim_query.kind}, difficulty {sim_query.difficulty})")
        print(f"tokens:    prompt {ans.prompt_tokens} (cached {ans.cached_tokens}), generated {ans.generated_tokens}")
        for w in ans.warnings:
            print(f"warning:   {w}")
        print("timings:   " + ", ".join(f"{k} {1000 * v:.1f} ms" for k, v in ans.timings_s.items()))
        if a.overlay:
            print(f"overlay:   {a.overlay}")
    return 0 if ans.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
