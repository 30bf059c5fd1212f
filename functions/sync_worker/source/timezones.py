"""Station time zones: vendors that speak site-local time (`2024-03-31 02:30:00` at a site in
Berlin) are read and asked in the station's zone, taken from a station attribute.

The attribute holds an IANA name (`Europe/Berlin`, DST-correct both ways through zoneinfo) or a
fixed offset (`+05:30`, `UTC-3`, `GMT+8`, or seconds as a number).

The autumn repeated hour: when clocks go back, one local time names two instants (`02:30` in Berlin
on the last Sunday of October is 00:30 UTC and 01:30 UTC), and a local string carries no offset to
tell them apart. The rule both ways:
- Read (`local_to_utc`): the first occurrence, unless the answer lists times in order and the
  previous item of the same series is already later than that: then the second. A vendor that
  lists both occurrences in time order (SolarEdge does) is read exactly.
- Ask (`request_instant`): a vendor reads a local time in the repeated hour as its first occurrence
  (the earlier instant, as zoneinfo's fold=0 and java.time do). A start read earlier than meant only
  returns more, which the window filters; an end read an hour early would leave the window's last
  hour unanswered while the cursor moves past it. So an end in the second occurrence is asked as
  the local time one offset change later, past the repeated hour.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone, tzinfo
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


def local_to_utc(local: datetime, zone: tzinfo, not_before: datetime | None = None) -> datetime:
    """A naive site-local time in `zone` as an aware UTC instant. In a repeated hour it is the first
    occurrence unless that is before `not_before` (the previous item of the same time-ordered series)
    and the second is not: then the second."""
    first = local.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if not_before is None or first >= not_before:
        return first
    second = local.replace(tzinfo=zone, fold=1).astimezone(UTC)
    # In a spring-forward gap fold=1 gives the earlier instant: only a later one is a repeat.
    return second if second > first and second >= not_before else first


def request_instant(moment: datetime, zone: tzinfo, *, upper: bool) -> datetime:
    """The instant whose local time to send so that a vendor reading it as the first occurrence
    covers `moment`: `moment` itself, except an upper bound in the second occurrence of a repeated
    hour, which moves one offset change later (out of the repeated hour)."""
    if not upper:
        return moment
    local = moment.astimezone(zone).replace(tzinfo=None)
    first = local.replace(tzinfo=zone, fold=0).astimezone(UTC)
    return moment + (moment - first) if first < moment else moment
