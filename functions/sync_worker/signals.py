"""Where start signals come from: an SQS queue (long-poll) or a Redis pub/sub channel.

Both transports validate each message on its own with the shared `parse_signal`, and whatever goes
wrong with one message (bad JSON, invalid UTF-8, deep nesting, a huge body, a parser crash) is a
rejection of that message: logged with a short reason, counted, and never an exception out of
`receive`. Transport errors back off and retry; what was read before one is kept.

A malformed SQS message is *not deleted*: it becomes visible again and, after the queue's
maxReceiveCount, the redrive policy moves it to the DLQ where an operator can read it. A valid SQS
message is deleted only after the cycle it started has finished; until then a background thread
keeps extending its visibility, so a long cycle does not let a second worker pick it up.

Giving a valid signal back (a graceful stop, a lost lease) must not push it toward the DLQ: a
deploy or two during one signal's life is routine. So `release` sends a fresh copy of the body and
deletes the received message (the copy starts at receive count 0), and delays the copy until this
worker's own long poll in flight has returned, so the stopping worker cannot receive it again.
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import urlsplit

import redis

from functions.common.signal import REDIS_SIGNAL_CHANNEL, InvalidSignal, StartSignal, parse_signal
from functions.sync_worker.backoff import Backoff
from functions.sync_worker.observability import logger

if TYPE_CHECKING:  # the boto3 type stubs are a development dependency
    from mypy_boto3_sqs.type_defs import MessageTypeDef, SendMessageBatchRequestEntryTypeDef


@dataclass(frozen=True)
class ReceivedSignal:
    signal: StartSignal
    #: SQS receipt handle; None for transports without acknowledgement (Redis pub/sub).
    receipt: str | None = None
    #: The message body as received (SQS), sent again as a fresh message when the signal is given back.
    body: str | None = None


class SignalSource(Protocol):
    #: True when a released signal comes back to some worker (SQS); False when releasing one would
    #: drop it (pub/sub), so the worker keeps it instead.
    redelivers: bool

    def receive(self, stop: threading.Event) -> list[ReceivedSignal]:
        """Wait (bounded, a few seconds at most) for signals; [] on timeout or transport trouble."""
        ...

    def done(self, signals: list[ReceivedSignal]) -> None:
        """The signals' cycle finished: acknowledge them (delete from SQS)."""
        ...

    def release(self, signals: list[ReceivedSignal]) -> None:
        """Give unprocessed signals back to whichever worker receives next — on shutdown or a lost
        lease — without counting against the signal's way to the DLQ."""
        ...

    def loops(self) -> dict[str, bool]:
        """The transport's own background loops and whether each is alive (for `health`)."""
        ...

    def close(self) -> None: ...


T = TypeVar("T")
RejectHook = Callable[[str], None]
#: Slack on top of the long poll's wait before it has surely returned (request and response time).
POLL_MARGIN_S = 2
#: SQS's largest DelaySeconds.
MAX_SQS_DELAY_S = 900
#: Messages taken off the Redis channel per `receive` at most, so one flood cannot hold the intake.
MAX_PUBSUB_BATCH = 500
#: A logged rejection reason is cut here: a reason quoting a huge body must not make a huge log line.
MAX_REASON_CHARS = 300


def unwrap_body(body: str) -> str:
    """SNS -> SQS without raw delivery wraps the signal in a notification envelope."""
    try:
        outer = json.loads(body)
    except Exception:  # not JSON, or nested past the recursion limit: `parse_signal` says why
        return body
    message = outer.get("Message") if isinstance(outer, dict) and outer.get("Type") == "Notification" else None
    if isinstance(message, str):
        return message
    return body


def parse_message(body: str | bytes) -> StartSignal:
    """One message body (an SNS envelope or the signal itself) to a signal; `InvalidSignal` is the
    only exception it raises, whatever the body."""
    try:
        if isinstance(body, str):
            body = unwrap_body(body)
        return parse_signal(body)
    except InvalidSignal:
        raise
    except Exception as exc:
        raise InvalidSignal(f"body: unparseable ({type(exc).__name__})") from None


def short_reason(reason: str) -> str:
    return reason if len(reason) <= MAX_REASON_CHARS else reason[: MAX_REASON_CHARS - 3] + "..."


