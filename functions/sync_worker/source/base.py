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
