"""End to end: the real worker process with the shipped huawei_fusionsolar.yaml against the
FusionSolar Northbound mock (tests/vendor_mocks, from Huawei's public docs), a real Redis, a real
Mosquitto and an independent subscriber, over six cycles, a worker restart and six more.

The mock runs on the wall clock with `time_scale=1/60`: its rules hold (session token, failCode
305/407, Roundup(plants/100) real-time calls per "5 minutes", 100 codes per call) but 5 minutes last
5 s; the definition's budget, snapshot resolution and login interval are scaled alike (its budget
period a little longer than the mock's, for the skew between the two processes' clocks). 60 plants
in four zones: one batched call per cycle, every plant read at the answer's time floored to the
(scaled) 5 minutes.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
import redis

from functions.common.state import StateKeys
from tests.vendor_mocks.fusionsolar import FusionSolarMock
from tests.worker.conftest import continuous_vendor_env, cycle_history, run_cycles_with_a_restart

pytestmark = pytest.mark.integration

PLANTS = 60
RESOLUTION_S = 5  # the vendor's 5 minutes at 1/60
INTERVAL_S = 6


def vendor_file(tmp_path) -> str:
    from functions.sync_worker.source.http_json import VENDORS_DIR

    text = (VENDORS_DIR / "huawei_fusionsolar.yaml").read_text()
    for old, new in (
        ("resolution_s: 300", f"resolution_s: {RESOLUTION_S}"),
        ("budget: {calls: 1, period_s: 300}", "budget: {calls: 1, period_s: 5.5}"),
        ("min_login_interval_s: 120", "min_login_interval_s: 2"),
        ("retry_after_s: 300", "retry_after_s: 5"),
    ):
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / "huawei_fusionsolar.yaml"
    path.write_text(text)
    return str(path)


def test_fusionsolar_six_cycles_and_a_restart_read_every_plant_each_cycle_within_the_budget(
    mosquitto, redis_server, vendor_mock_factory, subscriber_factory, tmp_path
):
    mock = vendor_mock_factory(
        "fusionsolar", sites=PLANTS, start=datetime.now(UTC).isoformat(), speed=1, time_scale=1 / 60
    )
    app = mock.app
    assert isinstance(app, FusionSolarMock)
    sub = subscriber_factory(mosquitto.port)
    client = redis.Redis.from_url(redis_url := redis_server.url, decode_responses=True)
    keys = StateKeys.for_env("test")
    env = continuous_vendor_env(
        mqtt_url=mosquitto.url,
        redis_url=redis_url,
        source_url=mock.url,
        tmp_path=tmp_path,
        config=vendor_file(tmp_path),
        interval_s=INTERVAL_S,
        C2C_SOURCE_USER=app.user_name,
        C2C_SOURCE_SYSTEM_CODE=app.system_code,
    )
    run_cycles_with_a_restart(env, tmp_path / "worker.log")
    records = cycle_history(client, keys)
    assert len(records) >= 12 and all(r.stations_failed == 0 for r in records), records[-1]
    assert app.stats.refused_total() == 0, app.stats.snapshot()

    time.sleep(0.5)  # the last PUBACKed messages reach the subscriber
    latest = {p["message_id"]: p for p in sub.payloads}
    assert len({(p["station_id"], p["series"], p["ts"]) for p in latest.values()}) == len(latest)
    by_time: dict[str, set[str]] = {}
    for p in latest.values():
        by_time.setdefault(p["ts"], set()).add(p["station_id"])
    codes = set(app.station_codes())
    # Every cycle that read (not deferred by the budget) read every plant at one floored time.
    synced = [r for r in records if r.stations_synced]
    assert len(synced) >= 6 and all(r.stations_synced == PLANTS for r in synced)
    assert len(by_time) >= len(synced) - 1 and all(plants == codes for plants in by_time.values())
    for ts in by_time:
        assert datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() % RESOLUTION_S == 0
