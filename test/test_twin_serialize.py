import pytest
import numpy as np
from frs_ros.twin.config import TwinConfig
from frs_ros.twin.serialize import bpe_counter, count_tokens_proxy, naive_json, token_report, twin_to_text
from frs_ros.twin.synthetic import Shape2D, make_frame
from frs_ros.twin.tracker import Tracker

DT = 100_000_000


def _twins(n=8):
    tr = Tracker(TwinConfig(keyframe_interval=2, retire_after_s=10))
    out = []
    for i in range(n):
        s = [Shape2D(1, "mug", "disc", 12 + 2 * i, 20, 10, 10, 1.0, (200, 30, 30)),
             Shape2D(2, "bottle", "rect", 45, 25, 8, 16, 1.2, (30, 160, 60))]
        if i >= 2:
            s.append(Shape2D(3, "bowl", "rect", 20, 40, 12, 6, 0.8, (40, 80, 200)))
        if i >= 6:
            s = s[1:]  # mug leaves
        out.append(tr.update(make_frame(s, stamp_ns=i * DT, seq=i)))
    return out


def test_text_format_is_compact_stable_and_informative():
    twin = _twins()[-1]
    text = twin_to_text(twin)
    lines = text.splitlines()
    assert lines[0] == "twin t=0.70s depth=sensor objects=3"
    # colours named at keyframes lead each line (the describe rule on the rendered pixels)
    assert lines[1].startswith("red mug #1 x=") and "moved=" in lines[1] and "lost=0.2s" in lines[1]
    assert lines[2].startswith("green bottle #2 x=") and "z=1.20" in lines[2] and "moved=" not in lines[2]
    assert lines[3].startswith("blue bowl #3 x=") and "new@0.2s" in lines[3]
    assert not any(" y=" in ln or "color=" in ln for ln in lines)
    # facts over the visible objects (#1 is lost): bowl z=0.8 nearer than bottle z=1.2; then motion
    assert lines[4] == ("facts: nearest object #3; farthest object #2; leftmost object #3; rightmost object #2; "
                        "smallest object #3; biggest object #2; moved mug #1; new bowl #3; lost mug #1"), lines[4]
    assert len(lines) == 5
    assert text == twin_to_text(twin)  # deterministic
    short = twin_to_text(twin, max_objects=2)
    assert "showing 2, 1 small/lost omitted" in short and " #1 x=" not in short  # the lost one goes first
    assert short.splitlines()[-1] == lines[4]  # facts count every object, listed or not

@pytest.mark.torch
def test_text_is_smaller_than_naive_json():
    twins = _twins()
    rep = token_report(twins)
    for k in ("proxy", "bpe"):
        assert rep[k]["compact_mean"] < rep[k]["naive_mean"] / 3
    t = twins[-1]
    assert count_tokens_proxy(twin_to_text(t)) < count_tokens_proxy(naive_json(t))
    assert count_tokens_proxy("z=1.25") == 6  # z = 1 . 2 5
    assert bpe_counter(["hello world"] * 5, vocab_size=300)("hello world") >= 1


def _obj(tid, label, x0, z, w=10, h=10, visible=True, first_ns=0):
    from frs_ros.twin.types import DepthStats, TwinObject

    from frs_ros.masks import rle_encode

    d = DepthStats(mean=z, std=0.0, min=z, max=z, median=z, valid_fraction=1.0, source="sensor", missing_reason=None)
    return TwinObject(track_id=tid, mask=rle_encode(np.zeros((80, 100), bool)), label=label, score=1.0,
                      box=(x0, 10, x0 + w, 10 + h), area_px=w * h, depth=d, visible=visible,
                      first_seen_ns=first_ns, last_seen_ns=0)


def test_facts_name_groups_extremes_and_ordinals_within_a_label_and_over_all():
    from frs_ros.camera import CameraIntrinsics
    from frs_ros.twin.serialize import twin_facts
    from frs_ros.twin.types import DigitalTwin

    k = CameraIntrinsics(fx=100.0, fy=100.0, cx=50.0, cy=40.0, width=100, height=80)
    objs = [_obj(1, "mug", 10, 1.0), _obj(2, "mug", 40, 0.6, w=20, h=20), _obj(3, "mug", 70, 1.4),
            _obj(4, "bowl", 85, 2.0), _obj(5, "mug", 0, 0.5, visible=False)]
    twin = DigitalTwin(stamp_ns=0, start_ns=0, frame_id="cam", intrinsics=k, objects=objs)
    f = twin_facts(twin)
    # sizes are metric (px * z / f): mug #1 0.10 m, #2 0.12 m, #3 0.14 m, bowl 0.20 m; the lost mug #5
    # is in no group or order (only 'lost'); a bowl alone gets no label facts
    assert f == ["mugs #1 #2 #3", "leftmost mug #1", "rightmost mug #3", "2nd mug from left #2", "2nd mug from right #2",
                 "nearest mug #2", "farthest mug #3", "smallest mug #1", "biggest mug #3",
                 "nearest object #2", "farthest object #4", "leftmost object #1", "rightmost object #4",
                 "smallest object #1", "biggest object #4", "lost mug #5"], f
    text = twin_to_text(twin)
    assert "\nmug #2 x=0.50 z=0.60 size=0.12x0.12\n" in text and text.splitlines()[-1] == "facts: " + "; ".join(f)
    # colour groups (two or more of a colour)
    objs[0].attributes["color"] = objs[2].attributes["color"] = "red"
    objs[3].attributes["color"] = "blue"
    assert "red ones #1 #3" in twin_facts(twin) and not any(x.startswith("blue ones") for x in twin_facts(twin))
    assert "\nred mug #1 x=0.15" in twin_to_text(twin)
    # a tie gives no fact: two equal cups have neither 'smallest' nor 'biggest', nor nearest/farthest
    tie = DigitalTwin(stamp_ns=0, start_ns=0, frame_id="cam", intrinsics=k,
                      objects=[_obj(1, "cup", 10, 1.0), _obj(2, "cup", 40, 1.0)])
    assert twin_facts(tie) == ["cups #1 #2", "leftmost cup #1", "rightmost cup #2", "leftmost object #1",
                               "rightmost object #2"]
