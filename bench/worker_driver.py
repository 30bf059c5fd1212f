"""The sync worker as the benches run it: its own process (`python -m functions.sync_worker run`, the
container's command, configured by C2C_* variables), driven cycle by cycle over Redis pub/sub.

`DrivenWorker.cycle()` publishes one start signal and returns when the worker has written that
signal's record to the run history (after every PUBACK and cursor write), so a cycle's time is
the worker's whole cycle as an operator would see it, measured from outside the process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import redis

from bench.rounds import ROOT, CpuMeter
from c2c_sync.demo.services import spawn, terminate
from functions.common.signal import REDIS_SIGNAL_CHANNEL, Command, Source, StartSignal
from functions.common.state import CycleRecord, Heartbeat, StateKeys


def worker_env(
    *,
    env: str,
    mqtt_url: str,
    redis_url: str,
    source_url: str,
    concurrency: int,
    status_file: Path,
    **extra: str,
) -> dict[str, str]:
    """The C2C_* variables of a bench worker (per-signal mode, signals over Redis pub/sub)."""
    return {
        "C2C_ENV": env,
        "C2C_MQTT_URL": mqtt_url,
        "C2C_REDIS_URL": redis_url,
        "C2C_SOURCE_URL": source_url,
        "C2C_SOURCE_CONFIG": "simulator",
        "C2C_SOURCE_API_KEY": "sim-key",
        "C2C_SIGNAL_URL": "redis",
        "C2C_MQTT_CLIENT_ID": f"c2c-sync-{env}",
        "C2C_CONCURRENCY": str(concurrency),
        "C2C_STATUS_FILE": str(status_file),
        "C2C_LOG_LEVEL": "WARNING",
        **extra,
    }


@dataclass
class CycleRun:
    record: CycleRecord
    wall_s: float  # signal published -> record in the run history, measured by the driver
    cpu_s: float  # worker process CPU (user + system, children included) over the same span


@dataclass
class DrivenWorker:
    environment: dict[str, str]
    log_path: Path
    #: The command after the interpreter; the default is the container's.
    command: Sequence[str] = ("-m", "functions.sync_worker", "run")
    #: Prefix for the whole command line, e.g. ("ip", "netns", "exec", "ns") to start it in a namespace.
    prefix: Sequence[str] = ()
    proc: subprocess.Popen | None = field(default=None, init=False)
    _log: IO[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def keys(self) -> StateKeys:
        return StateKeys.for_env(self.environment["C2C_ENV"])

    @property
    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.environment["C2C_REDIS_URL"], decode_responses=True)

    def start(self, ready_timeout: float = 60.0) -> DrivenWorker:
        env = {k: v for k, v in os.environ.items() if not k.startswith("C2C_")}
        env.update(self.environment, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - held open for the process; stop() closes it
        self.proc = spawn(
            [*self.prefix, sys.executable, *self.command], stdout=self._log, die_with_parent=True, cwd=ROOT, env=env
        )
        self._wait_ready(ready_timeout)
        return self

    @property
    def pid(self) -> int:
        """The worker's own pid (the child of `ip netns exec`, which execs, so the same process)."""
        assert self.proc is not None
        return self.proc.pid

    def _wait_ready(self, timeout: float) -> None:
        """Lease held, MQTT connected, subscribed to the signal channel."""
        deadline = time.monotonic() + timeout
        client = self.redis
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"worker exited {self.proc.returncode}: {self.log_tail()}")
            raw = client.get(self.keys.heartbeat)
            subscribed = dict(client.pubsub_numsub(REDIS_SIGNAL_CHANNEL)).get(REDIS_SIGNAL_CHANNEL, 0)
            if raw and Heartbeat.model_validate_json(raw).mqtt_connected and subscribed:
                return
            time.sleep(0.05)
        raise TimeoutError(f"worker not ready after {timeout}s: {self.log_tail()}")

    def cycle(self, timeout: float = 600.0, poll_s: float = 0.002) -> CycleRun:
        """One signal -> one cycle; returns once its record is in the run history."""
        client = self.redis
        signal = StartSignal(command=Command.SYNC_NOW, source=Source.CLI)
        wanted = str(signal.id)
        meter = CpuMeter(self.pid)
        cpu0 = meter.seconds()
        start = time.perf_counter()
        client.publish(REDIS_SIGNAL_CHANNEL, signal.to_json())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            raw = client.lindex(self.keys.history, 0)
            if raw:
                record = CycleRecord.model_validate_json(raw)
                if record.signal_id == wanted:
                    return CycleRun(record, time.perf_counter() - start, meter.seconds() - cpu0)
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"worker exited {self.proc.returncode}: {self.log_tail()}")
            time.sleep(poll_s)
        raise TimeoutError(f"no run-history record for signal {wanted} after {timeout}s: {self.log_tail()}")

    def stop(self, timeout: float = 40.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                terminate(self.proc, 1)
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""
