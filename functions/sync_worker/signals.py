"""Where start signals come from: an SQS queue (long-poll) or a Redis pub/sub channel.

Both transports validate with the shared `parse_signal`. A malformed SQS message is logged with
the reason, counted, and *not deleted*: it becomes visible again and, after the queue's
maxReceiveCount, the redrive policy moves it to the DLQ where an operator can read it. A valid SQS
message is deleted only after the cycle it started has finished; until then a background thread
keeps extending its visibility, so a long cycle does not let a second worker pick it up.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

import redis
from redis.exceptions import RedisError

from functions.common.signal import REDIS_SIGNAL_CHANNEL, InvalidSignal, StartSignal, parse_signal
from functions.sync_worker.backoff import Backoff
from functions.sync_worker.observability import logger


@dataclass(frozen=True)
class ReceivedSignal:
    signal: StartSignal
    #: SQS receipt handle; None for transports without acknowledgement (Redis pub/sub).
    receipt: str | None = None


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
        """Give unprocessed signals back (visible again at once) — on shutdown."""
        ...

    def close(self) -> None: ...


RejectHook = Callable[[str], None]


def unwrap_body(body: str) -> str:
    """SNS -> SQS without raw delivery wraps the signal in a notification envelope."""
    try:
        outer = json.loads(body)
    except ValueError:
        return body
    if isinstance(outer, dict) and outer.get("Type") == "Notification" and isinstance(outer.get("Message"), str):
        return outer["Message"]
    return body


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
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._backoff = Backoff(base_s=0.5, cap_s=20.0)
        self._extender = threading.Thread(target=self._extend_loop, name="sqs-visibility", daemon=True)
        self._extender.start()

    def receive(self, stop: threading.Event) -> list[ReceivedSignal]:
        try:
            response = self.client.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=self.wait_s,
                VisibilityTimeout=self.visibility_s,
                MessageSystemAttributeNames=["ApproximateReceiveCount"],
            )
        except Exception as exc:
            delay = self._backoff.next_delay()
            logger.warning("SQS receive failed", extra={"error": str(exc), "retry_in_s": round(delay, 2)})
            stop.wait(delay)
            return []
        self._backoff.reset()
        out = []
        for msg in response.get("Messages", []):
            try:
                signal = parse_signal(unwrap_body(msg["Body"]))
            except InvalidSignal as exc:
                # Not deleted: after maxReceiveCount the redrive policy moves it to the DLQ.
                logger.error(
                    "rejected malformed signal",
                    extra={
                        "reason": exc.reason,
                        "sqs_message_id": msg.get("MessageId"),
                        "receive_count": msg.get("Attributes", {}).get("ApproximateReceiveCount"),
                    },
                )
                self.on_reject(exc.reason)
                self._return_soon(msg["ReceiptHandle"])
                continue
            with self._lock:
                self._held.add(msg["ReceiptHandle"])
            out.append(ReceivedSignal(signal, msg["ReceiptHandle"]))
        return out

    def _return_soon(self, receipt: str) -> None:
        # Not deleted: visible again shortly, so it reaches maxReceiveCount (and the DLQ) at a
        # steady pace instead of after the long visibility a valid signal gets.
        try:
            self.client.change_message_visibility(
                QueueUrl=self.queue_url, ReceiptHandle=receipt, VisibilityTimeout=self.reject_visibility_s
            )
        except Exception as exc:
            logger.warning("SQS visibility change failed", extra={"error": str(exc)})

    def done(self, signals: list[ReceivedSignal]) -> None:
        receipts = [s.receipt for s in signals if s.receipt]
        for chunk in _chunks(receipts, 10):
            try:
                result = self.client.delete_message_batch(
                    QueueUrl=self.queue_url, Entries=[{"Id": str(i), "ReceiptHandle": r} for i, r in enumerate(chunk)]
                )
                for failure in result.get("Failed", []):
                    logger.warning("SQS delete failed; the signal will be seen again", extra={"failure": failure})
            except Exception as exc:
                logger.warning("SQS delete failed; the signal will be seen again", extra={"error": str(exc)})
            with self._lock:
                self._held.difference_update(chunk)

    def release(self, signals: list[ReceivedSignal]) -> None:
        receipts = [s.receipt for s in signals if s.receipt]
        with self._lock:
            self._held.difference_update(receipts)
        for chunk in _chunks(receipts, 10):
            try:
                self.client.change_message_visibility_batch(
                    QueueUrl=self.queue_url,
                    Entries=[{"Id": str(i), "ReceiptHandle": r, "VisibilityTimeout": 0} for i, r in enumerate(chunk)],
                )
            except Exception as exc:
                logger.warning("SQS release failed", extra={"error": str(exc)})

    def _extend_loop(self) -> None:
        # Extend at a third of the timeout: two renewals may fail before a held signal reappears.
        while not self._stop.wait(max(1.0, self.visibility_s / 3)):
            with self._lock:
                receipts = list(self._held)
            for chunk in _chunks(receipts, 10):
                try:
                    self.client.change_message_visibility_batch(
                        QueueUrl=self.queue_url,
                        Entries=[
                            {"Id": str(i), "ReceiptHandle": r, "VisibilityTimeout": self.visibility_s}
                            for i, r in enumerate(chunk)
                        ],
                    )
                except Exception as exc:
                    logger.warning("SQS visibility extension failed", extra={"error": str(exc)})

    def close(self) -> None:
        self._stop.set()


class RedisSignals:
    """Redis pub/sub: fire-and-forget (a signal published while no worker listens is lost; the
    schedule sends the next one). Resubscribes after any connection loss."""

    redelivers = False

    def __init__(
        self, client: redis.Redis, channel: str = REDIS_SIGNAL_CHANNEL, *, on_reject: RejectHook | None = None
    ) -> None:
        self.client = client
        self.channel = channel
        self.on_reject = on_reject or (lambda reason: None)
        self._pubsub: redis.client.PubSub | None = None
        self._backoff = Backoff(base_s=0.2, cap_s=10.0)

    def _subscribe(self) -> redis.client.PubSub:
        pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(self.channel)
        logger.info("subscribed to signals", extra={"channel": self.channel})
        return pubsub

    def receive(self, stop: threading.Event) -> list[ReceivedSignal]:
        try:
            if self._pubsub is None:
                self._pubsub = self._subscribe()
                self._backoff.reset()
            out = []
            message = self._pubsub.get_message(timeout=1.0)
            while message is not None:
                if message.get("type") == "message":
                    data = message["data"]
                    try:
                        out.append(ReceivedSignal(parse_signal(data)))
                    except InvalidSignal as exc:
                        logger.error("rejected malformed signal", extra={"reason": exc.reason, "channel": self.channel})
                        self.on_reject(exc.reason)
                message = self._pubsub.get_message(timeout=0.0)
            return out
        except (RedisError, OSError, ValueError) as exc:  # ValueError: socket closed under us
            self._drop()
            delay = self._backoff.next_delay()
            logger.warning(
                "redis pub/sub lost; resubscribing", extra={"error": str(exc), "retry_in_s": round(delay, 2)}
            )
            stop.wait(delay)
            return []

    def _drop(self) -> None:
        if self._pubsub is not None:
            try:
                self._pubsub.close()
            except Exception:
                pass
            self._pubsub = None

    def done(self, signals: list[ReceivedSignal]) -> None:
        pass

    def release(self, signals: list[ReceivedSignal]) -> None:
        pass

    def close(self) -> None:
        self._drop()


def _chunks(items: list[str], size: int) -> list[list[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _sqs_region_and_endpoint(queue_url: str) -> tuple[str, str | None]:
    """A real queue URL names its region; anything else (moto, LocalStack) is its own endpoint."""
    parts = urlsplit(queue_url)
    match = re.match(r"^sqs[.-]([a-z0-9-]+)\.amazonaws\.com(\.cn)?$", parts.hostname or "")
    if match:
        return match.group(1), None
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return region, f"{parts.scheme}://{parts.netloc}"