class SqsSignals:
    redelivers = True

    def __init__(
        self,
        queue_url: str,
        *,
        wait_s: int = 20,
        visibility_s: int = 60,
        reject_visibility_s: int = 5,
        on_reject: RejectHook | None = None,
    ) -> None:
        import boto3
        from botocore.config import Config

        self.queue_url = queue_url
        self.wait_s = wait_s
        self.visibility_s = visibility_s
        self.reject_visibility_s = reject_visibility_s
        self.on_reject = on_reject or (lambda reason: None)
        region, endpoint = _sqs_region_and_endpoint(queue_url)
        self.client = boto3.client(
            "sqs",
            region_name=region,
            endpoint_url=endpoint,
            config=Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=wait_s + 10),
        )
        self._held: set[str] = set()  # receipts of signals received and not yet done
        #: When this worker's long poll in flight returns at the latest (None: no poll in flight).
        self._poll_ends: float | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._backoff = Backoff(base_s=0.5, cap_s=20.0)
        self._extender = threading.Thread(target=self._extend_loop, name="sqs-visibility", daemon=True)
        self._extender.start()

    def receive(self, stop: threading.Event) -> list[ReceivedSignal]:
        if stop.is_set() or self._stop.is_set():
            return []  # a stopping worker starts no poll: it would receive what it gives back
        self._poll_ends = time.monotonic() + self.wait_s + POLL_MARGIN_S
        try:
            response = self.client.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=self.wait_s,
                VisibilityTimeout=self.visibility_s,
                MessageSystemAttributeNames=["ApproximateReceiveCount"],
            )
        except Exception as exc:
            self._poll_ends = None
            delay = self._backoff.next_delay()
            logger.warning("SQS receive failed", extra={"error": str(exc), "retry_in_s": round(delay, 2)})
            stop.wait(delay)
            return []
        self._poll_ends = None
        self._backoff.reset()
        out = []
        messages = response.get("Messages", [])
        for msg in messages:
            try:
                body = msg["Body"]
                receipt = msg["ReceiptHandle"]
            except Exception:
                logger.error("SQS message without a body or receipt handle; ignored", extra={"message": str(msg)[:200]})
                continue
            try:
                signal = parse_message(body)
            except InvalidSignal as exc:
                # Not deleted: after maxReceiveCount the redrive policy moves it to the DLQ.
                self._reject(msg, exc.reason)
                continue
            with self._lock:
                self._held.add(receipt)
            out.append(ReceivedSignal(signal, receipt, body))
        return out

    def _reject(self, msg: MessageTypeDef, reason: str) -> None:
        reason = short_reason(reason)
        logger.error(
            "rejected malformed signal",
            extra={
                "reason": reason,
                "sqs_message_id": msg.get("MessageId"),
                "receive_count": msg.get("Attributes", {}).get("ApproximateReceiveCount"),
            },
        )
        self.on_reject(reason)
        self._return_soon(msg["ReceiptHandle"])

    def _return_soon(self, receipt: str) -> None:
        # Not deleted: visible again shortly, so it reaches maxReceiveCount (and the DLQ) at a
        # steady pace instead of after the long visibility a valid signal gets.
        self._change_visibility([receipt], self.reject_visibility_s)

    def done(self, signals: list[ReceivedSignal]) -> None:
        receipts = [s.receipt for s in signals if s.receipt]
        for chunk in _chunks(receipts, 10):
            self._delete(chunk)
            with self._lock:
                self._held.difference_update(chunk)

    def release(self, signals: list[ReceivedSignal]) -> None:
        held = [s for s in signals if s.receipt]
        with self._lock:
            self._held.difference_update(s.receipt for s in held if s.receipt)
        delay = self._own_poll_remaining_s()
        for chunk in _chunks(held, 10):
            sent = self._send_copies(chunk, delay)
            if sent:
                self._delete([s.receipt for s in sent if s.receipt])
            unsent = [s for s in chunk if s not in sent]
            if unsent:  # the copy failed: at least make the original visible again once our poll is over
                self._change_visibility([s.receipt for s in unsent if s.receipt], delay)
        if held:
            logger.info("signals given back", extra={"count": len(held), "visible_in_s": delay})

    def _own_poll_remaining_s(self) -> int:
        """Seconds until this worker's long poll in flight has returned (0: none in flight)."""
        ends = self._poll_ends
        if ends is None:
            return 0
        return min(MAX_SQS_DELAY_S, max(0, math.ceil(ends - time.monotonic())))

    def _send_copies(self, signals: list[ReceivedSignal], delay_s: int) -> list[ReceivedSignal]:
        """Send each body again as a new message; returns the signals whose copy SQS accepted."""
        entries: list[SendMessageBatchRequestEntryTypeDef] = [
            {"Id": str(i), "MessageBody": s.body, "DelaySeconds": delay_s}
            for i, s in enumerate(signals)
            if s.body is not None
        ]
        if not entries:
            return []
        try:
            result = self.client.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
        except Exception as exc:
            logger.warning("SQS give-back copy failed", extra={"error": str(exc)})
            return []
        for failure in result.get("Failed", []):
            logger.warning("SQS give-back copy failed", extra={"failure": failure})
        return [signals[int(ok["Id"])] for ok in result.get("Successful", [])]

    def _delete(self, receipts: list[str]) -> None:
        try:
            result = self.client.delete_message_batch(
                QueueUrl=self.queue_url, Entries=[{"Id": str(i), "ReceiptHandle": r} for i, r in enumerate(receipts)]
            )
            for failure in result.get("Failed", []):
                logger.warning("SQS delete failed; the signal will be seen again", extra={"failure": failure})
        except Exception as exc:
            logger.warning("SQS delete failed; the signal will be seen again", extra={"error": str(exc)})

    def _change_visibility(self, receipts: list[str], timeout_s: int) -> None:
        try:
            self.client.change_message_visibility_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": r, "VisibilityTimeout": timeout_s} for i, r in enumerate(receipts)
                ],
            )
        except Exception as exc:
            logger.warning("SQS visibility change failed", extra={"error": str(exc)})

    def loops(self) -> dict[str, bool]:
        return {"sqs-visibility": self._extender.is_alive() or self._stop.is_set()}

    def _extend_loop(self) -> None:
        # Extend at a third of the timeout: two renewals may fail before a held signal reappears.
        while not self._stop.wait(max(1.0, self.visibility_s / 3)):
            with self._lock:
                receipts = list(self._held)
            for chunk in _chunks(receipts, 10):
                self._change_visibility(chunk, self.visibility_s)

    def close(self) -> None:
        self._stop.set()


