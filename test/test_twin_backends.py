"""Tiny random SAM-2 / OWLv2 / DepthAnything V2 models, saved and loaded back through the factory.

The weights are random, so only the plumbing is tested (shapes, types, loading, propagation,
no ground-truth reads); thresholds are opened up so the random SAM-2 still returns masks.
"""

import copy
import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from frs_ros.twin.backends import build_twin_backends  # noqa: E402
from frs_ros.twin.config import ModelLoadError, TwinConfig  # noqa: E402
from frs_ros.twin.synthetic import Shape2D, make_frame  # noqa: E402
from frs_ros.twin.tracker import Tracker  # noqa: E402

DT = 100_000_000


def _save_tiny_sam2(path):
    from transformers import (Sam2HieraDetConfig, Sam2MaskDecoderConfig, Sam2PromptEncoderConfig,
                              Sam2VideoConfig, Sam2VideoModel, Sam2VisionConfig)

    s = 64  # model input side [px]
    # hidden sizes 128 / memory 64: the video memory attention hard-codes 64-d memories and
    # splits object pointers into hidden/64 tokens, so these are the smallest consistent sizes
    bb = Sam2HieraDetConfig(hidden_size=12, image_size=s, blocks_per_stage=[1, 1, 1, 1],
                            embed_dim_per_stage=[12, 24, 48, 96], window_size_per_stage=[2, 2, 2, 2],
                            window_positional_embedding_background_size=[2, 2])
    vis = Sam2VisionConfig(backbone_config=bb, backbone_channel_list=[96, 48, 24, 12],
                           backbone_feature_sizes=[[s // 4] * 2, [s // 8] * 2, [s // 16] * 2], fpn_hidden_size=128)
    cfg = Sam2VideoConfig(
        vision_config=vis,
        prompt_encoder_config=Sam2PromptEncoderConfig(image_size=s, patch_size=16, mask_input_channels=8, hidden_size=128),
        mask_decoder_config=Sam2MaskDecoderConfig(hidden_size=128, mlp_dim=64, num_hidden_layers=1,
                                                  num_attention_heads=4, iou_head_hidden_dim=32),
        image_size=s, memory_attention_hidden_size=128, memory_encoder_hidden_size=128,
        memory_encoder_output_channels=64, mask_downsampler_embed_dim=128, memory_fuser_embed_dim=128,
        memory_attention_num_layers=1, memory_attention_feed_forward_hidden_size=32,
        memory_attention_rope_feat_sizes=[s // 16, s // 16],
    )
    torch.manual_seed(0)
    Sam2VideoModel(cfg).save_pretrained(path)
    # what the hub's preprocessor_config.json carries that this backend reads
    with open(f"{path}/preprocessor_config.json", "w") as f:
        json.dump({"image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225],
                   "size": {"height": s, "width": s}}, f)


def _tiny_clip_tokenizer():
    from transformers import CLIPTokenizer

    chars = list("abcdefghijklmnopqrstuvwxyz")
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in chars:
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=16)  # as OWLv2 checkpoints ship it


def _save_tiny_owlv2(path):
    from transformers import Owlv2Config, Owlv2ForObjectDetection, Owlv2ImageProcessorPil, Owlv2Processor

    tok = _tiny_clip_tokenizer()
    cfg = Owlv2Config(
        text_config=dict(vocab_size=len(tok.get_vocab()), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=16, bos_token_id=0, eos_token_id=1, pad_token_id=1),
        vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=16,
    )
    torch.manual_seed(0)
    Owlv2ForObjectDetection(cfg).save_pretrained(path)
    Owlv2Processor(image_processor=Owlv2ImageProcessorPil(size={"height": 32, "width": 32}), tokenizer=tok).save_pretrained(path)


def _save_tiny_depth_anything(path, kind="relative"):
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config, DPTImageProcessorPil

    bb = Dinov2Config(image_size=28, patch_size=14, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=16, out_features=["stage1", "stage2"], reshape_hidden_states=False)
    cfg = DepthAnythingConfig(backbone_config=bb, reassemble_hidden_size=8, patch_size=14, neck_hidden_sizes=[4, 4],
                              fusion_hidden_size=6, depth_estimation_type=kind, max_depth=5)
    torch.manual_seed(0)
    DepthAnythingForDepthEstimation(cfg).save_pretrained(path)
    DPTImageProcessorPil(size={"height": 28, "width": 28}, keep_aspect_ratio=False, ensure_multiple_of=14,
                         do_pad=False).save_pretrained(path)


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_models")
    paths = {k: str(root / k) for k in ("sam2", "owlv2", "da_rel", "da_metric")}
    _save_tiny_sam2(paths["sam2"])
    _save_tiny_owlv2(paths["owlv2"])
    _save_tiny_depth_anything(paths["da_rel"], "relative")
    _save_tiny_depth_anything(paths["da_metric"], "metric")
    return paths


def _model_config(p, **kw):
    base = dict(segmenter="sam2", labeler="owlv2", sam2_model=p["sam2"], owlv2_model=p["owlv2"], points_per_side=4,
                pred_iou_thresh=0.0, stability_score_thresh=0.0, min_mask_area_px=4, label_score_thresh=0.0,
                detect_score_thresh=0.0, keyframe_interval=3, num_threads=1, label_vocabulary=("mug", "bottle"))
    base.update(kw)
    return TwinConfig(**base)


def _frames(n=5, **kw):
    return [make_frame([Shape2D(1, "mug", "disc", 16 + i, 20, 14, 14, 1.0, (200, 30, 30)),
                        Shape2D(2, "bottle", "rect", 45, 25, 10, 18, 1.2, (30, 160, 60))],
                       stamp_ns=i * DT, seq=i, **kw) for i in range(n)]


def _fingerprint(twins):
    return [[(o.track_id, o.label, round(o.score, 6), o.mask.counts, o.visible) for o in t.objects] for t in twins]


def test_sam2_owlv2_run_end_to_end_through_factory(tiny_models):
    cfg = _model_config(tiny_models)
    be = build_twin_backends(cfg)
    assert (be.segmenter.name, be.labeler.name, be.depth) == ("sam2", "owlv2", None)
    masks = be.segmenter.segment(_frames(1)[0])
    assert masks and all(m.shape == (48, 64) and m.dtype == bool for m in masks)
    tr = Tracker(cfg, backends=be)
    twins = [tr.update(f) for f in _frames()]
    # frames 0 and 3, plus coverage-drop keyframes (random weights lose masks when propagating)
    assert twins[-1].objects and 2 <= tr.stats["keyframes"] == tr.stats["segment_calls"] <= 5
    assert all(o.depth.source == "sensor" for o in twins[0].objects)
    assert len(set(twins[0].ids())) == len(twins[0].ids())
    labs = be.labeler.label(_frames(1)[0], masks[:2])
    assert len(labs) == 2 and all(isinstance(s, float) for lab in labs for _, s in lab)
    dets = be.labeler.detect(_frames(1)[0], "mug")
    assert all(len(b) == 4 and 0 <= b[0] < b[2] <= 64 and 0 <= b[1] < b[3] <= 48 for b, _ in dets)
    boxes = be.segmenter.segment_boxes(_frames(1)[0], [(5, 5, 30, 30)])
    assert len(boxes) == 1 and boxes[0].shape == (48, 64)


def test_sam2_owlv2_never_read_ground_truth(tiny_models):
    cfg = _model_config(tiny_models)
    runs = []
    for gt_mode in ("real", "none", "garbage"):
        frames = _frames(4)
        for f in frames:
            if gt_mode == "none":
                f.gt = None
            elif gt_mode == "garbage":
                g = copy.deepcopy(f.gt)
                g.instance_map = np.random.default_rng(0).integers(0, 5, g.instance_map.shape).astype(np.int32)
                for o in g.objects.values():
                    o.category = "giraffe"
                f.gt = g
        tr = Tracker(cfg)
        runs.append(_fingerprint([tr.update(f) for f in frames]))
    assert runs[0] == runs[1] == runs[2]


def test_depth_anything_only_without_depth_image_and_honest_units(tiny_models):
    cfg = _model_config(tiny_models, depth="depth_anything_v2", depth_model=tiny_models["da_rel"])
    tr = Tracker(cfg)
    tr.update(_frames(1)[0])  # has a depth image: the model must not run
    assert tr.stats["depth_calls"] == 0 and tr.latest().depth_source == "sensor"
    twin = tr.update(_frames(2, with_depth=False)[1])
    assert tr.stats["depth_calls"] == 1 and twin.depth_source == "depth_anything_v2_relative"
    for o in twin.objects:
        if o.visible:
            assert o.depth.source == "depth_anything_v2_relative"
            assert np.all(np.isnan(o.centroid_m))  # relative depth is never deprojected as metres
    d, kind = build_twin_backends(
        _model_config(tiny_models, depth="depth_anything_v2", depth_model=tiny_models["da_metric"])
    ).depth.estimate(_frames(1, with_depth=False)[0])
    assert kind == "metric" and d.shape == (48, 64) and d.dtype == np.float32


def test_depth_anything_in_the_background_lands_on_a_later_frame(tiny_models):
    # the real (tiny) model on the depth worker: update never runs it, a later frame carries its estimate
    cfg = _model_config(tiny_models, depth="depth_anything_v2", depth_model=tiny_models["da_rel"],
                        propagator="flow", depth_runs="background")
    tr = Tracker(cfg)
    try:
        frames = _frames(4, with_depth=False)[1:]  # stamps from DT (0 means no depth yet)
        first = tr.update(frames[0])
        assert first.depth_source == "none" and tr.stats["depth_calls"] == 0
        assert tr.wait_depth(30.0)
        twin = tr.update(frames[1])
        assert twin.depth_source == "depth_anything_v2_relative" and tr.stats["depth_calls"] == 1
        st = tr.keyframe_status()
        assert st["depth_ns"] == frames[0].stamp_ns > 0 and st["depth_lag_frames"] == 1 and st["depth_latency_s"] > 0
        for o in twin.objects:
            if o.visible:
                assert o.depth.source == "depth_anything_v2_relative" and np.all(np.isnan(o.centroid_m))
    finally:
        tr.close()


def test_sam2_video_refresh_runs_on_the_keyframe_worker(tiny_models):
    # keyframe_video: between automatic-mask keyframes the worker propagates the tracks with SAM-2's
    # video memory (seeded with the merged tracks), while flow tracks every frame
    cfg = _model_config(tiny_models, propagator="flow", keyframes="background", keyframe_interval=2,
                        keyframe_video=2, coverage_drop=1e-6)
    tr = Tracker(cfg)
    try:
        for f in _frames(9):
            twin = tr.update(f)
            assert tr.wait_keyframe(30.0)
        assert tr.keyframe_error is None and tr.stats["keyframes_submitted"] >= 4
        assert tr.stats["segment_calls"] >= 1 and tr.stats["video_refreshes"] >= 1
        assert len(set(twin.ids())) == len(twin.ids())
    finally:
        tr.close()


def test_sensor_only_config_reports_missing_depth():
    tr = Tracker(TwinConfig())
    twin = tr.update(_frames(1, with_depth=False)[0])
    o = twin.objects[0]
    assert twin.depth_source == "none" and math.isnan(o.depth.median) and o.depth.missing_reason == "no depth image"


def test_missing_model_dir_gives_actionable_error(tmp_path):
    missing = str(tmp_path / "no_such_model")
    with pytest.raises(ModelLoadError, match=r"could not load SAM-2 from '.*no_such_model'.*huggingface-cli download .*twin.sam2_model"):
        build_twin_backends(TwinConfig(segmenter="sam2", labeler="none", sam2_model=missing))
    with pytest.raises(ModelLoadError, match="OWLv2.*twin.owlv2_model"):
        build_twin_backends(TwinConfig(labeler="owlv2", owlv2_model=missing))
    with pytest.raises(ModelLoadError, match="DepthAnything V2.*twin.depth_model"):
        build_twin_backends(TwinConfig(depth="depth_anything_v2", depth_model=missing))


def test_sam2_keyframes_in_the_background_with_flow_between(tiny_models):
    """The two-tier path on tiny SAM-2 + OWLv2: keyframes land 2 frames late and are merged; the
    twin is the same whether frame.gt is real, None or garbage; ids are unique and never reused."""
    from frs_ros.twin.keyframes import DelayedKeyframes

    cfg = _model_config(tiny_models, propagator="flow", keyframe_interval=2)
    runs = []
    for gt_mode in ("real", "none", "garbage"):
        frames = _frames(6)
        for f in frames:
            if gt_mode == "none":
                f.gt = None
            elif gt_mode == "garbage":
                f.gt.instance_map = np.random.default_rng(0).integers(0, 5, f.gt.instance_map.shape).astype(np.int32)
        tr = Tracker(cfg, keyframe_runner=lambda work: DelayedKeyframes(work, 2))
        twins = [tr.update(f) for f in frames]
        assert tr.backends.propagator.name == "flow" and tr.stats["keyframes"] >= 2
        assert not twins[0].objects and twins[-1].keyframe_ns < twins[-1].stamp_ns  # masks from an earlier frame
        for t in twins:
            assert len(set(t.ids())) == len(t.ids())
            for o in t.objects:
                assert o.keyframe_ns <= t.stamp_ns and (o.visible or o.depth.source == "sensor")
        runs.append(_fingerprint(twins))
    assert runs[0] == runs[1] == runs[2]


def test_model_gate_says_once_why_it_waits_and_never_when_free():
    import threading
    import time

    from frs_ros.twin.backends.base import ModelGate

    gate, msgs = ModelGate(), []
    with gate.hold("labeler", msgs.append):
        with gate.hold("segmenter", msgs.append):  # another model: its own lock
            pass
    assert msgs == []
    inside, release, done = threading.Event(), threading.Event(), threading.Event()

    def keyframe():
        with gate.hold("labeler"):
            inside.set()
            release.wait(10)

    th = threading.Thread(target=keyframe)
    th.start()
    assert inside.wait(10)
    waiter = threading.Thread(target=lambda: (gate.hold("labeler", msgs.append).__enter__(), done.set()))
    waiter.start()
    time.sleep(0.2)
    assert msgs == ["waiting for the labeler (in use by a background keyframe)"] and not done.is_set()
    release.set()
    assert done.wait(10) and len(msgs) == 1
    th.join(10)
    waiter.join(10)
