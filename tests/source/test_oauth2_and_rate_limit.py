"""OAuth2 client credentials (token reuse, renewal before expiry and after a 401) and the token-bucket
rate limit, against the simulator in `--auth oauth2` mode."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import timedelta

import pytest

from functions.sync_worker.errors import AuthError
from functions.sync_worker.source.base import Station
from tests.source.conftest import NOW, make_source
from tests.support.simulator import simulator_starter

pytestmark = pytest.mark.integration

WINDOW = (NOW - timedelta(minutes=5), NOW)
CLIENT = {"client_id": "c2c-sync", "client_secret": "oauth-secret"}


def oauth_auth(**extra) -> dict:
    return {"type": "oauth2_client_credentials", "token_url": "/oauth/token", **extra}


@pytest.fixture(scope="module")
def oauth_sim(simulator_factory_module):
    return simulator_factory_module(auth="oauth2", api_key="oauth-secret", stations=20)


@pytest.fixture(scope="module")
def simulator_factory_module():
    with ExitStack() as stack:
        yield simulator_starter(stack)


@pytest.fixture
def osim(oauth_sim):
    oauth_sim.revoke_tokens()
    oauth_sim.reset_stats()
    return oauth_sim


def test_one_token_serves_many_concurrent_calls(osim):
    source = make_source(osim, auth=oauth_auth(), secrets=CLIENT)
    with ThreadPoolExecutor(8) as pool:
        sizes = list(
            pool.map(lambda i: len(source.fetch_readings(Station(f"site-{i % 20 + 1:05d}"), *WINDOW, 10)), range(40))
        )
    assert sizes == [5] * 40
    stats = osim.stats()
    assert stats["tokens_issued"] == 1 and stats["auth_failures"] == 0


def test_a_revoked_token_is_renewed_once_after_the_401(osim):
    source = make_source(osim, auth=oauth_auth(), secrets=CLIENT)
    assert len(source.fetch_readings(Station("site-00001"), *WINDOW, 10)) == 5
    osim.revoke_tokens()
    with ThreadPoolExecutor(6) as pool:  # six threads see the 401 together: still one new token
        sizes = list(pool.map(lambda i: len(source.fetch_readings(Station("site-00002"), *WINDOW, 10)), range(6)))
    assert sizes == [5] * 6
    stats = osim.stats()
    assert stats["tokens_issued"] == 2
    assert 1 <= stats["auth_failures"] <= 6 and source.counters.auth_refreshes == stats["auth_failures"]


def test_client_secret_basic_is_supported(osim):
    source = make_source(osim, auth=oauth_auth(client_auth="client_secret_basic"), secrets=CLIENT)
    assert len(source.list_stations()) == 20
    assert osim.stats()["tokens_issued"] == 1


def test_wrong_client_secret_is_an_auth_error(osim):
    source = make_source(osim, auth=oauth_auth(), secrets={**CLIENT, "client_secret": "wrong"})
    with pytest.raises(AuthError, match="refused the client credentials"):
        source.list_stations()
    assert osim.stats()["by_endpoint"] == {"token": 1}


def test_a_token_is_renewed_before_it_expires(simulator_factory):
    sim = simulator_factory(auth="oauth2", api_key="oauth-secret", stations=5, token_ttl_s=1.5)
    source = make_source(sim, auth=oauth_auth(refresh_skew_s=0.5), secrets=CLIENT)
    for _ in range(3):  # 0 s, 1.1 s, 2.2 s: the token is renewed at 1.0 s and 2.0 s, never used expired
        assert len(source.fetch_readings(Station("site-00001"), *WINDOW, 10)) == 5
        time.sleep(1.1)
    stats = sim.stats()
    assert stats["tokens_issued"] == 3 and stats["auth_failures"] == 0


def test_rate_limit_paces_vendor_calls(sim):
    rps, burst, calls = 20.0, 5, 25
    source = make_source(sim, http={"rate_limit": {"rps": rps, "burst": burst}})
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: source.fetch_readings(Station(f"site-{i + 1:05d}"), *WINDOW, 10), range(calls)))
    elapsed = time.monotonic() - started
    assert elapsed >= (calls - burst) / rps  # 1.0 s: the burst is free, the rest at 20/s
    arrivals = sorted(t for s in sim.stats(arrivals=True)["stations"].values() for t in s["arrivals"])
    assert len(arrivals) == calls
    # Server side: no 0.5 s window ever saw more than burst + rps * 0.5 requests (+1 for timer slack).
    for i, t in enumerate(arrivals):
        in_window = sum(1 for u in arrivals[i:] if u - t < 0.5)
        assert in_window <= burst + rps * 0.5 + 1
    assert source.counters.rate_limit_wait_s > 0
