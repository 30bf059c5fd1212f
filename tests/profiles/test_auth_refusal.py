"""A broker that refuses the credentials: the connect attempt ends at the refused CONNACK (not at
the CONNACK timeout), the reconnect is counted by reason and backs off, and the refusal is logged
as an authentication problem. Real Mosquitto with a password file; nothing mocked.
"""

from __future__ import annotations

import logging
import random
import re
import time

import pytest

from functions.sync_worker.backoff import Backoff
from functions.sync_worker.uplink.connection import MqttConnection
from functions.sync_worker.uplink.profiles.generic import MQTT_CLIENT_ID, GenericProfile
from functions.sync_worker.uplink.profiles.identity import IdentityMapping, IdentityMode
from tests.profiles.conftest import write_password_file
from tests.support.services import MosquittoBroker
from tests.worker.conftest import wait_until

pytestmark = pytest.mark.integration

CLIENT_ID = "c2c-auth-test"


@pytest.fixture
def password_mosquitto(tmp_path):
    passwords = write_password_file(tmp_path / "passwords", {"worker": "right-password"})
    broker = MosquittoBroker(
        tmp_path / "mosquitto-auth", extra_config=f"allow_anonymous false\npassword_file {passwords}\n"
    ).start()
    yield broker
    broker.stop()


def profile(port: int, password: str) -> GenericProfile:
    return GenericProfile(
        host="127.0.0.1",
        port=port,
        username="worker",
        password=password,
        env="test",
        identities=IdentityMapping(IdentityMode.GATEWAY, CLIENT_ID, "{station_id}", MQTT_CLIENT_ID),
    )


def refused_attempts(broker: MosquittoBroker) -> int:
    # Counted by the broker: Mosquitto 2.0 logs each refused login as "Sending CONNACK to <ip> (0, 5)"
    # then "Client <unknown> disconnected, not authorised." (the client id is not logged for it).
    return len(re.findall(r"disconnected, not authori[sz]ed", broker.log_text()))


def test_refused_credentials_end_the_attempt_at_once_count_by_reason_and_back_off(password_mosquitto, caplog):
    backoff = Backoff(base_s=0.4, cap_s=1.6, rng=random.Random(3))
    conn = MqttConnection(profile(password_mosquitto.port, "wrong-password"), CLIENT_ID, backoff=backoff)
    caplog.set_level(logging.ERROR)
    started = time.monotonic()
    conn.start()
    try:
        wait_until(
            lambda: conn.stats.reconnects["not_authorized"] >= 1,
            MqttConnection.CONNECT_TIMEOUT_S,
            interval=0.01,
            what="the first refusal counted",
        )
        first_refusal_s = time.monotonic() - started
        # Well under the 10 s CONNACK timeout: the refusal itself ends the attempt.
        assert first_refusal_s < 1.5, first_refusal_s
        time.sleep(3.0)
    finally:
        conn.close(2)
    assert not conn.connected
    counted = conn.stats.reconnects
    assert set(counted) == {"not_authorized"}, counted
    # Backing off: delays drawn below 0.4, 0.8, 1.6, 1.6 ... s allow a handful of attempts in ~3 s;
    # without a backoff (or waiting out the timeout) the count would be ~0 or in the hundreds.
    attempts = refused_attempts(password_mosquitto)
    assert 2 <= attempts <= 12, attempts
    assert counted["not_authorized"] == attempts  # every refused CONNECT counted once, by its reason
    assert backoff.attempt >= 2  # the delay grew; a success would have reset it
    assert password_mosquitto.connections_from(CLIENT_ID) == 0
    refusals = [r.getMessage() for r in caplog.records if "refused this identity's credentials" in r.getMessage()]
    assert refusals and "(not_authorized)" in refusals[0]
    assert all("wrong-password" not in r.getMessage() for r in caplog.records)


def test_the_right_credentials_connect_on_the_same_broker(password_mosquitto):
    conn = MqttConnection(profile(password_mosquitto.port, "right-password"), CLIENT_ID).start()
    try:
        assert conn.wait_connected(5)
        assert conn.stats.reconnects.total() == 0
    finally:
        conn.close(2)
    assert password_mosquitto.connections_from(CLIENT_ID) == 1
