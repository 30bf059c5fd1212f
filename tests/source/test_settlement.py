"""A station's last page settles on the settler's thread: the lane calls the vendor for its next
station while the broker acknowledges, and the cursor still moves only after the page's PUBACKs.

Real HTTP vendor (tests/support/vendor_stub), real cycle runner, real Redis. The uplink is replaced by
a publisher that acknowledges each page from a timer thread after a delay, as paho's network
thread would after a slow broker, or never: the point here is the runner's order of events (the
uplink's own PUBACK handling is tested against a real broker in tests/worker).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions.common.state import StateKeys
from functions.sync_worker.cycle import CycleResult, CycleRunner
from functions.sync_worker.errors import ErrorClass, SyncError, TransientError
from functions.sync_worker.settlement import Settler
from functions.sync_worker.source.base import Station
from functions.sync_worker.source.config import VendorConfig
from functions.sync_worker.source.http_json import HttpJsonSource
from functions.sync_worker.store import CursorAdvance, Lease, StateStore, connect_redis
from functions.sync_worker.uplink.batch import PublishBatch
from functions.sync_worker.uplink.profile import OutboundMessage
from tests.source.conftest import RecordingPublisher
from tests.support.vendor_stub import StubRequest, VendorStub

pytestmark = pytest.mark.integration

T0 = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
STEP = timedelta(minutes=15)
STATIONS = [f"S{i}" for i in range(1, 7)]


def config() -> VendorConfig:
    return VendorConfig.model_validate(
        {
            "name": "stub",
            "auth": {"type": "api_key", "secret": "api_key"},
            "http": {"retries": {"attempts": 1}},
            "stations": {"path": "/sites", "items": "sites", "id": "id"},
            "readings": {
                "path": "/sites/{station_id}/data",
                "params": {"from": "{since}", "to": "{until}"},
                "items": "items",
                "timestamp": {"path": "time"},
                "values": {"power_w": {"path": "power", "type": "float", "required": True}},
            },
        }
    )


@pytest.fixture
def vendor() -> Iterator[tuple[VendorStub, list[float]]]:
    """Every station has one new reading at T0; the times its data was asked for are recorded."""
    asked: list[float] = []

    def data(request: StubRequest) -> tuple[int, Any]:
        asked.append(time.monotonic())
        return 200, {"items": [{"time": T0.isoformat(), "power": 1.0}]}

    with VendorStub() as stub:
        for sid in STATIONS:
            stub.route("GET", f"/sites/{sid}/data", data)
        yield stub, asked


@pytest.fixture
def state(redis_server) -> Iterator[StateStore]:
    client = connect_redis(redis_server.url)
    keys = StateKeys.for_env("settle")
    lease = Lease(client, keys, "settle-worker")
    assert lease.try_acquire()
    store = StateStore(client, keys, lease)
    for sid in STATIONS:
        store.advance_cursor(sid, T0 - STEP)
    yield store
    lease.release()


class SlowBroker:
    """Acknowledges each page `delay_s` after it was queued (`None`: never). Before it acknowledges,
    it reads the page's station cursor from Redis: what the cursor was while the PUBACK was owed."""

    def __init__(self, state: StateStore, delay_s: float | None) -> None:
        self.state = state
        self.delay_s = delay_s
        self.cursor_before_puback: dict[str, datetime | None] = {}
        self.timers: list[threading.Timer] = []

    def new_batch(self) -> PublishBatch:
        return PublishBatch()

    def publish_page(self, messages: list[OutboundMessage], batch: PublishBatch) -> list[Any]:
        batch.added(len(messages))
        if self.delay_s is not None:
            station = messages[0].station_id
            timer = threading.Timer(self.delay_s, self._ack, (station, batch, len(messages)))
            self.timers.append(timer)
            timer.start()
        return []

    def _ack(self, station: str, batch: PublishBatch, n: int) -> None:
        self.cursor_before_puback[station] = self.state.cursors().get(station)
        for _ in range(n):
            batch.acked()


def timed_cycle(
    base_url: str,
    publisher: Any,
    state: StateStore,
    *,
    stop_after_s: float | None = None,
    drain_deadline_s: float = 20.0,
    **runner: Any,
) -> tuple[CycleResult, float]:
    """One cycle of the six stations through the real runner (stopped after `stop_after_s`, as a
    SIGTERM would); its result and how long it took."""
    source = HttpJsonSource(config(), base_url=base_url, secrets={"api_key": "k"})
    cycle = CycleRunner(source, publisher, state, now=lambda: T0 + STEP, **runner)
    if stop_after_s is not None:
        threading.Timer(stop_after_s, cycle.stop.set).start()
    try:
        started = time.monotonic()
        result = cycle.run([Station(s) for s in STATIONS], drain_deadline_s=drain_deadline_s)
        return result, time.monotonic() - started
    finally:
        cycle.close()
        source.close()


def test_a_lane_calls_the_vendor_for_its_next_station_while_the_last_one_waits_for_its_pubacks(vendor, state):
    stub, asked = vendor
    broker = SlowBroker(state, delay_s=0.3)
    result, took = timed_cycle(stub.url, broker, state, concurrency=1)
    # One lane, six stations: waiting 0.3 s for each station's PUBACKs in turn would take >= 1.8 s.
    assert took < 1.2, f"the cycle took {took:.2f} s: the lane waited for each station's PUBACKs"
    assert asked[-1] - asked[0] < 0.3, "all six stations were asked for before the first PUBACK came"
    assert result.record.stations_synced == 6 and result.record.readings_published == 6
    assert broker.cursor_before_puback == {sid: T0 - STEP for sid in STATIONS}, "no cursor moved before its PUBACK"
    # The vendor's answer is complete up to the window's end: the cursor goes there.
    assert state.cursors() == {sid: T0 + STEP for sid in STATIONS}, "every cursor moved after its PUBACK"


