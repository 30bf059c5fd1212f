"""`MqttConnection`: one long-lived paho-mqtt 2.x connection of one platform identity.

Why it is built this way:
- **One reconnect owner.** Each `MqttConnection` has one supervisor thread, the only code that
  connects. paho's own reconnect is off (`reconnect_on_failure=False`), so a lost connection ends
  paho's network thread and hands control back to the supervisor, which backs off (exponential,
  full jitter) and connects again with a *fresh* `ConnectionSpec` from the profile — expiring
  credentials (an Azure SAS token) are recomputed on every connect, and `spec.renew_at` schedules
  a planned reconnect, counted apart from faults. While it backs off it probes the broker's TCP
  port and reconnects within about a second of a closed port answering again (`reconnect_wait`).
- **Pipelined QoS 1 in a bounded window, behind a bounded queue.** paho keeps at most
  `max_inflight` (default 20) QoS 1 publishes on the wire and sends the next queued one from its
  network thread as each PUBACK arrives (no thread hand-off per message: measured, that is what
  keeps up with raw paho). In front of it, station threads hand a whole page to the connection's
  one sender thread in a single queue item; the queue is bounded at `max_queued` messages (a
  publisher that finds it full waits, at most until the PUBACK deadline) and the sender hands paho
  at most that many without PUBACK; a sender at that bound sleeps until the PUBACKs have brought it
  down to half (the network thread wakes it once), not once per PUBACK: every wake-up takes the GIL
  from paho's network thread, which is what bounds the publish rate. Each publish belongs to a
  `PublishBatch` (a station's page) whose `wait()` has a deadline: a PUBACK that does not come
  (broker down, session lost) fails the batch with a `TransientError` and the station's cursor
  stays put. Duplicates are possible, loss is not.
- **MQTT 5 properties from a template.** paho's `Properties` validates against its name tables on
  construction and on every attribute set; a template per content type is built once and copied,
  only the user properties are set per message.
- **TCP_NODELAY** on the socket as soon as paho opens it: small QoS 1 publishes and PUBACKs must
  not wait for Nagle.
- **A refused CONNACK ends the attempt at once** (no waiting out `CONNECT_TIMEOUT_S`); the retry
  is counted by reason (`not_authorized`, `bad_user_name_or_password`, ...) and backs off. While an
  identity's credentials stay refused, its publishes fail at once with `AuthError`: in per-device
  mode that is a failure of that device's stations, not of the worker (see `MqttUplink.connected`).
"""

from __future__ import annotations

import contextlib
import copy
import queue
import socket
import ssl
import threading
import time
from _thread import LockType, allocate_lock
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from functions.sync_worker.backoff import Backoff
from functions.sync_worker.errors import (
    AuthError,
    PermanentError,
    SyncError,
    ThrottledError,
    TransientError,
)
from functions.sync_worker.observability import logger
from functions.sync_worker.ratelimit import bucket_for
from functions.sync_worker.uplink.batch import PublishBatch
from functions.sync_worker.uplink.profile import ConnectionSpec, OutboundMessage, PlatformProfile
from functions.sync_worker.uplink.profiles.presence import publish_online
from functions.sync_worker.uplink.reconnect_wait import wait_before_reconnect

#: MQTT v5 PUBACK reason codes that are not worth retrying the same payload for.
_PERMANENT_PUBACK = {0x87, 0x90, 0x99}  # not authorized, topic name invalid, payload format invalid
_THROTTLED_PUBACK = {0x97}  # quota exceeded


#: What waits for a PUBACK, by message id: the message's batch and when it was handed to paho
#: (a tuple: one is built and unpacked per message).
_InFlight = tuple[PublishBatch, float]

_SUCCESS = MQTTErrorCode.MQTT_ERR_SUCCESS
_MQTT_V5 = int(MQTTProtocolVersion.MQTTv5)


@dataclass
class ConnectionStats:
    connections_opened: int = 0
    reconnects: Counter[str] = field(default_factory=Counter)
    planned_reconnects: int = 0
    puback_latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=100_000))


