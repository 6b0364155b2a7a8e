"""Every declared setting takes the values its declaration allows, up to and including closed bounds, and refuses the
first value beyond them, naming its flag: the library agrees with the command line's ranges, which come from the
same declaration."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

from digitcmp.config import TrainConfig
from digitcmp.errors import DigitcmpError
from digitcmp.executor import ExecutorConfig
from digitcmp.gate import Gate
from digitcmp.grid import TuneConfig
from digitcmp.settings import Knob, base_type, declared
from digitcmp.variant import Variant, create_variant

BUILD: dict[type, Callable[[str, float], object]] = {
    TrainConfig: lambda name, value: TrainConfig(**{name: value}),
    Variant: lambda name, value: create_variant("vgg4" if name == "tta_warps" else "lenet", **{name: value}),
    ExecutorConfig: lambda name, value: ExecutorConfig(**{name: value}),
    Gate: lambda name, value: Gate(**{name: value}),
    TuneConfig: lambda name, value: TuneConfig(archs=("lenet",), **{name: value}),
}
BOUNDED = [
    (cls, name, knob, base_type(kind))
    for cls in BUILD
    for name, (knob, kind, _) in declared(cls).items()
    if knob.low is not None or knob.high is not None
]


def step(kind: type) -> float:
    return 1 if kind is int else 1e-6


@pytest.mark.parametrize(("cls", "name", "knob", "kind"), BOUNDED, ids=[f"{c.__name__}.{n}" for c, n, _, _ in BOUNDED])
def test_a_setting_takes_its_closed_bounds_and_refuses_what_lies_beyond(cls, name, knob: Knob, kind):
    build = BUILD[cls]
    for bound, open_, beyond in ((knob.low, knob.low_open, -1), (knob.high, knob.high_open, +1)):
        if bound is None:
            continue
        value = kind(bound)
        if open_:
            with pytest.raises(DigitcmpError, match="out of range"):
                build(name, value)
            build(name, value - beyond * step(kind))  # just inside
        else:
            assert math.isclose(getattr(build(name, value), name), value)  # the bound itself is allowed
        with pytest.raises(DigitcmpError, match=f"{knob.label(name)} .* is out of range; use "):
            build(name, value + beyond * step(kind))