def test_a_page_whose_pubacks_never_come_keeps_its_cursor_and_fails_transient(vendor, state):
    stub, _ = vendor
    result, took = timed_cycle(stub.url, SlowBroker(state, delay_s=None), state, concurrency=2, puback_timeout_s=0.5)
    assert 0.5 <= took < 3, f"the cycle ended {took:.2f} s after it started, not at the PUBACK deadline"
    assert result.record.stations_failed == 6 and result.record.errors_by_class == {"transient": 6}
    assert result.record.duplicates_possible == 6, "each sent reading may reach the platform again"
    assert {o.error for o in result.outcomes} == {ErrorClass.TRANSIENT}
    assert state.cursors() == {sid: T0 - STEP for sid in STATIONS}, "no cursor moved without its PUBACK"


class Page:
    """A `Settlement` that records what the settler told it."""

    def __init__(self, station: str, batch: PublishBatch, timeout_s: float = 5.0) -> None:
        self.station, self.batch = station, batch
        self.timeout_s = timeout_s
        self.deadline = time.monotonic() + timeout_s
        self.results: list[bool | Exception] = []
        self.error: SyncError | None = None

    def acked(self) -> list[CursorAdvance]:
        if self.station == "broken":
            raise RuntimeError("bookkeeping bug")
        return [CursorAdvance(self.station, T0)]

    def failed(self, error: SyncError) -> None:
        self.error = error

    def written(self, results: Sequence[bool | Exception]) -> None:
        self.results = list(results)


def script_calls(state: StateStore) -> int:
    stats = state.client.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k in ("cmdstat_evalsha", "cmdstat_eval"))


def test_pages_acknowledged_together_share_one_cursor_write_and_one_bad_page_stops_none(state):
    settler = Settler(state)
    held = PublishBatch()
    held.added()
    pages = [Page("S1", held)] + [Page(sid, PublishBatch()) for sid in [*STATIONS[1:], "broken"]]
    calls = script_calls(state)
    for page in pages:
        settler.submit(page)
    time.sleep(0.2)
    assert state.cursors()["S2"] == T0 - STEP, "nothing is written while the oldest page waits for its PUBACK"
    held.acked()
    assert settler.wait_idle(5)
    settler.close()
    assert [p.results for p in pages[:-1]] == [[True]] * 6, "each page gets its own outcome"
    assert pages[-1].results == [], "the page whose bookkeeping failed wrote nothing"
    assert state.cursors() == {sid: T0 for sid in STATIONS}
    assert script_calls(state) - calls == 1, "six pages settled in one script call"


def test_a_missing_puback_fails_only_its_own_page_at_its_deadline(state):
    settler = Settler(state)
    never = PublishBatch()
    never.added()
    late, fine = Page("S1", never, timeout_s=0.3), Page("S2", PublishBatch())
    settler.submit(late)
    settler.submit(fine)
    assert settler.wait_idle(5)
    settler.close()
    assert isinstance(late.error, TransientError) and "after 0.3s" in str(late.error)
    assert late.results == [] and fine.results == [True]
    assert state.cursors()["S1"] == T0 - STEP and state.cursors()["S2"] == T0


class BrokenBatch(PublishBatch):
    def wait_until(self, deadline: float, timeout_s: float | None = None) -> None:
        raise RuntimeError("a bug in waiting")


def test_a_bug_in_waiting_fails_that_page_only_and_the_settler_goes_on(state):
    settler = Settler(state)
    broken = Page("S1", BrokenBatch())
    settler.submit(broken)
    assert settler.wait_idle(5), "the page the bug hit counts as settled (failed) for the cycle's wait"
    after = Page("S2", PublishBatch())
    settler.submit(after)
    assert settler.wait_idle(5)
    settler.close()
    assert isinstance(broken.error, TransientError) and broken.results == [] and after.results == [True]
    assert state.cursors()["S1"] == T0 - STEP and state.cursors()["S2"] == T0


def test_a_stop_mid_cycle_abandons_the_stations_not_started_and_returns_by_the_drain_deadline(state):
    def slow(request: StubRequest) -> tuple[int, Any]:
        time.sleep(2)
        return 200, {"items": [{"time": T0.isoformat(), "power": 1.0}]}

    with VendorStub() as stub:
        for sid in STATIONS:
            stub.route("GET", f"/sites/{sid}/data", slow)
        result, took = timed_cycle(
            stub.url, RecordingPublisher(), state, stop_after_s=0.3, drain_deadline_s=0.5, concurrency=2
        )
    assert took < 1.5, f"returned {took:.2f} s after the start, not by the drain deadline"
    assert result.record.aborted and result.record.readings_published == 0
    abandoned = {o.station_id for o in result.outcomes if o.abandoned}
    assert len(abandoned) == 4, "the four stations no lane had started are abandoned outright"
    assert state.cursors() == {sid: T0 - STEP for sid in STATIONS}
