"""The mapping resolved at config load gives what the general path gives, value for value.

Each fast path (values read per prefix, ISO-shaped strptime patterns through fromisoformat, request
times and message-id times through isoformat, payloads through orjson) is compared here with the
general code it stands in for, on the values vendors send and on the edge cases where the two
could part (bad days, seconds 60, short years, non-ASCII digits, DST's repeated hour).
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from functions.sync_worker.errors import PermanentError
from functions.sync_worker.source.base import Reading
from functions.sync_worker.source.config import ReadingsEndpoint, TimestampSpec, ValueSpec
from functions.sync_worker.source.http_json import _format_time
from functions.sync_worker.source.mapping import (
    _COERCE,
    MappingError,
    NotReported,
    ReadingMapper,
    compile_path,
    compile_values,
    timestamp_parser,
)
from functions.sync_worker.source.timeformats import (
    _ISO_SHAPED,
    _ISO_WRITTEN,
    iso_request_time,
    local_formatter,
    local_parser,
    wire_time,
)
from functions.sync_worker.source.timezones import local_to_utc
from functions.sync_worker.transform import _encode_str, to_message

BERLIN = ZoneInfo("Europe/Berlin")
ZONES: list[tzinfo] = [UTC, BERLIN, ZoneInfo("America/New_York"), timezone(timedelta(hours=5, minutes=30))]

# -- values ---------------------------------------------------------------------------------------

SPECS = {
    "soc": ValueSpec(path="battery.soc_pct", type="float", required=True),
    "power": ValueSpec(path="battery.power_kw", type="float"),
    "code": ValueSpec(path="inverter.status_code", type="int"),
    "status": ValueSpec(path="inverter.status", type="str"),
    "on": ValueSpec(path="inverter.on", type="bool"),
    "top": ValueSpec(path="grid_kw", type="float"),
    "deep": ValueSpec(path="a.b.c", type="any"),
    "first_cell": ValueSpec(path="cells[0]", type="float"),
}


def general_values(specs: dict[str, ValueSpec], item: Any) -> dict[str, Any]:
    """The mapping as it was: one getter and one coercion per value, in config order."""
    out: dict[str, Any] = {}
    for name, spec in specs.items():
        raw = compile_path(spec.path)(item)
        if raw is None:
            if spec.required:
                raise NotReported(name)
            continue
        coerce = _COERCE[spec.type]
        if coerce is not None:
            try:
                raw = coerce(raw)
            except (TypeError, ValueError) as exc:
                raise MappingError(f"value {name!r}={raw!r}: {exc}") from exc
        out[name] = raw
    if not out:
        raise NotReported("every value")
    return out


ITEMS: list[Any] = [
    {
        "battery": {"soc_pct": 51.5, "power_kw": -3},
        "inverter": {"status_code": 2, "status": "ok", "on": 1},
        "grid_kw": 1.25,
        "a": {"b": {"c": [1, {"x": None}]}},
        "cells": [3.3, 3.4],
    },
    {"battery": {"soc_pct": "51.5", "power_kw": 2.0}, "inverter": {"status_code": 3.0, "status": 7, "on": "true"}},
    {"battery": {"soc_pct": 10}, "inverter": "not an object", "a": {"b": 5}, "cells": "none"},
    {"battery": {"soc_pct": 1.0}, "inverter": {"on": False, "status_code": True}},  # a bool is not an int
    {"battery": {"soc_pct": True}},  # a bool is not a float
    {"battery": {"soc_pct": "fifty"}},
    {"battery": {"soc_pct": None, "power_kw": 1.0}},  # required and null: not reported yet
    {"battery": {"power_kw": 1.0}},
    {"battery": [1, 2]},
    {"inverter": {"status_code": 2.5}},
    {"grid_kw": 0.0, "battery": {"soc_pct": 0}},
    {},
    [],
    None,
    "text",
]


@pytest.mark.parametrize("item", ITEMS)
@pytest.mark.parametrize("specs", [SPECS, {k: v.model_copy(update={"required": False}) for k, v in SPECS.items()}])
def test_compiled_values_equal_the_general_mapping_including_order_and_errors(specs, item):
    compiled = compile_values(specs)
    try:
        expected: Any = general_values(specs, item)
    except (NotReported, MappingError) as exc:
        with pytest.raises(type(exc)) as raised:
            compiled(item)
        assert str(raised.value) == str(exc)
        return
    got = compiled(item)
    assert got == expected
    assert list(got) == list(expected)  # the payload's key order, and so its digest
    assert [type(v) for v in got.values()] == [type(v) for v in expected.values()]


def test_an_unusable_series_key_is_a_mapping_error_even_when_a_required_value_is_null():
    mapper = ReadingMapper(
        ReadingsEndpoint(
            name="battery",
            path="/t/{station_id}",
            items="data",
            series="serial",
            values={"soc": ValueSpec(path="soc", type="float", required=True)},
        )
    )
    with pytest.raises(MappingError, match="series"):
        mapper.reading("s", {"serial": {"x": 1}, "soc": None}, datetime(2024, 1, 1, tzinfo=UTC))
    with pytest.raises(NotReported):
        mapper.reading("s", {"serial": 7, "soc": None}, datetime(2024, 1, 1, tzinfo=UTC))
    reading = mapper.reading("s", {"serial": 7, "soc": 1}, datetime(2024, 1, 1, tzinfo=UTC))
    assert (reading.series, reading.values) == ("battery/7", {"soc": 1.0})


# -- reading times --------------------------------------------------------------------------------

LOCAL_TEXTS = [
    "2024-03-31 02:30:00",  # Berlin: a local time that does not exist (spring gap)
    "2024-10-27 02:30:00",  # Berlin: the repeated autumn hour
    "2024-02-29 23:59:59",
    "2023-02-29 00:00:00",  # no such day
    "2024-04-31 00:00:00",
    "2024-01-01 24:00:00",
    "2024-01-01 23:59:60",
    "2024-13-01 00:00:00",
    "0999-01-01 00:00:00",
    "2024-1-1 1:02:03",  # strptime takes unpadded fields; the fast path passes them on
    "2024-01-01T00:00:00",
    "2024-01-01 00:00",
    "2024-01-01",
    "2024-01-01 00:00:00.5",
    "2024-01-01 00:00:00Z",
    "\u0662\u0660\u0662\u0664-01-01 00:00:00",  # Arabic-Indic digits: strptime's \d takes them, fromisoformat not
    " 2024-01-01 00:00:00",
    "",
]


def _outcome(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except (ValueError, TypeError) as exc:
        return type(exc)


@pytest.mark.parametrize("pattern", [*_ISO_SHAPED, "%d.%m.%Y %H:%M"])
@pytest.mark.parametrize("text", [*LOCAL_TEXTS, "2024-01-01T00:00", "2024-06-01T12:30:45", "31.12.2024 23:59"])
def test_iso_shaped_patterns_parse_as_strptime_does(pattern, text):
    expected = _outcome(datetime.strptime, text, pattern)
    assert _outcome(local_parser(pattern), text) == expected


@pytest.mark.parametrize("pattern", [*_ISO_SHAPED, "%Y-%m-%d %H:%M:%S"])
@pytest.mark.parametrize("zone", ZONES, ids=str)
def test_each_timestamp_format_through_the_compiled_and_the_general_path_gives_the_same_utc(pattern, zone):
    parse = timestamp_parser(TimestampSpec(format=pattern))
    start = datetime(2024, 10, 26, 22, 0, tzinfo=UTC)  # across Berlin's and (a week later) no change
    previous: datetime | None = None
    for step in range(0, 6 * 3600, 15 * 60 + 7):
        instant = start + timedelta(seconds=step)
        text = instant.astimezone(zone).strftime(pattern)
        general = local_to_utc(datetime.strptime(text, pattern), zone, previous)
        assert parse(text, zone, previous) == general
        previous = general


@pytest.mark.parametrize(
    ("fmt", "value"),
    [
        ("iso8601", "2024-06-01T12:00:00Z"),
        ("iso8601", "2024-06-01T14:00:00.250+02:00"),
        ("iso8601", "2024-06-01T12:00:00"),  # no offset: the zone given
        ("epoch_s", 1717243200),
        ("epoch_s", "1717243200.5"),
        ("epoch_ms", 1717243200123),
    ],
)
def test_iso_and_epoch_times_read_as_the_general_conversion(fmt, value):
    parse = timestamp_parser(TimestampSpec(format=fmt))
    for zone in ZONES:
        got = parse(value, zone)
        if fmt == "iso8601":
            parsed = datetime.fromisoformat(value)
            expected = local_to_utc(parsed, zone) if parsed.tzinfo is None else parsed.astimezone(UTC)
        else:
            expected = datetime.fromtimestamp(float(value) / (1000.0 if fmt == "epoch_ms" else 1.0), UTC)
        assert got == expected and got.utcoffset() == timedelta(0)


# -- request times and message-id times ------------------------------------------------------------

INSTANTS = [
    datetime(2024, 6, 1, 12, 0, tzinfo=UTC),
    datetime(2024, 6, 1, 12, 0, 0, 250, tzinfo=UTC),
    datetime(2024, 10, 27, 0, 30, tzinfo=UTC),  # Berlin: first 02:30
    datetime(2024, 10, 27, 1, 30, 5, 999999, tzinfo=UTC),  # Berlin: second 02:30
    datetime(2024, 3, 31, 1, 0, tzinfo=UTC),
    datetime(999, 5, 6, 7, 8, 9, 10, tzinfo=UTC),
]


def general_request_time(dt: datetime, fmt: str, zone: tzinfo | None) -> str | int:
    """`_format_time` as it was: strftime for everything."""
    if fmt == "epoch_s":
        return int(dt.timestamp())
    if fmt == "epoch_ms":
        return int(dt.timestamp() * 1000)
    local = dt.astimezone(zone or UTC)
    if fmt != "iso8601":
        return local.strftime(fmt)
    text = local.strftime("%Y-%m-%dT%H:%M:%S") + (f".{local.microsecond:06d}" if local.microsecond else "")
    return text + "Z" if zone is None else text + local.strftime("%z")[:3] + ":" + local.strftime("%z")[3:]


@pytest.mark.parametrize("fmt", ["iso8601", "epoch_s", "epoch_ms", *_ISO_WRITTEN, "%d.%m.%Y %H:%M"])
@pytest.mark.parametrize("zone", [None, *ZONES], ids=str)
def test_request_times_are_written_as_strftime_writes_them(fmt, zone):
    for dt in INSTANTS:
        if fmt.startswith("epoch") and dt.year < 1970:
            continue
        assert _format_time(dt, fmt, zone) == general_request_time(dt, fmt, zone)


def test_the_fast_formatters_fall_back_below_year_1000():
    old = datetime(999, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    assert local_formatter("%Y-%m-%d %H:%M:%S")(old) == old.strftime("%Y-%m-%d %H:%M:%S") == "999-01-02 03:04:05"
    assert iso_request_time(old, None) == "999-01-02T03:04:05.000006Z"
    assert wire_time(old) == old.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.mark.parametrize("ts", INSTANTS)
def test_message_id_times_are_the_strftime_wire_form(ts):
    assert wire_time(ts) == ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert Reading("s", ts, {"x": 1}).message_id.endswith(":" + ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))


# -- payloads -------------------------------------------------------------------------------------

TS = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "values",
    [
        {"soc_pct": 51.5, "power_kw": -3.215, "code": 2, "status": "charging", "on": True, "big": 1e16, "zero": -0.0},
        {"nested": {"a": [1, 2.5, "x"], "none": None}},  # a null in the payload: the stdlib encodes it
        {"status": "null"},
        {"huge": 2**70},  # beyond orjson's 64-bit integers: the stdlib encodes it
    ],
)
def test_plain_payloads_are_byte_for_byte_the_stdlib_encoding(values):
    message = to_message(Reading("site-1", TS, values, series="battery/B-1"))
    body = json.loads(message.payload)
    assert message.payload == _encode_str(body).encode()


def test_non_ascii_payloads_are_utf8_with_the_same_json_value():
    values = {"status": "Störung: überhitzt", "site": "東京"}
    message = to_message(Reading("Zürich", TS, values))
    assert json.loads(message.payload)["values"] == values
    assert "Störung".encode() in message.payload


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, datetime(2024, 1, 1), object(), {1, 2}])
def test_values_the_contract_refuses_stay_permanent_errors(bad):
    # orjson alone would write NaN as null and a datetime as a string.
    with pytest.raises(PermanentError):
        to_message(Reading("site-1", TS, {"x": bad}))
