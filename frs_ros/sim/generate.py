"""Public entry points: a still image or a video episode with queries and ground truth."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from frs_ros.camera import Frame
from frs_ros.sim.episode import add_events, verify_occlusions
from frs_ros.sim.ontology import check_split
from frs_ros.sim.queries import generate_queries
from frs_ros.sim.types import Query
from frs_ros.sim.world import SimConfig, make_rng, render_frame, sample_scene

# Independent random streams (see make_rng) so that, e.g., changing the query sampler
# does not change the rendered images of the same seed.
_STREAM_SCENE_IMAGE = 1
_STREAM_SCENE_EPISODE = 2
_STREAM_RENDER = 3
_STREAM_QUERIES = 4


@dataclass
class SimSample:
    """One generated sample.

    frames: 1 frame (image) or ``n_frames`` (episode); each carries ``gt``.
    queries: queries with ground truth (``Query.target_ids``, ``Query.spec``).
    events: episode events (see ``frs_ros.sim.episode``); empty for images.
    seed, split: what generated it (the same pair always gives bit-identical output).
    scene_kind: 'tabletop' or 'room'.
    """

    frames: list[Frame]
    queries: list[Query]
    events: list[dict]
    seed: int
    split: str
    scene_kind: str = ""
    meta: dict = field(default_factory=dict)

    @property
    def is_video(self) -> bool:
        return len(self.frames) > 1


def generate_image(seed: int, split: str = "train", config: Optional[SimConfig] = None) -> SimSample:
    """A single RGB-D frame of a random scene with ``config.queries_per_image`` queries."""
    config = config or SimConfig()
    check_split(split)
    scene = sample_scene(make_rng(config, split, _STREAM_SCENE_IMAGE, seed), split, config, n_frames=1)
    scene.seed = seed
    frame = render_frame(scene, 0, config, make_rng(config, split, _STREAM_RENDER, seed, 0))
    queries = generate_queries(
        [frame], [], split, make_rng(config, split, _STREAM_QUERIES, seed), config.queries_per_image, config.min_visible_px
    )
    return SimSample(frames=[frame], queries=queries, events=[], seed=seed, split=split, scene_kind=scene.kind)


def generate_episode(
    seed: int, split: str = "train", n_frames: int = 30, config: Optional[SimConfig] = None
) -> SimSample:
    """A video episode of ``n_frames`` frames (camera motion + object events) with queries.

    Temporal queries need >= 8 frames for events; shorter episodes only get camera motion.
    """
    if n_frames < 2:
        raise ValueError(f"an episode needs at least 2 frames, got n_frames={n_frames}; use generate_image for 1")
    config = config or SimConfig()
    check_split(split)
    rng = make_rng(config, split, _STREAM_SCENE_EPISODE, seed)
    scene = sample_scene(rng, split, config, n_frames=n_frames)
    scene.seed = seed
    add_events(scene, rng, config)
    frames = [render_frame(scene, k, config, make_rng(config, split, _STREAM_RENDER + 100, seed, k)) for k in range(n_frames)]
    visible = {
        o.instance_id: [f.gt.objects[o.instance_id].visible_px if o.instance_id in f.gt.objects else 0 for f in frames]
        for o in scene.objects
    }
    verify_occlusions(scene, visible, config)
    queries = generate_queries(
        frames,
        scene.events,
        split,
        make_rng(config, split, _STREAM_QUERIES + 100, seed),
        config.queries_per_episode,
        config.min_visible_px,
    )
    return SimSample(frames=frames, queries=queries, events=scene.events, seed=seed, split=split, scene_kind=scene.kind)
