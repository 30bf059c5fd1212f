"""End to end through the real worker process against the simulator's /v2 API (POST + session
login, errors in HTTP 200 bodies, three time zones, two batteries on some sites answered device by
device, values null first then reported, revised values, a call budget the simulator enforces by
refusing), a real Redis, a real Mosquitto and an independent subscriber, over more than six cycles
and one worker restart, across the night Berlin moves its clocks forward: the simulator's clock and
the worker's wall clock (tests/support/shifted_clock.py) run on the same offset, starting shortly
before 2026-03-29 01:00 UTC, so the Berlin sites' local times jump from 01:59:58 to 03:00:00 mid-run.

Ground truth is the simulator's closed form (`simulator.vendor_v2.expected_power`): every value of
every (site, battery, slot), late or revised, at any time.
"""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest
import redis

from functions.common.state import StateKeys, as_text
from functions.sync_worker.store import format_cursor, parse_cursor
from simulator.vendor_v2 import V2Settings, batteries, expected_power, zone_name
from tests.support.simulator import DEFAULT_API_KEY
from tests.worker.conftest import base_env, cycle_history, run_worker_for_cycles

pytestmark = pytest.mark.integration

SLOT_S = 2
REVISE_AFTER_S = 5
LOOKBACK_S = 60
STATIONS = 12
SEED = 1
#: The simulator refuses a 21st /v2/history call inside 4 s; the worker plans 16 per 4 s (12 sites
#: every 2 s: some wait a cycle, every cycle has room for some).
VENDOR_BUDGET, WORKER_BUDGET, BUDGET_PERIOD_S = 20, 16, 4
#: Berlin springs forward (CET -> CEST) at this instant; the run starts `LEAD_S` before it, so the
#: first process's steady cycles cross it and the baseline (30 s back) lies before it.
SPRING_FORWARD = datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
LEAD_S = 12


def vendor_file(tmp_path) -> str:
    """The shipped simulator_v2 config with the test's budget and a lookback fit for 2 s slots."""
    from functions.sync_worker.source.http_json import VENDORS_DIR

    text = (VENDORS_DIR / "simulator_v2.yaml").read_text()
    text = text.replace(
        "budget: {calls: 1000, period_s: 60}", f"budget: {{calls: {WORKER_BUDGET}, period_s: {BUDGET_PERIOD_S}}}"
    )
    text = text.replace("lookback_s: 600 ", f"lookback_s: {LOOKBACK_S} ")
    assert f"calls: {WORKER_BUDGET}" in text and f"lookback_s: {LOOKBACK_S} " in text
    path = tmp_path / "simulator_v2.yaml"
    path.write_text(text)
    return str(path)


