"""Fixtures for the real services; see tests/support/services.py."""

from __future__ import annotations

import os

import pytest

from tests.support.services import MosquittoBroker, MotoServer, RedisServer
from tests.support.simulator import simulator, simulator_factory  # noqa: F401 - fixtures
from tests.vendor_mocks.servers import fusionsolar_mock, solaredge_mock, vendor_mock_factory  # noqa: F401 - fixtures


@pytest.fixture(autouse=True, scope="session")
def _no_real_aws() -> None:
    # Tests never reach a real AWS account: fake credentials, and every client points at moto.
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }.items():
        os.environ[key] = value


@pytest.fixture
def redis_server(tmp_path):
    (tmp_path / "redis").mkdir()
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture
def mosquitto(tmp_path):
    broker = MosquittoBroker(tmp_path / "mosquitto").start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def moto_server():
    server = MotoServer().start()
    yield server
    server.stop()


@pytest.fixture
def moto(moto_server):
    """moto's server, emptied before each test."""
    moto_server.reset()
    return moto_server
