"""Declarative mapping from vendor JSON to `Station` and `Reading`, with JMESPath expressions.

Expressions are compiled once per config. Plain dotted field paths (`battery.soc_pct`), which is
what nearly every mapping is, are evaluated as chained dict lookups with JMESPath's semantics
(missing key or non-object -> null): at 10,000 stations × N readings × 15 values the full
interpreter would be the worker's hottest loop.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import jmespath
from jmespath.exceptions import JMESPathError

from functions.sync_worker.source.base import Reading, Station
from functions.sync_worker.source.config import ReadingsEndpoint, StationsEndpoint, TimestampSpec

Getter = Callable[[Any], Any]


class MappingError(ValueError):
    """One item of the vendor's JSON does not fit the mapping (bad time, wrong type, value missing)."""


def _field_chain(node: Any) -> list[str] | None:  # JMESPath's parse tree: nested dicts
    if node["type"] == "field":
        return [node["value"]]
    if node["type"] == "subexpression":
        keys: list[str] = []
        for child in node["children"]:
            sub = _field_chain(child)
            if sub is None:
                return None
            keys.extend(sub)
        return keys
    return None


def compile_path(expression: str) -> Getter:
    """A getter for one JMESPath expression; raises ValueError naming a bad expression."""
    try:
        parsed = jmespath.compile(expression)
    except JMESPathError as exc:
        raise ValueError(f"invalid JMESPath {expression!r}: {exc}") from exc
    keys = _field_chain(parsed.parsed)
    if keys is None:
        return parsed.search
    if len(keys) == 1:
        key = keys[0]
        return lambda obj: obj.get(key) if isinstance(obj, dict) else None

    def chain(obj: Any) -> Any:
        for k in keys:
            if not isinstance(obj, dict):
                return None
            obj = obj.get(k)
        return obj

    return chain


def _coerce_float(v: Any) -> float:
    if isinstance(v, bool):
        raise TypeError("a boolean is not a number")
    return float(v)


def _coerce_int(v: Any) -> int:
    if isinstance(v, bool):
        raise TypeError("a boolean is not a number")
    if isinstance(v, float) and not v.is_integer():
        raise ValueError(f"{v} is not an integer")
    return int(v)


def _coerce_bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.lower() in ("true", "false"):
        return v.lower() == "true"
    if isinstance(v, (int, float)) and v in (0, 1):
        return bool(v)
    raise ValueError(f"{v!r} is not a boolean")


_COERCE: dict[str, Callable[[Any], Any] | None] = {
    "any": None,
    "float": _coerce_float,
    "int": _coerce_int,
    "str": str,
    "bool": _coerce_bool,
}


def timestamp_parser(spec: TimestampSpec) -> Callable[[Any], datetime]:
    """Vendor time value -> aware UTC datetime."""
    default_tz = timezone(timedelta(seconds=spec.assume_utc_offset_s))

    def aware(dt: datetime) -> datetime:
        return (dt.replace(tzinfo=default_tz) if dt.tzinfo is None else dt).astimezone(UTC)

    if spec.format == "iso8601":

        def parse(v: Any) -> datetime:
            if not isinstance(v, str):
                raise TypeError(f"timestamp {v!r} is not a string")
            return aware(datetime.fromisoformat(v))
    elif spec.format in ("epoch_s", "epoch_ms"):
        div = 1000.0 if spec.format == "epoch_ms" else 1.0

        def parse(v: Any) -> datetime:
            if isinstance(v, bool) or not isinstance(v, (int, float, str)):
                raise TypeError(f"timestamp {v!r} is not a number")
            return datetime.fromtimestamp(float(v) / div, UTC)
    else:
        pattern = spec.format

        def parse(v: Any) -> datetime:
            if not isinstance(v, str):
                raise TypeError(f"timestamp {v!r} is not a string")
            return aware(datetime.strptime(v, pattern))

    return parse


class ReadingMapper:
    def __init__(self, cfg: ReadingsEndpoint) -> None:
        self.items = compile_path(cfg.items)
        self._ts_get = compile_path(cfg.timestamp.path)
        self._ts_parse = timestamp_parser(cfg.timestamp)
        self._values: list[tuple[str, Getter, Callable[[Any], Any] | None, bool]] = [
            (name, compile_path(spec.path), _COERCE[spec.type], spec.required) for name, spec in cfg.values.items()
        ]

    def timestamp(self, item: Any) -> datetime:
        raw = self._ts_get(item)
        if raw is None:
            raise MappingError("no timestamp")
        try:
            return self._ts_parse(raw)
        except (TypeError, ValueError, OverflowError, OSError) as exc:
            raise MappingError(f"bad timestamp {raw!r}: {exc}") from exc

    def reading(self, station_id: str, item: Any, ts: datetime) -> Reading:
        values: dict[str, Any] = {}
        for name, get, coerce, required in self._values:
            raw = get(item)
            if raw is None:
                if required:
                    raise MappingError(f"required value {name!r} is missing")
                continue
            if coerce is not None:
                try:
                    raw = coerce(raw)
                except (TypeError, ValueError) as exc:
                    raise MappingError(f"value {name!r}={raw!r}: {exc}") from exc
            values[name] = raw
        return Reading(station_id=station_id, ts=ts, values=values)


class StationMapper:
    def __init__(self, cfg: StationsEndpoint) -> None:
        self.items = compile_path(cfg.items)
        self._id = compile_path(cfg.id)
        self._name = compile_path(cfg.name) if cfg.name else None
        self._attributes = {k: compile_path(v) for k, v in cfg.attributes.items()}

    def station(self, item: Any) -> Station:
        sid = self._id(item)
        if sid is None or sid == "" or isinstance(sid, (dict, list, bool)):
            raise MappingError(f"station without a usable id: {sid!r}")
        name = self._name(item) if self._name else None
        attributes = {k: v for k, get in self._attributes.items() if (v := get(item)) is not None}
        return Station(station_id=str(sid), name=None if name is None else str(name), attributes=attributes)
