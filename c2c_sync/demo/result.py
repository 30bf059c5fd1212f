"""The demo's result: the figures, where each comes from, and the exit code it implies.

Plain data, filled in by the orchestration (run.py) and rendered by summary.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from c2c_sync.demo.ledger import Reconciliation
from functions.common.state import CycleRecord

EXIT_OK = 0
EXIT_LOST = 1
#: The demo could not run to the end (a service or the worker failed, a cycle timed out, Ctrl-C).
EXIT_ABORTED = 3


@dataclass
class CycleOutcome:
    number: int
    via: str
    signal_id: str
    record: CycleRecord
    readings_received: int


@dataclass
class DemoResult:
    env: str
    stations: int
    identities: int
    cycles: list[CycleOutcome] = field(default_factory=list)
    worker_starts: int = 0
    #: CONNECTs from the worker's client id in the broker's log; None when the broker is external
    broker_connections: int | None = None
    #: MqttConnectionsOpened summed from the worker's EMF metrics (its own count)
    worker_reported_connections: int = 0
    client_id: str = ""
    received_total: int = 0
    duplicates: int = 0
    reconciliation: Reconciliation | None = None
    #: the vendor API read: "simulator" or a vendor mock's name
    vendor: str = "simulator"
    vendor_requests: int = 0
    vendor_connections: int = 0
    vendor_faults: dict[str, int] = field(default_factory=dict)
    #: a vendor mock's refusals by reason (budget, quota, concurrency, token, ...) and its call counts
    vendor_refusals: dict[str, int] = field(default_factory=dict)
    vendor_detail: str = ""
    start_queue_left: int | None = None
    dlq_depth: int | None = None
    wall_time_s: float = 0.0
    aborted: str | None = None
    #: The run's log directory when it was kept (a failure, --keep-logs or --workdir); None: removed.
    logs_dir: Path | None = None

    @property
    def published(self) -> int:
        return sum(c.record.readings_published for c in self.cycles)

    @property
    def per_run_connections(self) -> int:
        """A connect-per-invocation function opens one connection per identity per run."""
        return len(self.cycles) * self.identities

    @property
    def lost(self) -> list[str]:
        return self.reconciliation.lost if self.reconciliation else []

    @property
    def exit_code(self) -> int:
        if self.lost:
            return EXIT_LOST
        if self.aborted or self.reconciliation is None:
            return EXIT_ABORTED
        return EXIT_OK
