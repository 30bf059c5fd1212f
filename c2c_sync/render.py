"""Rich rendering of an `EnvironmentStatus`: what an operator reads first, at a glance."""

from __future__ import annotations

from datetime import datetime

from rich.console import Group, JustifyMethod
from rich.table import Table
from rich.text import Text

from c2c_sync.status import EnvironmentStatus


def seconds(value: float | None) -> str:
    """`42.0s`, `3m 05s`, `2h 04m`, `1d 3h` — a lag or an age in the unit a human reads."""
    if value is None:
        return "-"
    sign, value = ("-" if value < 0 else ""), abs(value)
    if value < 60:
        return f"{sign}{value:.1f}s"
    minutes, secs = divmod(int(value), 60)
    if minutes < 60:
        return f"{sign}{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{sign}{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{sign}{days}d {hours}h"


def _time(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%SZ") if value else "-"


def _errors(errors: dict[str, int]) -> str:
    return ", ".join(f"{name} {count}" for name, count in errors.items() if count) or "none"


def worker_table(status: EnvironmentStatus) -> Table:
    table = Table(
        title=f"c2c-sync {status.env} — worker at {_time(status.generated_at)}", show_header=False, title_justify="left"
    )
    table.add_column("what", style="bold")
    table.add_column("value")
    lease, beat = status.lease, status.heartbeat
    table.add_row("lease holder", lease.holder or Text("none (no active worker)", style="yellow"))
    table.add_row("fencing token", str(lease.fencing_token) if lease.fencing_token is not None else "-")
    table.add_row("lease expires in", seconds(lease.ttl_s))
    if not beat.present:
        heartbeat = Text("missing (stale)", style="bold red")
    elif beat.error:
        heartbeat = Text(f"unreadable: {beat.error}", style="bold red")
    else:
        verdict = (
            Text(f"STALE > {beat.stale_after_s}s", style="bold red") if beat.stale else Text("fresh", style="green")
        )
        heartbeat = Text.assemble(f"{seconds(beat.age_s)} ago, ", verdict)
    table.add_row("heartbeat age", heartbeat)
    if beat.present and not beat.error:
        table.add_row("heartbeat from", f"{beat.worker_id} (token {beat.fencing_token}, mode {beat.mode})")
        table.add_row("mqtt connected", "yes" if beat.mqtt_connected else Text("no", style="red"))
        table.add_row("cycle running", "yes" if beat.cycle_running else "no")
    queues = status.queues
    table.add_row("DLQ depth", Text(str(queues.dlq_depth), style="bold red" if queues.dlq_depth else "green"))
    if queues.start_queue_depth is not None:
        table.add_row("start queue depth", str(queues.start_queue_depth))
    table.add_row("redis", status.redis)
    return table


def cycles_table(status: EnvironmentStatus) -> Group:
    cycles = status.cycles
    heading = f"last {len(cycles.last)} of {cycles.recorded} cycles — errors: {_errors(cycles.errors_by_class)}"
    if cycles.unreadable:
        heading += f" — {cycles.unreadable} unreadable record(s)"
    table = Table()
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("finished", "left"),
        ("duration", "right"),
        ("synced", "right"),
        ("failed", "right"),
        ("deferred", "right"),
        ("total", "right"),
        ("readings", "right"),
        ("errors", "left"),
    )
    for column, justify in columns:
        table.add_column(column, justify=justify)
    for record in cycles.last:
        failed = Text(str(record.stations_failed), style="red" if record.stations_failed else "")
        finished = _time(record.finished_at) + (" (aborted)" if record.aborted else "")
        table.add_row(
            finished,
            seconds(record.duration_ms / 1000),
            str(record.stations_synced),
            failed,
            str(record.stations_deferred),
            str(record.stations_total),
            str(record.readings_published),
            _errors(record.errors_by_class),
        )
    # Headings are lines of their own: a table title would wrap to the table's width.
    return Group(Text(heading, style="italic"), table)


def lag_table(status: EnvironmentStatus) -> Group:
    lag = status.cursors
    heading = (
        f"cursor lag over {lag.stations} stations — newest {seconds(lag.newest_lag_s)}, "
        f"median {seconds(lag.median_lag_s)}, oldest {seconds(lag.oldest_lag_s)}"
    )
    table = Table()
    table.add_column("worst stations")
    table.add_column("cursor")
    table.add_column("lag", justify="right")
    for station in lag.worst:
        table.add_row(station.station, _time(station.cursor), seconds(station.lag_s))
    if lag.unreadable:
        heading += f" — unreadable cursors: {', '.join(lag.unreadable)}"
    return Group(Text(heading, style="italic"), table)


def status_view(status: EnvironmentStatus) -> Group:
    return Group(worker_table(status), cycles_table(status), lag_table(status))
