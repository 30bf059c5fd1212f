"""Shared pieces of the profile tests: a test PKI (per session) and message factories."""

from __future__ import annotations

import base64

import pytest

from functions.sync_worker.uplink.profile import OutboundMessage
from tests.support.tls import TestCA

DEVICE_KEY = base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    """A trusted test CA with a server certificate, and an unrelated CA for negative tests."""
    root = tmp_path_factory.mktemp("pki")
    ca = TestCA(root / "trusted")
    rogue = TestCA(root / "rogue", name="rogue CA")
    return {"ca": ca, "server": ca.server_certificate(), "rogue": rogue}


def message(station_id: str = "st-1", payload: bytes = b'{"soc": 81.5}', **kw) -> OutboundMessage:
    return OutboundMessage(station_id=station_id, message_id=f"{station_id}:2026-01-01T00:00:00.000000Z",
                           payload=payload, **kw)
