"""One declaration per setting: a dataclass field whose metadata holds its help, valid range and help panel.

The library's validation (``check_fields``) and the command line's options (``digitcmp.cli.options``) are both
generated from these declarations, so the two cannot disagree; adding a setting is adding one field. Choices are
``Choice`` enums. No torch here.
"""

from __future__ import annotations

import math
import types
import typing
from dataclasses import MISSING, dataclass, field, fields
from enum import StrEnum
from functools import cache
from typing import Any

from .errors import DigitcmpError

ADVANCED = "Advanced"
RECIPE = "architecture's recipe"
KNOB = "knob"


class Choice(StrEnum):
    """A named choice that reads, prints and serialises as its plain value."""

    @classmethod
    def legacy(cls) -> dict[object, Choice]:
        """Values earlier versions wrote for this setting, and the choice each now means (results, checkpoints and
        models of those versions still load)."""
        return {}


@dataclass(frozen=True)
class Knob:
    """How one setting is offered and checked. Bounds are inclusive unless marked open; a ``grid`` setting is a
    grid axis in bench and tune (a comma list there, one cell per value)."""

    help: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    unit: str = ""
    panel: str | None = ADVANCED
    grid: bool = False
    grid_help: str = ""  # the help of the grid form, where "a comma list" is not enough
    switch: str = ""  # a boolean's two flags, when they are not --name/--no-name
    shown: str | bool = RECIPE  # the default as help shows it (True: the field's default)
    flags: tuple[str, ...] = ()  # the option's flags, when they are not --name
    envvar: str | None = None  # an environment variable that gives the value when the flag is not

    def label(self, name: str) -> str:
        """How messages name the setting: its flag."""
        return self.flags[0] if self.flags else flag(name)

    def valid(self, integer: bool) -> str:
        """The valid range in words, as an error message ends: 'use 0 to 4 pixels'."""
        unit = f" {self.unit}" if self.unit else ""
        if self.high is None:
            sign = ">" if self.low_open else "≥"
            return f"≥ {self.low:g}" if integer else f"a finite number {sign} {self.low:g}"
        if self.high_open or self.low_open:
            return f"{self.low:g} {'<' if self.low_open else '≤'} value {'<' if self.high_open else '≤'} {self.high:g}"
        return f"{self.low:g} to {self.high:g}{unit}"

    def contains(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below


def setting(help: str, default: Any = MISSING, **knob: Any) -> Any:
    """A dataclass field declared as a setting (without a default: a field every instance sets)."""
    return field(default=default, metadata={KNOB: Knob(help, **knob)})


def flag(name: str) -> str:
    """A setting's command-line flag: ``batch_size`` → ``--batch-size``."""
    return "--" + name.replace("_", "-")


@cache
def declared(cls: type) -> dict[str, tuple[Knob, Any, Any]]:
    """A dataclass's settings in declaration order: name → (knob, type, default). Read once per class: every
    instance's validation reads it."""
    hints = typing.get_type_hints(cls)
    return {f.name: (f.metadata[KNOB], hints[f.name], f.default) for f in fields(cls) if KNOB in f.metadata}


def plain(obj: object) -> dict[str, Any]:
    """A dataclass as JSON and checkpoints hold it: choices as their values, tuples as lists."""
    return {f.name: plain_value(getattr(obj, f.name)) for f in fields(obj)}


def plain_value(value: Any) -> Any:
    if isinstance(value, Choice):
        return value.value
    if isinstance(value, (tuple, list)):
        return [plain_value(v) for v in value]
    return value


def base_type(kind: Any) -> Any:
    """A field's type without ``| None``."""
    options = [k for k in typing.get_args(kind) if k is not type(None)]
    return options[0] if isinstance(kind, types.UnionType) and len(options) == 1 else kind


def choice_type(kind: Any) -> type[Choice] | None:
    """The ``Choice`` enum a field's type names, if any (``Activation`` or ``Activation | None``)."""
    for candidate in (kind, *typing.get_args(kind)):
        if isinstance(candidate, type) and issubclass(candidate, Choice):
            return candidate
    return None


def check_fields(obj: object) -> None:
    """Turn each choice given as text into its enum and fail on any value outside its declared range, naming the
    flag and what it takes. Called by the dataclasses' ``__post_init__``: an instance is always valid."""
    for name, (knob, kind, _) in declared(type(obj)).items():
        value = getattr(obj, name)
        choices = choice_type(kind)
        if choices is not None and value is not None and not isinstance(value, choices):
            legacy = choices.legacy()
            if value not in {member.value for member in choices} and value not in legacy:
                allowed = ", ".join(member.value for member in choices)
                raise DigitcmpError(
                    f"unknown {knob.label(name)[2:].replace('-', ' ')} '{value}'; choose from: {allowed}"
                )
            object.__setattr__(obj, name, legacy[value] if value in legacy else choices(value))
        elif (knob.low is not None or knob.high is not None) and isinstance(value, (int, float)):
            if not isinstance(value, bool) and not knob.contains(value):
                raise DigitcmpError(
                    f"{knob.label(name)} {value} is out of range; use {knob.valid(base_type(kind) is int)}"
                )


def parse_list(text: str, kind: type, name: str) -> tuple:
    """A grid axis written as a comma list, such as '1e-3,3e-3'."""
    try:
        values = tuple(kind(part.strip()) for part in text.split(",") if part.strip())
    except ValueError:
        raise DigitcmpError(f"{flag(name)} takes a comma list of {kind.__name__} values, got '{text}'") from None
    if not values:
        raise DigitcmpError(f"{flag(name)} needs at least one value")
    return values


def parse_layers(text: str, name: str) -> tuple[int, ...]:
    """Layer sizes such as '128,64,32' (an empty text: no layers)."""
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise DigitcmpError(
            f"{flag(name)} takes layer sizes separated by commas, such as 128,64,32; got '{text}'"
        ) from None


def parse_switches(text: str, name: str) -> tuple[bool, ...]:
    """A grid axis of on/off values, such as 'on,off'."""
    words = parse_list(text, str, name)
    if not set(words) <= {"on", "off"}:
        raise DigitcmpError(f"{flag(name)} takes on, off or on,off; got '{text}'")
    return tuple(word == "on" for word in words)


def is_layers(kind: Any) -> bool:
    """Whether a field holds layer sizes (a tuple of ints)."""
    return typing.get_origin(kind) is tuple


def parse_axis(name: str, text: str, kind: Any) -> tuple:
    """A grid axis from its text, by the setting's type: layer lists separated by /, on/off switches, choices
    (checked where the variant is built), or numbers."""
    kind = base_type(kind)
    if is_layers(kind):
        return tuple(parse_layers(part, name) for part in text.split("/"))
    if kind is bool:
        return parse_switches(text, name)
    choices = choice_type(kind)
    if choices is not None:
        return parse_list(text, str, name)
    return parse_list(text, kind, name)
