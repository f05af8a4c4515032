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
    assert lines[0].startswith("twin t=0.70s img=64x48 depth=sensor objects=3")
    assert lines[1].startswith("#1 mug x=") and "moved=" in lines[1] and "lost=0.2s" in lines[1]
    assert lines[2].startswith("#2 bottle") and "z=1.20" in lines[2] and "moved" not in lines[2]
    assert lines[3].startswith("#3 bowl") and "new@0.2s" in lines[3]
    assert text == twin_to_text(twin)  # deterministic
    short = twin_to_text(twin, max_objects=2)
    assert "showing 2, 1 small/lost omitted" in short and "#1 mug" not in short  # the lost one goes first


def test_text_is_smaller_than_naive_json():
    twins = _twins()
    rep = token_report(twins)
    for k in ("proxy", "bpe"):
        assert rep[k]["compact_mean"] < rep[k]["naive_mean"] / 3
    t = twins[-1]
    assert count_tokens_proxy(twin_to_text(t)) < count_tokens_proxy(naive_json(t))
    assert count_tokens_proxy("z=1.25") == 6  # z = 1 . 2 5
    assert bpe_counter(["hello world"] * 5, vocab_size=300)("hello world") >= 1
