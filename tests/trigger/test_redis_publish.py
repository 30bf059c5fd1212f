"""Optional Redis PUBLISH: a real redis-server with AUTH (and one with TLS), the token from moto's Secrets Manager.

The subscriber SUBSCRIBEs before the handler runs (pub/sub does not store messages) and validates what
it got with the worker's parse_signal; SNS→SQS still carries the same signal.
"""

from __future__ import annotations

import json
import time

import pytest
import redis

from functions.common.redis_auth import BadAuthSecret, auth_token
from functions.common.signal import REDIS_SIGNAL_CHANNEL, Command, Source, parse_signal
from tests.support.services import RedisServer, tls_redis_server
from tests.trigger.conftest import load_event

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:No application metrics to publish"),
]  # see observability.py

TOKEN = "s3cret-auth-token-0123456789abcdef"


@pytest.fixture
def redis_with_auth(tmp_path):
    server = RedisServer(tmp_path, password=TOKEN).start()
    yield server
    server.stop()


def _secret(trigger_env, value: str) -> str:
    return trigger_env.moto.client("secretsmanager").create_secret(Name="c2c-test-redis-auth", SecretString=value)[
        "ARN"
    ]


def _subscribe(host: str, port: int, **kwargs) -> redis.client.PubSub:
    pubsub = redis.Redis(host=host, port=port, password=TOKEN, **kwargs).pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(REDIS_SIGNAL_CHANNEL)
    # Wait for the subscribe confirmation so the publish cannot race ahead of it.
    deadline = time.monotonic() + 5
    while not pubsub.subscribed and time.monotonic() < deadline:
        pubsub.get_message(timeout=0.1)
    assert pubsub.subscribed
    return pubsub


def _next_message(pubsub) -> bytes:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.5)
        if message and message["type"] == "message":
            return message["data"]
    raise AssertionError(f"nothing published on {REDIS_SIGNAL_CHANNEL}")


@pytest.mark.parametrize("secret_form", ["plain", "json-password", "json-authToken"])
def test_signal_is_published_on_the_redis_channel_with_auth_from_secrets_manager(
    trigger_env, redis_with_auth, invoke, monkeypatch, capsys, secret_form
):
    secret = {
        "plain": TOKEN,
        "json-password": json.dumps({"username": "default", "password": TOKEN}),
        "json-authToken": json.dumps({"authToken": TOKEN}),
    }[secret_form]
    monkeypatch.setenv("REDIS_HOST", "127.0.0.1")
    monkeypatch.setenv("REDIS_PORT", str(redis_with_auth.port))
    monkeypatch.setenv("REDIS_AUTH_SECRET_ARN", _secret(trigger_env, secret))
    pubsub = _subscribe("127.0.0.1", redis_with_auth.port)

    response = invoke(load_event("function_url_post"))

    via_redis = parse_signal(_next_message(pubsub))
    [via_sqs] = trigger_env.received_signals()
    assert response["statusCode"] == 202
    assert via_redis == via_sqs
    assert (via_redis.command, via_redis.source) == (Command.SYNC_NOW, Source.HTTP)
    captured = capsys.readouterr()
    assert TOKEN not in captured.out + captured.err
    pubsub.close()


def test_auth_token_is_fetched_once_per_cold_start(trigger_env, redis_with_auth, invoke, monkeypatch):
    arn = _secret(trigger_env, TOKEN)
    monkeypatch.setenv("REDIS_HOST", "127.0.0.1")
    monkeypatch.setenv("REDIS_PORT", str(redis_with_auth.port))
    monkeypatch.setenv("REDIS_AUTH_SECRET_ARN", arn)
    pubsub = _subscribe("127.0.0.1", redis_with_auth.port)
    invoke(load_event("scheduled_event"))
    first = parse_signal(_next_message(pubsub))

    # A warm invocation must not read the secret again: a now-wrong secret value changes nothing.
    trigger_env.moto.client("secretsmanager").put_secret_value(SecretId=arn, SecretString="wrong")
    invoke(load_event("scheduled_event"))
    second = parse_signal(_next_message(pubsub))

    assert first.id != second.id
    pubsub.close()


def test_wrong_auth_token_fails_the_invocation(trigger_env, redis_with_auth, invoke, monkeypatch):
    monkeypatch.setenv("REDIS_HOST", "127.0.0.1")
    monkeypatch.setenv("REDIS_PORT", str(redis_with_auth.port))
    monkeypatch.setenv("REDIS_AUTH_SECRET_ARN", _secret(trigger_env, "not-the-token"))

    with pytest.raises(redis.exceptions.AuthenticationError):
        invoke(load_event("scheduled_event"))


def test_json_secret_without_a_token_key_is_rejected_without_echoing_it():
    with pytest.raises(BadAuthSecret, match=r"keys: \['token'\]") as err:
        auth_token(json.dumps({"token": TOKEN}))
    assert TOKEN not in str(err.value)


def test_plain_secret_is_used_as_is():
    assert auth_token(TOKEN) == TOKEN


# --- TLS: a real redis-server speaking only TLS, its certificate signed by a throw-away CA -------------


@pytest.fixture
def tls_redis(tmp_path):
    with tls_redis_server(tmp_path, TOKEN) as server:
        yield server


def test_redis_tls_true_publishes_over_a_verified_tls_connection(trigger_env, tls_redis, invoke, monkeypatch):
    port, ca = tls_redis.port, tls_redis.ca
    # Like ElastiCache's publicly trusted certificate: the trigger verifies against the default trust store,
    # which OpenSSL reads from SSL_CERT_FILE; here that store is the test CA.
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))
    monkeypatch.setenv("REDIS_HOST", "127.0.0.1")
    monkeypatch.setenv("REDIS_PORT", str(port))
    monkeypatch.setenv("REDIS_TLS", "true")
    monkeypatch.setenv("REDIS_AUTH_SECRET_ARN", _secret(trigger_env, TOKEN))
    pubsub = _subscribe("127.0.0.1", port, ssl=True, ssl_ca_certs=str(ca))

    invoke(load_event("scheduled_event"))

    assert parse_signal(_next_message(pubsub)).source == Source.SCHEDULE
    pubsub.close()


def test_redis_tls_true_refuses_an_untrusted_certificate(trigger_env, tls_redis, invoke, monkeypatch):
    port = tls_redis.port
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.setenv("REDIS_HOST", "127.0.0.1")
    monkeypatch.setenv("REDIS_PORT", str(port))
    monkeypatch.setenv("REDIS_TLS", "true")
    monkeypatch.setenv("REDIS_AUTH_SECRET_ARN", _secret(trigger_env, TOKEN))

    with pytest.raises(redis.exceptions.ConnectionError, match=r"(?i)certificate"):
        invoke(load_event("scheduled_event"))
