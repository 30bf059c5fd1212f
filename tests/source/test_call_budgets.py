"""Call budgets and adaptive concurrency: the cycle plans within the vendor's budget, defers what
does not fit (counted), and never exceeds it; 429s lower the concurrency and it recovers."""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions.common.state import StateKeys
from functions.sync_worker.cycle import BudgetPacer, CycleRunner
from functions.sync_worker.errors import ThrottledError
from functions.sync_worker.source.base import Budget, EndpointPlan, Station
from functions.sync_worker.source.concurrency import AdaptiveConcurrency
from functions.sync_worker.source.config import VendorConfig
from functions.sync_worker.source.http_json import HttpJsonSource
from functions.sync_worker.store import Lease, StateStore, connect_redis, take_call_group
from tests.source.conftest import RecordingPublisher
from tests.support.vendor_stub import StubRequest, VendorStub

pytestmark = pytest.mark.integration

T0 = datetime(2024, 6, 1, 12, tzinfo=UTC)


def config(budget: dict[str, Any] | None = None, http: dict[str, Any] | None = None) -> VendorConfig:
    return VendorConfig.model_validate(
        {
            "name": "budgeted",
            "auth": {"type": "api_key"},
            "http": {"retries": {"attempts": 1}, **(http or {})},
            "stations": {"path": "/sites"},
            "readings": {
                "path": "/sites/{station_id}/data",
                "items": "data",
                "values": {"v": "v"},
                "lookback_s": 0,
                **({"budget": budget} if budget else {}),
            },
        }
    )


@pytest.fixture
def stub() -> Iterator[VendorStub]:
    with VendorStub() as server:
        for i in range(10):
            server.route("GET", f"/sites/S{i}/data", lambda r: (200, {"data": [{"timestamp": T0.isoformat(), "v": 1}]}))
        yield server


@pytest.fixture
def state(redis_server) -> Iterator[StateStore]:
    client = connect_redis(redis_server.url)
    keys = StateKeys.for_env("test")
    lease = Lease(client, keys, "budget-test")
    assert lease.try_acquire()
    yield StateStore(client, keys, lease)
    lease.release()


def cycle(source: HttpJsonSource, state: StateStore, stations: list[Station], concurrency: int = 4):
    runner = CycleRunner(source, RecordingPublisher(), state, concurrency=concurrency, now=lambda: T0)
    try:
        return runner.run(stations).record
    finally:
        runner.close()


def test_a_call_budget_is_never_exceeded_and_what_does_not_fit_is_deferred_in_turn(stub, state):
    source = HttpJsonSource(config(budget={"calls": 4, "period_s": 3600}), base_url=stub.url, secrets={"api_key": "k"})
    stations = [Station(f"S{i}") for i in range(10)]
    for i, station in enumerate(stations):  # S0 is the most behind, S9 the least
        state.advance_cursor(station.station_id, T0 - timedelta(hours=10 - i))
    runner = CycleRunner(source, RecordingPublisher(), state, concurrency=4, now=lambda: T0)
    try:
        # The first cycle may use the whole budget, the most behind stations first; the next cycles
        # (no time passed) one call each, which Redis refuses: the period is spent.
        records = [runner.run(stations).record for _ in range(3)]
    finally:
        runner.close()
    assert [(r.stations_synced, r.stations_deferred) for r in records] == [(4, 6), (0, 10), (0, 10)]
    assert sorted(r.path.split("/")[2] for r in stub.requests) == ["S0", "S1", "S2", "S3"], "most behind first"
    # The budget lives in Redis: a second worker (a restart) counts the same calls.
    restarted = HttpJsonSource(
        config(budget={"calls": 4, "period_s": 3600}), base_url=stub.url, secrets={"api_key": "k"}
    )
    assert cycle(restarted, state, stations).stations_deferred == 10
    assert len(stub.requests) == 4
    source.close()
    restarted.close()


def test_the_pacer_spreads_a_budget_over_the_cycles():
    pacer = BudgetPacer()
    plan = EndpointPlan("daily", budgets=(Budget(300, 86_400),))

    def allowed(now: datetime) -> int:
        allotment = pacer.allot([plan], now)
        return sum(allotment.take([("daily", "daily")]) for _ in range(1000))

    assert allowed(T0) == 300  # the first cycle: the whole budget (Redis counts what was used)
    assert allowed(T0 + timedelta(minutes=15)) == 2  # 300 x 900 / 86400 = 3.1, at 90 % -> 2
    assert allowed(T0 + timedelta(minutes=15, seconds=1)) == 1  # at least one call a cycle
    assert allowed(T0 + timedelta(days=3)) == 300  # never more than the period's budget


