"""The source adapter interface the cycle runner depends on.

A vendor is plugged in by configuring the generic HTTP JSON source, or (for what no config can
express) by implementing `SourceAdapter` in a class named by `source.adapter`. Adapters raise the
errors of `sync_worker.errors` and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from functions.common.state import DEFAULT_ENDPOINT

__all__ = ["DEFAULT_ENDPOINT", "BatchAnswer", "EndpointPlan", "Reading", "ReadingBatch", "SourceAdapter", "Station"]
#: The smallest step of a time: a cursor held "just before" an item sits this far before it.
TICK = timedelta(microseconds=1)


def _escape(component: str) -> str:
    """`%` and `:` percent-encoded, so the parts of a message id never run into each other."""
    if "%" in component or ":" in component:
        return component.replace("%", "%25").replace(":", "%3A")
    return component


def format_ts(ts: datetime) -> str:
    """The wire form of a reading time (UTC, microseconds, `Z`): in message ids and payloads."""
    return ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


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


@dataclass(frozen=True, slots=True)
class EndpointPlan:
    """How the runner reads one endpoint of a vendor: its name (the cursor's key) and time rules.

    - `lookback_s`: every cycle re-reads from `cursor - lookback` (late and revised values), and an
      item still unreported inside the lookback holds the cursor.
    - `settle_s`: the window ends at `now - settle` (values younger than that are not asked for).
    - `budget_calls` per `budget_period_s`: the vendor's call budget of the endpoint.
    """

    name: str = DEFAULT_ENDPOINT
    lookback_s: float = 0.0
    settle_s: float = 0.0
    #: The vendor's call budget of this endpoint: at most `budget_calls` per `budget_period_s`
    #: (None: unlimited). Every vendor call (page) takes one; a call that does not fit is deferred.
    budget_calls: int | None = None
    budget_period_s: float = 0.0
    #: Stations per request: above 1 the runner calls `fetch_batch` with up to this many stations.
    batch_size: int = 1


@runtime_checkable
class SourceAdapter(Protocol):
    def list_stations(self) -> list[Station]:
        """Every station the account can read (pagination handled inside)."""
        ...

    def fetch_readings(self, station: Station, since: datetime, until: datetime, limit: int) -> list[Reading]:
        """Readings with `since < ts <= until`.

        A plain list must be sorted oldest first, hold at most `limit` readings, and the runner
        calls again with `since` = the last returned `ts` while a full page comes back. Adapters
        that need more (unsorted pages, late values, several endpoints) return a `ReadingBatch`
        and accept the keyword arguments `endpoint` and `resume`.
        """
        ...

    def close(self) -> None: ...


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
