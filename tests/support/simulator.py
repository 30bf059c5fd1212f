"""Start and stop the vendor simulator (`python -m simulator`) as a real process on a free port.

`SimulatorProcess(stations=..., latency_ms=..., error_rate=..., fault_stations=[...])` starts it;
its admin helpers (`stats`, `set_faults`, `advance_clock`, ...) drive and read it over HTTP the way
a test observes a real vendor: from the server's side. Fixtures: `simulator` (20 stations, clock
frozen at FROZEN_NOW) and `simulator_factory` (any options; every process is stopped after the test).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.services import free_port, wait_for_port

REPO_ROOT = Path(__file__).resolve().parents[2]
#: The frozen clock most tests use, so "now" and every reading are known in advance.
FROZEN_NOW = "2024-06-01T12:00:00Z"
FROZEN_CLOCK = f"{FROZEN_NOW}@0"
DEFAULT_API_KEY = "sim-key"


@dataclass
class SimulatorProcess:
    port: int = field(default_factory=free_port)
    stations: int = 20
    latency_ms: float = 0.0
    seed: int = 1
    api_key: str = DEFAULT_API_KEY
    auth: str = "api_key"
    clock: str = FROZEN_CLOCK
    reading_interval_s: int = 60
    error_rate: float = 0.0
    timeout_rate: float = 0.0
    malformed_rate: float = 0.0
    throttle_rate: float = 0.0
    retry_after_s: int = 1
    timeout_s: float = 30.0
    token_ttl_s: float = 3600.0
    client_id: str = "c2c-sync"
    fault_stations: list[str] = field(default_factory=list)  # "KIND=ids|count"
    extra_args: list[str] = field(default_factory=list)
    proc: subprocess.Popen | None = None
    _log: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def args(self) -> list[str]:
        args = [sys.executable, "-m", "simulator", "--port", str(self.port), "--stations", str(self.stations),
                "--latency-ms", str(self.latency_ms), "--seed", str(self.seed), "--api-key", self.api_key,
                "--auth", self.auth, "--clock", self.clock, "--reading-interval-s", str(self.reading_interval_s),
                "--error-rate", str(self.error_rate), "--timeout-rate", str(self.timeout_rate),
                "--malformed-rate", str(self.malformed_rate), "--throttle-rate", str(self.throttle_rate),
                "--retry-after-s", str(self.retry_after_s), "--timeout-s", str(self.timeout_s),
                "--token-ttl-s", str(self.token_ttl_s), "--client-id", self.client_id]
        for spec in self.fault_stations:
            args += ["--fault-stations", spec]
        return args + self.extra_args

    def start(self, timeout: float = 10.0) -> "SimulatorProcess":
        self._log = tempfile.NamedTemporaryFile(prefix="simulator-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(self.args(), cwd=REPO_ROOT, stdout=self._log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + timeout
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"simulator exited with {self.proc.returncode}: {self.log_text()}")
                try:
                    wait_for_port(self.port, timeout=0.2)
                    self.admin("GET", "/healthz")
                    return self
                except (TimeoutError, OSError):
                    if time.monotonic() > deadline:
                        raise
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        if self._log is not None:
            self._log.close()
            Path(self._log.name).unlink(missing_ok=True)
            self._log = None

    def log_text(self) -> str:
        return Path(self._log.name).read_text(errors="replace") if self._log else ""

    def __enter__(self) -> "SimulatorProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- admin API --------------------------------------------------------------------------------
    def admin(self, method: str, path: str, payload: dict | None = None) -> Any:
        data = json.dumps(payload).encode() if payload is not None else (b"" if method == "POST" else None)
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            return json.loads(resp.read())

    def stats(self, stations: list[str] | None = None, arrivals: bool = False) -> dict:
        query = []
        if stations:
            query.append("stations=" + ",".join(stations))
        if arrivals:
            query.append("arrivals=1")
        return self.admin("GET", "/_stats" + ("?" + "&".join(query) if query else ""))

    def reset_stats(self) -> None:
        self.admin("POST", "/_stats/reset")

    def faults(self) -> dict:
        return self.admin("GET", "/_faults")

    def set_faults(self, **patch: Any) -> dict:
        """e.g. set_faults(error_rate=0.5), set_faults(stations={"site-00003": "timeout"}),
        set_faults(burst={"kind": "error", "count": 2}), set_faults(clear=True)."""
        return self.admin("POST", "/_faults", patch)

    def clear_faults(self) -> dict:
        return self.set_faults(clear=True)

    def clock_now(self) -> str:
        return self.admin("GET", "/_clock")["now"]

    def advance_clock(self, seconds: float) -> dict:
        return self.admin("POST", "/_clock", {"advance_s": seconds})

    def set_clock(self, now_iso: str) -> dict:
        return self.admin("POST", "/_clock", {"now": now_iso})

    def revoke_tokens(self) -> int:
        return self.admin("POST", "/_tokens/revoke")["revoked"]


@pytest.fixture
def simulator():
    """A simulator with 20 stations and the clock frozen at FROZEN_NOW."""
    with SimulatorProcess() as sim:
        yield sim


@pytest.fixture
def simulator_factory():
    """`simulator_factory(stations=250, latency_ms=5, ...)` -> a started SimulatorProcess, stopped after."""
    started: list[SimulatorProcess] = []

    def start(**options: Any) -> SimulatorProcess:
        sim = SimulatorProcess(**options).start()
        started.append(sim)
        return sim

    yield start
    for sim in started:
        sim.stop()
