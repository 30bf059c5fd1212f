"""`c2c-sync demo` end to end, as `make demo` runs it: a child process with a small scenario.

Real parts: redis-server, mosquitto, moto's server, the vendor simulator, the worker process and
the trigger handler, all started by the demo itself. Nothing is mocked.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import redis

from c2c_sync.demo.services import REPO_ROOT

pytestmark = pytest.mark.integration


class DemoRun:
    """The demo as a child process; remembers every process it started, to check they all stop."""

    def __init__(self, workdir: Path, *args: str, inherit: tuple[str, ...] = ()) -> None:
        env = {k: v for k, v in os.environ.items() if k in inherit or not k.startswith(("C2C_", "MQTT_", "REDIS_"))}
        env["COLUMNS"] = "220"  # one summary row per line
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "c2c_sync", "demo", "--workdir", str(workdir), *args],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self.descendants: dict[int, float] = {}  # pid -> create_time
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None  # started with stdout=PIPE
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def _collect_descendants(self) -> None:
        try:
            for child in psutil.Process(self.proc.pid).children(recursive=True):
                self.descendants.setdefault(child.pid, child.create_time())
        except psutil.NoSuchProcess:
            pass

    def wait_for_output(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            assert self.proc.poll() is None, f"demo ended before printing {text!r}:\n{self.output}"
            assert time.monotonic() < deadline, f"no {text!r} after {timeout}s:\n{self.output}"
            self._collect_descendants()
            time.sleep(0.1)

    def wait(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            assert time.monotonic() < deadline, f"demo still running after {timeout}s:\n{self.output}"
            self._collect_descendants()
            time.sleep(0.1)
        self._reader.join(5)
        return self.proc.returncode

    def still_running(self) -> list[str]:
        """Descendants seen during the run that are alive now (same pid and start time)."""
        alive = []
        for pid, created in self.descendants.items():
            try:
                proc = psutil.Process(pid)
                if proc.create_time() == created and proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(f"{pid} {' '.join(proc.cmdline())[:120]}")
            except psutil.NoSuchProcess:
                continue
        return alive

    def row(self, label: str) -> str:
        """The value column of one summary-table row."""
        match = re.search(rf"│ {re.escape(label)}\s+│\s+(\S+(?: / \S+)?) │", self.output)
        assert match, f"no summary row {label!r} in:\n{self.output}"
        return match.group(1)

    def row_client_id(self) -> str:
        match = re.search(r"MQTT client id (c2c-sync-demo-[0-9a-f]+)", self.output)
        assert match, self.output
        return match.group(1)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def demo(tmp_path):
    runs: list[DemoRun] = []

    def start(*args: str) -> DemoRun:
        run = DemoRun(tmp_path / f"run{len(runs)}", *args)
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.kill()


def test_small_demo_delivers_every_reading_through_sqs_and_redis_and_stops_everything(demo):
    run = demo("--stations", "20", "--cycles", "2", "--redis-cycles", "1", "--interval", "1")
    code = run.wait(240)

    assert code == 0, run.output
    assert "OK: every reading up to the final cursors reached the subscriber" in run.output
    assert run.row("cycles") == "3"
    assert "2 via SQS, 1 via Redis" in run.output
    assert run.row("readings lost") == "0"
    published, received = int(run.row("readings published")), int(run.row("readings received"))
    assert published > 0 and received >= published
    # One connection per worker process start (two: SQS phase, Redis phase), counted in the broker's
    # log; the connect-per-invocation pattern would have opened one per cycle.
    assert run.row("MQTT connections from the worker") == "2"
    assert run.row("connect-per-invocation would open") == "3"
    assert run.row("start queue / DLQ after SQS cycles") == "0 / 0"
    assert run.descendants, "the demo started no child process?"
    assert run.still_running() == []


@pytest.mark.parametrize("vendor", ["fusionsolar", "solaredge"])
def test_vendor_demo_reads_the_vendor_mock_within_its_documented_limits_and_loses_nothing(demo, vendor):
    # The shipped definition against the vendor's mock (vendor_mocks/); short: one worker, two cycles.
    run = demo("--vendor", vendor, "--stations", "20", "--cycles", "2", "--redis-cycles", "0", "--interval", "2")
    code = run.wait(240)

    assert code == 0, run.output
    assert f"{vendor} mock (vendor_mocks/" in run.output
    assert run.row("readings lost") == "0"
    expected = re.search(r"readings lost\s+│\s+\S+ │ (\d+) expected", run.output)
    assert expected and int(expected.group(1)) >= 20, run.output  # at least one reading per station
    assert int(run.row("readings published")) > 0
    assert run.row("vendor calls refused") == "0"  # no budget, quota, concurrency or token refusal
    assert run.still_running() == []


def test_demo_fails_naming_the_reading_the_subscriber_dropped(demo):
    # TEST-ONLY hook: the subscriber ignores the first reading of site-00001 it receives.
    run = demo(
        "--stations",
        "5",
        "--cycles",
        "1",
        "--redis-cycles",
        "0",
        "--error-rate",
        "0",
        "--throttle-rate",
        "0",
        "--drop-first-reading-of",
        "site-00001",
    )
    code = run.wait(240)

    assert code == 1, run.output
    assert run.row("readings lost") == "1"
    assert re.search(
        r"FAILED: 1 reading\(s\) lost: site-00001:readings:\d{4}-\d\d-\d\dT\d\d:\d\d:00\.000000Z", run.output
    ), run.output
    assert run.still_running() == []


def test_ctrl_c_stops_every_process_the_demo_started(demo):
    run = demo("--stations", "20", "--cycles", "50", "--interval", "1")
    run.wait_for_output("worker process pid", 180)
    run.wait_for_output("cycle 1", 60)
    run._collect_descendants()
    assert len(run.descendants) >= 5  # redis, mosquitto, moto, simulator, worker

    run.proc.send_signal(signal.SIGINT)
    code = run.wait(90)

    assert code == 3, run.output
    assert "ABORTED: interrupted (Ctrl-C)" in run.output
    assert run.still_running() == []


def test_mqtt_url_and_redis_url_point_the_demo_at_external_services(tmp_path, monkeypatch, mosquitto):
    # An "external" Redis with AUTH (the trigger then reads the password from Secrets Manager, in moto).
    from c2c_sync.demo.services import RedisServer

    (tmp_path / "external-redis").mkdir()
    external_redis = RedisServer(tmp_path / "external-redis", password="s3cret").start()
    run = None
    try:
        monkeypatch.setenv("MQTT_URL", mosquitto.url)
        monkeypatch.setenv("REDIS_URL", external_redis.url)
        run = DemoRun(
            tmp_path / "run",
            "--stations",
            "5",
            "--cycles",
            "1",
            "--redis-cycles",
            "1",
            "--interval",
            "1",
            inherit=("MQTT_URL", "REDIS_URL"),
        )
        code = run.wait(240)

        assert code == 0, run.output
        assert f"MQTT broker: external {mosquitto.url} (MQTT_URL)" in run.output
        assert "Redis: external redis://127.0.0.1" in run.output and "s3cret" not in run.output
        assert run.row("readings lost") == "0"
        assert "1 via SQS, 1 via Redis" in run.output
        # The demo cannot read an external broker's log: it shows the worker's own count, marked.
        assert run.row("MQTT connections from the worker") == "2*"
        assert mosquitto.connections_from(run.row_client_id()) == 2  # ... which the broker's log confirms
        assert redis.Redis.from_url(external_redis.url).keys("c2c:demo-*") == []  # its keys removed
    finally:
        if run is not None:
            run.kill()
        external_redis.stop()
