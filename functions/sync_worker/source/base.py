"""The source adapter interface the cycle runner depends on.

A vendor is plugged in by configuring the generic HTTP JSON source, or (for what no config can
express) by implementing `SourceAdapter` in a class named by `source.adapter`. Adapters raise the
errors of `sync_worker.errors` and nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

from functions.common.state import DEFAULT_ENDPOINT
from functions.sync_worker.errors import PermanentError
from functions.sync_worker.source.timeformats import wire_time

__all__ = [
    "DEFAULT_ENDPOINT",
    "BatchAnswer",
    "Budget",
    "BudgetScope",
    "EndpointPlan",
    "Reading",
    "ReadingBatch",
    "SourceAdapter",
    "Station",
    "UnbatchedSource",
    "sorted_page",
]
#: The smallest step of a time: a cursor held "just before" an item sits this far before it.
TICK = timedelta(microseconds=1)


def _escape(component: str) -> str:
    """`%` and `:` percent-encoded, so the parts of a message id never run into each other."""
    if "%" in component or ":" in component:
        return component.replace("%", "%25").replace(":", "%3A")
    return component


def format_ts(ts: datetime) -> str:
    """The wire form of a reading time (UTC, microseconds, `Z`): in message ids and payloads."""
    return wire_time(ts)


def make_message_id(station_id: str, series: str, ts: datetime) -> str:
    """`<station>:<series>:<UTC time>`, with `%` and `:` escaped in station and series: one id per
    (station, series, time), so two devices of a station at one time never share an id."""
    return f"{_escape(station_id)}:{_escape(series)}:{format_ts(ts)}"


@dataclass(frozen=True, slots=True)
class Station:
    station_id: str
    name: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Reading:
    """One timestamped set of values of one series of one station. `ts` is timezone-aware UTC.

    `series` names what was measured: the endpoint, plus the device or meter serial when a station
    has several (`battery/BAT-2`)."""

    station_id: str
    ts: datetime
    values: dict[str, Any]
    series: str = DEFAULT_ENDPOINT

    @property
    def message_id(self) -> str:
        """Stable id (station + series + reading time) so consumers can drop duplicates."""
        return make_message_id(self.station_id, self.series, self.ts)


BudgetScope = Literal["endpoint", "station", "vendor"]


@dataclass(frozen=True, slots=True)
class Budget:
    """A vendor's call budget: at most `calls` per `period_s` (sliding), counted over `scope`:

    - `endpoint`: every call of this endpoint, whatever the station;
    - `station`: each station on its own, across every endpoint with a station budget of the same
      period (SolarEdge: 300 calls a day per site id);
    - `vendor`: the whole account, across every endpoint with a vendor budget of the same period
      (SolarEdge: 300 calls a day per API key).
    """

    calls: int
    period_s: float
    scope: BudgetScope = "endpoint"

    def counter(self, endpoint: str, station_id: str) -> str:
        """The name its calls are counted under (shared by whoever shares the budget)."""
        if self.scope == "endpoint":
            return endpoint
        shared = f"@{self.scope}:{self.period_s:g}"
        return f"{shared}:{station_id}" if self.scope == "station" else shared

    def share(self, endpoint: str) -> str:
        """The name its per-cycle share is paced under (one per station for a station budget)."""
        return endpoint if self.scope == "endpoint" else f"@{self.scope}:{self.period_s:g}"


@dataclass(frozen=True, slots=True)
class EndpointPlan:
    """How the runner reads one endpoint of a vendor: its name (the cursor's key) and time rules.

    - `lookback_s`: every cycle re-reads from `cursor - lookback` (late and revised values), and an
      item still unreported inside the lookback holds the cursor.
    - `settle_s`: the window ends at `now - settle` (values younger than that are not asked for).
    - `budgets`: the vendor's call budgets every call of the endpoint draws on (all of them, or
      the call is deferred).
    """

    name: str = DEFAULT_ENDPOINT
    lookback_s: float = 0.0
    settle_s: float = 0.0
    #: Every vendor call (page) takes one call from each; a call that does not fit them all is deferred.
    budgets: tuple[Budget, ...] = ()
    #: Stations per request: above 1 the runner calls `fetch_batch` with up to this many stations.
    batch_size: int = 1


@runtime_checkable
class SourceAdapter(Protocol):
    """Everything the cycle runner calls on a source, and nothing else (the generic HTTP JSON
    source and every plug-in adapter implement all of it; `UnbatchedSource` supplies what an
    adapter that reads one station per request does not need)."""

    @property
    def endpoints(self) -> Sequence[EndpointPlan]:
        """The reading endpoints (at least one), each with its own cursor per station."""
        ...

    def list_stations(self) -> list[Station]:
        """Every station the account can read (pagination handled inside)."""
        ...

    def fetch_readings(
        self, station: Station, since: datetime, until: datetime, limit: int, *, endpoint: str, resume: object | None
    ) -> ReadingBatch:
        """One page of `endpoint`'s readings with `since < ts <= until`, at most `limit`: the batch
        says how far the window is known complete, what is still pending and how to go on
        (`resume` is the previous page's `ReadingBatch.resume`, None for the first page). An
        adapter whose answers are sorted oldest first can return `sorted_page(...)`."""
        ...

    def fetch_batch(
        self,
        stations: list[Station],
        since: datetime,
        until: datetime,
        limit: int,
        *,
        endpoint: str,
        resume: object | None,
    ) -> BatchAnswer:
        """One page for several stations in one request; called only for an endpoint whose
        `batch_size` is above 1."""
        ...

    def close(self) -> None: ...


class UnbatchedSource:
    """A base for adapters that read one station per request: one default endpoint unless the
    subclass declares its own, and a `fetch_batch` that refuses (the runner calls it only for an
    endpoint declared with `batch_size` above 1, which such an adapter must not declare)."""

    endpoints: ClassVar[Sequence[EndpointPlan]] = (EndpointPlan(),)

    def fetch_batch(
        self,
        stations: list[Station],
        since: datetime,
        until: datetime,
        limit: int,
        *,
        endpoint: str,
        resume: object | None,
    ) -> BatchAnswer:
        raise PermanentError(
            f"{type(self).__name__} reads one station per request, but endpoint {endpoint!r} is declared batched"
        )


def sorted_page(page: list[Reading], since: datetime, until: datetime, limit: int) -> ReadingBatch:
    """A page of readings sorted oldest first (at most `limit`) as the runner needs it: a full page
    is complete through its last reading and resumes from there (the adapter's next `since` is the
    `resume` it gets back); a short page completes the window through `until`."""
    full = len(page) >= limit and page[-1].ts > since
    return ReadingBatch(page, complete_through=page[-1].ts if full else until, resume=page[-1].ts if full else None)


@dataclass
class BatchAnswer:
    """One page of a batched request: each station's share, and how to continue (`resume`)."""

    batches: dict[str, ReadingBatch]
    resume: object | None


class ReadingBatch(list[Reading]):
    """What `fetch_readings` may return: the readings (a plain list to callers that want only that),
    plus what the runner needs to move the cursor without losing anything.

    - `complete_through`: every item of the vendor with `since < ts <= complete_through` has been
      returned by this call or an earlier call of the same window (None: nothing known complete yet,
      e.g. an unsorted answer still being paged).
    - `pending`: times of items the vendor listed without a value yet (not reported): the cursor
      must not pass them while they are inside the lookback.
    - `resume`: call again with `resume=` this value to continue the same window (next page, next
      sub-window); None when the window is done.
    - `skipped`: items dropped because they did not map (a permanent error of one reading, counted).
    """

    def __init__(
        self,
        readings: list[Reading] | None = None,
        *,
        complete_through: datetime | None = None,
        pending: list[datetime] | None = None,
        resume: object | None = None,
        skipped: int = 0,
        skip_reasons: list[str] | None = None,
    ) -> None:
        super().__init__(readings or [])
        self.complete_through = complete_through
        self.pending = pending or []
        self.resume = resume
        self.skipped = skipped
        self.skip_reasons = skip_reasons or []
