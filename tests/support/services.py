"""Start and stop the real parts the tests talk to: redis-server, mosquitto, moto's server.

Each runs as its own process (moto in a thread of the test process, through its own HTTP
server) on an ephemeral port, with its files in a temporary directory.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

# The process-based services live in the demo package so `make demo` starts them exactly as the tests do.
from typing import TYPE_CHECKING, Any

from c2c_sync.demo.services import (  # noqa: F401 - re-exported for the fixtures and tests
    MosquittoBroker,
    RedisServer,
    free_port,
    require_binary,
    spawn,
    wait_for_port,
)


@dataclass(frozen=True)
class TlsRedis:
    """A redis-server that speaks only TLS (certificate signed by `ca`) and requires AUTH."""

    port: int
    ca: Path
    password: str


@contextmanager
def tls_redis_server(workdir: Path, password: str) -> Iterator[TlsRedis]:
    """redis-server with TLS only (no plain port) and AUTH, as ElastiCache with in-transit
    encryption; its certificate (for 127.0.0.1) is signed by a throw-away CA in `workdir`."""
    from tests.support.tls import TestCA  # cryptography: only for the tests that start one

    ca = TestCA(workdir / "pki")
    cert = ca.server_certificate()
    port = free_port()
    proc = spawn(
        [
            require_binary("redis-server"),
            *("--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1"),
            *("--tls-cert-file", str(cert.cert_path), "--tls-key-file", str(cert.key_path)),
            *("--tls-ca-cert-file", str(ca.cert_path), "--tls-auth-clients", "no"),
            *("--requirepass", password, "--save", "", "--appendonly", "no", "--dir", str(workdir)),
        ]
    )
    try:
        wait_for_port(port)
        yield TlsRedis(port, ca.cert_path, password)
    finally:
        proc.terminate()
        proc.wait(10)


if TYPE_CHECKING:  # moto's server is slow to import: only when a test starts one
    from moto.server import ThreadedMotoServer


@dataclass
class MotoServer:
    """moto in server mode (HTTP on a free port): SQS, SNS, Secrets Manager, CloudFormation, ..."""

    port: int = field(default_factory=free_port)
    _server: ThreadedMotoServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MotoServer:
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def reset(self) -> None:
        import urllib.request

        urllib.request.urlopen(urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")).read()

    def client(self, service: str, region: str = "eu-west-1") -> Any:
        """A boto3 client of `service` against this server (named at run time, so untyped)."""
        import boto3

        return boto3.client(  # type: ignore[call-overload]  # the stubs type literal service names only
            service,
            endpoint_url=self.url,
            region_name=region,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
