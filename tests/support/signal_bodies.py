"""Hypothesis strategies for signal bodies: valid signals and poison of every kind the intake must
survive (deep nesting, invalid UTF-8, huge bodies, wrong types, random text and bytes, SNS envelopes
around any of them). Used by the fuzz tests and by `bench/chaos.py`.

Each strategy yields `(valid, body)`: `valid` says what the generator built, so a test can check
that every poison body was rejected and every valid one served. A poison generator only builds
bodies that cannot be valid (a required field missing or of the wrong type, or not JSON at all).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import strategies as st

from functions.common.signal import MAX_SIGNAL_BYTES, Command, Source

Body = tuple[bool, str | bytes]

_COMMANDS = [c.value for c in Command if c is not Command.STOP_SYNC]  # a stop would end continuous tests
_SOURCES = [s.value for s in Source]
_STATION = st.from_regex(r"\A[A-Za-z0-9_.%*!():=@$'-]{1,20}\Z", fullmatch=True)


def _when(offset_s: int) -> str:
    return (datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=offset_s)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@st.composite
def valid_signal(draw: st.DrawFn, *, with_stations: bool = True) -> dict[str, object]:
    body: dict[str, object] = {
        "v": 1,
        "command": draw(st.sampled_from(_COMMANDS)),
        "id": str(uuid.UUID(int=draw(st.integers(0, 2**128 - 1)), version=4)),
        "issued_at": _when(draw(st.integers(0, 10**8))),
        "source": draw(st.sampled_from(_SOURCES)),
    }
    if with_stations and draw(st.booleans()):
        body["stations"] = draw(st.lists(_STATION, min_size=1, max_size=5))
    return body


def _json(value: object) -> str:
    return json.dumps(value)


_WRONG = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)
_WRONG_BY_FIELD = {
    "v": _WRONG.filter(lambda x: x != 1 or isinstance(x, bool)),
    "command": _WRONG.filter(lambda x: x not in [c.value for c in Command]),
    "id": _WRONG.filter(lambda x: not isinstance(x, str)),
    "issued_at": st.one_of(st.integers(), st.floats(allow_nan=False), st.none(), st.lists(st.text(max_size=3))),
    "source": _WRONG.filter(lambda x: x not in _SOURCES),
    "stations": st.one_of(
        st.just([]), st.integers(), st.text(max_size=5), st.lists(st.sampled_from(["a/b", "#", "", " x"]), min_size=1)
    ),
}


@st.composite
def wrong_types(draw: st.DrawFn) -> str:
    body = draw(valid_signal())
    field = draw(st.sampled_from(sorted(_WRONG_BY_FIELD)))
    body[field] = draw(_WRONG_BY_FIELD[field])
    return _json(body)


@st.composite
def extra_or_missing_field(draw: st.DrawFn) -> str:
    body = draw(valid_signal())
    if draw(st.booleans()):
        body[draw(st.text(min_size=1, max_size=8).filter(lambda k: k not in body))] = draw(st.integers())
    else:
        del body[draw(st.sampled_from(["command", "source"]))]
    return _json(body)


@st.composite
def deep_nesting(draw: st.DrawFn) -> str:
    depth = draw(st.integers(100, 5000))
    opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}"), ('{"command":[', "]}")]))
    inner = draw(st.sampled_from(["", "1", '"x"', "null"]))
    tail = closer * draw(st.sampled_from([depth, depth // 2, 0]))  # balanced, half-open or unclosed
    return opener * depth + inner + tail


def _sqs_safe(text: str) -> bool:
    # SQS accepts only XML characters in a body (#x9, #xA, #xD, #x20-#xD7FF, #xE000-#xFFFD, beyond).
    return all(c in "\t\n\r" or "\x20" <= c <= "\ud7ff" or "\ue000" <= c <= "\ufffd" or c > "\uffff" for c in text)


def _sns_envelope(message: object) -> str:
    return _json({"Type": "Notification", "MessageId": "m", "TopicArn": "arn:aws:sns:x:1:t", "Message": message})


def poison_text(*, huge_max: int = 200_000) -> st.SearchStrategy[str]:
    """Poison that is text (what SQS can carry): never a valid signal."""
    base = st.one_of(
        wrong_types(),
        extra_or_missing_field(),
        deep_nesting(),
        st.text(max_size=200).filter(lambda t: not t.lstrip().startswith("{")),
        st.integers(1000, huge_max).map(lambda n: '{"v": 1, "command": "' + "x" * n + '"}'),
        st.just(""),
        st.just("null"),
        st.just("[]"),
        st.just('"start_sync"'),
    )
    enveloped = st.one_of(
        base.map(_sns_envelope), st.sampled_from([None, 1, [], {}]).map(_sns_envelope), base.map(_json)
    )
    return st.one_of(base, enveloped).filter(_sqs_safe)


def poison_bytes(*, huge_max: int = 2 * MAX_SIGNAL_BYTES) -> st.SearchStrategy[bytes]:
    """Poison as raw bytes (what Redis can carry): the text kinds plus invalid UTF-8 and oversize."""
    return st.one_of(
        poison_text(huge_max=100_000).map(lambda t: t.encode("utf-8", "surrogatepass")),
        st.binary(max_size=300).filter(lambda b: not b.lstrip().startswith(b"{")),
        valid_signal().map(lambda b: _json(b).encode()[:-2] + b"\xff\xfe}"),  # valid but for one bad byte
        # A valid signal padded past the size limit: refused for its size alone.
        st.tuples(valid_signal(), st.integers(MAX_SIGNAL_BYTES + 1, huge_max)).map(
            lambda t: (_json(t[0]) + " " * t[1]).encode()
        ),
    )


def valid_text() -> st.SearchStrategy[str]:
    """A valid signal as SQS may carry it: bare, or inside an SNS notification envelope."""
    return st.one_of(valid_signal().map(_json), valid_signal().map(_json).map(_sns_envelope))


def sqs_bodies() -> st.SearchStrategy[Body]:
    return st.one_of(valid_text().map(lambda b: (True, b)), poison_text().map(lambda b: (False, b)))


def redis_bodies() -> st.SearchStrategy[Body]:
    return st.one_of(valid_signal().map(lambda b: (True, _json(b).encode())), poison_bytes().map(lambda b: (False, b)))
