"""End to end: the real worker process with the shipped solaredge.yaml against the SolarEdge mock
(tests/vendor_mocks, from SolarEdge's public docs), a real Redis, a real Mosquitto and an
independent subscriber, over six cycles, a worker restart and six more.

The mock runs on the wall clock (the worker's clock) with `time_scale=1/100`: every SolarEdge rule
holds (3 calls at a time, per-site daily quota, site-local times, quarter-hours null until
reported) but a "quarter-hour" lasts 9 s and a storage step 3 s, so each 3-second cycle finds new
battery values and every third a new power quarter (the lookback is scaled alike). 50 sites in
four zones (three with DST; the DST night itself is covered on the mock's clock by
tests/vendor_mocks/test_shipped_vendors.py), two batteries on every third site. Ground truth is the
mock's own (`reported_power`, `reported_storage`): every value reportable by each endpoint's final
cursor (the end of its last read).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
import redis

from functions.common.state import StateKeys, as_text
from functions.sync_worker.store import format_cursor, parse_cursor
from tests.vendor_mocks.solaredge import SolarEdgeMock
from tests.worker.conftest import continuous_vendor_env, cycle_history, run_cycles_with_a_restart

pytestmark = pytest.mark.integration

SITES = 50
INTERVAL_S = 3
TIME_SCALE = 1 / 100
QUARTER_S, STORAGE_STEP_S = 900 * TIME_SCALE, 300 * TIME_SCALE  # 9 s and 3 s
LOOKBACK_S = 60  # the shipped hour of lookback, scaled like the mock's durations
#: The mock (monotonic clock in this process) and the worker (wall clock in its own) may disagree by
#: a little: a value that turned reportable within this of the final read may come next cycle.
SKEW_S = 0.5


def vendor_file(tmp_path) -> str:
    """The shipped solaredge.yaml with its lookback scaled to the test's time."""
    from functions.sync_worker.source.http_json import VENDORS_DIR

    text = (VENDORS_DIR / "solaredge.yaml").read_text()
    assert text.count("lookback_s: 3600") == 2
    path = tmp_path / "solaredge.yaml"
    path.write_text(text.replace("lookback_s: 3600", f"lookback_s: {LOOKBACK_S}"))
    return str(path)


def utc(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def test_solaredge_six_cycles_and_a_restart_lose_nothing_collide_nowhere_and_stay_within_the_quota(
    mosquitto, redis_server, vendor_mock_factory, subscriber_factory, tmp_path
):
    started = datetime.now(UTC)  # the mock's clock on the worker's: to the microsecond
    mock = vendor_mock_factory("solaredge", sites=SITES, start=started.isoformat(), speed=1, time_scale=TIME_SCALE)
    app = mock.app
    assert isinstance(app, SolarEdgeMock)
    sub = subscriber_factory(mosquitto.port)
    client = redis.Redis.from_url(redis_url := redis_server.url, decode_responses=True)
    keys = StateKeys.for_env("test")
    sites = [str(i) for i in app.site_ids()]
    baseline = datetime.fromtimestamp(started.timestamp() // QUARTER_S * QUARTER_S - 4 * QUARTER_S, UTC)
    for endpoint in ("power", "storage"):
        client.hset(keys.cursors_of(endpoint), mapping={s: format_cursor(baseline) for s in sites})
    env = continuous_vendor_env(
        mqtt_url=mosquitto.url,
        redis_url=redis_url,
        source_url=mock.url,
        tmp_path=tmp_path,
        config=vendor_file(tmp_path),
        interval_s=INTERVAL_S,
        C2C_SOURCE_API_KEY=app.api_key,
    )
    run_cycles_with_a_restart(env, tmp_path / "worker.log")  # the new process resumes from Redis
    records = cycle_history(client, keys)
    assert len(records) >= 12 and all(r.stations_failed == 0 for r in records), records[-1]
    assert app.stats.refused_total() == 0, app.stats.snapshot()
    assert app.stats.max_in_flight <= 3

    time.sleep(0.5)  # the last PUBACKed messages reach the subscriber
    latest = {p["message_id"]: p for p in sub.payloads}
    assert len({(p["station_id"], p["series"], p["ts"]) for p in latest.values()}) == len(latest)
    assert all(p["message_id"] == f"{p['station_id']}:{p['series']}:{p['ts']}" for p in latest.values())

    cursors = {
        endpoint: {as_text(s): parse_cursor(as_text(v)) for s, v in client.hgetall(keys.cursors_of(endpoint)).items()}
        for endpoint in ("power", "storage")
    }
    lost: list[tuple] = []
    wrong: list[tuple] = []
    for site in sites:
        power_cursor = cursors["power"][site]
        want = app.reported_power(int(site), baseline + timedelta(seconds=1), power_cursor + timedelta(seconds=1))
        for t, value in want.items():
            if t + timedelta(seconds=QUARTER_S + SKEW_S) > power_cursor:
                continue  # not over when the worker last read (the next cycle's lookback re-reads it)
            got = latest.get(f"{site}:power:{t.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}")
            if got is None:
                lost.append((site, "power", t))
            elif got["values"]["power_w"] != value:
                wrong.append((site, "power", t, got["values"], value))
        storage_cursor = cursors["storage"][site]
        want_storage = app.reported_storage(
            int(site), baseline + timedelta(seconds=1), storage_cursor + timedelta(seconds=1)
        )
        for (serial, t), value in want_storage.items():
            if t + timedelta(seconds=STORAGE_STEP_S + SKEW_S) > storage_cursor:
                continue  # not reported when the worker last read: storage lists it only once reported
            got = latest.get(f"{site}:storage/{serial}:{t.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}")
            if got is None:
                lost.append((site, serial, t))
            elif got["values"]["power_w"] != value:
                wrong.append((site, serial, t, got["values"], value))
    assert lost == [], f"{len(lost)} lost, e.g. {lost[:5]}"
    assert wrong == [], f"{len(wrong)} wrong, e.g. {wrong[:5]}"
    delivered = {p["station_id"] for p in latest.values()}
    assert delivered == set(sites)
    batteries = {p["series"] for p in latest.values() if p["series"].startswith("storage/")}
    assert len(batteries) == sum(s.batteries for s in app.fleet.sites)
