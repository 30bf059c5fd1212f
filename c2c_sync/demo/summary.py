"""The demo's result: the figures, where each comes from, and the verdict (exit code)."""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.table import Table

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
    vendor_requests: int = 0
    vendor_connections: int = 0
    vendor_faults: dict[str, int] = field(default_factory=dict)
    start_queue_left: int | None = None
    dlq_depth: int | None = None
    wall_time_s: float = 0.0
    aborted: str | None = None

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


def summary_table(result: DemoResult) -> Table:
    table = Table(title=f"c2c-sync demo ({result.env})", title_justify="left", show_lines=False)
    table.add_column("", style="bold")
    table.add_column("value", justify="right")
    table.add_column("evidence", style="dim")
    by_via: dict[str, int] = {}
    for c in result.cycles:
        by_via[c.via] = by_via.get(c.via, 0) + 1
    table.add_row("cycles", str(len(result.cycles)), ", ".join(f"{n} via {v}" for v, n in by_via.items()) or "-")
    synced = sum(c.record.stations_synced for c in result.cycles)
    failed = sum(c.record.stations_failed for c in result.cycles)
    table.add_row(
        "stations", str(result.stations), f"station-cycles: {synced} synced, {failed} failed (retried next cycle)"
    )
    table.add_row("readings published", str(result.published), "worker run history (PUBACKed)")
    table.add_row("readings received", str(result.received_total), "independent MQTT subscriber")
    table.add_row("duplicates", str(result.duplicates), "same message id received again")
    rec = result.reconciliation
    if rec is not None:
        lost_style = "bold red" if rec.lost else "green"
        table.add_row(
            "readings lost",
            f"[{lost_style}]{len(rec.lost)}[/]",
            f"{rec.expected} expected up to the final cursors, {rec.received_distinct} distinct received",
        )
    connections = (
        str(result.broker_connections)
        if result.broker_connections is not None
        else f"{result.worker_reported_connections}*"
    )
    source = (
        f"broker log, client id {result.client_id}; {result.worker_starts} worker process start(s)"
        if result.broker_connections is not None
        else "* worker-reported (external broker: no log to read)"
    )
    table.add_row("MQTT connections from the worker", connections, source)
    table.add_row(
        "connect-per-invocation would open",
        str(result.per_run_connections),
        f"{len(result.cycles)} cycles × {result.identities} identit{'y' if result.identities == 1 else 'ies'}",
    )
    faults = ", ".join(f"{kind} ×{n}" for kind, n in sorted(result.vendor_faults.items())) or "none"
    table.add_row(
        "vendor API requests",
        str(result.vendor_requests),
        f"simulator's count; faults injected: {faults}; {result.vendor_connections} TCP connections",
    )
    if result.start_queue_left is not None:
        table.add_row(
            "start queue / DLQ after SQS cycles",
            f"{result.start_queue_left} / {result.dlq_depth}",
            "signals deleted only after their cycle",
        )
    table.add_row("wall time", f"{result.wall_time_s:.1f} s", "")
    return table


def verdict(result: DemoResult) -> str:
    if result.lost:
        shown = ", ".join(result.lost[:5]) + (" …" if len(result.lost) > 5 else "")
        return f"[bold red]FAILED: {len(result.lost)} reading(s) lost: {shown}[/]"
    if result.aborted:
        return f"[bold red]ABORTED: {result.aborted}[/]"
    if result.reconciliation is None:
        return "[bold red]ABORTED: no final reconciliation[/]"
    return (
        f"[bold green]OK: every reading up to the final cursors reached the subscriber "
        f"({result.reconciliation.expected} readings, {result.duplicates} duplicates)[/]"
    )
