"""The station list asks for its pages concurrently when the first page says how many there are
(page numbers with a page count, offsets with a total), within the vendor's `max_concurrency`, and
keeps them in page order; without a total it reads page by page. Against a real threaded HTTP
server on an ephemeral port that holds each page a moment and counts the requests in flight."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from functions.sync_worker.errors import PermanentError, TransientError
from tests.source.conftest import make_source
from tests.source.test_http_pool import _Server, serve, url

pytestmark = pytest.mark.integration

HOLD_S = 0.05  # each page held this long, so concurrent requests overlap


@dataclass
class _Vendor:
    """A station list of `stations` sites; `cap` limits the page size it answers with, `failing`
    page numbers (or offsets) answer HTTP 500, `totals` says whether the answer carries a total."""

    stations: int
    cap: int = 1000
    failing: set[int] = field(default_factory=set)
    totals: bool = True
    in_flight: int = 0
    max_in_flight: int = 0
    requests: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, handler: BaseHTTPRequestHandler, _server: _Server) -> None:
        query = {k: v[0] for k, v in parse_qs(urlsplit(handler.path).query).items()}
        size = min(int(query["page_size"]), self.cap)
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            time.sleep(HOLD_S)
        finally:
            with self.lock:
                self.in_flight -= 1
        if "page" in query:
            key = int(query["page"])
            start = (key - 1) * size
        else:
            key = start = int(query["startIndex"])
        self.requests.append(key)
        ids = [f"site-{i:05d}" for i in range(start + 1, min(start + size, self.stations) + 1)]
        payload: dict[str, Any] = {"sites": [{"id": i, "name": i} for i in ids]}
        if self.totals:
            payload.update(total_pages=-(-self.stations // size), total=self.stations)
        body = json.dumps(payload).encode()
        handler.send_response(500 if key in self.failing else 200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)


PAGE_NUMBERS = {"type": "page_number", "page_param": "page", "start": 1, "total_pages": "total_pages"}
OFFSETS = {"type": "offset", "offset_param": "startIndex", "start": 0, "total": "total"}


@contextmanager
def listing(vendor: _Vendor, pagination: dict[str, Any], **stations: Any) -> Iterator[Any]:
    with serve(vendor.answer) as server:
        yield make_source(
            url(server, ""),
            http={"max_concurrency": 3},
            stations={
                "path": "/sites",
                "params": {"page_size": "{page_size}"},
                "page_size": 10,
                "pagination": pagination,
                "items": "sites",
                "attributes": {},
                **stations,
            },
        )


def _ids(n: int) -> list[str]:
    return [f"site-{i:05d}" for i in range(1, n + 1)]


def test_pages_with_a_page_count_are_asked_concurrently_within_max_concurrency_in_page_order():
    vendor = _Vendor(stations=95)
    with listing(vendor, PAGE_NUMBERS) as source:
        assert [s.station_id for s in source.list_stations()] == _ids(95)
    assert sorted(vendor.requests) == list(range(1, 11))  # each page once
    assert 1 < vendor.max_in_flight <= 3


def test_offsets_with_a_total_step_by_what_the_vendor_answers_not_by_what_was_asked():
    vendor = _Vendor(stations=95, cap=7)  # asked for 10 a page, answers 7
    with listing(vendor, OFFSETS) as source:
        assert [s.station_id for s in source.list_stations()] == _ids(95)
    assert sorted(vendor.requests) == list(range(0, 95, 7))
    assert 1 < vendor.max_in_flight <= 3


def test_a_failing_page_fails_the_listing_after_its_retries():
    vendor = _Vendor(stations=95, failing={6})
    with listing(vendor, PAGE_NUMBERS) as source, pytest.raises(TransientError, match="HTTP 500"):
        source.list_stations()
    assert vendor.requests.count(6) == 4  # the test config's 4 attempts, as for any vendor call


def test_without_a_total_the_pages_are_read_one_after_the_other():
    vendor = _Vendor(stations=95, totals=False)
    with listing(vendor, {k: v for k, v in PAGE_NUMBERS.items() if k != "total_pages"}) as source:
        assert [s.station_id for s in source.list_stations()] == _ids(95)
    assert vendor.requests == list(range(1, 11))
    assert vendor.max_in_flight == 1


def test_a_vendor_that_throttles_bursts_can_keep_its_known_pages_one_at_a_time():
    vendor = _Vendor(stations=95)
    with listing(vendor, PAGE_NUMBERS, concurrent_pages=False) as source:
        assert [s.station_id for s in source.list_stations()] == _ids(95)
    assert vendor.requests == list(range(1, 11))
    assert vendor.max_in_flight == 1


def test_max_pages_still_bounds_a_listing_whose_total_is_known():
    vendor = _Vendor(stations=95)
    with listing(vendor, PAGE_NUMBERS, max_pages=5) as source, pytest.raises(PermanentError, match="5 pages"):
        source.list_stations()
    assert vendor.requests == [1]  # the page count alone says it is too long
