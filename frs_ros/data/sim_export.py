"""Convert simulator output (``frs_ros.sim.SimSample``) into benchmark sample types.

The simulator API (``frs_ros.sim.generate_image`` / ``generate_episode``) returns a
``SimSample(frames, queries, events, seed, split)``: ``frames`` are
``frs_ros.camera.Frame`` with ``frame.gt`` a ``SceneGroundTruth`` and ``queries``
are ``frs_ros.sim.types.Query``. Ground truth of a query is the union of the
*visible* masks of its ``target_ids`` (``SceneGroundTruth.union_mask``; an empty
list is a no-target query with an all-False mask). Only attribute access is used,
so anything shaped like a ``SimSample`` works (tests build them by hand).

Typical use (``frs-sim generate``)::

    write_reasonseg(out, [sim_image_to_sample(generate_image(s, "val")) for s in seeds], "val")
    write_revos(out, [sim_episode_to_sample(generate_episode(s, "val")) for s in seeds], "valid")
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from frs_ros.data.types import ImageSample, QueryGT, QueryMeta, VideoExpression, VideoSample


def _meta(q: Any) -> QueryMeta:
    return QueryMeta(
        kind=str(q.kind),
        difficulty=int(q.difficulty),
        template_id=str(q.template_id),
        spec=dict(q.spec),
        target_ids=[int(i) for i in q.target_ids],
        frame_index=int(q.frame_index),
        split=str(getattr(q, "split", "")),
    )


def default_name(sim_sample: Any, prefix: str = "sim") -> str:
    """``<prefix>_<split>_<seed:08d>``, e.g. ``sim_val_00000042``."""
    return f"{prefix}_{sim_sample.split}_{int(sim_sample.seed):08d}"


def _gt(frame: Any, where: str) -> Any:
    if getattr(frame, "gt", None) is None:
        raise ValueError(f"{where}: frame has no ground truth (frame.gt is None); export needs simulator frames")
    return frame.gt


def sim_image_to_sample(sim_sample: Any, name: Optional[str] = None) -> ImageSample:
    """One-image ``SimSample`` -> ``ImageSample`` (rgb, depth, intrinsics, one ``QueryGT`` per query).

    The image is the frame the queries point at (``frame_index``, -1 = last); all
    queries must point at the same frame, else use ``sim_episode_to_sample``.
    """
    name = name or default_name(sim_sample)
    frames = list(sim_sample.frames)
    if not frames:
        raise ValueError(f"{name}: SimSample has no frames")
    n = len(frames)
    idx = {(q.frame_index % n) for q in sim_sample.queries} or {n - 1}
    if len(idx) != 1:
        raise ValueError(f"{name}: queries refer to frames {sorted(idx)}; export a video with sim_episode_to_sample")
    frame = frames[idx.pop()]
    gt = _gt(frame, name)
    queries = [
        QueryGT(
            texts=[q.text],
            mask=gt.union_mask(list(q.target_ids)),
            is_sentence=bool(q.is_sentence),
            meta=_meta(q),
            source_id=f"{name}#q{k}",
        )
        for k, q in enumerate(sim_sample.queries)
    ]
    return ImageSample(name=name, rgb=frame.rgb, queries=queries, depth=frame.depth, intrinsics=frame.intrinsics)


def sim_episode_to_sample(sim_sample: Any, name: Optional[str] = None) -> VideoSample:
    """Episode ``SimSample`` -> ``VideoSample``: frames ``00000``..; one track per target instance id.

    Tracks hold the per-frame visible mask of each instance any query refers to
    (all-False frames while it is occluded or out of view); every query becomes an
    expression over the whole video, its answer frame kept in ``meta.frame_index``.
    Depth is kept when every frame has it.
    """
    name = name or default_name(sim_sample)
    frames = list(sim_sample.frames)
    if not frames:
        raise ValueError(f"{name}: SimSample has no frames")
    gts = [_gt(f, f"{name} frame {t}") for t, f in enumerate(frames)]
    ids = sorted({int(i) for q in sim_sample.queries for i in q.target_ids})
    tracks = {i: np.stack([g.mask(i) for g in gts]) for i in ids}
    exps = [
        VideoExpression(
            text=q.text, obj_ids=[int(i) for i in q.target_ids], exp_id=str(k), is_sentence=bool(q.is_sentence),
            meta=_meta(q),
        )
        for k, q in enumerate(sim_sample.queries)
    ]
    depth = [f.depth for f in frames] if all(f.depth is not None for f in frames) else None
    return VideoSample(
        name=name,
        frames=[f.rgb for f in frames],
        frame_names=[f"{t:05d}" for t in range(len(frames))],
        tracks=tracks,
        expressions=exps,
        depth=depth,
        intrinsics=frames[0].intrinsics,
    )
