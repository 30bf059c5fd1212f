"""The local stand-ins the demo (and the test suite) run: redis-server, mosquitto, moto's server and
the vendor simulator, each a child process on a free port of 127.0.0.1 with its files in a directory.

Shared by `make demo` and tests/support/services.py (which re-exports these classes), so the demo
and the tests start the real parts the same way. Each class starts one process and stops it;
`die_with_parent=True` (the demo sets it) asks Linux to SIGTERM the child if the demo itself is
killed without a chance to clean up (SIGKILL, a crashed interpreter).
"""

from __future__ import annotations

import ctypes
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable

#: The repository root: children run from here so `python -m simulator` / `functions...` resolve.
REPO_ROOT = Path(__file__).resolve().parents[2]
_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 10.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


def require_binary(name: str) -> str:
    path = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.access(p, os.X_OK)), None
    )
    if not path:
        raise RuntimeError(f"{name} is not installed: apt-get install {name.replace('-server', '')}")
    return path


def _die_with_parent() -> None:
    """preexec_fn: SIGTERM this child when the process that started it dies (Linux only)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def spawn(args: list[str], *, die_with_parent: bool = False, stdout: IO[Any] | int | None = subprocess.DEVNULL,
          **kwargs: Any) -> subprocess.Popen:
    """Popen with the options every service shares. With `die_with_parent` the child also gets its own
    session, so a Ctrl-C in the terminal reaches only the parent, which then stops children in order."""
    if die_with_parent:
        kwargs.setdefault("preexec_fn", _die_with_parent)
        kwargs.setdefault("start_new_session", True)
    return subprocess.Popen(args, stdout=stdout, stderr=subprocess.STDOUT, **kwargs)


def terminate(proc: subprocess.Popen | None, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after `timeout`; a no-op for a process that already ended."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@dataclass
class RedisServer:
    workdir: Path
    port: int = field(default_factory=free_port)
    password: str | None = None
    proc: subprocess.Popen | None = None
    die_with_parent: bool = False

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        args = [require_binary("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", str(self.workdir)]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = spawn(args, die_with_parent=self.die_with_parent)
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        terminate(self.proc)
        self.proc = None


@dataclass
class MosquittoBroker:
    """A real Mosquitto; `connections_from(client_id)` counts CONNECTs in the broker's own log."""

    workdir: Path
    port: int = field(default_factory=free_port)
    extra_config: str = ""
    proc: subprocess.Popen | None = None
    die_with_parent: bool = False

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "mosquitto.log"

    def start(self) -> "MosquittoBroker":
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            # Run as the invoking user: as root, mosquitto would switch to `mosquitto` and lose its log file.
            f"user {pwd.getpwuid(os.geteuid()).pw_name}\n"
            "allow_anonymous true\n"
            "persistence false\n"
            f"log_dest file {self.log_path}\n"
            "log_type all\n"
            "connection_messages true\n"
            "log_timestamp true\n"
            "max_inflight_messages 0\n"
            "max_queued_messages 0\n"
            f"{self.extra_config}\n"
        )
        self.proc = spawn([require_binary("mosquitto"), "-c", str(conf)], die_with_parent=self.die_with_parent)
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        terminate(self.proc)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def connections_from(self, client_id: str) -> int:
        """CONNECTs the broker accepted from `client_id`, read from its log (not the client's counter)."""
        pattern = re.compile(r"New client connected from \S+ as (\S+) ")
        return sum(1 for m in pattern.finditer(self.log_text()) if m.group(1) == client_id)

    def client_ids_connected(self) -> list[str]:
        return re.findall(r"New client connected from \S+ as (\S+) ", self.log_text())


@dataclass
class MotoProcess:
    """moto's server (`python -m moto.server`) as its own process: SNS, SQS, KMS, Secrets Manager, ..."""

    workdir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None
    die_with_parent: bool = False
    _log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> "MotoProcess":
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.workdir / "moto.log", "ab")
        self.proc = spawn([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                          stdout=self._log, die_with_parent=self.die_with_parent, cwd=REPO_ROOT)
        _wait_ready(self.proc, lambda: urllib.request.urlopen(f"{self.url}/moto-api/", timeout=1).read(),
                    timeout, "moto server", self.workdir / "moto.log")
        return self

    def stop(self) -> None:
        terminate(self.proc)
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None


@dataclass
class SimulatorService:
    """The vendor simulator (`python -m simulator`) as its own process, with the options the demo exposes.

    (The test suite's `tests.support.simulator.SimulatorProcess` drives the same server with a frozen
    clock and the admin API; this one only needs to start, be healthy, and stop.)
    """

    workdir: Path
    stations: int = 500
    port: int = field(default_factory=free_port)
    api_key: str = "sim-key"
    clock: str = "real"
    latency_ms: float = 0.0
    error_rate: float = 0.0
    timeout_rate: float = 0.0
    throttle_rate: float = 0.0
    retry_after_s: int = 1
    timeout_s: float = 30.0
    seed: int = 1
    proc: subprocess.Popen | None = None
    die_with_parent: bool = False
    _log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def args(self) -> list[str]:
        return [sys.executable, "-m", "simulator", "--port", str(self.port), "--stations", str(self.stations),
                "--api-key", self.api_key, "--clock", self.clock, "--seed", str(self.seed),
                "--latency-ms", str(self.latency_ms), "--error-rate", str(self.error_rate),
                "--timeout-rate", str(self.timeout_rate), "--throttle-rate", str(self.throttle_rate),
                "--retry-after-s", str(self.retry_after_s), "--timeout-s", str(self.timeout_s)]

    def start(self, timeout: float = 20.0) -> "SimulatorService":
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.workdir / "simulator.log", "ab")
        self.proc = spawn(self.args(), stdout=self._log, die_with_parent=self.die_with_parent, cwd=REPO_ROOT)
        _wait_ready(self.proc, lambda: urllib.request.urlopen(f"{self.url}/healthz", timeout=1).read(),
                    timeout, "vendor simulator", self.workdir / "simulator.log")
        return self

    def stop(self) -> None:
        terminate(self.proc)
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None


def _wait_ready(proc: subprocess.Popen, probe: Callable[[], object], timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{what} exited with code {proc.returncode}: {tail}")
        try:
            probe()
            return
        except urllib.error.HTTPError:
            return  # it answered: listening and serving
        except OSError:
            if time.monotonic() > deadline:
                terminate(proc)
                raise TimeoutError(f"{what} not ready after {timeout}s (log: {log})") from None
            time.sleep(0.05)
