"""Requests, auth, vendor error rules and throttling against real HTTP: the simulator and a small
stub vendor (tests/support/vendor_stub)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions.sync_worker.cycle import CycleRunner
from functions.sync_worker.errors import AuthError, PermanentError, ThrottledError, TransientError
from functions.sync_worker.source.base import Station
from functions.sync_worker.source.config import VendorConfig
from functions.sync_worker.source.http_json import HttpJsonSource
from functions.sync_worker.store import MemoryState
from tests.source.conftest import NOW, RecordingPublisher, make_source
from tests.support.vendor_stub import StubRequest, VendorStub

pytestmark = pytest.mark.integration

T0 = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
KEY = "k3y-SECRET-value"


@pytest.fixture
def stub() -> Iterator[VendorStub]:
    with VendorStub() as server:
        yield server


def stub_config(
    auth: dict[str, Any] | None = None, http: dict[str, Any] | None = None, **readings: Any
) -> VendorConfig:
    return VendorConfig.model_validate(
        {
            "name": "stub",
            "auth": auth or {"type": "api_key", "secret": "api_key"},
            "http": {"retries": {"attempts": 1}, **(http or {})},
            "stations": {"path": "/sites", "items": "sites", "id": "id"},
            "readings": {
                "path": "/sites/{station_id}/data",
                "params": {"from": "{since}", "to": "{until}"},
                "items": "data",
                "timestamp": {"path": "time"},
                "values": {"power_w": "power"},
                **readings,
            },
        }
    )


def one_reading(request: StubRequest):
    return 200, {"data": [{"time": T0.isoformat(), "power": 1.0}]}


def test_a_station_id_placeholder_is_encoded_once_in_query_path_and_body(stub):
    stub.route("GET", "/data", one_reading)
    stub.route("GET", "/sites/NE=33554000/data", one_reading)
    stub.route("POST", "/post", one_reading)
    secrets = {"api_key": KEY}
    station = Station("NE=33554000")
    window = (T0 - timedelta(hours=1), T0)
    in_query = HttpJsonSource(
        stub_config(path="/data", params={"sn": "{station_id}"}), base_url=stub.url, secrets=secrets
    )
    assert len(in_query.fetch_readings(station, *window, 10)) == 1
    assert stub.calls("/data")[0].raw_query == "sn=NE%3D33554000"  # once: not NE%253D33554000
    in_path = HttpJsonSource(stub_config(), base_url=stub.url, secrets=secrets)
    assert len(in_path.fetch_readings(station, *window, 10)) == 1
    body = {"json": {"codes": "{station_id}", "from": "{since}"}}
    in_body = HttpJsonSource(
        stub_config(path="/post", method="POST", params={}, body=body), base_url=stub.url, secrets=secrets
    )
    assert len(in_body.fetch_readings(station, *window, 10)) == 1
    assert stub.calls("/post")[0].json() == {"codes": "NE=33554000", "from": "2024-06-01T11:00:00Z"}
    for source in (in_query, in_path, in_body):
        source.close()


def test_an_api_key_in_the_query_never_reaches_an_error_or_a_log_line(stub, caplog):
    stub.route("GET", "/sites/S1/data", lambda r: (404, {"error": f"no site, you sent {r.raw_query}"}))
    source = HttpJsonSource(
        stub_config(auth={"type": "api_key", "query_param": "api_key", "secret": "api_key"}),
        base_url=stub.url,
        secrets={"api_key": KEY},
    )
    with caplog.at_level("DEBUG"), pytest.raises(PermanentError) as err:
        source.fetch_readings(Station("S1"), T0 - timedelta(hours=1), T0, 10)
    assert stub.calls("/sites/S1/data")[0].query["api_key"] == KEY, "the key was sent"
    assert KEY not in str(err.value) and "***" in str(err.value)
    assert all(KEY not in r.getMessage() and KEY not in str(r.__dict__) for r in caplog.records)
    source.close()


def test_an_error_inside_an_http_200_fails_the_station(stub):
    # The vendor's way to say "no": HTTP 200, data null. It is not "no readings".
    stub.route("GET", "/sites/S1/data", lambda r: (200, {"success": False, "data": None, "message": "system busy"}))
    source = HttpJsonSource(stub_config(), base_url=stub.url, secrets={"api_key": KEY})
    publisher = RecordingPublisher()
    runner = CycleRunner(source, publisher, MemoryState(), concurrency=1, now=lambda: T0)
    try:
        record = runner.run([Station("S1")]).record
    finally:
        runner.close()
        source.close()
    assert (record.stations_synced, record.stations_failed) == (0, 1)


@pytest.mark.parametrize(
    ("fail_code", "expected"),
    [(407, ThrottledError), (20400, PermanentError), (500, TransientError)],
)
def test_error_rules_classify_http_200_bodies_and_keep_the_vendors_message(stub, fail_code, expected):
    stub.route(
        "GET",
        "/sites/S1/data",
        lambda r: (200, {"success": False, "failCode": fail_code, "message": f"CODE_{fail_code}", "data": None}),
    )
    rules = [
        {
            "when": "success == `false` && failCode == `407`",
            "error": "throttled",
            "message": "message",
            "retry_after_s": 300,
        },
        {"when": "success == `false` && failCode == `20400`", "error": "permanent", "message": "message"},
        {"when": "success == `false`", "error": "transient", "message": "message"},
    ]
    source = HttpJsonSource(stub_config(http={"errors": rules}), base_url=stub.url, secrets={"api_key": KEY})
    with pytest.raises(expected, match=f"CODE_{fail_code}") as err:
        source.fetch_readings(Station("S1"), T0 - timedelta(hours=1), T0, 10)
    if expected is ThrottledError:
        assert err.value.retry_after_s == 300
    source.close()


SESSION = {
    "type": "session",
    "login": {"path": "/login", "json": {"userName": "{user}", "systemCode": "{password}"}},
    "secrets": ["user", "password"],
    "token": {"from": "header", "name": "xsrf-token"},
    "send": {"as": "header", "name": "XSRF-TOKEN"},
    "min_login_interval_s": 0,
}
EXPIRED = {"when": "failCode == `305`", "error": "reauth", "message": "message"}


def session_vendor(stub: VendorStub) -> dict[str, Any]:
    """Logins hand out a token in the `xsrf-token` header; a revoked token answers failCode 305."""
    state: dict[str, Any] = {"valid": set(), "n": 0}

    def login(request: StubRequest):
        if request.json() != {"userName": "api-user", "systemCode": "pa55word"}:
            return 200, {"success": False, "failCode": 20400, "message": "USER_OR_VALUE_INVALID"}
        state["n"] += 1
        token = f"tok-{state['n']}"
        state["valid"] = {token}
        return 200, {"success": True}, {"xsrf-token": token}

    def data(request: StubRequest):
        if request.headers.get("xsrf-token") not in state["valid"]:
            return 200, {"success": False, "failCode": 305, "message": "USER_MUST_RELOGIN", "data": None}
        return 200, {"success": True, "data": [{"time": T0.isoformat(), "power": 2.0}]}

    stub.route("POST", "/login", login)
    stub.route("POST", "/sites/S1/data", data)
    return state


def session_source(stub: VendorStub, password: str = "pa55word") -> HttpJsonSource:
    return HttpJsonSource(
        stub_config(
            auth=SESSION, http={"errors": [EXPIRED]}, method="POST", params={}, body={"json": {"from": "{since}"}}
        ),
        base_url=stub.url,
        secrets={"user": "api-user", "password": password},
    )


def test_session_login_token_from_a_header_and_one_relogin_on_a_body_expiry(stub):
    state = session_vendor(stub)
    source = session_source(stub)
    window = (T0 - timedelta(hours=1), T0)
    assert len(source.fetch_readings(Station("S1"), *window, 10)) == 1
    assert len(source.fetch_readings(Station("S1"), *window, 10)) == 1
    assert len(stub.calls("/login")) == 1, "the token is kept between calls"
    state["valid"] = set()  # the vendor expires the session
    assert len(source.fetch_readings(Station("S1"), *window, 10)) == 1
    assert len(stub.calls("/login")) == 2, "one re-login, then the call succeeded"
    source.close()


def test_a_refused_login_is_an_auth_error_without_the_password(stub):
    session_vendor(stub)
    source = session_source(stub, password="wrong-password")
    with pytest.raises(AuthError, match="USER_OR_VALUE_INVALID") as err:
        source.fetch_readings(Station("S1"), T0 - timedelta(hours=1), T0, 10)
    assert "wrong-password" not in str(err.value)
    source.close()


def test_logins_are_rate_limited_so_an_expiry_right_after_one_fails_instead_of_hammering(stub):
    state = session_vendor(stub)
    source = HttpJsonSource(
        stub_config(
            auth={**SESSION, "min_login_interval_s": 60},
            http={"errors": [EXPIRED]},
            method="POST",
            params={},
            body={"json": {"from": "{since}"}},
        ),
        base_url=stub.url,
        secrets={"user": "api-user", "password": "pa55word"},
    )
    window = (T0 - timedelta(hours=1), T0)
    source.fetch_readings(Station("S1"), *window, 10)
    state["valid"] = set()
    with pytest.raises(AuthError):
        source.fetch_readings(Station("S1"), *window, 10)
    assert len(stub.calls("/login")) == 1
    source.close()


def test_persistent_throttling_costs_one_retry_after_per_cycle_not_one_per_station(sim):
    sim.set_faults(throttle_rate=1.0, retry_after_s=1)
    source = make_source(sim)
    stations = [Station(f"site-{i:05d}") for i in range(1, 41)]
    runner = CycleRunner(source, RecordingPublisher(), MemoryState(), concurrency=4, now=lambda: NOW)
    started = time.monotonic()
    try:
        record = runner.run(stations).record
    finally:
        runner.close()
    elapsed = time.monotonic() - started
    requests = sim.stats()["requests_total"]
    # 4 stations in flight hit the 429, all wait the one Retry-After, try once more, and the gate
    # trips: the other stations are deferred without a call (a thread freed just before the trip
    # may start one more). Without the gate every station paid several Retry-Afters: 320 calls.
    assert requests <= 3 * 4, f"{requests} vendor calls"
    assert record.stations_synced == 0 and record.stations_deferred + record.stations_failed == 40
    # The one lane whose station failed before the trip (throttled again after the wait, the
    # first of two) may have started one more station, which then fails instead of being deferred.
    assert record.stations_deferred >= 40 - 4 - 1
    assert elapsed < 15, f"cycle took {elapsed:.1f}s"


COOKIE_SESSION = {
    **SESSION,
    "token": {"from": "cookie", "name": "SESSIONID"},
    "send": {"as": "cookie", "name": "SESSIONID"},
}


def test_a_session_token_from_a_login_cookie_goes_back_as_a_cookie_and_answers_renew_cookies(stub):
    """The login answer's Set-Cookie fills the session's jar; each call sends the jar's cookies that
    apply, and a cookie an answer sets (a load balancer's affinity) goes with the next call."""
    tokens = iter(["tok-1", "tok-2"])

    def login(request: StubRequest):
        return 200, {"success": True}, {"Set-Cookie": f"SESSIONID={next(tokens)}; Path=/; HttpOnly"}

    def data(request: StubRequest):
        return 200, {"data": [{"time": T0.isoformat(), "power": 3.0}]}, {"Set-Cookie": "lb=node-7; Path=/"}

    stub.route("POST", "/login", login)
    stub.route("GET", "/sites/S1/data", data)
    source = HttpJsonSource(
        stub_config(auth=COOKIE_SESSION), base_url=stub.url, secrets={"user": "api-user", "password": "pa55word"}
    )
    window = (T0 - timedelta(hours=1), T0)
    assert len(source.fetch_readings(Station("S1"), *window, 10)) == 1
    assert len(source.fetch_readings(Station("S1"), *window, 10)) == 1
    first, second = (dict(_cookies(c.headers["cookie"])) for c in stub.calls("/sites/S1/data"))
    assert first == {"SESSIONID": "tok-1"}
    assert second == {"SESSIONID": "tok-1", "lb": "node-7"}
    assert len(stub.calls("/login")) == 1
    source.close()


def _cookies(header: str) -> list[tuple[str, str]]:
    return [tuple(part.strip().split("=", 1)) for part in header.split(";")]  # type: ignore[misc]  # pairs


def test_a_form_body_is_form_encoded_once_with_its_content_type(stub):
    stub.route("POST", "/form", one_reading)
    source = HttpJsonSource(
        stub_config(path="/form", method="POST", params={}, body={"form": {"codes": "{station_id}", "n": "{limit}"}}),
        base_url=stub.url,
        secrets={"api_key": KEY},
    )
    assert len(source.fetch_readings(Station("NE=3&4 5"), T0 - timedelta(hours=1), T0, 10)) == 1
    call = stub.calls("/form")[0]
    assert call.body == b"codes=NE%3D3%264+5&n=10"
    assert call.headers["content-type"] == "application/x-www-form-urlencoded"
    assert call.headers["content-length"] == str(len(call.body)) and call.headers["x-api-key"] == KEY
    source.close()


def test_the_station_list_follows_the_link_header(stub):
    pages = {
        "1": ([{"id": "S1"}, {"id": "S2"}], {"Link": '</sites?page=2>; rel="next", </sites?page=1>; rel="first"'}),
        "2": ([{"id": "S3"}], {}),
    }
    stub.route(
        "GET",
        "/sites",
        lambda r: (200, {"sites": pages[r.query.get("page", "1")][0]}, pages[r.query.get("page", "1")][1]),
    )
    config = stub_config().model_dump(mode="json", by_alias=True, exclude_none=True)
    config["stations"]["pagination"] = {"type": "link"}
    source = HttpJsonSource(VendorConfig.model_validate(config), base_url=stub.url, secrets={"api_key": KEY})
    assert [s.station_id for s in source.list_stations()] == ["S1", "S2", "S3"]
    assert [c.raw_query for c in stub.calls("/sites")] == ["", "page=2"]
    source.close()


@pytest.mark.parametrize(
    "auth", [{"type": "api_key", "secret": "api_key"}, {"type": "api_key", "query_param": "key", "secret": "api_key"}]
)
def test_the_direct_path_sends_what_the_requests_session_path_sends(stub, monkeypatch, auth):
    """`trust_env` keeps the `requests` session; both paths put the same request on the wire."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    stub.route("POST", "/sites/S 1/data", one_reading)
    sent = []
    for trust_env in (False, True):
        config = stub_config(
            auth=auth,
            http={"trust_env": trust_env, "headers": {"X-Client": "c2c"}},
            method="POST",
            params={"from": "{since}", "n": "{limit}"},
            body={"json": {"station": "{station_id}", "limit": "{limit}"}},
            headers={"X-Station": "{station_id}"},
        )
        source = HttpJsonSource(config, base_url=stub.url, secrets={"api_key": KEY})
        assert len(source.fetch_readings(Station("S 1"), T0 - timedelta(hours=1), T0, 10)) == 1
        source.close()
        call = stub.calls("/sites/S 1/data")[-1]
        wire = {k: v for k, v in call.headers.items() if k not in ("user-agent", "connection", "host")}
        sent.append((call.raw_query, call.body, wire))
    assert sent[0] == sent[1]
    assert sent[0][2]["x-station"] == "S 1" and sent[0][2]["x-client"] == "c2c"
