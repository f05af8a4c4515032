"""Each knob described once: a config dataclass field that carries its doc, unit, range and choices.

A knob is declared where it lives, as the field of its frozen config dataclass::

    keyframe_interval: int = knob(10, doc="segment + label every N frames; masks are propagated in between",
                                  unit="frames", range=(1, 10000))

and everything else derives from that one :class:`Knob`: the dataclass's own check
(:func:`check_knobs`, called from ``__post_init__``: range and choices; cross-field rules stay
in ``__post_init__``), the ROS parameter table of :mod:`frs_ros.wire.params` (descriptors with
description, ranges, choices and read-only; the value checks at start-up, at every
``set_parameters`` and at each configure), ``config/frs.yaml`` (generated from that table) and the
launch arguments that set a parameter (:mod:`frs_ros.wire.launch_args`). ``applies`` says when a
changed value takes effect in a running node (``start``: read-only; ``runtime``: at once;
``configure``: at the next lifecycle configure); the core configs' knobs take the ``configure``
of the node that builds them.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Optional

#: When a changed value takes effect (``Knob.applies``).
START, RUNTIME, CONFIGURE = "start", "runtime", "configure"
APPLIES_NOTE = {
    START: "read-only: set at start",
    RUNTIME: "settable at run time, takes effect at once",
    CONFIGURE: "settable at run time, applied at the next configure",
}
_META = "frs_knob"


@dataclass(frozen=True)
class Knob:
    """The one description of a knob.

    doc: what it does, in a phrase a user can act on (no unit: that is ``unit``).
    unit: e.g. 's', 'px', 'tokens' ('' = none: counts, flags, names).
    range: (min, max), inclusive; either end None = unbounded. min_exclusive: the minimum itself is
        not allowed (``(0, 1]``).
    choices: the allowed strings ('' = any).
    applies: START | RUNTIME | CONFIGURE (see the module docstring).
    """

    doc: str
    unit: str = ""
    range: Optional[tuple[Optional[float], Optional[float]]] = None
    min_exclusive: bool = False
    choices: tuple[str, ...] = ()
    applies: str = START

    def __post_init__(self) -> None:
        if self.applies not in APPLIES_NOTE:
            raise ValueError(f"Knob.applies must be one of {list(APPLIES_NOTE)}, got {self.applies!r}")
        if not self.doc.strip():
            raise ValueError("a knob needs a doc: say what it does")

    @property
    def description(self) -> str:
        """The doc with its unit, e.g. 'remove a track not seen for this long [s]'."""
        return self.doc + (f" [{self.unit}]" if self.unit else "")

    def range_text(self) -> str:
        """The range in words: '[0, 1]', '(0, 1]', '>= 4', '' for none."""
        if self.range is None:
            return ""
        lo, hi = self.range
        if hi is None:
            return f"{'>' if self.min_exclusive else '>='} {lo}"
        if lo is None:
            return f"<= {hi}"
        return f"{'(' if self.min_exclusive else '['}{lo}, {hi}]"

    def violation(self, value: Any) -> Optional[str]:
        """Why ``value`` is outside the range or choices (None when it is allowed). Numbers must be finite."""
        if self.choices and value not in self.choices:
            return f"= {value!r} is not one of {list(self.choices)}"
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if isinstance(value, float) and not math.isfinite(value):
                return f"must be a finite number, got {value}"
            if self.range is not None:
                lo, hi = self.range
                below = lo is not None and (value <= lo if self.min_exclusive else value < lo)
                if below or (hi is not None and value > hi):
                    if lo is None or hi is None:
                        return f"must be {self.range_text()}, got {value}"
                    return f"= {value} is outside {self.range_text()}"
        return None


def knob(default: Any = dataclasses.MISSING, *, doc: str, unit: str = "",
         range: Optional[tuple[Optional[float], Optional[float]]] = None, min_exclusive: bool = False,
         choices: tuple[str, ...] = (), applies: str = START, default_factory: Any = dataclasses.MISSING) -> Any:
    """A dataclass field with its :class:`Knob` (see the module docstring)."""
    meta = {_META: Knob(doc, unit, range, min_exclusive, tuple(choices), applies)}
    return dataclasses.field(default=default, default_factory=default_factory, metadata=meta)


def knob_of(f: dataclasses.Field) -> Knob:
    """The knob of a config field; a field declared without ``knob(...)`` is an error naming it."""
    k = f.metadata.get(_META)
    if k is None:
        raise TypeError(f"field '{f.name}' is not declared with frs_ros.knobs.knob(...): give it a doc (and unit, range, "
                        "choices) there, once")
    return k


def field_default(f: dataclasses.Field) -> Any:
    """The default value of a dataclass field (its factory called)."""
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    raise TypeError(f"field '{f.name}' has no default")


def check_knobs(config: Any, prefix: str, error: type[Exception]) -> None:
    """Raise ``error`` for the first field of ``config`` outside its knob's range or choices.

    The message names the knob as ``prefix.name`` and says what is allowed.
    """
    for f in dataclasses.fields(config):
        k = knob_of(f)
        why = k.violation(getattr(config, f.name))
        if why is not None:
            raise error(f"{prefix}.{f.name} {why}")
