"""The vendor simulator's own API, spoken to with plain HTTP as any client would."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import pytest
import requests

from tests.support.simulator import DEFAULT_API_KEY, FROZEN_NOW, REPO_ROOT

pytestmark = pytest.mark.integration

KEY = {"X-Api-Key": DEFAULT_API_KEY}


def _get(sim, path: str, headers: dict | None = KEY, **params) -> requests.Response:
    return requests.get(sim.url + path, params=params, headers=headers, timeout=5)


def _telemetry(sim, sid: str, **params) -> dict:
    resp = _get(sim, f"/v1/sites/{sid}/telemetry", **params)
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_api_rejects_missing_or_wrong_key_with_401(sim):
    assert _get(sim, "/v1/sites", headers=None).status_code == 401
    wrong = _get(sim, "/v1/sites", headers={"X-Api-Key": "nope"})
    assert wrong.status_code == 401 and "X-Api-Key" in wrong.headers["WWW-Authenticate"]
    assert _get(sim, "/v1/sites").status_code == 200
    assert sim.stats()["auth_failures"] == 2


def test_site_list_is_paginated_by_page_number(sim):
    pages = [_get(sim, "/v1/sites", page=n, page_size=100).json() for n in (1, 2, 3)]
    assert [len(p["sites"]) for p in pages] == [100, 100, 50]
    assert {p["total"] for p in pages} == {250} and {p["total_pages"] for p in pages} == {3}
    assert pages[0]["links"]["next"] == "/v1/sites?page=2&page_size=100" and pages[2]["links"]["next"] is None
    ids = [s["id"] for p in pages for s in p["sites"]]
    assert ids == [f"site-{i:05d}" for i in range(1, 251)]
    assert _get(sim, "/v1/sites", page=4, page_size=100).json()["sites"] == []
    assert _get(sim, "/v1/sites", page_size=501).status_code == 400


def test_telemetry_window_excludes_since_and_includes_until(sim):
    body = _telemetry(sim, "site-00001", since="2024-06-01T11:00:00Z", until="2024-06-01T11:10:00Z")
    assert [r["timestamp"] for r in body["data"]] == [f"2024-06-01T11:{m:02d}:00Z" for m in range(1, 11)]
    mid = _telemetry(sim, "site-00001", since="2024-06-01T11:00:30Z", until="2024-06-01T11:02:59Z")
    assert [r["timestamp"] for r in mid["data"]] == ["2024-06-01T11:01:00Z", "2024-06-01T11:02:00Z"]
    assert (
        _get(
            sim, "/v1/sites/site-00001/telemetry", since="2024-06-01T11:00:00Z", until="2024-06-01T10:00:00Z"
        ).status_code
        == 400
    )


def test_telemetry_stops_at_the_simulator_clock_and_follows_it(sim):
    body = _telemetry(sim, "site-00002", since="2024-06-01T11:58:00Z", until="2030-01-01T00:00:00Z")
    assert [r["timestamp"] for r in body["data"]] == ["2024-06-01T11:59:00Z", "2024-06-01T12:00:00Z"]
    sim.advance_clock(150)
    later = _telemetry(sim, "site-00002", since="2024-06-01T11:58:00Z", until="2030-01-01T00:00:00Z")
    assert [r["timestamp"][11:16] for r in later["data"]] == ["11:59", "12:00", "12:01", "12:02"]


def test_telemetry_cursor_pages_join_without_gaps_or_overlap(sim):
    whole = _telemetry(sim, "site-00003", since="2024-06-01T10:00:00Z", limit=1000)["data"]
    assert len(whole) == 120
    paged, params = [], {"since": "2024-06-01T10:00:00Z", "limit": 7}
    while True:
        body = _telemetry(sim, "site-00003", **params)
        paged += body["data"]
        if not body["next_cursor"]:
            break
        params = {"cursor": body["next_cursor"], "limit": 7}
    assert paged == whole
    assert _get(sim, "/v1/sites/site-00003/telemetry", cursor="%%%").status_code == 400


def test_telemetry_is_deterministic_per_seed_across_processes(simulator_factory):
    a, b, c = simulator_factory(seed=7), simulator_factory(seed=7), simulator_factory(seed=8)
    window = {"since": "2024-06-01T06:00:00Z", "limit": 50}
    first = _telemetry(a, "site-00005", **window)["data"]
    assert _telemetry(a, "site-00005", **window)["data"] == first
    assert _telemetry(b, "site-00005", **window)["data"] == first
    assert _telemetry(c, "site-00005", **window)["data"] != first


def test_telemetry_is_physically_consistent_over_a_day(sim):
    day: list[dict[str, Any]] = []
    since = datetime.fromisoformat("2024-05-31T12:00:00+00:00")
    while len(day) < 1440:
        chunk = _telemetry(sim, "site-00009", since=since.isoformat(), limit=1000)["data"]
        day += chunk
        since = datetime.fromisoformat(chunk[-1]["timestamp"].replace("Z", "+00:00"))
    assert len(day) == 1440
    socs = [r["battery"]["soc_pct"] for r in day]
    assert 5 <= min(socs) < 20 and 70 < max(socs) <= 95  # a full daily cycle, within safe limits
    for prev, cur in itertools.pairwise(day):
        for counter in ("energy_charged_kwh", "energy_discharged_kwh"):
            assert cur["meter"][counter] >= prev["meter"][counter]
        # SOC rises while charging and falls while discharging (it is the integral of power).
        if cur["battery"]["power_kw"] > 1 and prev["battery"]["power_kw"] > 1:
            assert cur["battery"]["soc_pct"] >= prev["battery"]["soc_pct"]
        if cur["battery"]["power_kw"] < -1 and prev["battery"]["power_kw"] < -1:
            assert cur["battery"]["soc_pct"] <= prev["battery"]["soc_pct"]
    for r in day:
        b = r["battery"]
        assert b["current_a"] == pytest.approx(b["power_kw"] * 1000 / b["voltage_v"], rel=0.02, abs=0.05)
        assert b["cell_temp_min_c"] <= b["cell_temp_max_c"]
        assert 60 <= b["soh_pct"] <= 100
        if r["inverter"]["status"] == "charging":
            assert b["power_kw"] > 0
        if r["inverter"]["status"] == "discharging":
            assert b["power_kw"] < 0
    assert {r["inverter"]["status"] for r in day} >= {"charging", "discharging"}
    assert max(r["meter"]["pv_power_kw"] for r in day) > 0 and min(r["meter"]["pv_power_kw"] for r in day) == 0


def test_fault_stations_from_the_command_line(simulator_factory):
    sim = simulator_factory(stations=30, fault_stations=["error=site-00002,site-00004", "timeout=3"])
    pinned = sim.faults()["stations"]
    assert {sid for sid, f in pinned.items() if f["kind"] == "error"} == {"site-00002", "site-00004"}
    timeouts = {sid for sid, f in pinned.items() if f["kind"] == "timeout"}
    assert len(timeouts) == 3 and not timeouts & {"site-00002", "site-00004"}
    for _ in range(3):
        assert _get(sim, "/v1/sites/site-00002/telemetry").status_code == 503
    healthy = next(f"site-{i:05d}" for i in range(1, 31) if f"site-{i:05d}" not in pinned)
    assert _get(sim, f"/v1/sites/{healthy}/telemetry").status_code == 200
    assert sim.stats(["site-00002"])["stations"]["site-00002"] == {"requests": 3, "faults": {"error": 3}}


def test_invalid_command_line_is_refused_with_a_reason():
    out = subprocess.run(
        [sys.executable, "-m", "simulator", "--port", "0", "--stations", "5", "--fault-stations", "melting=2"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert out.returncode == 2 and "melting" in out.stderr
    out = subprocess.run(
        [sys.executable, "-m", "simulator", "--port", "0", "--error-rate", "0.7", "--throttle-rate", "0.6"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert out.returncode == 2 and "> 1" in out.stderr


def test_faults_switch_on_and_off_at_runtime(sim):
    sim.set_faults(error_rate=1.0)
    assert _get(sim, "/v1/sites/site-00001/telemetry").status_code == 503
    sim.set_faults(error_rate=0.0, throttle_rate=1.0, retry_after_s=7)
    throttled = _get(sim, "/v1/sites/site-00001/telemetry")
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "7"
    sim.set_faults(throttle_rate=0.0, malformed_rate=1.0)
    broken = _get(sim, "/v1/sites/site-00001/telemetry")
    assert broken.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(broken.text)
    sim.set_faults(clear=True)
    assert _get(sim, "/v1/sites/site-00001/telemetry").status_code == 200
    sim.set_faults(burst={"kind": "error", "count": 2})
    assert [_get(sim, "/v1/sites").status_code for _ in range(3)] == [503, 503, 200]
    assert sim.stats()["faults"] == {"error": 3, "throttle": 1, "malformed": 1}


def test_timeout_fault_holds_the_answer(sim):
    sim.set_faults(timeout_s=1.0, stations={"site-00006": "timeout"})
    with pytest.raises(requests.ReadTimeout):
        requests.get(sim.url + "/v1/sites/site-00006/telemetry", headers=KEY, timeout=(1, 0.3))
    started = time.monotonic()
    assert _get(sim, "/v1/sites/site-00006/telemetry").status_code == 200  # answered, but late
    assert time.monotonic() - started >= 0.9


def test_latency_is_per_request_and_does_not_serialise_clients(sim):
    sim.set_faults(latency_ms=200)
    started = time.monotonic()
    with ThreadPoolExecutor(32) as pool:
        codes = list(
            pool.map(lambda i: _get(sim, f"/v1/sites/site-{i + 1:05d}/telemetry", limit=1).status_code, range(32))
        )
    elapsed = time.monotonic() - started
    assert codes == [200] * 32
    assert 0.2 <= elapsed < 1.0  # 32 x 200 ms served side by side, not 6.4 s in a row


def test_oauth2_mode_issues_expiring_tokens_and_can_revoke_them(simulator_factory):
    sim = simulator_factory(auth="oauth2", api_key="the-secret", token_ttl_s=1.0)
    token_url = sim.url + "/oauth/token"
    refused = requests.post(
        token_url,
        data={"grant_type": "client_credentials", "client_id": "c2c-sync", "client_secret": "wrong"},
        timeout=5,
    )
    assert refused.status_code == 401
    granted = requests.post(
        token_url, auth=("c2c-sync", "the-secret"), data={"grant_type": "client_credentials"}, timeout=5
    ).json()
    assert granted["token_type"] == "Bearer" and granted["expires_in"] == 1.0
    bearer = {"Authorization": f"Bearer {granted['access_token']}"}
    assert _get(sim, "/v1/sites", headers=KEY).status_code == 401  # the API key alone is not enough
    assert _get(sim, "/v1/sites", headers=bearer).status_code == 200
    time.sleep(1.1)
    assert _get(sim, "/v1/sites", headers=bearer).status_code == 401  # expired
    fresh = requests.post(
        token_url,
        data={"grant_type": "client_credentials", "client_id": "c2c-sync", "client_secret": "the-secret"},
        timeout=5,
    ).json()["access_token"]
    assert _get(sim, "/v1/sites", headers={"Authorization": f"Bearer {fresh}"}).status_code == 200
    assert sim.revoke_tokens() == 1
    assert _get(sim, "/v1/sites", headers={"Authorization": f"Bearer {fresh}"}).status_code == 401
    assert sim.stats()["tokens_issued"] == 2


def test_stats_count_requests_and_faults_per_station(sim):
    sim.set_faults(stations={"site-00010": {"kind": "error", "count": 1}})
    codes = [_get(sim, "/v1/sites/site-00010/telemetry").status_code for _ in range(3)]
    assert codes == [503, 200, 200]
    entry = sim.stats(["site-00010"], arrivals=True)["stations"]["site-00010"]
    assert entry["requests"] == 3 and entry["faults"] == {"error": 1} and len(entry["arrivals"]) == 3


def test_clock_is_frozen_and_can_be_moved(sim):
    assert sim.clock_now() == FROZEN_NOW
    time.sleep(0.2)
    assert sim.clock_now() == FROZEN_NOW
    assert sim.advance_clock(3600)["now"] == "2024-06-01T13:00:00Z"
    assert sim.set_clock("2024-07-01T00:00:00Z")["now"] == "2024-07-01T00:00:00Z"


def test_a_running_clock_moves_at_its_speed(simulator_factory):
    sim = simulator_factory(clock="2024-06-01T00:00:00Z@600")
    first = datetime.fromisoformat(sim.clock_now().replace("Z", "+00:00"))
    time.sleep(0.5)
    second = datetime.fromisoformat(sim.clock_now().replace("Z", "+00:00"))
    assert timedelta(seconds=200) <= second - first <= timedelta(seconds=600)


def test_random_fault_rates_hit_about_their_share(sim):
    sim.set_faults(error_rate=0.3, malformed_rate=0.2)
    codes = [_get(sim, "/v1/sites/site-00001/telemetry", limit=1) for _ in range(200)]
    errors = sum(r.status_code == 503 for r in codes)
    malformed = sum(r.status_code == 200 and not r.text.endswith("}") for r in codes)
    assert 40 <= errors <= 80 and 20 <= malformed <= 60
    assert sim.stats()["faults"] == {"error": errors, "malformed": malformed}
