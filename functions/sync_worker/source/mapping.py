"""Declarative mapping from vendor JSON to `Station` and `Reading`, with JMESPath expressions.

Expressions are compiled once per config. Plain dotted field paths (`battery.soc_pct`), which is
what nearly every mapping is, are evaluated as chained dict lookups with JMESPath's semantics
(missing key or non-object -> null): at 10,000 stations x N readings x 15 values the full
interpreter would be the worker's hottest loop. An endpoint's values go further: `compile_values`
turns them into one function per item, decided at config load (see there).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any, Protocol

import jmespath
from jmespath.exceptions import JMESPathError

from functions.sync_worker.source.base import Reading, Station
from functions.sync_worker.source.config import ReadingsEndpoint, StationsEndpoint, TimestampSpec, ValueSpec
from functions.sync_worker.source.timeformats import local_parser
from functions.sync_worker.source.timezones import local_to_utc

Getter = Callable[[Any], Any]


class MappingError(ValueError):
    """One item of the vendor's JSON does not fit the mapping (bad time, wrong type)."""


class NotReported(Exception):
    """The vendor listed the item but has no value for it yet (a required value, or every value, is
    null): it is expected later, so the cursor must wait for it."""


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


def _path_keys(expression: str) -> tuple[jmespath.parser.ParsedResult, list[str] | None]:
    try:
        parsed = jmespath.compile(expression)
    except JMESPathError as exc:
        raise ValueError(f"invalid JMESPath {expression!r}: {exc}") from exc
    return parsed, _field_chain(parsed.parsed)


def compile_path(expression: str) -> Getter:
    """A getter for one JMESPath expression; raises ValueError naming a bad expression."""
    parsed, keys = _path_keys(expression)
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


def _object_at(keys: tuple[str, ...]) -> Getter:
    """The object (dict) at a dotted prefix, or None: what the values under that prefix are read from."""

    def at(obj: Any) -> Any:
        for k in keys:
            if not isinstance(obj, dict):
                return None
            obj = obj.get(k)
        return obj if isinstance(obj, dict) else None

    return at


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
#: The type a coercion returns unchanged: a value already of exactly this type skips the call (a
#: bool is not an int here: `type(True) is not int`).
_EXACT: dict[str, type | None] = {"any": None, "float": float, "int": int, "str": str, "bool": bool}

#: One value of a reading: its name, the prefix object it is read from (index), the key in that
#: object (None: the prefix getter is a full JMESPath expression and yields the value itself), the
#: type that needs no coercion, the coercion, and whether it is required.
_ValuePlan = tuple[str, int, str | None, type | None, Callable[[Any], Any] | None, bool]


def compile_values(specs: dict[str, ValueSpec]) -> Callable[[Any], dict[str, Any]]:
    """The `values` mapping of an endpoint as one function item -> values, resolved at config load.

    Dotted paths sharing a prefix (`battery.soc_pct`, `battery.power_kw`) read the prefix object once
    per item, and a value already of its declared type is not passed through its coercion: at 15
    values a reading that was 15 getter calls and 15 coercion calls. Values keep the config's order
    (the payload, and so its digest, depends on it). Raises `NotReported` when a required value is
    null and `MappingError` when one does not coerce.
    """
    sources: list[Getter] = []
    prefixes: dict[tuple[str, ...], int] = {}
    plan: list[_ValuePlan] = []
    for name, spec in specs.items():
        parsed, keys = _path_keys(spec.path)
        leaf: str | None
        if keys is None:
            sources.append(parsed.search)
            index, leaf = len(sources) - 1, None
        else:
            prefix, leaf = tuple(keys[:-1]), keys[-1]
            if prefix not in prefixes:
                prefixes[prefix] = len(sources)
                sources.append(_object_at(prefix))
            index = prefixes[prefix]
        plan.append((name, index, leaf, _EXACT[spec.type], _COERCE[spec.type], spec.required))
    steps = tuple(plan)
    getters = tuple(sources)

    def values(item: Any) -> dict[str, Any]:
        found = [get(item) for get in getters]
        out: dict[str, Any] = {}
        for name, index, leaf, exact, coerce, required in steps:
            raw = found[index]
            if leaf is not None and raw is not None:
                raw = raw.get(leaf)
            if raw is None:
                if required:
                    raise NotReported(name)
                continue
            if coerce is not None and raw.__class__ is not exact:
                try:
                    raw = coerce(raw)
                except (TypeError, ValueError) as exc:
                    raise MappingError(f"value {name!r}={raw!r}: {exc}") from exc
            out[name] = raw
        if not out:
            raise NotReported("every value")
        return out

    return values


class TimeParser(Protocol):
    def __call__(self, value: Any, zone: tzinfo, not_before: datetime | None = None, /) -> datetime: ...


