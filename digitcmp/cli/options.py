"""Command-line options generated from the settings' declarations (digitcmp.settings): each option's flag, help,
default, range and panel come from one dataclass field, and a command receives the values as one object."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Annotated, Any

import typer

from .. import settings as s


def with_options(
    name: str, *groups: type, grid: bool = False, build: Callable[..., Any] | None = None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command an option for every setting the dataclasses ``groups`` declare (but those whose flag an inner
    group already gave it: bench's list of auxiliary weights before the variant's one weight)
    and hand it their values as the argument ``name``: ``build(**values)``, or without ``build`` a dict in which
    None means not given (the architecture's own or its recipe). With ``grid``, grid settings take comma lists
    (tuples of values: bench and tune)."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(command, eval_str=True)
        taken: set[str] = getattr(command, "option_flags", set())  # the flags an inner decorator already added
        settings = {key: spec for group in groups for key, spec in s.declared(group).items()}
        flags = {key: knob.flags or (s.flag(key),) for key, (knob, _, _) in settings.items()}
        options = {
            key: option(key, knob, kind, grid, None if build is None else default)
            for key, (knob, kind, default) in settings.items()
            if not taken & set(flags[key])
        }

        @functools.wraps(command)
        def run(**kwargs: Any) -> Any:
            given = {key: kwargs.pop(key) for key in options}
            values = {key: None if value is None else options[key][2](value) for key, value in given.items()}
            return command(**kwargs, **{name: values if build is None else build(**values)})

        own = [p for p in signature.parameters.values() if p.name != name]
        added = [inspect.Parameter(key, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
                 for key, (annotation, default, _) in options.items()]  # fmt: skip
        run.__signature__ = signature.replace(parameters=[*own, *added])  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in [*own, *added]}
        run.option_flags = taken | {flag for key in options for flag in flags[key]}  # type: ignore[attr-defined]
        return run

    return decorate


def option(name: str, knob: s.Knob, kind: Any, grid: bool, default: Any) -> tuple[Any, Any, Callable[[Any], Any]]:
    """One setting's option: its annotated type, its default, and the parser from what Typer hands over to the
    setting's value."""
    flags = knob.flags or (s.flag(name),)
    shown = knob.shown if isinstance(knob.shown, str) else knob.shown and default is not None
    common = {"help": knob.help, "show_default": shown, "rich_help_panel": knob.panel, "envvar": knob.envvar}
    kind, choices = s.base_type(kind), s.choice_type(kind)
    if grid and knob.grid:
        listed = f" ({','.join(choices)})" if choices else ""
        common["help"] = knob.grid_help or f"{knob.help.rstrip('.')}: a comma list{listed}, one cell per value."
        if kind is bool:
            common["help"] = f"{knob.help.rstrip('.')}: on, off or on,off."
        return (
            Annotated[str | None, typer.Option(*flags, **common)],
            default,
            lambda text: s.parse_axis(name, text, kind),
        )
    if s.is_layers(kind):
        return Annotated[str | None, typer.Option(*flags, **common)], default, lambda text: s.parse_layers(text, name)
    if kind is bool:
        switch = knob.switch or (flags[0] if default is False else f"{flags[0]}/--no-{flags[0][2:]}")
        return Annotated[bool | None, typer.Option(switch, *flags[1:], **common)], default, lambda value: value
    if choices is None and kind in (int, float):
        common |= {"min": None if knob.low_open else knob.low, "max": None if knob.high_open else knob.high}
    return Annotated[(choices or kind) | None, typer.Option(*flags, **common)], default, lambda value: value
