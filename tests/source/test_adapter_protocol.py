"""The `SourceAdapter` protocol is all the cycle runner calls: a plug-in adapter built on
`UnbatchedSource` with `sorted_page` pages is read page by page to the end of its window, and one
that declares a batched endpoint it cannot serve fails that station with a reason, nothing else."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import ClassVar

from functions.sync_worker.cycle import CycleRunner
from functions.sync_worker.errors import ErrorClass
from functions.sync_worker.source.base import (
    DEFAULT_ENDPOINT,
    EndpointPlan,
    Reading,
    ReadingBatch,
    SourceAdapter,
    Station,
    UnbatchedSource,
    sorted_page,
)
from functions.sync_worker.store import MemoryState
from tests.source.conftest import RecordingPublisher, frozen

T0 = datetime(2024, 6, 1, 12, tzinfo=UTC)


class Meter(UnbatchedSource):
    """Seven readings a minute apart, answered oldest first at most `limit` a call."""

    def __init__(self) -> None:
        self.calls: list[tuple[datetime, datetime]] = []
        self.times = [T0 - timedelta(minutes=m) for m in range(7, 0, -1)]

    def list_stations(self) -> list[Station]:
        return [Station("m-1")]

    def fetch_readings(
        self,
        station: Station,
        since: datetime,
        until: datetime,
        limit: int,
        *,
        endpoint: str = DEFAULT_ENDPOINT,
        resume: object | None = None,
    ) -> ReadingBatch:
        since = resume if isinstance(resume, datetime) else since
        self.calls.append((since, until))
        page = [Reading(station.station_id, t, {"kwh": i}) for i, t in enumerate(self.times) if since < t <= until]
        return sorted_page(page[:limit], since, until, limit)

    def close(self) -> None:
        pass


class BatchedMeter(Meter):
    endpoints: ClassVar[Sequence[EndpointPlan]] = (EndpointPlan("bulk", batch_size=10),)


def run(source: SourceAdapter, state: MemoryState, publisher: RecordingPublisher) -> list:
    runner = CycleRunner(source, publisher, state, concurrency=1, page_size=3, now=frozen(T0))
    try:
        return runner.run(source.list_stations()).outcomes
    finally:
        runner.close()


def test_sorted_pages_are_read_to_the_end_of_the_window_and_the_cursor_follows():
    source, state, publisher = Meter(), MemoryState(), RecordingPublisher()
    state.advance_cursor("m-1", T0 - timedelta(minutes=10))
    assert isinstance(source, SourceAdapter)
    (outcome,) = run(source, state, publisher)
    assert outcome.error is None and outcome.published == 7
    assert [p["values"]["kwh"] for p in publisher.payloads] == list(range(7))
    # Three full pages of 3, 3 and 1: each resumes after the last reading of the page before.
    assert [since for since, _ in source.calls] == [T0 - timedelta(minutes=10), source.times[2], source.times[5]]
    assert state.cursors()["m-1"] == T0  # the short last page completes the window


def test_a_batched_endpoint_on_an_unbatched_adapter_fails_the_station_with_a_reason(caplog):
    source, state, publisher = BatchedMeter(), MemoryState(), RecordingPublisher()
    (outcome,) = run(source, state, publisher)
    assert outcome.error is ErrorClass.PERMANENT and outcome.published == 0
    assert source.calls == [] and publisher.payloads == []
    reasons = [getattr(r, "error", None) for r in caplog.records if r.getMessage() == "station failed"]
    assert reasons == ["BatchedMeter reads one station per request, but endpoint 'bulk' is declared batched"]
