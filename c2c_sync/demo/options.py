"""What `c2c-sync demo` can be asked to do (the Typer command in command.py maps its flags onto
`DemoOptions`), checked all at once before anything starts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit


@dataclass(frozen=True)
class DemoOptions:
    #: the vendor API the worker reads: the simulator, or a vendor mock (c2c_sync/demo/vendors.py)
    vendor: str = "simulator"
    stations: int = 500
    #: cycles through trigger → SNS → SQS → worker
    cycles: int = 8
    #: cycles through trigger → Redis pub/sub → worker (after restarting the worker on that transport)
    redis_cycles: int = 2
    #: seconds between scheduled invocations (the EventBridge rate, compressed)
    interval_s: float = 4.0
    latency_ms: float = 20.0
    error_rate: float = 0.02
    timeout_rate: float = 0.0
    throttle_rate: float = 0.002
    #: simulated seconds per real second
    speed: float = 60.0
    cycle_timeout_s: float = 120.0
    #: the config/<name>.yaml the deployed values (worker mode, max cycle, ...) come from
    config_env: str = "dev"
    #: external services instead of local ones (env MQTT_URL, REDIS_URL)
    mqtt_url: str | None = None
    redis_url: str | None = None
    mqtt_username: str | None = None
    mqtt_password: str | None = None
    keep_logs: bool = False
    workdir: Path | None = None
    #: TEST ONLY: the subscriber ignores the first reading of this station (proves the loss check works)
    drop_first_reading_of: str | None = None

    def validate(self) -> None:
        from c2c_sync.demo.vendors import VENDORS

        problems = []
        if self.vendor not in VENDORS:
            problems.append(f"--vendor must be one of {', '.join(VENDORS)}, not {self.vendor!r}")
        if self.stations < 1:
            problems.append("--stations must be at least 1")
        if self.cycles < 1:
            problems.append("--cycles must be at least 1")
        if self.redis_cycles < 0:
            problems.append("--redis-cycles must be 0 or more")
        if self.interval_s <= 0 or self.speed <= 0:
            problems.append("--interval and --speed must be positive")
        for name in ("error_rate", "timeout_rate", "throttle_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                problems.append(f"--{name.replace('_', '-')} must be in [0, 1]")
        if self.error_rate + self.timeout_rate + self.throttle_rate > 1.0:
            problems.append("the fault rates add up to more than 1")
        if self.mqtt_url and urlsplit(self.mqtt_url).scheme not in ("mqtt", "mqtts"):
            problems.append("MQTT_URL must be mqtt://host:port or mqtts://host:port")
        if self.redis_url and urlsplit(self.redis_url).scheme not in ("redis", "rediss"):
            problems.append("REDIS_URL must be redis://host:port/db or rediss://host:port/db")
        if problems:
            raise DemoUsageError("; ".join(problems))


class DemoUsageError(ValueError):
    """Bad options; the message names each."""
