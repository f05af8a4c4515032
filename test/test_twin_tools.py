import numpy as np
import pytest

from frs_ros.reasoning.types import ToolCall
from frs_ros.twin.config import TwinConfig
from frs_ros.twin.synthetic import Shape2D, make_frame
from frs_ros.twin.tools import ToolError, dominant_color, run_tool, shape_words
from frs_ros.twin.tracker import Tracker

DT = 100_000_000


def _tracker(n=5, labeler="sim"):
    tr = Tracker(TwinConfig(keyframe_interval=2, labeler=labeler))
    for i in range(n):
        s = [Shape2D(1, "mug", "disc", 12 + 2 * i, 20, 12, 12, 1.0, (200, 30, 30)),
             Shape2D(2, "bottle", "rect", 45, 25, 8, 16, 1.2, (30, 160, 60))]
        if i >= 3:
            s.append(Shape2D(3, "bowl", "rect", 20, 40, 14, 6, 0.8, (40, 80, 200)))
        tr.update(make_frame(s, stamp_ns=i * DT, seq=i))
    return tr


def _ids(tr):
    return {o.label: o.track_id for o in tr.latest().objects}


def test_describe_colour_size_shape_and_stores_attributes():
    tr = _tracker()
    ids = _ids(tr)
    out = run_tool(ToolCall("describe", (ids["mug"],)), tr)
    assert "red" in out and "round" in out
    a = tr.latest().get(ids["mug"]).attributes
    fx = tr.latest().intrinsics.fx
    assert a["color"] == "red" and a["shape"] == "round" and a["width_m"] == pytest.approx(13 / fx, abs=0.002)  # r=6 disc is 13 px wide
    out = run_tool(ToolCall("describe", (f"#{ids['bottle']}",)), tr)
    assert "green" in out and "tall rectangular" in out
    assert run_tool(ToolCall("describe", (ids["bowl"],)), tr).count("blue") == 1
    # attributes persist across the next frame
    tr.update(make_frame([Shape2D(1, "mug", "disc", 22, 20, 12, 12, 1.0, (200, 30, 30))], stamp_ns=5 * DT, seq=5))
    assert tr.latest().get(ids["mug"]).attributes["color"] == "red"


def test_palette_shading_robust():
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[:] = (110, 18, 18)  # shaded red
    assert dominant_color(rgb, np.ones((2, 2), bool))[0] == "red"
    # shaded white stays white (warm, b* > 0); shaded silver stays silver (cool, b* < 0)
    for c, name in [((205, 205, 199), "white"), ((238, 238, 234), "white"), ((176, 178, 188), "silver"),
                    ((120, 120, 124), "grey")]:
        rgb[:] = c
        assert dominant_color(rgb, np.ones((2, 2), bool))[0] == name, c
    disc = np.zeros((21, 21), bool)
    vv, uu = np.mgrid[:21, :21]
    disc[(uu - 10) ** 2 + (vv - 10) ** 2 <= 100] = True
    assert shape_words(disc, (0, 0, 21, 21)) == "round"


def test_relation_from_centroids():
    tr = _tracker()
    ids = _ids(tr)
    out = run_tool(ToolCall("relation", (ids["mug"], ids["bottle"])), tr)
    assert "left of" in out and "in front (closer) by 0.20 m" in out and "distance" in out
    out = run_tool(ToolCall("relation", (ids["bottle"], ids["bowl"])), tr)
    assert "right of" in out and "behind (farther)" in out and "above" in out


def test_history_reports_motion_and_appearance():
    tr = _tracker()
    ids = _ids(tr)
    out = run_tool(ToolCall("history", (ids["mug"],)), tr)
    assert "first seen 0.0s" in out and "started moving at" in out and "never hidden" in out
    out = run_tool(ToolCall("history", (ids["bottle"],)), tr)
    assert "never moved" in out and "displacement 0.00 m" in out
    assert "first seen 0.4s" in run_tool(ToolCall("history", (ids["bowl"],)), tr)


def test_detect_matches_and_relabels_with_sim_labeler():
    tr = _tracker(labeler="sim")
    ids = _ids(tr)
    out = run_tool(ToolCall("detect", ("coffee mug",)), tr)  # a synonym of mug
    assert out == f'detect("coffee mug"): #{ids["mug"]} 1.00'
    assert tr.latest().get(ids["mug"]).attributes["matches"] == "coffee mug"
    assert run_tool(ToolCall("detect", ("giraffe",)), tr) == 'detect("giraffe"): nothing found'


def test_detect_adds_objects_the_twin_missed():
    tr = Tracker(TwinConfig(labeler="sim", keyframe_interval=100, min_mask_area_px=30))
    f = make_frame([Shape2D(1, "mug", "disc", 12, 20, 12, 12, 1.0, (200, 30, 30))], seq=0)
    tr.update(f)
    # a small box appears between keyframes: the twin has not discovered it yet
    f2 = make_frame([Shape2D(1, "mug", "disc", 12, 20, 12, 12, 1.0, (200, 30, 30)),
                     Shape2D(7, "box", "rect", 45, 30, 10, 10, 1.5, (130, 80, 40))], stamp_ns=DT, seq=1)
    tr.update(f2)
    assert len(tr.latest().objects) == 1
    out = run_tool(ToolCall("detect", ("box",)), tr)
    assert "(new)" in out
    new = [o for o in tr.latest().objects if o.label == "box"]
    assert len(new) == 1 and new[0].depth.median == pytest.approx(1.5)
    # the new track is then propagated on the next frame
    tr.update(make_frame([Shape2D(7, "box", "rect", 46, 30, 10, 10, 1.5, (130, 80, 40))], stamp_ns=2 * DT, seq=2))
    assert tr.latest().get(new[0].track_id).visible


