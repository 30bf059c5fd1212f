"""End to end: the real worker process with the FusionSolar adapter (the shipped
huawei_fusionsolar.yaml plus device KPIs by device type) against the Northbound mock
(vendor_mocks/, from Huawei's public docs), a real Redis, a real Mosquitto and an independent
subscriber, over six cycles, a worker restart and six more.

The mock's clock runs at 300x the wall clock from just before Europe/Berlin's clocks go back
(2026-10-25 01:00 UTC), unscaled otherwise: its rules hold as documented (session token, failCode
305/407, Roundup(plants/100) plant calls and Roundup(devices of a type/100) device calls per 5
minutes, 100 codes per call, lists Roundup(plants/100)+24 a day), but 5 minutes pass in 1 s. The
worker's wall-clock settings are scaled alike: its budgets' period (1.3 s, longer than the
mock's 1 s for the skew between the two processes' clocks), the login interval, the budget day the
lists are paced over. 60 plants in four zones, 60 inverters, 60 meters, 60 batteries (two on every
third plant): each cycle reads every device of every plant once, at the answer's time floored to 5
minutes, and the values are the mock's own for that time.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime

import pytest
import redis

from functions.common.state import StateKeys
from functions.sync_worker.source.fusionsolar import DEVICE_TYPES, HOUR_VALUES
from tests.worker.conftest import continuous_vendor_env, cycle_history, run_cycles_with_a_restart
from vendor_mocks.fusionsolar import FusionSolarMock, station_code

pytestmark = pytest.mark.integration

PLANTS = 60
SPEED = 300  # mock seconds per wall second: the vendor's 5 minutes last 1 s
START = "2026-10-25T00:00:00Z"  # Berlin goes from CEST to CET at 01:00 UTC, during the run
INTERVAL_S = 1.8  # the budget period and room for the cycles' jitter: a new 5-minute step each cycle
FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
VALUES = {k.endpoint: k.values for k in DEVICE_TYPES}
KIND = {1: "inverter", 39: "battery", 47: "meter"}


def vendor_file(tmp_path) -> str:
    from functions.sync_worker.source.http_json import VENDORS_DIR

    text = (VENDORS_DIR / "huawei_fusionsolar.yaml").read_text()
    for old, new in (
        ("budget: {calls: 1, period_s: 300}", f"budget: {{calls: 1, period_s: {300 / SPEED * 1.3}}}"),
        ("min_login_interval_s: 120", f"min_login_interval_s: {120 / SPEED}"),
        ("retry_after_s: 300", "retry_after_s: 1"),
    ):
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / "huawei_fusionsolar.yaml"
    path.write_text(text)
    return str(path)


def test_fusionsolar_devices_six_cycles_and_a_restart_across_a_dst_change_within_every_budget(
    mosquitto, redis_server, vendor_mock_factory, subscriber_factory, tmp_path
):
    mock = vendor_mock_factory("fusionsolar", sites=PLANTS, start=START, speed=SPEED)
    app = mock.app
    assert isinstance(app, FusionSolarMock)
    devices = list(app.devices.values())
    per_cycle = PLANTS + len(devices)
    assert Counter(d.type_id for d in devices)[39] == PLANTS and any(d.number == 2 for d in devices)
    sub = subscriber_factory(mosquitto.port)
    client = redis.Redis.from_url(redis_url := redis_server.url, decode_responses=True)
    keys = StateKeys.for_env("test")
    env = continuous_vendor_env(
        mqtt_url=mosquitto.url,
        redis_url=redis_url,
        source_url=mock.url,
        tmp_path=tmp_path,
        config="huawei_fusionsolar",
        interval_s=INTERVAL_S,
        C2C_SOURCE_ADAPTER="functions.sync_worker.source.fusionsolar:FusionSolarSource",
        C2C_SOURCE_SETTINGS=json.dumps({"config": vendor_file(tmp_path), "day_s": 86_400 / SPEED}),
        # The mock's clock is in the past: every reading lies within the window the worker reads.
        C2C_BACKFILL_WINDOW_S=str(400 * 86_400),
        C2C_SOURCE_USER=app.user_name,
        C2C_SOURCE_SYSTEM_CODE=app.system_code,
    )
    run_cycles_with_a_restart(env, tmp_path / "worker.log")
    records = cycle_history(client, keys)
    assert len(records) >= 12 and all(r.stations_failed == 0 for r in records), records
    assert app.stats.refused_total() == 0, app.stats.snapshot()  # no budget ever exceeded

    # New values every steady-state cycle: each reads every plant and device once. Not steady: a
    # cycle the SIGTERM cut short (aborted, its stations abandoned), and the first cycle of the new
    # process may find the budget's period not yet over (every station deferred, nothing lost).
    after_restart = False
    for i, r in enumerate(records):
        if r.aborted:
            after_restart = True
            continue
        if not (after_restart and r.stations_deferred == PLANTS and r.readings_published == 0):
            # Every real-time series, and the history hours of a pass (whose budget may defer a
            # station's next local day to the next cycle).
            assert r.stations_synced + r.stations_deferred == PLANTS and r.readings_published >= per_cycle, (i, r)
        after_restart = False
    full = sum(1 for r in records if r.readings_published >= per_cycle)
    assert full >= 11

    sub.settle()  # the worker has exited: what the broker accepted reaches the subscriber
    latest = {p["message_id"]: p for p in sub.payloads}
    assert len({(p["station_id"], p["series"], p["ts"]) for p in latest.values()}) == len(latest)
    hours = [p for p in sub.payloads if p["series"] == "hour"]
    latest = {k: p for k, p in latest.items() if p["series"] != "hour"}
    steps: dict[tuple[str, str], list[datetime]] = {}
    for p in latest.values():
        steps.setdefault((p["station_id"], p["series"]), []).append(
            datetime.strptime(p["ts"], FORMAT).replace(tzinfo=UTC)
        )
    want = {(station_code(d.site), f"{KIND[d.type_id]}/{d.esn}") for d in devices}
    want |= {(station_code(s), "plant") for s in app.fleet.sites}
    assert set(steps) == want  # every plant and every device, each its own series
    # 0 lost: each series read once per full cycle, at a new 5-minute step (the endpoints' calls of
    # one cycle may straddle a step); a cycle the SIGTERM cut short may have read some of its own.
    aborted = sum(1 for r in records if r.aborted)
    for key, times in steps.items():
        assert len(set(times)) == len(times) and full <= len(times) <= full + aborted, (key, sorted(times))
    every = sorted({t for times in steps.values() for t in times})
    assert every[0] < datetime(2026, 10, 25, 1, tzinfo=UTC) < every[-1]  # across the DST change
    devices_by_key = {(station_code(d.site), f"{KIND[d.type_id]}/{d.esn}"): d for d in devices}
    for p in latest.values():
        at = datetime.strptime(p["ts"], FORMAT).replace(tzinfo=UTC).timestamp()
        assert at % 300 == 0, p  # the answer's time floored to 5 minutes, in UTC
        device = devices_by_key.get((p["station_id"], p["series"]))
        if device is None:
            continue
        _, items = app.snapshot(device.id, at=at)  # the mock's own values for that step
        kind = KIND[device.type_id]
        assert p["values"] == {k: float(items[v.removeprefix("dataItemMap.")]) for k, v in VALUES[kind].items()}, p

    # The hourly history: read on each start and after missed steps (every cycle here skips one:
    # 1.8 s is 9 mock minutes), each hour once, contiguous UTC hours per plant, the mock's values.
    assert len({p["message_id"] for p in hours}) == len(hours) and hours
    last_step = max(every).timestamp()
    for s in app.fleet.sites:
        code = station_code(s)
        got = {
            datetime.strptime(p["ts"], FORMAT).replace(tzinfo=UTC).timestamp(): p
            for p in hours
            if p["station_id"] == code
        }
        hour_times = sorted(got)
        assert hour_times == [hour_times[0] + 3600 * i for i in range(len(hour_times))], code
        # From before the first step, through every hour over at least three cycles before the last.
        over_by = (last_step - 3 * INTERVAL_S * SPEED) // 3600 * 3600
        assert hour_times[0] <= every[0].timestamp() and hour_times[-1] + 3600 >= over_by, code
        for t, p in got.items():
            items = app.hour_values(code, t)
            assert p["values"] == {k: items[v.removeprefix("dataItemMap.")] for k, v in HOUR_VALUES.items()}
