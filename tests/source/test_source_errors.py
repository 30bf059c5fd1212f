"""Every vendor failure comes out of the source as one of the four error classes, after the right
amount of retrying — proven from the simulator's side (request counts and arrival times)."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest

from functions.common.telemetry import WORKER_SERVICE
from functions.sync_worker.errors import AuthError, PermanentError, ThrottledError, TransientError
from functions.sync_worker.observability import logger
from functions.sync_worker.source.base import Station
from tests.source.conftest import FAST_HTTP, NOW, make_source
from tests.support.services import free_port
from tests.support.simulator import DEFAULT_API_KEY

pytestmark = pytest.mark.integration

ATTEMPTS = FAST_HTTP["retries"]["attempts"]
WINDOW = (NOW - timedelta(minutes=10), NOW)


def _requests_for(sim, sid: str) -> int:
    return sim.stats([sid])["stations"].get(sid, {}).get("requests", 0)


def test_wrong_api_key_is_an_auth_error_without_retries(sim):
    source = make_source(sim, secrets={"api_key": "wrong"})
    with pytest.raises(AuthError, match="401"):
        source.fetch_readings(Station("site-00001"), *WINDOW, 10)
    assert _requests_for(sim, "site-00001") == 1  # a static key that did not change is not retried
    assert sim.stats()["auth_failures"] == 1


def test_a_rotated_key_is_picked_up_after_a_401(sim):
    keys = iter(["old-key", DEFAULT_API_KEY])
    current = {"value": next(keys)}

    def secret(name: str) -> str:  # what a Secrets Manager lookup would return, rotated in between
        return current["value"]

    source = make_source(sim, secrets=secret)
    current["value"] = next(keys)
    assert len(source.fetch_readings(Station("site-00001"), *WINDOW, 10)) == 10
    assert source.counters.auth_refreshes == 1 and sim.stats()["auth_failures"] == 1


def test_forbidden_station_is_an_auth_error_and_others_still_work(sim):
    sim.set_faults(stations={"site-00004": "forbidden"})
    source = make_source(sim)
    with pytest.raises(AuthError, match="403") as err:
        source.fetch_readings(Station("site-00004"), *WINDOW, 10)
    assert err.value.station_id == "site-00004"
    assert len(source.fetch_readings(Station("site-00005"), *WINDOW, 10)) == 10


def test_a_5xx_burst_is_recovered_by_retries(sim):
    sim.set_faults(stations={"site-00002": {"kind": "error", "count": 2}})
    source = make_source(sim)
    assert len(source.fetch_readings(Station("site-00002"), *WINDOW, 10)) == 10
    assert _requests_for(sim, "site-00002") == 3 and source.counters.retries == 2


def test_persistent_5xx_is_transient_after_the_configured_attempts(sim):
    sim.set_faults(stations={"site-00003": "error"})
    source = make_source(sim)
    with pytest.raises(TransientError, match="503") as err:
        source.fetch_readings(Station("site-00003"), *WINDOW, 10)
    assert err.value.station_id == "site-00003"
    assert _requests_for(sim, "site-00003") == ATTEMPTS
    assert len(source.fetch_readings(Station("site-00007"), *WINDOW, 10)) == 10  # one station's fault stays its own


@pytest.mark.parametrize("retry_after", [1, 120])
def test_a_429_goes_to_the_runner_at_once_with_the_retry_after(sim, retry_after):
    # Waiting happens once, in the cycle's shared gate: a thread waiting out its own 429 is how
    # throttling compounded (every station paid Retry-After several times).
    sim.set_faults(retry_after_s=retry_after, stations={"site-00009": "throttle"})
    source = make_source(sim)
    started = time.monotonic()
    with pytest.raises(ThrottledError) as err:
        source.fetch_readings(Station("site-00009"), *WINDOW, 10)
    assert err.value.retry_after_s == float(retry_after)
    assert time.monotonic() - started < 1.0 and _requests_for(sim, "site-00009") == 1
    assert source.counters.throttled == 1


def test_timeouts_are_transient_within_a_bounded_time(sim):
    sim.set_faults(timeout_s=5.0, stations={"site-00011": "timeout"})
    source = make_source(sim, http={"read_timeout_s": 0.3, "retries": {**FAST_HTTP["retries"], "attempts": 3}})
    started = time.monotonic()
    with pytest.raises(TransientError, match="timed out"):
        source.fetch_readings(Station("site-00011"), *WINDOW, 10)
    elapsed = time.monotonic() - started
    # 3 attempts x 0.3 s read timeout + 2 back-offs (<= 0.2 s + jitter each)
    assert 0.9 <= elapsed < 2.0
    assert _requests_for(sim, "site-00011") == 3


def test_the_elapsed_time_limit_counts_from_the_first_attempt(sim):
    # The first attempt runs before tenacity takes over; its time still counts. Each attempt waits
    # out a 0.4 s read timeout: after the second (>= 0.85 s since the first began) the 0.6 s limit
    # stops the call. Counted from the second attempt instead, a third would start.
    sim.set_faults(timeout_s=5.0, stations={"site-00015": "timeout"})
    retries = {**FAST_HTTP["retries"], "attempts": 10, "max_elapsed_s": 0.6}
    source = make_source(sim, http={"read_timeout_s": 0.4, "retries": retries})
    with pytest.raises(TransientError, match="timed out"):
        source.fetch_readings(Station("site-00015"), *WINDOW, 10)
    assert _requests_for(sim, "site-00015") == 2 and source.counters.retries == 1


def test_malformed_json_is_transient_after_retries(sim):
    sim.set_faults(stations={"site-00012": "malformed"})
    source = make_source(sim)
    with pytest.raises(TransientError, match="malformed JSON"):
        source.fetch_readings(Station("site-00012"), *WINDOW, 10)
    assert _requests_for(sim, "site-00012") == ATTEMPTS


def test_a_malformed_answer_once_is_recovered(sim):
    sim.set_faults(stations={"site-00013": {"kind": "malformed", "count": 1}})
    source = make_source(sim)
    assert len(source.fetch_readings(Station("site-00013"), *WINDOW, 10)) == 10
    assert _requests_for(sim, "site-00013") == 2


def test_readings_that_fail_the_mapping_are_skipped_and_counted(sim):
    # The bad_reading fault corrupts every 5th reading: minute :x0 gets an unreadable timestamp,
    # minute :x5 a non-numeric SOC. The rest of the station's readings still come through.
    sim.set_faults(stations={"site-00014": "bad_reading"})
    source = make_source(sim)
    batch = source.fetch_readings(Station("site-00014"), NOW - timedelta(hours=1), NOW, 100)
    assert batch.skipped == 12 and len(batch) == 48
    assert source.counters.readings_skipped == 12
    assert {r.ts.minute % 5 for r in batch} == {1, 2, 3, 4}
    # Skipped items never hold the cursor: the window is complete.
    assert batch.complete_through == NOW and batch.pending == []
    assert any("bad timestamp" in reason for reason in batch.skip_reasons)
    assert any("soc_pct" in reason for reason in batch.skip_reasons)


def test_unknown_station_is_permanent(sim):
    source = make_source(sim)
    with pytest.raises(PermanentError, match="404"):
        source.fetch_readings(Station("site-99999"), *WINDOW, 10)
    assert _requests_for(sim, "site-99999") == 1


def test_an_unreachable_vendor_is_transient(sim):
    source = make_source(f"http://127.0.0.1:{free_port()}", http={"retries": {**FAST_HTTP["retries"], "attempts": 2}})
    started = time.monotonic()
    with pytest.raises(TransientError, match="unreachable"):
        source.list_stations()
    assert time.monotonic() - started < 2.0


def test_skips_are_logged_as_structured_json_with_station_count_and_reasons(sim, caplog):
    # Through the worker's Powertools logger (its JSON formatter is what reaches CloudWatch); a
    # module's plain `logging` logger has no handler in the worker and its fields never show.
    sim.set_faults(stations={"site-00015": "bad_reading"})
    source = make_source(sim)
    with caplog.at_level("WARNING"):
        source.fetch_readings(Station("site-00015"), NOW - timedelta(hours=1), NOW, 100)
    records = [r for r in caplog.records if r.getMessage().startswith("readings skipped")]
    assert len(records) == 1 and records[0].name == WORKER_SERVICE
    line = json.loads(logger.registered_formatter.format(records[0]))
    assert line["station_id"] == "site-00015" and line["skipped"] == 12
    assert any("bad timestamp" in reason for reason in line["reasons"])
