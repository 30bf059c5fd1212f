"""The connection's bound on messages without PUBACK, against a real Mosquitto behind a TCP relay
that can hold the broker's answers (PUBACKs) back: a publisher that fills the bound waits there and
resumes when the PUBACKs flow again; a connection lost meanwhile fails the page without waiting out
the PUBACK deadline.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from functions.sync_worker.errors import SyncError, TransientError
from functions.sync_worker.source.base import Reading
from functions.sync_worker.transform import to_message
from functions.sync_worker.uplink.batch import PublishBatch
from functions.sync_worker.uplink.connection import MqttConnection
from functions.sync_worker.uplink.profile import OutboundMessage
from functions.sync_worker.uplink.profiles.generic import MQTT_CLIENT_ID, GenericProfile
from functions.sync_worker.uplink.profiles.identity import IdentityMapping, IdentityMode
from tests.support.mqtt import MqttCapture
from tests.worker.conftest import wait_until

pytestmark = pytest.mark.integration

CLIENT_ID = "c2c-window-test"


class HoldingRelay:
    """Relays TCP between the worker and the broker; `hold()` stops passing the broker's bytes on
    (they wait in the sockets' buffers), `release()` passes them again, `cut()` drops the link."""

    def __init__(self, broker_port: int) -> None:
        self.broker_port = broker_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._flowing = threading.Event()
        self._flowing.set()
        self._links: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def hold(self) -> None:
        self._flowing.clear()

    def release(self) -> None:
        self._flowing.set()

    def cut(self) -> None:
        for sock in self._links:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.release()
        self.cut()
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            broker = socket.create_connection(("127.0.0.1", self.broker_port))
            self._links += [client, broker]
            threading.Thread(target=self._pump, args=(client, broker, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(broker, client, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, holdable: bool) -> None:
        try:
            while True:
                if holdable:
                    self._flowing.wait()
                data = src.recv(65536)
                if not data:
                    break
                if holdable:
                    self._flowing.wait()
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


def _profile(port: int) -> GenericProfile:
    return GenericProfile(
        host="127.0.0.1",
        port=port,
        env="test",
        status_topic_template="",
        identities=IdentityMapping(IdentityMode.GATEWAY, CLIENT_ID, "{station_id}", MQTT_CLIENT_ID),
    )


def _page(n: int) -> list[tuple[str, OutboundMessage]]:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    messages = [to_message(Reading("site-1", t0 + timedelta(minutes=i), {"v": i})) for i in range(n)]
    return [("c2c/test/stations/site-1/telemetry", m) for m in messages]


def _publish_in_background(
    conn: MqttConnection, items: list[tuple[str, OutboundMessage]], batch: PublishBatch
) -> list[BaseException]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            conn.publish_many(items, batch)
        except BaseException as exc:  # reported to the test
            errors.append(exc)

    threading.Thread(target=run, daemon=True).start()
    return errors


@pytest.fixture
def relay(mosquitto):
    relay = HoldingRelay(mosquitto.port)
    yield relay
    relay.close()


def test_a_page_over_the_bound_waits_at_it_while_pubacks_are_held_and_is_delivered_whole_once_they_flow(
    mosquitto, relay
):
    capture = MqttCapture(mosquitto.port).start()
    # At most 10 without PUBACK (2 of them on the wire); a held-up sender resumes at 5.
    conn = MqttConnection(_profile(relay.port), CLIENT_ID, max_inflight=2, max_queued=10, puback_timeout_s=20)
    conn.start()
    try:
        assert conn.wait_connected(10)
        relay.hold()
        batch = PublishBatch()
        errors = _publish_in_background(conn, _page(40), batch)
        wait_until(lambda: conn.unacked == 10, 5, what="the bound reached")
        time.sleep(0.5)
        assert conn.unacked == 10, "handed on past the bound while no PUBACK came"
        relay.release()
        batch.wait(15)
        assert not errors
        assert conn.unacked == 0
        wait_until(lambda: len(capture.ids) == 40, 5, what="all 40 at the subscriber")
    finally:
        conn.close(timeout_s=2)
        capture.stop()


def test_a_connection_lost_while_the_sender_waits_at_the_bound_fails_the_page_long_before_the_deadline(
    mosquitto, relay
):
    conn = MqttConnection(_profile(relay.port), CLIENT_ID, max_inflight=2, max_queued=10, puback_timeout_s=20)
    conn.start()
    try:
        assert conn.wait_connected(10)
        relay.hold()
        batch = PublishBatch()
        errors = _publish_in_background(conn, _page(40), batch)
        wait_until(lambda: conn.unacked == 10, 5, what="the bound reached")
        cut_at = time.monotonic()
        relay.cut()
        relay.release()
        with pytest.raises(SyncError) as raised:
            batch.wait(20)
        assert isinstance(raised.value, TransientError)
        assert time.monotonic() - cut_at < 10, "waited out the PUBACK deadline"
        assert not errors
    finally:
        conn.close(timeout_s=2)
