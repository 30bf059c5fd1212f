"""End to end: the real worker process with the shipped solaredge.yaml against the SolarEdge mock
(vendor_mocks/, from SolarEdge's public docs), a real Redis, a real Mosquitto and an
independent subscriber, over six cycles, a worker restart and six more, across the night Berlin
turns its clocks back.

Clocks: the mock and the worker both start 25 s before 2026-10-25 01:00 UTC, when Berlin's local
03:00 CEST becomes 02:00 CET again (the worker's wall clock shifted by tests/support/shifted_clock.py,
the mock's clock started at the same instant), so the run crosses into the repeated local hour:
answers list site-local times that go back an hour, and a window ending in the second occurrence
must be asked past it. The mock keeps every SolarEdge rule (3 calls at a time, the daily quota per
site and per account key, site-local times, quarter-hours null until reported, the window limits)
with its durations scaled by 1/150 and the lookback alike: a quarter-hour lasts 6 s and a storage
step 2 s, so every 3-second cycle has new battery values and every other a new power quarter. The
shipped site budget (300 calls a day) is scaled as a 3-second cycle stands for the shipped 15-minute
one (1/300): the worker's pacing then gives each site the calls a 15-minute cycle gets (two), while
the mock's own daily quota (1/150) still refuses any call over it.

52 sites in four zones (13 in Berlin), two batteries on every third; four sites report late (their
quarter-hours stay null, their battery values unlisted, for 1.5 quarter-hours), which the lookback
picks up. Ground truth is the mock's own model (`reported_power`, `reported_storage`).
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import redis

from functions.common.state import StateKeys
from functions.sync_worker.store import format_cursor
from tests.worker.conftest import continuous_vendor_env, cycle_history, run_cycles_with_a_restart
from vendor_mocks.solaredge import SolarEdgeMock

pytestmark = pytest.mark.integration

SITES = 52
INTERVAL_S = 3
TIME_SCALE = 1 / 150
QUARTER_S, STORAGE_STEP_S = 900 * TIME_SCALE, 300 * TIME_SCALE  # 6 s and 2 s
LOOKBACK_S = 3600 * TIME_SCALE  # the shipped hour, scaled: 24 s
#: Berlin falls back at 01:00 UTC on 2026-10-25 (03:00 CEST -> 02:00 CET).
FALL_BACK = datetime(2026, 10, 25, 1, tzinfo=UTC)
#: The clocks start this long before it: the restarted worker crosses it. A window whose start is in
#: the second occurrence is answered from the first (a vendor reads the local time as the earlier
#: instant): an hour of data, seconds of mock time per call at this scale, so the run ends before
#: its lookback reaches back past the change (tests/source/test_station_time.py covers that case).
LEAD_S = 25
LATE_SITES, LATE_S = 4, 1.5 * QUARTER_S
#: The mock (monotonic clock in this process) and the worker (its own wall clock) may disagree by
#: a little: a value that turned reportable within this of the final read may come next cycle.
SKEW_S = 0.3
TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def vendor_file(tmp_path) -> str:
    """The shipped solaredge.yaml with its lookback and budget period scaled to the test's time."""
    from functions.sync_worker.source.http_json import VENDORS_DIR

    text = (VENDORS_DIR / "solaredge.yaml").read_text()
    budget = "budget: {calls: 300, period_s: 86400, scope: station}"
    assert text.count("lookback_s: 3600") == 2 and text.count(budget) == 2
    text = text.replace("lookback_s: 3600", f"lookback_s: {LOOKBACK_S:g}")
    text = text.replace(budget, budget.replace("86400", f"{86400 * INTERVAL_S / 900:g}"))
    path = tmp_path / "solaredge.yaml"
    path.write_text(text)
    return str(path)


def _ts(message_id: str) -> datetime:
    """The UTC time a message id ends with (`<site>:<series>:<ts>`)."""
    return datetime.strptime(message_id[-len("2026-10-25T01:00:00.000000Z") :], TS_FORMAT).replace(tzinfo=UTC)


