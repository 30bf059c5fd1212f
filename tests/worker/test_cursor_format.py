"""A cursor as Redis stores it: written by `format_cursor`, read back by `parse_cursor` unchanged,
and nothing but that shape accepted (a value some other writer left is an error, not a guess)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from functions.sync_worker.store import format_cursor, parse_cursor


@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)))
def test_a_written_cursor_reads_back_as_the_same_instant(ts: datetime) -> None:
    back = parse_cursor(format_cursor(ts))
    assert back == ts and back.utcoffset() == timedelta(0)


def test_a_cursor_in_another_zone_is_stored_in_utc() -> None:
    local = datetime(2024, 6, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    assert format_cursor(local) == "2024-06-01T12:00:00.000000Z"
    assert parse_cursor(format_cursor(local)) == local


@pytest.mark.parametrize(
    "value",
    [
        "2024-06-01",
        "2024-06-01T12:00:00Z",
        "2024-06-01T12:00:00.000000+00:00",
        "2024-06-01 12:00:00.000000Z",
        "2024-06-01T12:00:00.000000",
        "",
        "not a cursor at all, 27 ch",
    ],
)
def test_anything_but_the_cursor_shape_is_refused(value: str) -> None:
    with pytest.raises(ValueError):
        parse_cursor(value)
