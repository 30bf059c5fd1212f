"""The demo's closing report (Rich): the figures of a `DemoResult` with their evidence, and the verdict."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from c2c_sync.demo.result import DemoResult


def print_report(result: DemoResult, console: Console) -> None:
    """The table, the verdict and, when they were kept, where the logs are."""
    console.print()
    console.print(summary_table(result))
    console.print(verdict(result))
    if result.logs_dir is not None:
        console.print(f"logs: {result.logs_dir}")


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
    if result.vendor == "simulator":
        faults = ", ".join(f"{kind} ×{n}" for kind, n in sorted(result.vendor_faults.items())) or "none"
        table.add_row(
            "vendor API requests",
            str(result.vendor_requests),
            f"simulator's count; faults injected: {faults}; {result.vendor_connections} TCP connections",
        )
    else:
        table.add_row("vendor API requests", str(result.vendor_requests), f"{result.vendor} {result.vendor_detail}")
        refused = ", ".join(f"{reason} ×{n}" for reason, n in sorted(result.vendor_refusals.items())) or "none"
        table.add_row(
            "vendor calls refused",
            str(sum(result.vendor_refusals.values())),
            f"the mock's refusals by the vendor's documented rules: {refused}",
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
