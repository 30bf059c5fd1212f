"""Signal intake that one message cannot stop, on both transports, and `health` watching every loop.

Real services throughout: moto's SQS server, redis-server, mosquitto, the vendor simulator.
"""

from __future__ import annotations

import threading

import pytest
import redis

from functions.common.signal import REDIS_SIGNAL_CHANNEL, Command, Source, StartSignal
from functions.sync_worker.health import check
from functions.sync_worker.signals import RedisSignals
from tests.worker.conftest import publish_signal, wait_until
from tests.worker.test_process import queue_counts, queue_with_dlq

pytestmark = pytest.mark.integration

NESTED_2KB = "[" * 1000 + "]" * 1000


def _valid() -> StartSignal:
    return StartSignal(command=Command.SYNC_NOW, source=Source.CLI)


def test_a_deeply_nested_sqs_body_is_rejected_and_the_intake_keeps_serving(mosquitto, moto, sync_worker):
    sqs = moto.client("sqs")
    queue_url, dlq_url = queue_with_dlq(sqs, max_receives=2, visibility_s=1)
    setup = sync_worker(3, mqtt_url=mosquitto.url, backlog=1, C2C_SIGNAL_URL=queue_url, C2C_SQS_REJECT_VISIBILITY_S="0")
    worker = setup.running.worker
    sqs.send_message(QueueUrl=queue_url, MessageBody=NESTED_2KB)
    wait_until(lambda: worker.telemetry.signals_rejected >= 1, 20, what="the nested body rejected")
    sqs.send_message(QueueUrl=queue_url, MessageBody=_valid().to_json())
    wait_until(lambda: len(setup.running.history()) == 1, 30, what="the valid signal after it served")
    wait_until(lambda: queue_counts(sqs, dlq_url)[0] == 1, 30, interval=0.3, what="the nested body in the DLQ")
    assert worker.loops()["signal-intake"] is True
    assert check(str(setup.settings.status_file))[0]


def test_a_message_that_is_not_utf8_is_rejected_alone_and_the_signals_read_with_it_are_served(redis_server):
    """Three messages published back to back are read in one go: the middle one is not UTF-8."""
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)  # as the worker builds it
    rejected: list[str] = []
    signals = RedisSignals(client, on_reject=rejected.append)
    stop = threading.Event()
    signals.receive(stop)  # subscribes
    before, after = _valid(), _valid()
    publisher = redis.Redis.from_url(redis_server.url)
    wait_until(lambda: publisher.pubsub_numsub(REDIS_SIGNAL_CHANNEL)[0][1] == 1, 10, what="subscription")
    pipe = publisher.pipeline()
    pipe.publish(REDIS_SIGNAL_CHANNEL, before.to_json())
    pipe.publish(REDIS_SIGNAL_CHANNEL, b'{"v": 1, "command": "sync_now", "source": "cli\xff\xfe"}')
    pipe.publish(REDIS_SIGNAL_CHANNEL, after.to_json())
    pipe.execute()
    got: list[StartSignal] = []

    def received_both() -> bool:
        got.extend(r.signal for r in signals.receive(stop))
        return len(got) >= 2

    wait_until(received_both, 10, what="signals")
    assert [s.id for s in got] == [before.id, after.id]
    assert len(rejected) == 1 and "UTF-8" in rejected[0], rejected
    assert signals._pubsub is not None, "a bad message is not a lost connection: the subscription stays"
    signals.close()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_health_fails_when_the_intake_thread_or_the_lease_renewer_is_gone(mosquitto, redis_server, sync_worker):
    setup = sync_worker(2, mqtt_url=mosquitto.url, backlog=1, C2C_SIGNAL_URL="redis")
    worker = setup.running.worker
    status_file = str(setup.settings.status_file)
    wait_until(lambda: check(status_file)[0], 15, what="healthy worker")

    class Crash(BaseException):
        """Not an Exception: gets past every guard, as only a bug in the interpreter's own code could."""

    def crash(stop):
        raise Crash()

    worker.signals.receive = crash  # the next intake round dies
    wait_until(lambda: not worker._intake.is_alive(), 10, what="intake thread gone")
    wait_until(lambda: not check(status_file)[0], 10, what="health failing")
    assert "signal-intake" in check(status_file)[1]

    worker.lease._renewal_stop.set()  # the renewer ends, the lease is still held until its TTL
    wait_until(lambda: "lease-renewer" in check(status_file)[1], 10, what="renewer reported gone")


def test_the_redis_intake_serves_a_valid_signal_after_a_poison_flood(mosquitto, redis_server, sync_worker):
    setup = sync_worker(2, mqtt_url=mosquitto.url, backlog=1, C2C_SIGNAL_URL="redis")
    publisher = redis.Redis.from_url(redis_server.url)
    poison = [NESTED_2KB.encode(), b"\xff" * 10, b"x" * 300_000, b'{"v": 1, "command": 7, "source": []}']
    for body in poison * 5:
        publisher.publish(REDIS_SIGNAL_CHANNEL, body)
    publish_signal(redis_server.url)
    wait_until(lambda: len(setup.running.history()) == 1, 30, what="the valid signal served")
    assert setup.running.worker.telemetry.signals_rejected == 20
    assert setup.running.worker.loops()["signal-intake"] is True
