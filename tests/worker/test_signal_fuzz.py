"""Fuzzing the signal path (hypothesis): 0 crashes, every poison body rejected, every valid one served.

In-process and fast: 10 bodies per example, `C2C_FUZZ_EXAMPLES` examples per test (100 in the suite:
1,000 bodies each through the parser, the SQS receive path and the Redis receive path, a real
redis-server; `make chaos` runs it with 1,000: 10,000 per path). The SQS API
is replaced by a stub in the receive-path fuzz only, for speed (moto's server would take minutes
for that many messages); the end-to-end test below sends generated bodies through moto's SQS
server to a running worker, and `make chaos` sends 200 poison signals per transport.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from functions.common.signal import REDIS_SIGNAL_CHANNEL, InvalidSignal, StartSignal
from functions.sync_worker.signals import RedisSignals, SqsSignals, parse_message
from tests.support.signal_bodies import poison_text, redis_bodies, sqs_bodies, valid_text
from tests.worker.conftest import wait_until
from tests.worker.test_process import queue_counts, queue_with_dlq

EXAMPLES = int(os.environ.get("C2C_FUZZ_EXAMPLES", "100"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)


@FUZZ
@given(st.lists(st.one_of(sqs_bodies(), redis_bodies()), min_size=10, max_size=10))
def test_the_parser_raises_nothing_but_invalid_signal_for_any_body(bodies):
    for valid, body in bodies:
        try:
            parse_message(body)
        except InvalidSignal as exc:
            assert not valid, f"a valid body was rejected: {exc.reason}"
            assert exc.reason and "\n" not in exc.reason
        else:
            assert valid, f"a poison body was accepted: {body[:200]!r}"


class StubSqs:
    """Stands in for the SQS API in the receive-path fuzz (speed only; see the module docstring)."""

    def __init__(self) -> None:
        self.batch: list[dict[str, Any]] = []
        self.returned: list[str] = []

    def receive_message(self, **kwargs: Any) -> dict[str, Any]:
        batch, self.batch = self.batch, []
        return {"Messages": batch}

    def change_message_visibility_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.returned.extend(e["ReceiptHandle"] for e in Entries)
        return {"Successful": [{"Id": e["Id"]} for e in Entries], "Failed": []}


@pytest.fixture(scope="module")
def stub_sqs() -> Iterator[tuple[SqsSignals, StubSqs, list[str]]]:
    rejected: list[str] = []
    signals = SqsSignals("http://127.0.0.1:9/000000000000/fuzz", wait_s=0, on_reject=rejected.append)
    stub = StubSqs()
    signals.client = stub  # type: ignore[assignment]  # the stub answers the calls receive makes
    yield signals, stub, rejected
    signals.close()


@FUZZ
@given(st.lists(sqs_bodies(), min_size=10, max_size=10))
def test_the_sqs_receive_path_rejects_every_poison_body_and_serves_every_valid_one(stub_sqs, bodies):
    signals, stub, rejected = stub_sqs
    rejected.clear()
    stub.returned.clear()
    stub.batch = [
        {"MessageId": str(i), "ReceiptHandle": f"r{i}", "Body": body, "Attributes": {"ApproximateReceiveCount": "1"}}
        for i, (_, body) in enumerate(bodies)
    ]
    served = signals.receive(threading.Event())
    assert sorted(r.receipt for r in served) == sorted(f"r{i}" for i, (valid, _) in enumerate(bodies) if valid)
    assert sorted(stub.returned) == sorted(f"r{i}" for i, (valid, _) in enumerate(bodies) if not valid)
    assert len(rejected) == sum(1 for valid, _ in bodies if not valid)
    signals.done(served)


@pytest.fixture(scope="module")
def redis_intake(tmp_path_factory) -> Iterator[tuple[RedisSignals, redis.Redis, list[str]]]:
    from tests.support.services import RedisServer

    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        rejected: list[str] = []
        signals = RedisSignals(redis.Redis.from_url(server.url, decode_responses=True), on_reject=rejected.append)
        signals.receive(threading.Event())
        publisher = redis.Redis.from_url(server.url)
        wait_until(lambda: publisher.pubsub_numsub(REDIS_SIGNAL_CHANNEL)[0][1] == 1, 10, what="subscription")
        yield signals, publisher, rejected
        signals.close()
    finally:
        server.stop()


@pytest.mark.integration
@FUZZ
@given(st.lists(redis_bodies(), min_size=10, max_size=10))
def test_the_redis_receive_path_rejects_every_poison_body_and_serves_every_valid_one(redis_intake, bodies):
    signals, publisher, rejected = redis_intake
    rejected.clear()
    pipe = publisher.pipeline(transaction=False)
    for _, body in bodies:
        pipe.publish(REDIS_SIGNAL_CHANNEL, body)
    pipe.execute()
    expected = [StartSignal.model_validate_json(body).id for valid, body in bodies if valid]
    poison = sum(1 for valid, _ in bodies if not valid)
    served: list[StartSignal] = []
    stop = threading.Event()

    def all_answered() -> bool:
        served.extend(r.signal for r in signals.receive(stop))
        return len(served) + len(rejected) >= len(bodies)

    wait_until(
        all_answered,
        30,  # a liveness bound with margin: ten bodies of up to 0.5 MB on a loaded machine
        interval=0,
        what="every body accounted for",
    )
    assert [s.id for s in served] == expected, "every valid signal served, in order"
    assert len(rejected) == poison
    assert signals._pubsub is not None, "no body costs the subscription"


@contextmanager
def _dlq_queue(moto) -> Iterator[tuple[Any, str, str]]:
    sqs = moto.client("sqs")
    queue_url, dlq_url = queue_with_dlq(sqs, name="fuzz", max_receives=1, visibility_s=30)
    yield sqs, queue_url, dlq_url


@pytest.mark.integration
def test_generated_bodies_through_moto_sqs_to_a_running_worker(mosquitto, moto, sync_worker):
    """Poison and valid bodies drawn by hypothesis, sent to moto's SQS server, received by a worker."""
    drawn: list[tuple[list[str], list[str]]] = []

    @settings(max_examples=1, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(
        st.lists(poison_text(huge_max=50_000), min_size=40, max_size=40), st.lists(valid_text(), min_size=4, max_size=4)
    )
    def draw(poison: list[str], valid: list[str]) -> None:
        drawn.append((poison, valid))

    draw()
    poison, valid = drawn[-1]
    with _dlq_queue(moto) as (sqs, queue_url, dlq_url):
        setup = sync_worker(
            2, mqtt_url=mosquitto.url, backlog=1, C2C_SIGNAL_URL=queue_url, C2C_SQS_REJECT_VISIBILITY_S="0"
        )
        worker = setup.running.worker
        for i, body in enumerate(poison):
            sqs.send_message(QueueUrl=queue_url, MessageBody=body)
            if i % 10 == 9:
                sqs.send_message(QueueUrl=queue_url, MessageBody=valid[i // 10])
        wait_until(lambda: queue_counts(sqs, dlq_url)[0] == len(poison), 60, interval=0.5, what="poison in the DLQ")
        wait_until(lambda: queue_counts(sqs, queue_url) == (0, 0), 30, interval=0.3, what="valid signals run")
        assert worker.telemetry.signals_rejected >= len(poison)
        assert worker.loops()["signal-intake"] is True
        assert setup.running.history(), "the valid signals ran cycles"