def timestamp_parser(spec: TimestampSpec) -> TimeParser:
    """Vendor time value -> aware UTC datetime. A time without an offset is in the zone passed in
    (the station's, or `assume_utc_offset_s`); zoneinfo resolves it across DST changes, and the
    repeated autumn hour by the order of the answer (`not_before`: the previous time of the same
    series; see `timezones.local_to_utc`)."""

    def aware(dt: datetime, zone: tzinfo, not_before: datetime | None) -> datetime:
        tz = dt.tzinfo
        if tz is None:
            return local_to_utc(dt, zone, not_before)
        return dt if tz is UTC else dt.astimezone(UTC)  # `...Z` is read as UTC itself already

    if spec.format == "iso8601":
        fromisoformat = datetime.fromisoformat

        def parse(v: Any, zone: tzinfo, not_before: datetime | None = None) -> datetime:
            if not isinstance(v, str):
                raise TypeError(f"timestamp {v!r} is not a string")
            dt = fromisoformat(v)
            tz = dt.tzinfo
            if tz is UTC:  # `...Z`, the common case, without the call to `aware` per reading
                return dt
            return aware(dt, zone, not_before)
    elif spec.format in ("epoch_s", "epoch_ms"):
        div = 1000.0 if spec.format == "epoch_ms" else 1.0

        def parse(v: Any, zone: tzinfo, not_before: datetime | None = None) -> datetime:
            if isinstance(v, bool) or not isinstance(v, (int, float, str)):
                raise TypeError(f"timestamp {v!r} is not a number")
            return datetime.fromtimestamp(float(v) / div, UTC)
    else:
        local = local_parser(spec.format)

        def parse(v: Any, zone: tzinfo, not_before: datetime | None = None) -> datetime:
            if not isinstance(v, str):
                raise TypeError(f"timestamp {v!r} is not a string")
            return aware(local(v), zone, not_before)

    return parse


class ReadingMapper:
    def __init__(self, cfg: ReadingsEndpoint) -> None:
        self.endpoint = cfg.name
        self._series = compile_path(cfg.series) if cfg.series else None
        self.items = compile_path(cfg.items)
        self._ts_get = compile_path(cfg.timestamp.path)
        self._ts_parse = timestamp_parser(cfg.timestamp)
        self._fixed_zone: tzinfo = timezone(timedelta(seconds=cfg.timestamp.assume_utc_offset_s))
        self._answered_until = compile_path(cfg.answered_until) if cfg.answered_until else None
        self._station_of = compile_path(cfg.batch.id) if cfg.batch else None
        self._nested = compile_path(cfg.nested) if cfg.nested else None
        self._snapshot_time = compile_path(cfg.snapshot.time) if cfg.snapshot and cfg.snapshot.time else None
        self._values = compile_values(cfg.values)
        self._series_of = self._series_key()

    def timestamp(self, item: Any, zone: tzinfo | None = None, not_before: datetime | None = None) -> datetime:
        """The item's time; `not_before` is the previous time of its series in a time-ordered answer
        (it tells the two occurrences of a repeated local hour apart)."""
        return self._parse_time(self._ts_get(item), zone, not_before)

    def answered_until(self, body: Any, zone: tzinfo | None = None) -> datetime | None:
        """How far the vendor says its answer reaches (None: it does not say)."""
        return self._parse_time(self._answered_until(body), zone) if self._answered_until else None

    def station_of(self, item: Any) -> str | None:
        """The station id an item of a batched answer belongs to."""
        found = self._station_of(item) if self._station_of else None
        return None if found is None or isinstance(found, (dict, list, bool)) else str(found)

    def snapshot_time(self, body: Any) -> datetime | None:
        """The envelope's time of a snapshot answer (None: use the request time)."""
        return self._parse_time(self._snapshot_time(body), None) if self._snapshot_time else None

    def _parse_time(self, raw: Any, zone: tzinfo | None, not_before: datetime | None = None) -> datetime:
        if raw is None:
            raise MappingError("no timestamp")
        try:
            return self._ts_parse(raw, zone or self._fixed_zone, not_before)
        except (TypeError, ValueError, OverflowError, OSError) as exc:
            raise MappingError(f"bad timestamp {raw!r}: {exc}") from exc

    def series(self, item: Any) -> str:
        return self._series_of(item)

    def _series_key(self) -> Callable[[Any], str]:
        endpoint, get = self.endpoint, self._series
        if get is None:
            return lambda item: endpoint
        prefix = endpoint + "/"

        def series(item: Any) -> str:
            device = get(item)
            if device is None or device == "" or isinstance(device, (dict, list, bool)):
                raise MappingError(f"no usable series key: {device!r}")
            return prefix + device if device.__class__ is str else f"{prefix}{device}"

        return series

    def order_key(self, parent: Any, item: Any) -> object:
        """Which time-ordered run of an answer an item belongs to: its parent's list when nested (one
        battery's telemetries), else its raw series key (None: the answer is one series)."""
        if self._nested is not None:
            return id(parent)
        device = self._series(item) if self._series else None
        return device if isinstance(device, str | int | float) else None

    def flatten(self, items: list[Any]) -> Iterator[tuple[Any, Any]]:
        """(parent, reading item) pairs: the items themselves, or with `nested` each item's list of
        readings (the parent carries the device serial and, batched, the station id)."""
        if self._nested is None:
            for item in items:
                yield item, item
            return
        for parent in items:
            children = self._nested(parent)
            if isinstance(children, list):
                for child in children:
                    yield parent, child

    def reading(self, station_id: str, item: Any, ts: datetime, parent: Any = None) -> Reading:
        """The item as a reading; `NotReported` when its value is still null, `MappingError` when it
        cannot be read at all. The series key is read from `parent` (the item itself unless nested)."""
        series = self._series_of(item if parent is None else parent)  # an unusable key skips, first
        return Reading(station_id, ts, self._values(item), series)


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
