"""The fixtures start real servers: a PING, a publish/subscribe round trip and a moto call."""

import time

import paho.mqtt.client as mqtt
import pytest
import redis

pytestmark = pytest.mark.integration


def test_redis_answers(redis_server):
    assert redis.Redis.from_url(redis_server.url).ping() is True


def test_mosquitto_round_trip_and_log_counts_connections(mosquitto):
    got = []
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="smoke-sub")
    sub.on_message = lambda c, u, m: got.append(m.payload)
    sub.connect("127.0.0.1", mosquitto.port)
    sub.subscribe("t/#", qos=1)
    sub.loop_start()
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="smoke-pub")
    pub.connect("127.0.0.1", mosquitto.port)
    pub.loop_start()
    time.sleep(0.2)
    pub.publish("t/1", b"hello", qos=1).wait_for_publish(5)
    deadline = time.monotonic() + 5
    while not got and time.monotonic() < deadline:
        time.sleep(0.01)
    pub.loop_stop()
    sub.loop_stop()
    assert got == [b"hello"]
    assert mosquitto.connections_from("smoke-pub") == 1


def test_moto_sqs(moto):
    sqs = moto.client("sqs")
    url = sqs.create_queue(QueueName="q")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="x")
    assert sqs.receive_message(QueueUrl=url)["Messages"][0]["Body"] == "x"