class _Session:
    """One paho client for one network connection; replaced as a whole on every reconnect."""

    def __init__(self, client: mqtt.Client, spec: ConnectionSpec) -> None:
        self.client = client
        self.spec = spec
        self.protocol = spec.protocol
        self.v5 = spec.protocol == _MQTT_V5
        self.lock = threading.Lock()
        self.in_flight: dict[int, _InFlight] = {}
        self.early_acks: dict[int, SyncError | None] = {}
        #: Held by the sender while it waits for room; `_on_publish` releases it once the PUBACKs
        #: have brought the unacknowledged messages down to the connection's low-water mark.
        self.room_waiter: LockType | None = None
        self.connected = threading.Event()
        #: The CONNECT has an answer: a CONNACK (accepted or refused) or the connection dropped.
        self.settled = threading.Event()
        self.ended = threading.Event()
        self.closed = False
        self.end_reason: str | None = None


class MqttConnection:
    """One long-lived connection of one identity. Thread-safe `publish`; `close` drains and disconnects."""

    CONNECT_TIMEOUT_S = 10.0

    def __init__(
        self,
        profile: PlatformProfile,
        identity: str,
        *,
        max_inflight: int = 20,
        max_queued: int = 1000,
        puback_timeout_s: float = 15.0,
        qos: int = 1,
        retain: bool = False,
        backoff: Backoff | None = None,
    ) -> None:
        self.profile = profile
        self.max_inflight = max_inflight
        self.identity = identity
        self.qos = qos
        self.retain = retain
        self.puback_timeout_s = puback_timeout_s
        self.stats = ConnectionStats()
        self._latencies = self.stats.puback_latencies_ms
        # Two bounds, both counted in messages: station threads may queue at most `max_queued` for
        # the sender (a page that alone exceeds it still goes, alone), and the sender hands paho at
        # most `_max_unacked` without a PUBACK (paho itself keeps `max_inflight` of them on the wire).
        self._max_unacked = max(max_queued, max_inflight)
        self._v5_templates: dict[str, Properties] = {}  # sender thread only
        # A full sender sleeps until the PUBACKs have made room for a run of publishes, not for one:
        # waking for every PUBACK (or polling) takes the GIL from paho's network thread each time.
        self._low_water = max(max_inflight, self._max_unacked // 2)
        self._max_queued = max_queued
        self._queued = 0
        self._space = threading.Condition()
        self._publish_rate = bucket_for(profile.limits.max_publish_per_s)  # e.g. AWS IoT Core: 100/s
        self._backoff = backoff or Backoff(base_s=0.5, cap_s=30.0)
        self._session: _Session | None = None
        self._connected = threading.Event()
        #: Why the broker refused this identity's credentials at the last CONNECT (None: not refused).
        #: While set, publishes fail at once as `AuthError` (the station's failure, not a wait for
        #: the PUBACK deadline); the supervisor keeps retrying with fresh credentials.
        self._auth_refused: str | None = None
        self._closing = threading.Event()
        #: Set while the worker stands by without the lease: the open connection is kept, but one that
        #: ends is not reconnected (the next lease holder connects with the same client id, and two
        #: clients reconnecting over each other would evict each other in turn).
        self._held = threading.Event()
        self._supervisor = threading.Thread(target=self._supervise, name=f"mqtt-{identity}", daemon=True)
        # One hand-off per page, not per message: with 32 station threads, a per-message queue
        # put/get (and the wake-ups it causes) was the largest cost of the publish path.
        self._queue: queue.SimpleQueue[tuple[list[tuple[str, OutboundMessage]], PublishBatch, float] | None] = (
            queue.SimpleQueue()
        )
        self._sender = threading.Thread(target=self._send_loop, name=f"mqtt-send-{identity}", daemon=True)

    # -- public API -----------------------------------------------------------------------------

    def start(self) -> MqttConnection:
        self._supervisor.start()
        self._sender.start()
        return self

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def loops(self) -> dict[str, bool]:
        """This connection's own threads and whether each is alive (a closed one has none to lose)."""
        if self._closing.is_set():
            return {}
        return {
            f"mqtt-supervisor:{self.identity}": self._supervisor.is_alive(),
            f"mqtt-sender:{self.identity}": self._sender.is_alive(),
        }

    def wait_connected(self, timeout_s: float) -> bool:
        return self._connected.wait(timeout_s)

    @property
    def unacked(self) -> int:
        """Messages handed to paho on the current connection and not acknowledged yet."""
        session = self._session
        return 0 if session is None else len(session.in_flight)

    def publish(self, topic: str, message: OutboundMessage, batch: PublishBatch) -> None:
        self.publish_many([(topic, message)], batch)

    def publish_many(self, items: list[tuple[str, OutboundMessage]], batch: PublishBatch) -> None:
        """Queue (topic, message) publishes at QoS `self.qos` as one hand-off to the sender; each
        PUBACK (or failure) resolves in `batch`.

        Raises `TransientError`, with nothing of `items` queued, when the queue stays full until the
        PUBACK deadline: the caller's cursor must not move. Everything after the queue reports
        through `batch`.
        """
        n = len(items)
        if n == 0:
            return
        deadline = time.monotonic() + self.puback_timeout_s
        with self._space:
            while self._queued and self._queued + n > self._max_queued:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TransientError(
                        f"publish queue of {self.identity} full for {self.puback_timeout_s:.0f}s",
                        station_id=items[0][1].station_id,
                    )
                self._space.wait(remaining)
            self._queued += n
        batch.added(n)
        self._queue.put((items, batch, deadline))

    def _send_loop(self) -> None:
        """The one thread that hands messages to paho. Station threads only enqueue: measured, many
        threads calling paho directly starve its network thread of the GIL and halve the rate; and
        station threads taking turns at paho under one lock (no hand-off) were no faster either."""
        while True:
            item = self._queue.get()
            if item is None:
                return
            items, batch, deadline = item
            with self._space:
                self._queued -= len(items)
                self._space.notify_all()
            for topic, message in items:
                try:
                    self._send(topic, message, batch, deadline)
                except SyncError as exc:
                    batch.failed(exc)
                except Exception as exc:
                    logger.exception("publish failed unexpectedly")
                    batch.failed(TransientError(f"publish failed: {exc}", station_id=message.station_id))

    def _send(self, topic: str, message: OutboundMessage, batch: PublishBatch, deadline: float) -> None:
        if self._publish_rate is not None and not self._publish_rate.acquire_within(
            max(0.0, deadline - time.monotonic())
        ):
            raise ThrottledError(f"{self.identity}: over {self.profile.limits.max_publish_per_s}/s publish limit")
        session = self._session
        if session is None or session.closed or not self._connected.is_set():
            session = self._live_session(deadline)
        if len(session.in_flight) >= self._max_unacked:
            self._wait_for_room(session, deadline)
        props = self._properties(message) if session.v5 else None
        sent_at = time.monotonic()
        try:
            info = session.client.publish(topic, message.payload, self.qos, self.retain, props)
        except ValueError as exc:  # paho refuses e.g. a topic with wildcards or an oversized payload
            self._resolve(batch, sent_at, PermanentError(f"publish refused: {exc}", station_id=message.station_id))
            return
        except Exception as exc:
            self._resolve(batch, sent_at, TransientError(f"publish failed: {exc}", station_id=message.station_id))
            return
        if info.rc != _SUCCESS:
            self._resolve(
                batch,
                sent_at,
                TransientError(f"publish refused locally: {mqtt.error_string(info.rc)}", station_id=message.station_id),
            )
            return
        mid = info.mid
        with session.lock:
            if session.early_acks and mid in session.early_acks:
                error = session.early_acks.pop(mid)
                self._resolve(batch, sent_at, error)
            elif session.closed:
                self._resolve(batch, sent_at, TransientError(f"connection lost before PUBACK ({session.end_reason})"))
            else:
                session.in_flight[mid] = (batch, sent_at)

    def _wait_for_room(self, session: _Session, deadline: float) -> None:
        """Hold the sender while paho has `_max_unacked` messages without PUBACK (its own queue is
        unbounded), until they are down to `_low_water`. `len()` of the dict is atomic: no lock or
        counter per message for this bound."""
        in_flight = session.in_flight
        low_water = self._low_water
        while True:
            if session.closed:
                raise TransientError(f"{self.identity}: connection lost while waiting for PUBACKs")
            if len(in_flight) <= low_water:
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TransientError(f"{self.identity}: no PUBACK progress before the deadline")
            waiter = allocate_lock()
            waiter.acquire()
            session.room_waiter = waiter
            # Published before this check, so a PUBACK that drains past the mark now releases it.
            if len(in_flight) > low_water and not session.closed:
                waiter.acquire(True, min(remaining, 0.25))  # bounded: `closed` is re-checked
            session.room_waiter = None

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop reconnecting, wait for outstanding PUBACKs (bounded), send DISCONNECT."""
        self._queue_drained(timeout_s / 2)
        self._queue.put(None)
        self._sender.join(timeout_s / 2)
        self._closing.set()
        if self._supervisor.is_alive():
            self._supervisor.join(timeout_s)
        session = self._session
        if session is None:
            return
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not session.ended.is_set():
            with session.lock:
                if not session.in_flight:
                    break
            time.sleep(0.01)
        self._announce_offline(session, max(0.0, min(2.0, deadline - time.monotonic())))
        self._end_session(session, "closing")

    @staticmethod
    def _announce_offline(session: _Session, timeout_s: float) -> None:
        """A clean DISCONNECT discards the last will, so a graceful close publishes it itself: the
        retained status then says `offline` whether the worker stopped or crashed."""
        will = session.spec.will
        if will is None or session.ended.is_set():
            return
        try:
            session.client.publish(will.topic, will.payload, qos=will.qos, retain=will.retain).wait_for_publish(
                timeout_s
            )
        except (RuntimeError, ValueError):  # connection gone meanwhile: the broker sends the will itself
            logger.debug("offline status not published", extra={"topic": will.topic})

    def _queue_drained(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while self._queued and time.monotonic() < deadline and self._connected.is_set():
            time.sleep(0.01)

    # -- the one reconnect owner --------------------------------------------------------------

    def hold(self) -> None:
        """Keep the connection while it lasts, but do not reconnect it until `resume`."""
        self._held.set()

    def resume(self) -> None:
        self._held.clear()

    def _supervise(self) -> None:
        while not self._closing.is_set():
            while self._held.is_set() and not self._closing.is_set():
                self._closing.wait(0.2)
            if self._closing.is_set():
                return
            try:
                spec = self.profile.connection_spec(self.identity)
            except Exception as exc:
                logger.exception("connection spec failed", extra={"identity": self.identity})
                self._count_reconnect(f"spec_error:{type(exc).__name__}")
                self._closing.wait(self._backoff.next_delay())
                continue
            outcome = self._run_session(spec)
            if self._closing.is_set():
                return
            if outcome == "planned":
                self.stats.planned_reconnects += 1
                logger.info("planned reconnect (credential renewal)", extra={"identity": self.identity})
                continue
            self._count_reconnect(outcome)
            delay = self._backoff.next_delay()
            logger.warning(
                "mqtt disconnected; reconnecting",
                extra={"identity": self.identity, "reason": outcome, "retry_in_s": round(delay, 2)},
            )
            refused = outcome == "connect_error:ConnectionRefusedError"
            if wait_before_reconnect(spec.host, spec.port, delay, self._closing, refused=refused):
                logger.info("mqtt broker port answers again; reconnecting now", extra={"identity": self.identity})

    def _count_reconnect(self, reason: str) -> None:
        self.stats.reconnects[reason] += 1

    def _run_session(self, spec: ConnectionSpec) -> str:
        """Connect once and stay until the connection ends; return why it ended."""
        session = self._new_session(spec)
        try:
            session.client.connect(spec.host, spec.port, keepalive=spec.keepalive_s)
        except (OSError, ssl.SSLError) as exc:
            session.closed = True
            return f"connect_error:{type(exc).__name__}"
        session.client.loop_start()
        # A refused CONNACK (bad credentials) settles it at once: no waiting out the timeout.
        session.settled.wait(self.CONNECT_TIMEOUT_S)
        if not session.connected.is_set():
            reason = session.end_reason or "connack_timeout"
            self._end_session(session, reason)
            return reason
        self.stats.connections_opened += 1
        self._auth_refused = None
        self._backoff.reset()
        self._session = session
        publish_online(self.profile, self.identity, session.client)  # retained presence, if the profile has one
        self._connected.set()
        logger.info(
            "mqtt connected",
            extra={"identity": self.identity, "host": spec.host, "port": spec.port, "tls": spec.tls is not None},
        )
        while not self._closing.is_set():
            wait_s = 1.0 if spec.renew_at is None else max(0.0, min(1.0, spec.renew_at - time.monotonic()))
            if session.ended.wait(wait_s):
                reason = session.end_reason or "connection_lost"
                self._end_session(session, reason)
                return reason
            if spec.renew_at is not None and time.monotonic() >= spec.renew_at:
                self._connected.clear()  # new publishes wait for the renewed session
                self._drain(session, timeout_s=min(5.0, self.puback_timeout_s))
                self._end_session(session, "planned")
                return "planned"
        return "closing"

    def _new_session(self, spec: ConnectionSpec) -> _Session:
        protocol = MQTTProtocolVersion(spec.protocol)
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=spec.client_id,
            protocol=protocol,
            clean_session=spec.clean_session if protocol != MQTTProtocolVersion.MQTTv5 else None,
            reconnect_on_failure=False,
        )
        session = _Session(client, spec)
        # paho enforces the in-flight window itself, from its network thread; our semaphore bounds its queue.
        client.max_inflight_messages_set(self.max_inflight)
        if spec.username is not None:
            client.username_pw_set(spec.username, spec.password)
        if spec.tls is not None:
            client.tls_set_context(spec.tls)
        if spec.will is not None:
            client.will_set(spec.will.topic, spec.will.payload, qos=spec.will.qos, retain=spec.will.retain)
        client.user_data_set(session)  # `_on_publish` gets its session as paho's userdata
        client.on_socket_open = _set_nodelay
        client.on_connect = lambda c, u, flags, rc, props: self._on_connect(session, rc)
        client.on_disconnect = lambda c, u, flags, rc, props: self._on_disconnect(session, rc)
        client.on_publish = self._on_publish  # called per PUBACK: no wrapper frame
        return session

    # -- paho callbacks (paho's network thread) -------------------------------------------------

    def _on_connect(self, session: _Session, reason_code: Any) -> None:
        if reason_code.is_failure:
            session.end_reason = refusal_reason(reason_code)
            spec = session.spec
            where = {
                "identity": self.identity,
                "reason": session.end_reason,
                "host": spec.host,
                "port": spec.port,
                "username": spec.username,
                "client_certificate": spec.tls is not None,
            }
            if is_auth_refusal(reason_code):
                self._auth_refused = session.end_reason
                logger.error(
                    f"MQTT broker refused this identity's credentials ({session.end_reason}): check the "
                    "username/password, token or client certificate; retrying with backoff",
                    extra=where,
                )
            else:
                logger.error(
                    f"MQTT broker refused the connection ({session.end_reason}); retrying with backoff", extra=where
                )
            session.ended.set()
        else:
            session.connected.set()
        session.settled.set()

    def _on_disconnect(self, session: _Session, reason_code: Any) -> None:
        if session.end_reason is None:
            session.end_reason = (
                "connection_lost"
                if str(reason_code) in ("Unspecified error", "Success")
                else f"disconnect:{reason_code}"
            )
        logger.warning(
            "mqtt disconnect",
            extra={"identity": self.identity, "reason_code": str(reason_code), "reason": session.end_reason},
        )
        session.ended.set()
        session.settled.set()

    def _on_publish(self, client: mqtt.Client, session: _Session, mid: int, reason_code: Any, properties: Any) -> None:
        with session.lock:
            entry = session.in_flight.pop(mid, None)
            if entry is None:
                session.early_acks[mid] = _puback_error(reason_code) if reason_code.value >= 0x80 else None
                return
        waiter = session.room_waiter
        if waiter is not None and len(session.in_flight) <= self._low_water:
            _release(waiter)  # only the sender clears `room_waiter`: it may have a newer one there
        batch, sent_at = entry
        if reason_code.value < 0x80:
            self._latencies.append((time.monotonic() - sent_at) * 1000)
            batch.acked()
        else:
            self._resolve(batch, sent_at, _puback_error(reason_code))

    # -- helpers ------------------------------------------------------------------------------

    def _resolve(self, batch: PublishBatch, sent_at: float, error: SyncError | None) -> None:
        if error is None:
            self._latencies.append((time.monotonic() - sent_at) * 1000)
            batch.acked()
        else:
            batch.failed(error)

    def _live_session(self, deadline: float) -> _Session:
        while True:
            session = self._session
            if session is not None and self._connected.is_set() and not session.closed:
                return session
            refused = self._auth_refused
            if refused is not None:
                raise AuthError(f"MQTT broker refused the credentials of {self.identity} ({refused})")
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._closing.is_set():
                raise TransientError(f"MQTT connection {self.identity} is down")
            self._connected.wait(min(remaining, 0.5))

    def _drain(self, session: _Session, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not session.ended.is_set():
            with session.lock:
                if not session.in_flight:
                    return
            time.sleep(0.01)

    def _end_session(self, session: _Session, reason: str) -> None:
        """Close a session and fail whatever still waits for a PUBACK on it."""
        if self._session is session:
            self._connected.clear()
        if not session.ended.is_set():
            # Clean DISCONNECT (or abandoning a CONNECT that got no CONNACK): the broker drops the session now.
            session.end_reason = session.end_reason or reason
            session.client.disconnect()
        session.client.loop_stop()
        with session.lock:
            session.closed = True
            session.end_reason = session.end_reason or reason
            orphans = list(session.in_flight.values())
            session.in_flight.clear()
        waiter = session.room_waiter
        if waiter is not None:  # the sender finds `closed` set and fails the rest of its page
            _release(waiter)
        for batch, sent_at in orphans:
            self._resolve(batch, sent_at, TransientError(f"connection lost before PUBACK ({session.end_reason})"))

    def _properties(self, message: OutboundMessage) -> Properties:
        """MQTT 5 properties of one publish. paho's `Properties` validates by scanning its name
        tables on construction and on every attribute set (about 19 us per message for these two),
        so a template per content type is built once and copied; only the user properties are set
        per message."""
        template = self._v5_templates.get(message.content_type)
        if template is None:
            template = Properties(PacketTypes.PUBLISH)
            template.ContentType = message.content_type
            self._v5_templates[message.content_type] = template
        props = copy.copy(template)
        pairs = message.properties
        if pairs.get("message_id") == message.message_id:
            props.UserProperty = list(pairs.items())
        else:
            props.UserProperty = [("message_id", message.message_id), *pairs.items()]
        return props


#: CONNACK refusals that mean "these credentials are not accepted": bad user name or password, not
#: authorized, bad authentication method (paho maps MQTT 3.1.1's codes 4 and 5 onto the first two).
_AUTH_REFUSALS = {0x86, 0x87, 0x8C}


def refusal_reason(reason_code: Any) -> str:
    """A refused CONNACK as a metric-friendly reason: "Not authorized" -> "not_authorized"."""
    return "_".join(str(reason_code).lower().replace("-", " ").split()) or f"refused_{int(reason_code.value)}"


def is_auth_refusal(reason_code: Any) -> bool:
    return int(reason_code.value) in _AUTH_REFUSALS


def _puback_error(reason_code: Any) -> SyncError | None:
    if reason_code is None or not reason_code.is_failure:
        return None
    value = int(reason_code.value)
    if value in _PERMANENT_PUBACK:
        return PermanentError(f"broker refused the publish: {reason_code}")
    if value in _THROTTLED_PUBACK:
        return ThrottledError(f"broker quota exceeded: {reason_code}")
    return TransientError(f"broker PUBACK failure: {reason_code}")


def _release(waiter: LockType) -> None:
    # RuntimeError: released already (a later PUBACK, or the session's end, saw it too).
    with contextlib.suppress(RuntimeError):
        waiter.release()


def _set_nodelay(client: mqtt.Client, userdata: Any, sock: Any) -> None:
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):  # a WebSocket or proxy wrapper may not expose it
        logger.debug("TCP_NODELAY not settable on this socket")