class RedisSignals:
    """Redis pub/sub: fire-and-forget (a signal published while no worker listens is lost; the
    schedule sends the next one). Resubscribes after any connection loss.

    The subscription reads raw bytes on a connection of its own (the shared client decodes
    responses, and a decode error inside redis-py would look like a lost connection and take the
    messages read with it); each message is then decoded and validated on its own."""

    redelivers = False

    def __init__(
        self, client: redis.Redis, channel: str = REDIS_SIGNAL_CHANNEL, *, on_reject: RejectHook | None = None
    ) -> None:
        self.client = raw_client(client)
        self.channel = channel
        self.on_reject = on_reject or (lambda reason: None)
        self._pubsub: redis.client.PubSub | None = None
        self._backoff = Backoff(base_s=0.2, cap_s=10.0)

    def _subscribe(self) -> redis.client.PubSub:
        pubsub: redis.client.PubSub = self.client.pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(self.channel)
        logger.info("subscribed to signals", extra={"channel": self.channel})
        return pubsub

    def receive(self, stop: threading.Event) -> list[ReceivedSignal]:
        out: list[ReceivedSignal] = []
        try:
            if self._pubsub is None:
                self._pubsub = self._subscribe()
                self._backoff.reset()
            message = self._pubsub.get_message(timeout=1.0)
            taken = 0
            while message is not None:
                taken += 1
                self._take(message, out)
                if taken >= MAX_PUBSUB_BATCH:
                    break
                message = self._pubsub.get_message(timeout=0.0)
            return out
        except Exception as exc:  # the transport (RedisError, OSError, a socket closed under us, ...)
            self._drop()
            delay = self._backoff.next_delay()
            logger.warning(
                "redis pub/sub lost; resubscribing",
                extra={"error": str(exc), "retry_in_s": round(delay, 2), "kept": len(out)},
            )
            if not out:
                stop.wait(delay)
            return out  # what was read before the error is served

    def _take(self, message: Any, out: list[ReceivedSignal]) -> None:
        if not isinstance(message, dict) or message.get("type") != "message":
            return
        try:
            out.append(ReceivedSignal(parse_message(message.get("data", b""))))
        except InvalidSignal as exc:
            reason = short_reason(exc.reason)
            logger.error("rejected malformed signal", extra={"reason": reason, "channel": self.channel})
            self.on_reject(reason)

    def _drop(self) -> None:
        if self._pubsub is not None:
            try:
                self._pubsub.close()
            except Exception:
                logger.debug("closing a broken pub/sub connection failed", exc_info=True)
            self._pubsub = None

    def done(self, signals: list[ReceivedSignal]) -> None:
        pass

    def release(self, signals: list[ReceivedSignal]) -> None:
        pass

    def loops(self) -> dict[str, bool]:
        return {}

    def close(self) -> None:
        self._drop()


def raw_client(client: redis.Redis) -> redis.Redis:
    """A client like `client` (same server, credentials, TLS, timeouts) that returns bytes."""
    pool = client.connection_pool
    kwargs = {**pool.connection_kwargs, "decode_responses": False}
    return redis.Redis(connection_pool=redis.ConnectionPool(connection_class=pool.connection_class, **kwargs))


def _chunks(items: list[T], size: int) -> list[list[T]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _sqs_region_and_endpoint(queue_url: str) -> tuple[str, str | None]:
    """A real queue URL names its region; anything else (moto, LocalStack) is its own endpoint."""
    parts = urlsplit(queue_url)
    match = re.match(r"^sqs[.-]([a-z0-9-]+)\.amazonaws\.com(\.cn)?$", parts.hostname or "")
    if match:
        return match.group(1), None
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return region, f"{parts.scheme}://{parts.netloc}"