def test_bad_calls_raise_tool_error():
    tr = _tracker()
    with pytest.raises(ToolError, match="no object #99; known ids are"):
        run_tool(ToolCall("describe", (99,)), tr)
    with pytest.raises(ToolError, match="unknown tool 'paint'"):
        run_tool(ToolCall("paint", (1,)), tr)
    with pytest.raises(ToolError, match="takes 2 argument"):
        run_tool(ToolCall("relation", (1,)), tr)
    with pytest.raises(ToolError, match="expects a track id number"):
        run_tool(ToolCall("history", ("mug",)), tr)
    with pytest.raises(ToolError, match="needs an open-vocabulary labeler"):
        run_tool(ToolCall("detect", ("mug",)), tr.latest(), tr.latest_frame())
    with pytest.raises(ToolError, match="two different objects"):
        run_tool(ToolCall("relation", (1, 1)), tr)


def _scene_tracker(objects):
    """A twin of labelled objects (label, rgb) side by side, sim labeler."""
    tr = Tracker(TwinConfig(keyframe_interval=1, labeler="sim"))
    shapes = [Shape2D(i + 1, label, "rect", 8 + 14 * i, 30, 10, 10, 1.0, rgb) for i, (label, rgb) in enumerate(objects)]
    tr.update(make_frame(shapes, stamp_ns=0, seq=0))
    return tr


@pytest.mark.torch  # the real sentence embedder (sentence-transformers)
def test_match_names_the_objects_that_fit_a_use_with_the_real_embedder():
    tr = _scene_tracker([("speaker", (90, 90, 90)), ("banana", (240, 215, 45)), ("banana", (240, 215, 45)),
                         ("hammer", (115, 72, 32))])
    ids = {}
    for o in tr.latest().objects:
        ids.setdefault(o.label, []).append(o.track_id)
    out = run_tool(ToolCall("match", ("plays music",)), tr)
    assert out.startswith('match("plays music"): speaker ') and f"#{ids['speaker'][0]}" in out and "fits" in out
    out = run_tool(ToolCall("match", ("can be eaten",)), tr)
    assert all(f"#{i}" in out for i in ids["banana"]) and "speaker" not in out  # every object of the label
    out = run_tool(ToolCall("match", ("forecasts tomorrow's stock prices",)), tr)
    assert "nothing fits" in out and "#" not in out  # no id to copy when nothing fits
    with pytest.raises(ToolError, match="needs a use"):
        run_tool(ToolCall("match", ("  ",)), tr)


def test_match_ids_follow_the_threshold():
    from frs_ros.twin import tools as T

    class Fixed:  # cosine 0.5 for 'a mug', 0.1 for everything else (scene labels and the hub banks)
        def similarity(self, query, candidates):
            return np.array([0.5 if c == "a mug" else 0.1 for c in candidates], dtype=np.float32)

    tr = _scene_tracker([("mug", (200, 30, 30)), ("bowl", (40, 80, 200)), ("mug", (200, 30, 30))])
    twin = tr.latest()
    mugs = sorted(o.track_id for o in twin.objects if o.label == "mug")
    assert sorted(T.match_ids("holds coffee", twin, Fixed())) == mugs
    # score = cosine 0.5 - (label hub 0.1 + use hub (0.5 + 4 x 0.1) / 5) / 2 = 0.36
    assert T._match("holds coffee", twin, Fixed()).endswith("fits (0.36)")

    class Low(Fixed):  # the scene's labels are far from the use, the reference texts are not
        def similarity(self, query, candidates):
            return np.array([0.1 if c in ("a mug", "a bowl") else 0.5 for c in candidates], dtype=np.float32)

    assert T.match_ids("holds coffee", twin, Low()) == []
    assert "nothing fits" in T._match("holds coffee", twin, Low())


def test_match_discounts_a_label_that_is_close_to_every_use():
    """A 'hub' label (raw cosine 0.45 to this use, but 0.45 to every use) loses to a label that is
    specific to the use (0.40 to it, 0.1 to the other uses); the raw cosine would pick the hub."""
    from frs_ros.twin import tools as T

    class Hubby:
        def similarity(self, query, candidates):
            def one(c):
                if query == "something that holds coffee":
                    return {"a tray": 0.45, "a mug": 0.40}.get(c, 0.2)
                return 0.45 if query == "a tray" else 0.1  # label -> the bank of uses
            return np.array([one(c) for c in candidates], dtype=np.float32)

    tr = _scene_tracker([("tray", (120, 120, 120)), ("mug", (200, 30, 30))])
    twin = tr.latest()
    mug = [o.track_id for o in twin.objects if o.label == "mug"]
    assert T.match_ids("holds coffee", twin, Hubby()) == mug
