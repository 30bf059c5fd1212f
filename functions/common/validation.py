"""The one way a pydantic `ValidationError` becomes a message: one `<field>: <problem>` per bad
field, every bad field at once, under the name the reader knows the field by (a dotted config
path, a signal field, an environment variable). Used by the environment config, the start signal,
the trigger's events, the worker's settings, its platform profiles and the vendor configs."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pydantic import ValidationError

Location = Sequence[int | str]


def dotted(loc: Location) -> str:
    """`("cache", "port")` -> `cache.port`."""
    return ".".join(str(part) for part in loc)


def field_problems(
    exc: ValidationError, name: Callable[[Location], str] = dotted, *, top_level: str = "(top level)"
) -> list[str]:
    """One line per error. `name` turns an error's location into the field's name; an error with
    no location (a model-level validator) is reported under the field its message starts with
    (`"device_id: required ..."`), else under `top_level`."""
    problems: list[str] = []
    for err in exc.errors():
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        loc: Location = tuple(err["loc"])
        if not loc:
            field, sep, rest = msg.partition(": ")
            if sep and field.isidentifier():
                loc, msg = (field,), rest
        problems.append(f"{name(loc) if loc else top_level}: {msg}")
    return problems


def describe_validation_error(
    exc: ValidationError, name: Callable[[Location], str] = dotted, *, top_level: str = "(top level)"
) -> str:
    """`field_problems` on one line, `; `-separated (a log line, an HTTP 400 body, a CLI error).
    Field names can come from outside input (a signal's keys): a newline in one is escaped."""
    line = "; ".join(field_problems(exc, name, top_level=top_level))
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in line)
