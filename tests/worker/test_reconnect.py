"""Back within seconds of the broker's return, without hammering a broker that stays down.

Real Mosquitto, stopped and started on the same port; the backoff's random draws are replaced by
their worst case (every delay at its ceiling) so the test does not depend on luck.
"""

from __future__ import annotations

import random
import time

import pytest

from functions.sync_worker.backoff import Backoff
from functions.sync_worker.uplink.connection import MqttConnection
from functions.sync_worker.uplink.profiles.generic import MQTT_CLIENT_ID, GenericProfile
from functions.sync_worker.uplink.profiles.identity import IdentityMapping, IdentityMode
from tests.worker.conftest import wait_until

pytestmark = pytest.mark.integration

CLIENT_ID = "c2c-reconnect-test"


class CeilingJitter(random.Random):
    """Every draw at the top of its range: the slowest schedule the backoff can produce."""

    def uniform(self, a: float, b: float) -> float:
        return b


def test_reconnect_within_5s_of_the_broker_return_at_the_backoffs_slowest(mosquitto):
    profile = GenericProfile(
        host="127.0.0.1",
        port=mosquitto.port,
        env="test",
        identities=IdentityMapping(IdentityMode.GATEWAY, CLIENT_ID, "{station_id}", MQTT_CLIENT_ID),
    )
    # Retries at 0.5, 1.5, 3.5 and 7.5 s, then a wait of 8 s: a broker back at 8 s would wait until
    # 15.5 s for the next attempt without the probe.
    conn = MqttConnection(profile, CLIENT_ID, backoff=Backoff(base_s=0.5, cap_s=30.0, rng=CeilingJitter())).start()
    try:
        assert conn.wait_connected(10)
        mosquitto.stop()
        wait_until(lambda: not conn.connected, 10, what="connection lost")
        time.sleep(8.0)
        attempts_while_down = sum(conn.stats.reconnects.values())
        mosquitto.start()
        back = time.monotonic()
        assert conn.wait_connected(15), "not reconnected"
        elapsed = time.monotonic() - back
        assert elapsed < 5.0, f"reconnected {elapsed:.1f}s after the broker was back"
        # The probe is a TCP connect: while the port stays closed it never starts an MQTT attempt,
        # so attempts follow the backoff (the lost connection and 4 refused connects in 8 s).
        assert attempts_while_down <= 6, conn.stats.reconnects
        assert conn.stats.connections_opened == 2  # the first connect and the one reconnect
    finally:
        conn.close(timeout_s=2)


def test_a_held_connection_evicted_by_a_new_lease_holder_is_not_reconnected_until_resumed(mosquitto):
    """Standing by without the lease: the broker drops the held connection when the next holder
    connects with the same client id, and it must not come back to evict that holder in turn."""
    profile = GenericProfile(
        host="127.0.0.1",
        port=mosquitto.port,
        env="test",
        identities=IdentityMapping(IdentityMode.GATEWAY, CLIENT_ID, "{station_id}", MQTT_CLIENT_ID),
    )
    held = MqttConnection(profile, CLIENT_ID, backoff=Backoff(base_s=0.1, cap_s=0.2)).start()
    successor = None
    try:
        assert held.wait_connected(10)
        held.hold()
        successor = MqttConnection(profile, CLIENT_ID).start()  # the new lease holder, same client id
        assert successor.wait_connected(10)
        wait_until(lambda: not held.connected, 10, what="the held connection evicted")
        time.sleep(2.0)  # many of its 0.1-0.2 s backoff steps
        assert not held.connected and successor.connected, "the held connection came back"
        assert mosquitto.connections_from(CLIENT_ID) == 2
        successor.close(timeout_s=2)
        successor = None
        held.resume()  # this worker holds the lease again
        assert held.wait_connected(10)
    finally:
        held.close(timeout_s=2)
        if successor is not None:
            successor.close(timeout_s=2)
