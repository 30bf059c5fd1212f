"""The sync worker as its own process: `python -m functions.sync_worker run`, the container's
command, configured only through C2C_* variables, exactly as the sync-service stack starts it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO

from c2c_sync.demo.services import REPO_ROOT, spawn, terminate
from functions.common.telemetry import WorkerMetric


class WorkerProcess:
    def __init__(self, environment: dict[str, str], log_path: Path) -> None:
        self.environment = environment
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("the worker process was not started")
        return self.proc.pid

    def start(self) -> WorkerProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("C2C_")}
        env.update(self.environment)
        env["PYTHONPATH"] = str(REPO_ROOT)
        env["PYTHONUNBUFFERED"] = "1"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - the worker's log for its whole life, closed by stop()
        self.proc = spawn(
            [sys.executable, "-m", "functions.sync_worker", "run"],
            stdout=self._log,
            die_with_parent=True,
            cwd=REPO_ROOT,
            env=env,
        )
        return self

    @property
    def exit_code(self) -> int | None:
        return self.proc.poll() if self.proc else None

    def stop(self, timeout: float = 40.0) -> int | None:
        """SIGTERM (what ECS sends): the worker drains PUBACKs, disconnects and releases its lease."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                terminate(self.proc, 1)
        code = self.proc.returncode if self.proc else None
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def reported_connections(self) -> int:
        """MqttConnectionsOpened summed over the EMF blobs the worker printed (its own count)."""
        total = 0
        if not self.log_path.exists():
            return 0
        for line in self.log_path.read_text(errors="replace").splitlines():
            if WorkerMetric.MQTT_CONNECTIONS_OPENED not in line or not line.startswith("{"):
                continue
            try:
                value = json.loads(line).get(WorkerMetric.MQTT_CONNECTIONS_OPENED, 0)
            except json.JSONDecodeError:
                continue
            total += int(sum(value) if isinstance(value, list) else value)
        return total