def test_the_pacer_carries_the_fraction_of_a_call_a_cycle_could_not_use():
    pacer = BudgetPacer()
    plan = EndpointPlan("daily", budgets=(Budget(300, 86_400),))
    pacer.allot([plan], T0)
    shares = []
    for i in range(1, 65):  # cycles every 7.5 minutes: 300 x 450 / 86400 x 0.9 = 1.40625 calls each
        allotment = pacer.allot([plan], T0 + timedelta(seconds=450 * i))
        shares.append(sum(allotment.take([("daily", "daily")]) for _ in range(10)))
    assert shares[:5] == [1, 1, 2, 1, 2]  # floored alone, every cycle would get 1: 64, not 90
    assert sum(shares) == 90


def test_a_station_budget_gives_each_station_the_same_share_every_cycle():
    pacer = BudgetPacer()
    per_site = Budget(300, 86_400, "station")
    plans = [EndpointPlan("power", budgets=(per_site,)), EndpointPlan("storage", budgets=(per_site,))]
    pacer.allot(plans, T0)
    allotment = pacer.allot(plans, T0 + timedelta(minutes=30))  # 300 x 1800 / 86400 x 0.9 = 5.6 -> 5
    share = per_site.share("power")
    for site in ("S1", "S2"):  # each site its own five, whichever endpoint takes them
        taken = [allotment.take([(share, per_site.counter(ep, site))]) for ep in ("power", "storage") * 4]
        assert taken == [True] * 5 + [False] * 3


def test_budget_reservations_race_safely_across_threads(state):
    granted = []

    def take() -> None:
        granted.append(state.take_call([("race", 25, 60)]))

    threads = [threading.Thread(target=take) for _ in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(granted) == 25


def test_a_call_refused_by_one_budget_spends_nothing_of_the_others(state):
    account, site = ("@vendor:60", 10, 60.0), ("@station:60:S1", 1, 60.0)
    assert state.take_call([account, site])
    assert not state.take_call([account, site]), "the site's one call is spent"
    assert state.client.zcard(state.keys.call_budget("@vendor:60")) == 1, "the refused call took nothing"
    assert state.take_call([account, ("@station:60:S2", 1, 60.0)]), "another site still has its own"


def test_the_calls_of_a_group_are_taken_in_one_script_call_each_with_its_own_outcome(state):
    """In order within the group: taken, refused (its budget spent by the call before it, and
    nothing taken from the account's), a call whose budget key is not a sorted set fails alone."""
    client = state.client
    account, site, broken = (state.keys.call_budget(c) for c in ("@vendor:grp", "@station:grp:S1", "broken"))
    client.set(broken, "not a sorted set")
    calls = [
        [(account, 10, 60_000), (site, 1, 60_000)],
        [(account, 10, 60_000), (site, 1, 60_000)],
        [(broken, 10, 60_000)],
        [(account, 10, 60_000)],
    ]
    client.script_load(state._take_calls.script)  # no NOSCRIPT retry among the calls counted

    def evalsha_calls() -> int:
        return int(client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))

    before = evalsha_calls()
    outcomes = take_call_group(state._take_calls, calls)
    assert evalsha_calls() - before == 1, "one script call for the group"
    assert outcomes[0] == 1 and outcomes[1] == 0 and outcomes[3] == 1, outcomes
    assert isinstance(outcomes[2], Exception) and "WRONGTYPE" in str(outcomes[2])
    assert client.zcard(account) == 2 and client.zcard(site) == 1


def two_endpoints(budget: list[dict[str, Any]]) -> VendorConfig:
    endpoint = {"items": "data", "values": {"v": "v"}, "lookback_s": 0, "budget": budget}
    return VendorConfig.model_validate(
        {
            "name": "per-site",
            "auth": {"type": "api_key"},
            "http": {"retries": {"attempts": 1}},
            "stations": {"path": "/sites"},
            "readings": [
                {"name": "power", "path": "/sites/{station_id}/data", **endpoint},
                {"name": "storage", "path": "/sites/{station_id}/storage", **endpoint},
            ],
        }
    )


def calls_by_site(stub: VendorStub) -> Counter[str]:
    return Counter(r.path.split("/")[2] for r in stub.requests)


def test_a_per_station_budget_is_shared_by_the_endpoints_and_never_exceeded_per_station(stub, state):
    for i in range(10):
        stub.route("GET", f"/sites/S{i}/storage", lambda r: (200, {"data": [{"timestamp": T0.isoformat(), "v": 2}]}))
    budget = [{"calls": 3, "period_s": 3600, "scope": "station"}]
    source = HttpJsonSource(two_endpoints(budget), base_url=stub.url, secrets={"api_key": "k"})
    stations = [Station("S0"), Station("S1")]
    clock = [T0]
    runner = CycleRunner(source, RecordingPublisher(), state, concurrency=1, now=lambda: clock[0])
    try:
        records = []
        for minutes in (0, 5, 10):
            clock[0] = T0 + timedelta(minutes=minutes)
            records.append(runner.run(stations).record)
    finally:
        runner.close()
    # First cycle: both endpoints of both sites (2 of each site's 3). Second: one call a site, so
    # power is read and storage deferred. Third: every site's budget is spent in Redis.
    assert [(r.stations_synced, r.stations_deferred) for r in records] == [(2, 0), (0, 2), (0, 2)]
    assert calls_by_site(stub) == {"S0": 3, "S1": 3}
    assert state.client.zcard(state.keys.call_budget("@station:3600:S0")) == 3
    source.close()


