"""Station time zones: vendors that speak site-local time (`2024-03-31 02:30:00` at a site in
Berlin) are read and asked in the station's zone, taken from a station attribute.

The attribute holds an IANA name (`Europe/Berlin`, DST-correct both ways through zoneinfo) or a
fixed offset (`+05:30`, `UTC-3`, `GMT+8`, or seconds as a number).
"""

from __future__ import annotations

import re
from datetime import UTC, timedelta, timezone, tzinfo
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_OFFSET = re.compile(r"^(?:UTC|GMT)?\s*([+-])(\d{1,2})(?::?(\d{2}))?$", re.IGNORECASE)


class UnknownZone(ValueError):
    """The station attribute names no time zone this worker knows."""


@lru_cache(maxsize=4096)
def _zone_of_text(text: str) -> tzinfo:
    if text.upper() in ("UTC", "GMT", "Z"):
        return UTC
    if match := _OFFSET.match(text):
        sign, hours, minutes = match.groups()
        offset = timedelta(hours=int(hours), minutes=int(minutes or 0))
        if offset > timedelta(hours=14):
            raise UnknownZone(f"offset {text!r} is beyond 14 hours")
        return timezone(-offset if sign == "-" else offset)
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise UnknownZone(f"unknown time zone {text!r}") from exc


def zone_of(value: Any) -> tzinfo:
    """An attribute value as a time zone: IANA name, `+hh:mm` style offset, or offset seconds."""
    if isinstance(value, bool) or value is None:
        raise UnknownZone(f"no time zone in {value!r}")
    if isinstance(value, int | float):
        if abs(value) > 14 * 3600:
            raise UnknownZone(f"offset {value!r} s is beyond 14 hours")
        return timezone(timedelta(seconds=value)) if value else UTC
    return _zone_of_text(str(value).strip())
