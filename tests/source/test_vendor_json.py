"""Vendor answers are decoded by orjson where it gives exactly what `json.loads` gives, and by the
stdlib everywhere else: long integers (ids beyond 64 bits) stay exact integers, and what orjson
refuses (NaN, a BOM, UTF-16, lone surrogates, invalid UTF-8) decodes as it always did."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from functions.sync_worker.source.http_message import Headers, VendorResponse, decode_json
from functions.sync_worker.source.http_pool import KeepAlivePool
from tests.source.test_http_pool import _raw, serve, url


def _same(decoded: Any, reference: Any) -> None:
    """Equal with the same types all the way down, floats to the bit (repr tells 1 from 1.0)."""
    assert repr(decoded) == repr(reference)


@pytest.mark.parametrize(
    "text",
    [
        '{"device_id": 123456789012345678901234567890}',
        '{"id": 18446744073709551616}',  # 2**64: the first integer orjson would turn into a float
        '{"id": -9223372036854775809}',  # -2**63 - 1
        '{"id": 9999999999999999999}',  # 19 digits, inside orjson's range: still the stdlib's
        '[1.2345678901234567890123, "0000000000000000000"]',
    ],
)
def test_integers_beyond_64_bits_stay_exact(text: str) -> None:
    decoded = decode_json(text.encode())
    _same(decoded, json.loads(text))


@pytest.mark.parametrize(
    "body",
    [
        b'{"soc": NaN, "t": Infinity}',
        b'{"v": 1e400}',
        b"\xef\xbb\xbf" + b'{"bom": 1}',
        '{"utf16": 1}'.encode("utf-16"),
        b'{"lone": "\\ud800"}',
    ],
)
def test_what_orjson_refuses_decodes_as_the_stdlib_does(body: bytes) -> None:
    decoded = decode_json(body)
    reference = json.loads(body)
    assert repr(decoded) == repr(reference)
    if isinstance(decoded, dict) and "soc" in decoded:
        assert math.isnan(decoded["soc"])


def test_not_json_is_still_a_value_error() -> None:
    for body in (b"", b"<html>", b'{"a": 1,}', b"[" * 5000 + b"]" * 5000):
        with pytest.raises((ValueError, RecursionError)):
            json.loads(body)
        with pytest.raises((ValueError, RecursionError)):
            decode_json(body)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_any_json_decodes_exactly_as_json_loads(value: Any) -> None:
    body = json.dumps(value).encode()
    _same(decode_json(body), json.loads(body))


@settings(max_examples=400, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False), st.integers(min_value=1, max_value=18))
def test_numbers_written_to_any_precision_read_to_the_same_bits(x: float, digits: int) -> None:
    body = f"[{x:.{digits}g}, {x:.{digits}e}]".encode()
    _same(decode_json(body), json.loads(body))


@pytest.mark.integration
def test_a_vendor_answer_with_a_30_digit_id_and_a_nan_reads_exactly() -> None:
    body = b'{"data": [{"device": 123456789012345678901234567890, "soc": NaN, "ts": "2024-06-01T12:00:00Z"}]}'
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    pool = KeepAlivePool(size=1, connect_timeout_s=2, read_timeout_s=2)
    with serve(_raw(answer)) as server:
        got = pool.send("GET", url(server), None, Headers()).json()
    pool.close()
    item = got["data"][0]
    assert item["device"] == 123456789012345678901234567890 and isinstance(item["device"], int)
    assert math.isnan(item["soc"]) and item["ts"] == "2024-06-01T12:00:00Z"


def test_a_body_that_is_not_utf8_is_read_as_text_with_replacements() -> None:
    answer = VendorResponse(200, "OK", Headers({"Content-Type": "application/json"}), b'{"name": "caf\xe9"}', "u")
    assert answer.json() == {"name": "caf\ufffd"}