def test_six_cycles_and_a_restart_lose_nothing_collide_nowhere_and_keep_the_budget(
    mosquitto, redis_server, simulator_factory, subscriber_factory, tmp_path
):
    sim = simulator_factory(
        stations=STATIONS,
        clock="real",
        extra_args=[
            "--v2-interval-s", str(SLOT_S),
            "--v2-revise-after-s", str(REVISE_AFTER_S),
            "--v2-budget-calls", str(VENDOR_BUDGET),
            "--v2-budget-period-s", str(BUDGET_PERIOD_S),
        ],
    )  # fmt: skip
    # The simulator and the worker processes on one clock, shifted by the same number of seconds.
    offset_s = (SPRING_FORWARD - timedelta(seconds=LEAD_S)).timestamp() - time.time()
    sim.advance_clock(offset_s)
    sub = subscriber_factory(mosquitto.port)
    client = redis.Redis.from_url(redis_url := redis_server.url, decode_responses=True)
    keys = StateKeys.for_env("test")
    stations = [f"site-{i:05d}" for i in range(1, STATIONS + 1)]
    baseline = datetime.fromtimestamp((time.time() + offset_s) // SLOT_S * SLOT_S - 30, UTC)
    client.hset(keys.cursors_of("battery"), mapping={s: format_cursor(baseline) for s in stations})
    env = base_env(
        mqtt_url=mosquitto.url,
        redis_url=redis_url,
        source_url=sim.url,
        tmp_path=tmp_path,
        C2C_SOURCE_CONFIG=vendor_file(tmp_path),
        C2C_SOURCE_API_KEY=DEFAULT_API_KEY,
        C2C_MODE="continuous",
        C2C_INTERVAL_S=str(SLOT_S),
        C2C_CONCURRENCY="4",
        C2C_SIGNAL_URL="redis",
    )

    starts = [run_worker_for_cycles(env, 8, tmp_path / "worker.log", clock_offset_s=offset_s)]
    starts.append(
        run_worker_for_cycles(env, 7, tmp_path / "worker.log", clock_offset_s=offset_s)
    )  # a restart: the new process starts from the cursors, digests and budget in Redis
    records = cycle_history(client, keys)
    assert len(records) >= 15

    cursors = {as_text(s): parse_cursor(as_text(v)) for s, v in client.hgetall(keys.cursors_of("battery")).items()}
    sub.settle()  # the worker has exited: what the broker accepted reaches the subscriber
    latest: dict[str, dict] = {}
    for payload in sub.payloads:
        latest[payload["message_id"]] = payload  # in arrival order: the last one is the newest value

    # 0 id collisions: one id per (station, series, time), and both batteries of a site apart.
    triples = {(p["station_id"], p["series"], p["ts"]) for p in latest.values()}
    assert len(triples) == len(latest)
    assert all(p["message_id"] == f"{p['station_id']}:{p['series']}:{p['ts']}" for p in latest.values())

    lost, wrong = [], []
    by_station: dict[str, int] = defaultdict(int)
    for index, site in enumerate(stations, start=1):
        for sn in batteries(index):
            t = baseline + timedelta(seconds=SLOT_S)
            while t <= cursors[site]:
                ts = t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
                got = latest.get(f"{site}:battery/{sn}:{ts}")
                if got is None:
                    lost.append((site, sn, ts))
                else:
                    by_station[site] += 1
                    # UTC times exact, and the newest value once its revision was due before the
                    # station's last read (its cursor is that read's `until`; a deferred station's
                    # last read can be cycles before the end).
                    settled_by = t + timedelta(seconds=REVISE_AFTER_S + SLOT_S)
                    if settled_by <= cursors[site]:
                        want = expected_power(
                            SEED,
                            site,
                            index,
                            sn,
                            int(t.timestamp()),
                            time.time() + offset_s,
                            V2Settings(interval_s=SLOT_S, revise_after_s=REVISE_AFTER_S),
                        )
                        if got["values"] != {"power_kw": want}:
                            wrong.append((site, sn, ts, got["values"], want))
                t += timedelta(seconds=SLOT_S)
    assert lost == [], f"{len(lost)} readings lost up to the final cursors, e.g. {lost[:5]}"
    assert wrong == [], f"{len(wrong)} readings with a stale or shifted value, e.g. {wrong[:5]}"
    assert all(by_station[s] > 0 for s in stations), "every site delivered"
    # The Berlin sites crossed the spring-forward: every slot on both sides is there under its exact
    # UTC time (above), and no battery reading lies off the slot grid or outside the run (a local
    # time read with the wrong offset would sit an hour off).
    berlin = [site for i, site in enumerate(stations, start=1) if zone_name(i) == "Europe/Berlin"]
    assert berlin and all(baseline < SPRING_FORWARD < cursors[site] - timedelta(seconds=4 * SLOT_S) for site in berlin)
    run_end = datetime.fromtimestamp(time.time() + offset_s, UTC)
    first_read = baseline - timedelta(seconds=LOOKBACK_S)  # the first window reaches a lookback back
    battery_times = {
        p["message_id"]: datetime.fromisoformat(p["ts"]) for p in latest.values() if p["series"] != "realtime"
    }
    off_grid = [
        mid for mid, at in battery_times.items() if not (first_read < at <= run_end and at.timestamp() % SLOT_S == 0)
    ]
    assert off_grid == [], off_grid[:5]

    # Budgets never exceeded (the simulator refuses what is over), logins never refused.
    v2 = sim.admin("GET", "/_v2")
    assert v2["refusals"].get("budget", 0) == 0 and v2["refusals"].get("login", 0) == 0, v2
    assert sum(r.stations_deferred for r in records) > 0, "the budget bound: some stations waited a cycle"
    # The batched snapshot endpoint: all 12 sites in one request per cycle, each site its share.
    assert len(records) <= v2["served"]["realtime"] <= len(records) + 2, v2
    assert {p["station_id"] for p in latest.values() if p["series"] == "realtime"} == set(stations)
    # New values in every steady-state cycle: once the first budget period of each process is over
    # (its first cycle may spend the whole budget catching up, and it lasts a while), with two
    # cycles of margin; each process's cycles on their own.
    bounds = [*starts, len(records)]
    steady = [
        r
        for first, end in pairwise(bounds)
        for r in records[first:end]
        if r.started_at >= records[first].finished_at + timedelta(seconds=BUDGET_PERIOD_S + 2 * SLOT_S)
    ]
    assert len(steady) >= 3 and all(r.readings_published > 0 for r in steady), [
        (r.readings_published, r.stations_deferred) for r in records
    ]
