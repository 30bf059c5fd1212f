"""The `settle` lag and the `deferred` count, each through a real HTTP vendor stub and a real Redis:
a window ends at `now - settle` (nothing newer is asked for or published, the cursor stops there);
work a call budget cannot fit is counted in the run record, shown in the `deferred` column of
`c2c-sync status` and emitted as the `StationsDeferred` metric."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from rich.console import Console

from c2c_sync import render
from c2c_sync.status import EnvironmentStatus, QueueStatus, cursor_lag, read_cycles, read_heartbeat, read_lease
from functions.common.state import StateKeys
from functions.sync_worker.cycle import CycleRunner
from functions.sync_worker.observability import WorkerTelemetry
from functions.sync_worker.source.base import Station
from functions.sync_worker.source.config import VendorConfig
from functions.sync_worker.source.http_json import HttpJsonSource
from functions.sync_worker.store import Lease, StateStore, connect_redis
from tests.source.conftest import RecordingPublisher, frozen
from tests.support.vendor_stub import StubRequest, VendorStub

pytestmark = pytest.mark.integration

T0 = datetime(2024, 6, 1, 12, tzinfo=UTC)
SETTLE = timedelta(minutes=5)
STEP = timedelta(minutes=1)


def config(**readings: Any) -> VendorConfig:
    return VendorConfig.model_validate(
        {
            "name": "settled",
            "auth": {"type": "api_key"},
            "http": {"retries": {"attempts": 1}},
            "stations": {"path": "/sites"},
            "readings": {
                "path": "/sites/{station_id}/data",
                "params": {"from": "{since}", "to": "{until}"},
                "items": "data",
                "values": {"v": {"path": "v", "required": True}},
                **readings,
            },
        }
    )


@pytest.fixture
def state(redis_server) -> Iterator[StateStore]:
    client = connect_redis(redis_server.url)
    keys = StateKeys.for_env("settle-test")
    client.delete(*client.keys(f"{keys.prefix}:*") or [keys.history])
    lease = Lease(client, keys, "settle-test")
    assert lease.try_acquire()
    yield StateStore(client, keys, lease)
    lease.release()


def test_a_window_ends_at_now_minus_settle_and_nothing_newer_is_asked_for_or_published(state):
    """The vendor answers every minute up to its own clock, ignoring the window it was asked for
    (as some do): what is younger than `now - settle` waits for a later cycle, then goes out once."""
    vendor_now = [T0]

    def data(request: StubRequest):
        first = T0 - timedelta(minutes=30)
        minutes = int((vendor_now[0] - first) / STEP)
        items = [{"timestamp": (first + i * STEP).isoformat(), "v": i} for i in range(minutes + 1)]
        return 200, {"data": items}

    with VendorStub() as stub:
        stub.route("GET", "/sites/S1/data", data)
        source = HttpJsonSource(config(settle_s=SETTLE.total_seconds(), lookback_s=0), base_url=stub.url,
                                secrets={"api_key": "k"})  # fmt: skip
        state.advance_cursor("S1", T0 - timedelta(minutes=20))
        published: list[list[datetime]] = []
        for now in (T0, T0 + timedelta(minutes=3)):
            vendor_now[0] = now
            publisher = RecordingPublisher()
            runner = CycleRunner(source, publisher, state, concurrency=1, now=frozen(now))
            try:
                assert runner.run([Station("S1")]).record.stations_synced == 1
            finally:
                runner.close()
            published.append(sorted(datetime.fromisoformat(p["ts"]) for p in publisher.payloads))
            # Asked exactly up to now - settle, and the cursor stops there.
            assert datetime.fromisoformat(stub.requests[-1].query["to"]) == now - SETTLE
            assert state.cursors()["S1"] == now - SETTLE
        source.close()
    first, second = published
    # (T0 - 20 min, T0 - 5 min]: 15 minutes; the vendor's last 5 are not asked for or published.
    assert first == [T0 - timedelta(minutes=20) + i * STEP for i in range(1, 16)]
    # The next cycle asks from the cursor and sends the 3 minutes that settled since, once each.
    assert datetime.fromisoformat(stub.requests[-1].query["from"]) == T0 - SETTLE
    assert second == [T0 - SETTLE + i * STEP for i in range(1, 4)]
    assert max(second) == T0 + timedelta(minutes=3) - SETTLE


def test_work_the_budget_cannot_fit_is_counted_shown_by_status_and_emitted_as_a_metric(state, capsys):
    stations = [Station(f"S{i}") for i in range(5)]
    with VendorStub() as stub:
        for st in stations:
            stub.route("GET", f"/sites/{st.station_id}/data", lambda r: (200, {"data": []}))
        source = HttpJsonSource(config(budget={"calls": 3, "period_s": 3600}), base_url=stub.url,
                                secrets={"api_key": "k"})  # fmt: skip
        runner = CycleRunner(source, RecordingPublisher(), state, concurrency=1, now=lambda: T0)
        telemetry = WorkerTelemetry("settle-test")
        try:
            for _ in range(2):
                result = runner.run(stations)
                state.record_cycle(result.record)
                telemetry.cycle(
                    result.record,
                    readings_skipped=0,
                    connections_opened=0,
                    reconnects=Counter(),  # no uplink in this test: no reconnects
                    planned_reconnects=0,
                    puback_latencies_ms=[],
                )
        finally:
            runner.close()
            source.close()
        calls = len(stub.requests)
    assert calls == 3, "the budget is never exceeded"
    # Counted: 3 called and 2 deferred, then all 5 deferred (the Redis count is spent).
    history = state.history()  # newest first
    assert [(r.stations_synced, r.stations_deferred, r.stations_failed) for r in history] == [(0, 5, 0), (3, 2, 0)]
    # Shown: `c2c-sync status` renders the run history from Redis with a deferred column.
    now = datetime.now(UTC)
    shown = EnvironmentStatus(
        env="settle-test",
        generated_at=now,
        redis="test",
        lease=read_lease(state.client, state.keys),
        heartbeat=read_heartbeat(state.client, state.keys, now),
        cycles=read_cycles(state.client, state.keys, 5),
        cursors=cursor_lag({}, now, 5),
        queues=QueueStatus(dlq_url="(no queue in this test)", dlq_depth=0),
    )
    console = Console(width=160, record=True)
    console.print(render.cycles_table(shown))
    lines = console.export_text().splitlines()
    header = next(line for line in lines if "┃" in line)
    deferred = [c.strip() for c in header.strip("┃ ").split("┃")].index("deferred")
    rows = [[c.strip() for c in line.strip("│ ").split("│")] for line in lines if "│" in line]
    assert [row[deferred] for row in rows] == ["5", "2"]
    # Emitted: one EMF document per cycle carries StationsDeferred.
    docs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert [d["StationsDeferred"] for d in docs if "StationsDeferred" in d] in ([2, 5], [[2.0], [5.0]])
