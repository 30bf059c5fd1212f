"""The source adapter interface the cycle runner depends on.

A vendor is plugged in by implementing `SourceAdapter` (or, usually, by configuring the generic
HTTP JSON source). Adapters raise the errors of `sync_worker.errors` and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class Station:
    station_id: str
    name: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Reading:
    """One timestamped set of values of one station. `ts` is timezone-aware UTC."""

    station_id: str
    ts: datetime
    values: dict[str, Any]

    @property
    def message_id(self) -> str:
        """Stable id (station + reading time) so consumers can drop duplicates."""
        return f"{self.station_id}:{self.ts.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}"


@runtime_checkable
class SourceAdapter(Protocol):
    def list_stations(self) -> list[Station]:
        """Every station the account can read (pagination handled inside)."""
        ...

    def fetch_readings(self, station: Station, since: datetime, until: datetime, limit: int) -> list[Reading]:
        """Readings with `since < ts <= until`, oldest first, at most `limit` of them.

        The runner calls again with `since` = the last returned `ts` while a full page comes back,
        so an adapter never needs to hold a whole backfill in memory.
        """
        ...

    def close(self) -> None: ...


class ReadingBatch(list[Reading]):
    """What `fetch_readings` may return: the readings (a plain list to callers that want only that),
    plus what the runner needs to page and count correctly when some vendor items were unusable.

    - `skipped`: items dropped because they did not map (a permanent error of one reading, counted).
    - `high_water`: the latest time among the items consumed, skipped ones included when their time
      was readable; a runner may move the cursor there so a bad reading is not refetched forever.
    - `has_more`: the vendor has more readings in the window; use this, not `len(batch) == limit`,
      to decide whether to call again (skipped items make a full page look short).
    """

    def __init__(
        self,
        readings: list[Reading] | None = None,
        *,
        skipped: int = 0,
        high_water: datetime | None = None,
        has_more: bool = False,
        skip_reasons: list[str] | None = None,
    ) -> None:
        super().__init__(readings or [])
        self.skipped = skipped
        self.high_water = high_water
        self.has_more = has_more
        self.skip_reasons = skip_reasons or []
