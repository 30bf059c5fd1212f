"""The local stand-ins the demo (and the test suite) run: redis-server, mosquitto, moto's server and
the vendor simulator, each a child process on a free port of 127.0.0.1 with its files in a directory.

Shared by `make demo`, tests/support/services.py (which re-exports these classes) and
tests/support/simulator.py (SimulatorService with the tests' defaults), so the demo and the tests
start the real parts the same way. Each class starts one process and stops it;
`die_with_parent=True` (the demo sets it) asks Linux to SIGTERM the child if the demo itself is
killed without a chance to clean up (SIGKILL, a crashed interpreter).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, ClassVar, Self

from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

#: The repository root: children run from here so `python -m simulator` / `functions...` resolve.
REPO_ROOT = Path(__file__).resolve().parents[2]
_PR_SET_PDEATHSIG = 1
#: The simulator's default API key (`--api-key`), which the demo and the tests use.
DEFAULT_API_KEY = "sim-key"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 10.0, host: str = "127.0.0.1") -> None:
    def connect() -> None:
        with socket.create_connection((host, port), timeout=0.2):
            pass

    def give_up(state: RetryCallState) -> None:
        raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")

    Retrying(
        retry=retry_if_exception_type(OSError),
        stop=stop_after_delay(timeout),
        wait=wait_fixed(0.02),
        retry_error_callback=give_up,
    )(connect)


def require_binary(name: str) -> str:
    path = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.access(p, os.X_OK)), None
    )
    if not path:
        raise RuntimeError(f"{name} is not installed: apt-get install {name.replace('-server', '')}")
    return path


def _die_with_parent() -> None:
    """preexec_fn: SIGTERM this child when the process that started it dies (Linux only)."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(
    args: list[str], *, die_with_parent: bool = False, stdout: IO[Any] | int | None = subprocess.DEVNULL, **kwargs: Any
) -> subprocess.Popen:
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

    def start(self) -> RedisServer:
        args = [
            require_binary("redis-server"),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.workdir),
        ]
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

    def start(self) -> MosquittoBroker:
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
class HttpChildProcess(ABC):
    """A child process that serves HTTP on a free port, its output in a log file: the shared start/stop.

    Subclasses say what to run (`args`), what they are called (`NAME`, also the log's stem) and which
    path answers once they serve (`READY_PATH`). The log goes to `workdir/<NAME>.log` (appended, kept),
    or with no workdir to a temporary file that `stop` removes.
    """

    NAME: ClassVar[str]
    READY_PATH: ClassVar[str]

    workdir: Path | None = None
    port: int = field(default_factory=free_port)
    die_with_parent: bool = False
    proc: subprocess.Popen | None = field(default=None, init=False, repr=False)
    _log: IO[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @abstractmethod
    def args(self) -> list[str]:
        """The child process's command line."""

    def start(self, timeout: float = 30.0) -> Self:
        stem = self.NAME.replace(" ", "-")
        if self.workdir is None:
            # The child writes its log for as long as it runs; stop() closes it.
            self._log = tempfile.NamedTemporaryFile(prefix=f"{stem}-", suffix=".log", delete=False)  # noqa: SIM115 - outlives start()
        else:
            self.workdir.mkdir(parents=True, exist_ok=True)
            self._log = open(self.workdir / f"{stem}.log", "ab")  # noqa: SIM115 - outlives start(), closed by stop()
        try:
            self.proc = spawn(self.args(), stdout=self._log, die_with_parent=self.die_with_parent, cwd=REPO_ROOT)
            _wait_ready(
                self.proc,
                lambda: urllib.request.urlopen(self.url + self.READY_PATH, timeout=1).read(),
                timeout,
                self.NAME,
                Path(self._log.name),
            )
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        terminate(self.proc)
        self.proc = None
        if self._log is not None:
            self._log.close()
            if self.workdir is None:
                Path(self._log.name).unlink(missing_ok=True)
            self._log = None

    def log_text(self) -> str:
        return Path(self._log.name).read_text(errors="replace") if self._log is not None else ""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class MotoProcess(HttpChildProcess):
    """moto's server (`python -m moto.server`) as its own process: SNS, SQS, KMS, Secrets Manager, ..."""

    NAME: ClassVar[str] = "moto"
    READY_PATH: ClassVar[str] = "/moto-api/"

    def args(self) -> list[str]:
        return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]


@dataclass
class SimulatorService(HttpChildProcess):
    """The vendor simulator (`python -m simulator`) as its own process, and a client of its admin API.

    The one launcher for the demo and the tests (tests.support.simulator.SimulatorProcess only sets
    the tests' defaults). Defaults are the simulator's own; the admin helpers (`stats`, `set_faults`,
    `advance_clock`, ...) drive and read it over HTTP, from the server's side.
    """

    NAME: ClassVar[str] = "vendor simulator"
    READY_PATH: ClassVar[str] = "/healthz"

    stations: int = 100
    latency_ms: float = 0.0
    seed: int = 1
    api_key: str = DEFAULT_API_KEY
    auth: str = "api_key"
    clock: str = "real"
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

    def args(self) -> list[str]:
        args = [
            sys.executable,
            "-m",
            "simulator",
            "--port",
            str(self.port),
            "--stations",
            str(self.stations),
            "--latency-ms",
            str(self.latency_ms),
            "--seed",
            str(self.seed),
            "--api-key",
            self.api_key,
            "--auth",
            self.auth,
            "--clock",
            self.clock,
            "--reading-interval-s",
            str(self.reading_interval_s),
            "--error-rate",
            str(self.error_rate),
            "--timeout-rate",
            str(self.timeout_rate),
            "--malformed-rate",
            str(self.malformed_rate),
            "--throttle-rate",
            str(self.throttle_rate),
            "--retry-after-s",
            str(self.retry_after_s),
            "--timeout-s",
            str(self.timeout_s),
            "--token-ttl-s",
            str(self.token_ttl_s),
            "--client-id",
            self.client_id,
        ]
        for spec in self.fault_stations:
            args += ["--fault-stations", spec]
        return args + self.extra_args

    def start(self, timeout: float = 20.0) -> Self:
        return super().start(timeout)

    # -- admin API --------------------------------------------------------------------------------
    def admin(self, method: str, path: str, payload: dict | None = None) -> Any:
        data = json.dumps(payload).encode() if payload is not None else (b"" if method == "POST" else None)
        req = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
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


def _wait_ready(proc: subprocess.Popen, probe: Callable[[], object], timeout: float, what: str, log: Path) -> None:
    """Probe until the child answers (any HTTP status counts: it is listening and serving); fail at once
    if it exits, and stop it if it is still not serving after `timeout`."""

    def attempt() -> None:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{what} exited with code {proc.returncode}: {tail}")
        with contextlib.suppress(urllib.error.HTTPError):  # an HTTP error status is an answer: it is up
            probe()

    def give_up(state: RetryCallState) -> None:
        terminate(proc)
        raise TimeoutError(f"{what} not ready after {timeout}s (log: {log})")

    Retrying(
        retry=retry_if_exception_type(OSError),
        stop=stop_after_delay(timeout),
        wait=wait_fixed(0.05),
        retry_error_callback=give_up,
    )(attempt)
