"""Fixtures for the real services (see tests/support/services.py), and the rule behind `make test-fast`.

A test marked neither `integration` (real services) nor `infra` (CDK synth) is a fast test: it must
not start a process, listen on a port or connect to one. `_fast_tests_stay_in_process` enforces it
on every run, so a test that needs a service and is not marked fails instead of slowing the fast set.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Callable
from typing import NoReturn

import pytest

from tests.support import markers
from tests.support.services import MosquittoBroker, MotoServer, RedisServer
from tests.support.simulator import simulator, simulator_factory  # noqa: F401 - fixtures
from tests.support.vendor_mocks import fusionsolar_mock, solaredge_mock, vendor_mock_factory  # noqa: F401 - fixtures


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


FAST_TEST_FORBIDS = "a test marked neither integration nor infra may not {what}: mark it (see pytest.ini)"
SLOW_MARKERS = ("integration", "infra")


def _forbidden(what: str) -> Callable[..., NoReturn]:
    def refuse(*args: object, **kwargs: object) -> NoReturn:
        raise AssertionError(FAST_TEST_FORBIDS.format(what=what))

    return refuse


#: What a fast test may not do, as (owner, method, what the message calls it).
_FORBIDDEN: list[tuple[type, str, str]] = [
    (subprocess.Popen, "__init__", "start a process"),
    (socket.socket, "bind", "listen on a port"),
    (socket.socket, "connect", "connect to a port"),
    (socket.socket, "connect_ex", "connect to a port"),
]


def _is_slow(item: pytest.Item) -> bool:
    return any(item.get_closest_marker(name) for name in SLOW_MARKERS)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--fast",
        action="store_true",
        help="only the tests marked neither integration nor infra, with processes and sockets forbidden "
        "for the whole session (fixtures of any scope included): `make test-fast`",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption("--fast"):
        return
    slow = [item for item in items if _is_slow(item)]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if not _is_slow(item)]


def pytest_collection_finish(session: pytest.Session) -> None:
    """After collection (importing the CDK starts its node runtime), before any fixture runs."""
    if session.config.getoption("--fast"):
        patcher = pytest.MonkeyPatch()
        for owner, name, what in _FORBIDDEN:
            patcher.setattr(owner, name, _forbidden(what))
        session.config.add_cleanup(patcher.undo)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    markers.running[:] = [item]


@pytest.fixture(autouse=True)
def _fast_tests_stay_in_process(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """In a full run too: an unmarked test that starts a process or uses a port fails (fixtures wider
    than the test are set up before this one; `--fast` covers those)."""
    if _is_slow(request.node):
        return
    for owner, name, what in _FORBIDDEN:
        monkeypatch.setattr(owner, name, _forbidden(what))


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
