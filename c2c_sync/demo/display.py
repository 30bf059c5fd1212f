"""The demo's live view (Rich): setup steps, then one progress bar per cycle.

A bar moves with evidence read from outside the worker: a station counts as done when its
cursor in Redis moved, readings are what the independent subscriber received. When the cycle
ends, its bar shows the worker's own run-history record (synced / failed / published, duration).
On a non-terminal (CI, tests) the bars do not animate; each finished cycle prints one line instead.
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from functions.common.state import CycleRecord


class DemoDisplay:
    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(highlight=False)
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=28),
            MofNCompleteColumn(),
            TextColumn("stations  [red]{task.fields[failed]}[/] failed  [cyan]{task.fields[readings]}[/] readings"),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
            auto_refresh=True,
            refresh_per_second=8,
        )
        self._tasks: dict[int, TaskID] = {}

    def __enter__(self) -> DemoDisplay:
        if self.console.is_terminal:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def step(self, text: str) -> None:
        self.console.print(f"[green]✓[/] {text}")

    def note(self, text: str) -> None:
        self.console.print(f"  [dim]{text}[/]")

    def phase(self, text: str) -> None:
        self.console.rule(f"[bold]{text}")

    def warn(self, text: str) -> None:
        self.console.print(f"[yellow]![/] {text}")

    def cycle_started(self, number: int, via: str, stations: int) -> None:
        self._tasks[number] = self.progress.add_task(
            f"cycle {number} [dim]via {via:<5}[/]", total=stations, failed=0, readings=0
        )

    def cycle_progress(self, number: int, stations_done: int, readings_received: int) -> None:
        self.progress.update(self._tasks[number], completed=stations_done, readings=readings_received)

    def cycle_finished(self, number: int, record: CycleRecord, readings_received: int) -> None:
        task = self._tasks[number]
        self.progress.update(
            task, completed=record.stations_synced, failed=record.stations_failed, readings=readings_received
        )
        self.progress.stop_task(task)
        if not self.console.is_terminal:
            errors = ", ".join(f"{k} {v}" for k, v in sorted(record.errors_by_class.items())) or "none"
            self.console.print(
                f"cycle {number}: {record.stations_synced}/{record.stations_total} stations synced, "
                f"{record.stations_failed} failed (errors: {errors}), {record.readings_published} readings "
                f"published, {readings_received} received, {record.duration_ms / 1000:.1f} s"
            )