def test_endpoints_sharing_a_station_share_of_one_call_take_turns(stub, state):
    # SolarEdge's 300 calls a day per site at a cycle every 5 minutes: 0.94 calls a cycle, paced to
    # one. Power is declared first; without turns it would take that call every cycle.
    stub.route("GET", "/sites/S0/storage", lambda r: (200, {"data": [{"timestamp": T0.isoformat(), "v": 2}]}))
    budget = [{"calls": 300, "period_s": 86_400, "scope": "station"}]
    source = HttpJsonSource(two_endpoints(budget), base_url=stub.url, secrets={"api_key": "k"})
    clock = [T0]
    runner = CycleRunner(source, RecordingPublisher(), state, concurrency=1, now=lambda: clock[0])
    read = []
    try:
        for minutes in (0, 5, 10, 15, 20):
            clock[0] = T0 + timedelta(minutes=minutes)
            before = len(stub.requests)
            runner.run([Station("S0")])
            read.append(sorted(r.path.split("/")[-1] for r in stub.requests[before:]))
    finally:
        runner.close()
        source.close()
    assert read == [["data", "storage"], ["data"], ["storage"], ["data"], ["storage"]]


def test_a_vendor_budget_is_shared_by_every_endpoint_and_station(stub, state):
    for i in range(10):
        stub.route("GET", f"/sites/S{i}/storage", lambda r: (200, {"data": [{"timestamp": T0.isoformat(), "v": 2}]}))
    budget = [{"calls": 5, "period_s": 3600, "scope": "vendor"}, {"calls": 300, "period_s": 86400, "scope": "station"}]
    source = HttpJsonSource(two_endpoints(budget), base_url=stub.url, secrets={"api_key": "k"})
    stations = [Station(f"S{i}") for i in range(4)]
    for i, station in enumerate(stations):  # S0 is the most behind
        state.advance_cursor(station.station_id, T0 - timedelta(hours=4 - i), endpoint="power")
    record = cycle(source, state, stations, concurrency=1)
    # S0 and S1 read both endpoints (4 calls), S2 its power (the 5th); the rest is deferred.
    assert (record.stations_synced, record.stations_deferred) == (2, 2)
    assert calls_by_site(stub) == {"S0": 2, "S1": 2, "S2": 1}
    assert cycle(source, state, stations, concurrency=1).stations_deferred == 4
    assert len(stub.requests) == 5
    source.close()


def test_budgets_take_one_or_a_list_with_one_per_scope():
    one = two_endpoints([{"calls": 1, "period_s": 1}]).readings[0].budget
    assert [(b.calls, b.scope) for b in one] == [(1, "endpoint")]
    with pytest.raises(ValueError, match=r"at most one budget per scope, repeated: \['station'\]"):
        two_endpoints(
            [{"calls": 1, "period_s": 1, "scope": "station"}, {"calls": 2, "period_s": 9, "scope": "station"}]
        )


def test_sustained_429s_lower_concurrency_and_it_recovers(stub):
    in_flight, peak, throttling = [0], [0], [True]
    lock = threading.Lock()

    def data(request: StubRequest):
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        time.sleep(0.02)
        with lock:
            in_flight[0] -= 1
        if throttling[0]:
            return 429, {"error": "slow down"}, {"Retry-After": "0"}
        return 200, {"data": []}

    stub.route("GET", "/sites/X/data", data)
    source = HttpJsonSource(config(http={"max_concurrency": 8}), base_url=stub.url, secrets={"api_key": "k"})
    limiter = source.transport.concurrency
    assert isinstance(limiter, AdaptiveConcurrency) and limiter.limit == 8

    def call() -> None:
        with contextlib.suppress(ThrottledError):
            source.fetch_readings(Station("X"), T0 - timedelta(hours=1), T0, 10)

    def burst(n: int) -> None:
        threads = [threading.Thread(target=call) for _ in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    burst(16)
    assert limiter.limit == 1, "halved on each 429 down to one"
    peak[0] = 0
    burst(8)
    assert peak[0] == 1, "while throttled, one request at a time"
    throttling[0] = False
    for _ in range(8):
        burst(20)
    assert limiter.limit == 8, "additive increase back to the vendor's maximum"
    source.close()
