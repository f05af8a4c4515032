"""frs_ros.knobs: one description per knob, and the checks that derive from it."""

import dataclasses

import pytest

from frs_ros.knobs import CONFIGURE, RUNTIME, Knob, check_knobs, field_default, knob, knob_of


@dataclasses.dataclass(frozen=True)
class Demo:
    rate_hz: float = knob(10.0, doc="publishing rate", unit="Hz", range=(0.1, 120.0), applies=RUNTIME)
    share: float = knob(0.5, doc="a fraction", range=(0.0, 1.0), min_exclusive=True)
    tokens: int = knob(48, doc="cap of one plan", unit="tokens", range=(4, None))
    mode: str = knob("a", doc="which mode", choices=("a", "b"), applies=CONFIGURE)
    names: tuple[str, ...] = knob((), doc="some names")

    def __post_init__(self):
        check_knobs(self, "demo", ValueError)


def test_the_field_carries_its_one_description():
    f = {f.name: f for f in dataclasses.fields(Demo)}
    k = knob_of(f["rate_hz"])
    assert (k.doc, k.unit, k.range, k.applies) == ("publishing rate", "Hz", (0.1, 120.0), RUNTIME)
    assert k.description == "publishing rate [Hz]"
    assert field_default(f["names"]) == () and Demo().rate_hz == 10.0


@pytest.mark.parametrize("kw, match", [
    ({"rate_hz": 0.0}, r"demo.rate_hz = 0.0 is outside \[0.1, 120.0\]"),
    ({"share": 0.0}, r"demo.share = 0.0 is outside \(0.0, 1.0\]"),
    ({"tokens": 3}, r"demo.tokens must be >= 4, got 3"),
    ({"mode": "c"}, r"demo.mode = 'c' is not one of \['a', 'b'\]"),
    ({"rate_hz": float("nan")}, r"demo.rate_hz must be a finite number"),
])
def test_the_dataclass_refuses_what_the_knob_forbids(kw, match):
    with pytest.raises(ValueError, match=match):
        Demo(**kw)


def test_allowed_edges_pass():
    Demo(rate_hz=120.0, share=1.0, tokens=10**6, mode="b", names=("x",))


def test_a_field_without_a_knob_is_named():
    @dataclasses.dataclass
    class Bare:
        x: int = 1

    with pytest.raises(TypeError, match="field 'x' is not declared with frs_ros.knobs.knob"):
        knob_of(dataclasses.fields(Bare)[0])


def test_a_knob_needs_a_doc_and_a_known_applies():
    with pytest.raises(ValueError, match="needs a doc"):
        Knob(" ")
    with pytest.raises(ValueError, match="applies"):
        Knob("x", applies="sometimes")
