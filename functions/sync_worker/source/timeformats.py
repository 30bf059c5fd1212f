"""Fast paths for the time formats vendors actually use, decided once per format at config load.

`strptime` and `strftime` interpret their pattern on every call (a regex per parse, a libc call per
format): about 7 us to read one SolarEdge `2024-03-31 02:30:00`, several per request to write a
window bound. The common patterns are the ISO 8601 shapes `datetime.fromisoformat` and `isoformat`
handle in C, so those get a C path; every other pattern, and any value the fast path does not take,
goes the general way, which stays the reference for what is accepted and for the error message.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, tzinfo

#: strptime patterns with the ISO 8601 shape fromisoformat reads, and the exact text they accept.
#: `\d` is ASCII only here (strptime's own `\d` also takes other scripts' digits: those fall back).
_ISO_SHAPED: dict[str, re.Pattern[str]] = {
    pattern: re.compile(shape, re.ASCII)
    for pattern, shape in {
        "%Y-%m-%d %H:%M:%S": r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d",
        "%Y-%m-%dT%H:%M:%S": r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d",
        "%Y-%m-%d %H:%M": r"\d{4}-\d\d-\d\d \d\d:\d\d",
        "%Y-%m-%dT%H:%M": r"\d{4}-\d\d-\d\dT\d\d:\d\d",
        "%Y-%m-%d": r"\d{4}-\d\d-\d\d",
    }.items()
}

#: strftime patterns written by `isoformat` (separator, timespec) for years from 1000 on (strftime
#: does not pad `%Y` below that; isoformat does).
_ISO_WRITTEN: dict[str, tuple[str, str]] = {
    "%Y-%m-%d %H:%M:%S": (" ", "seconds"),
    "%Y-%m-%dT%H:%M:%S": ("T", "seconds"),
    "%Y-%m-%d %H:%M": (" ", "minutes"),
    "%Y-%m-%dT%H:%M": ("T", "minutes"),
}


def local_parser(pattern: str) -> Callable[[str], datetime]:
    """`datetime.strptime(text, pattern)` for one pattern, through fromisoformat when the pattern
    has an ISO 8601 shape and the text matches it exactly. A value the fast path refuses (a day 31
    in April, a second 60) is handed to strptime, so errors read as before."""
    shape = _ISO_SHAPED.get(pattern)
    strptime = datetime.strptime
    if shape is None:
        return lambda text: strptime(text, pattern)
    fullmatch = shape.fullmatch
    fromisoformat = datetime.fromisoformat

    def parse(text: str) -> datetime:
        if fullmatch(text):
            try:
                return fromisoformat(text)
            except ValueError:
                pass
        return strptime(text, pattern)

    return parse


def local_formatter(pattern: str) -> Callable[[datetime], str]:
    """`local.strftime(pattern)` for one pattern, through `isoformat` when it writes the same text."""
    written = _ISO_WRITTEN.get(pattern)
    if written is None:
        return lambda local: local.strftime(pattern)
    sep, timespec = written

    def fmt(local: datetime) -> str:
        if local.year < 1000:
            return local.strftime(pattern)
        return local.replace(tzinfo=None).isoformat(sep, timespec)

    return fmt


def iso_request_time(local: datetime, zone: tzinfo | None) -> str:
    """A request time in ISO 8601: `...Z` when `zone` is None (`local` is then in UTC), else the
    local time with its `+hh:mm` offset; microseconds only when there are any."""
    if local.year < 1000:
        text = local.strftime("%Y-%m-%dT%H:%M:%S") + (f".{local.microsecond:06d}" if local.microsecond else "")
    else:
        text = local.replace(tzinfo=None).isoformat()
    if zone is None:
        return text + "Z"
    offset = local.strftime("%z")
    return text + offset[:3] + ":" + offset[3:]


def wire_time(ts: datetime) -> str:
    """`ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ")` (the reading time in message ids and payloads),
    through isoformat: it is formatted once per reading on the publish path."""
    if ts.year < 1000:
        return ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return ts.replace(tzinfo=None).isoformat("T", "microseconds") + "Z"
