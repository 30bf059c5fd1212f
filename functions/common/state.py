"""The worker's state in Redis: key names, the heartbeat contract and the run-history record.

The worker writes these keys; the health check, the operator CLI and the tests read them.
Every key lives under one prefix per environment so several environments can share a Redis.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

#: The cursor hash of this endpoint name keeps its historic key (`<prefix>:cursors`).
DEFAULT_ENDPOINT = "readings"

#: A heartbeat older than this is stale: the health check fails and the alarm fires.
HEARTBEAT_STALE_AFTER_S = 90
#: TTL of the heartbeat key: a dead worker's heartbeat disappears by itself.
HEARTBEAT_TTL_S = 3 * HEARTBEAT_STALE_AFTER_S
#: How many past cycles the run history keeps.
RUN_HISTORY_LENGTH = 50


class StateKeys:
    """Key names under one prefix (an environment's is `c2c:<env>`, see `for_env`)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix.rstrip(":")

    @classmethod
    def for_env(cls, env: str) -> StateKeys:
        """The keys of environment `env`: what the worker writes and the CLI and the demo read."""
        return cls(f"c2c:{env}")

    @property
    def lease(self) -> str:
        """String: holder id; set NX PX; the single-active-worker lease."""
        return f"{self.prefix}:lease"

    @property
    def fencing_counter(self) -> str:
        """Integer: INCR on each lease acquisition; the current value is the fencing token."""
        return f"{self.prefix}:lease:fence"

    @property
    def heartbeat(self) -> str:
        """String: a `Heartbeat` JSON with TTL `HEARTBEAT_TTL_S`."""
        return f"{self.prefix}:heartbeat"

    @property
    def cursors(self) -> str:
        """Hash: station id -> ISO-8601 UTC time of the last reading acknowledged by the broker."""
        return f"{self.prefix}:cursors"

    def cursors_of(self, endpoint: str) -> str:
        """Hash of one reading endpoint's cursors: the default endpoint's is `cursors`, another's
        `cursors:<endpoint>` (one cursor per station and endpoint)."""
        return self.cursors if endpoint == DEFAULT_ENDPOINT else f"{self.cursors}:{endpoint}"

    def published_through(self, endpoint: str) -> str:
        """Hash: station id -> the latest reading time published past that station's cursor (set
        only while the cursor is held back, e.g. by a value not reported yet): readings up to it
        may have been sent already and are compared with their digest before publishing."""
        return f"{self.cursors_of(endpoint)}:published"

    def call_budget(self, counter: str) -> str:
        """Sorted set: one member per vendor call counted under `counter` (scored by its time),
        pruned to the budget's period; shared by every worker of the environment and kept across
        restarts. The counter is an endpoint's name, `@vendor:<period>` (the account's budget) or
        `@station:<period>:<station id>` (one station's)."""
        return f"{self.prefix}:budget:{counter}"

    def seen(self, message_id: str) -> str:
        """String with a TTL: the digest of the payload last published under `message_id`."""
        return f"{self.prefix}:seen:{message_id}"

    @property
    def history(self) -> str:
        """List (newest first, capped at `RUN_HISTORY_LENGTH`): `CycleRecord` JSON."""
        return f"{self.prefix}:history"


class Heartbeat(BaseModel):
    worker_id: str
    fencing_token: int
    at: datetime
    mqtt_connected: bool
    cycle_running: bool = False
    mode: str = "per-signal"


class CycleRecord(BaseModel):
    """One finished cycle, as the run history keeps it."""

    signal_id: str | None = None
    started_at: datetime
    finished_at: datetime
    duration_ms: float
    stations_total: int
    stations_synced: int
    stations_failed: int
    #: Stations not called this cycle because the vendor's throttling or call budget left no room.
    stations_deferred: int = 0
    readings_published: int
    duplicates_possible: int = 0
    errors_by_class: dict[str, int] = Field(default_factory=dict)
    aborted: bool = False
    #: The station list could not be read: no station was synced, every one counts as failed.
    station_list_failed: bool = False


def as_text(value: bytes | str) -> str:
    """A Redis reply as text. Every client of these keys decodes responses, but redis-py's types
    cannot say so (a reply is `bytes | str`); bytes would be a client built without decoding."""
    return value.decode() if isinstance(value, bytes) else value