def test_solaredge_across_the_autumn_dst_change_with_a_restart_loses_nothing_and_gets_new_values_every_cycle(
    mosquitto, redis_server, vendor_mock_factory, subscriber_factory, tmp_path
):
    offset_s = (FALL_BACK - timedelta(seconds=LEAD_S)).timestamp() - time.time()
    mock = vendor_mock_factory(
        "solaredge",
        sites=SITES,
        start=datetime.fromtimestamp(time.time() + offset_s, UTC).isoformat(),
        speed=1,
        time_scale=TIME_SCALE,
    )
    app = mock.app
    assert isinstance(app, SolarEdgeMock)
    # The mock's clock started when the fixture built it, a little after `offset_s` was taken (up to
    # a second under load): the worker runs on the mock's clock as it is, not as it was meant to be.
    offset_s = app.clock.now() - time.time()
    zones = {site.zone_name for site in app.fleet.sites}
    assert len(zones) >= 3 and sum(s.batteries == 2 for s in app.fleet.sites) >= 2
    sites = [str(i) for i in app.site_ids()]
    berlin = [s for s, site in zip(sites, app.fleet.sites, strict=True) if site.zone_name == "Europe/Berlin"]
    late = {s: LATE_S for s in sites[:LATE_SITES]}
    for site, lag in late.items():
        app.set_report_lag(site, lag)
    lag_of = {s: late.get(s, 0.0) for s in sites}

    sub = subscriber_factory(mosquitto.port)
    client = redis.Redis.from_url(redis_url := redis_server.url, decode_responses=True)
    keys = StateKeys.for_env("test")
    now = app.clock.now()
    baseline = datetime.fromtimestamp(now // QUARTER_S * QUARTER_S - 4 * QUARTER_S, UTC)
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
    restarted = run_cycles_with_a_restart(env, tmp_path / "worker.log", clock_offset_s=offset_s)
    records = cycle_history(client, keys)
    assert len(records) >= 12 and all(r.stations_failed == r.stations_deferred == 0 for r in records), records[-1]
    assert records[0].started_at < FALL_BACK < records[-1].started_at, "the run did not cross the DST change"
    assert app.stats.refused_total() == 0, app.stats.snapshot()
    assert app.stats.max_in_flight <= 3

    sub.settle()  # the worker has exited: what the broker accepted reaches the subscriber
    latest = {p["message_id"]: p for p in sub.payloads}
    assert len({(p["station_id"], p["series"], p["ts"]) for p in latest.values()}) == len(latest)
    assert all(p["message_id"] == f"{p['station_id']}:{p['series']}:{p['ts']}" for p in latest.values())

    # Ground truth: every value the mock reports by the end, by message id, with the time it became
    # reportable (its interval's end plus the site's lag). Every value reportable when the last
    # complete cycle read must have been delivered.
    end = datetime.fromtimestamp(app.clock.now(), UTC)
    last_read = max(r.started_at for r in records if not r.aborted).timestamp() - SKEW_S
    truth: dict[str, tuple[float, float]] = {}  # id -> (value, reportable at)
    first_window = baseline - timedelta(seconds=LOOKBACK_S)  # the first cycle reads (cursor - lookback, now]
    since = first_window - timedelta(seconds=QUARTER_S)
    for site in sites:
        for t, value in app.reported_power(int(site), since, end).items():
            mid = f"{site}:power:{t.strftime(TS_FORMAT)}"
            truth[mid] = (value, t.timestamp() + QUARTER_S + lag_of[site])
        for (serial, t), value in app.reported_storage(int(site), since, end).items():
            mid = f"{site}:storage/{serial}:{t.strftime(TS_FORMAT)}"
            truth[mid] = (value, t.timestamp() + STORAGE_STEP_S + lag_of[site])

    expected = {m for m, (_, reportable) in truth.items() if reportable <= last_read and _ts(m) > first_window}
    lost = sorted(expected - set(latest))
    assert lost == [], f"{len(lost)} lost, e.g. {lost[:5]}"
    unknown = sorted(set(latest) - set(truth))  # a time read an hour off lands here
    assert unknown == [], f"{len(unknown)} not in the mock's data, e.g. {unknown[:5]}"
    wrong = [
        (m, p["values"]["power_w"], truth[m][0]) for m, p in latest.items() if p["values"]["power_w"] != truth[m][0]
    ]
    assert wrong == [], f"{len(wrong)} wrong, e.g. {wrong[:5]}"
    assert {p["station_id"] for p in latest.values()} == set(sites)
    batteries = {p["series"] for p in latest.values() if p["series"].startswith("storage/")}
    assert len(batteries) == sum(s.batteries for s in app.fleet.sites)

    # The repeated hour: Berlin's values on both sides of the change, each at its own UTC time.
    cet = ZoneInfo("Europe/Berlin")
    for fold, side in ((0, "before"), (1, "after")):
        in_hour = [
            m
            for m, p in latest.items()
            if p["station_id"] in berlin
            and (ts := _ts(m)).astimezone(cet).hour == 2
            and ts.astimezone(cet).fold == fold
        ]
        assert in_hour, f"no Berlin value {side} the change in its repeated hour"

    # New values every steady-state cycle (each after the first, but one cut short by the SIGTERM
    # that ends a worker), by the mock's ground truth: a value that became reportable after the cycle
    # before had made its last call, and before this cycle's window ends, is new to this cycle (the
    # one before could not have it); the cycle's own count of first-time values must reach that.
    # (The subscriber's receipt times cannot tell cycles apart: under load it lags by seconds.)
    steady = [k for k in range(1, len(records)) if not records[k].aborted]
    assert len(steady) >= 10
    short = []
    for k in steady:
        # After the restart, the first worker's last, stopped cycle may have sent some (unrecorded).
        after = records[k - 1].finished_at.timestamp() + SKEW_S if k != restarted else math.inf
        upto = records[k].started_at.timestamp() - SKEW_S
        must = sum(1 for _, reportable in truth.values() if after < reportable <= upto)
        if records[k].readings_published < max(1, must):
            short.append((k, records[k].readings_published, must))
    assert short == [], f"cycles sending fewer new values than the mock made reportable: {short}"
    # Late values filled later: each late site has delivered values that a whole cycle ran without
    # (their interval over, but null or unlisted until the site's lag passed).
    spans = [(r.started_at.timestamp(), r.finished_at.timestamp()) for r in records]
    filled_late = {
        site
        for m in latest
        if (site := m.split(":")[0]) in late
        and any(truth[m][1] - lag_of[site] <= start and end < truth[m][1] - SKEW_S for start, end in spans)
    }
    assert filled_late == set(late), f"late values filled later only at {sorted(filled_late)}"
