"""The cached station list: a failed refresh keeps the cached list and is not asked again before the
next TTL (a vendor whose daily list quota is spent would otherwise refuse one call every cycle)."""

from __future__ import annotations

from typing import Any, cast

import pytest

from functions.sync_worker.source.base import Station
from functions.sync_worker.worker import StationDirectory

TTL_S = 900.0


class ListingSource:
    """Answers list_stations from a script: a list of stations, or an exception to raise."""

    def __init__(self, answers: list[list[Station] | Exception]) -> None:
        self.answers = answers
        self.calls = 0

    def list_stations(self) -> list[Station]:
        answer = self.answers[min(self.calls, len(self.answers) - 1)]
        self.calls += 1
        if isinstance(answer, Exception):
            raise answer
        return answer


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1000.0]
    monkeypatch.setattr("functions.sync_worker.worker.time.monotonic", lambda: now[0])
    return now


def directory(source: ListingSource) -> StationDirectory:
    return StationDirectory(lambda: cast(Any, source), None, TTL_S)


def test_a_refused_refresh_is_not_asked_again_before_the_next_ttl(clock: list[float]) -> None:
    first = [Station("a"), Station("b")]
    source = ListingSource([first, RuntimeError("407 daily quota spent"), [Station("a"), Station("c")]])
    stations = directory(source)

    assert [s.station_id for s in stations.select(None)] == ["a", "b"]
    clock[0] += TTL_S + 1
    assert [s.station_id for s in stations.select(None)] == ["a", "b"], "the cached list stands"
    assert source.calls == 2
    for _ in range(5):  # five more cycles inside the next TTL: no call
        clock[0] += TTL_S / 6
        stations.select(None)
    assert source.calls == 2
    clock[0] += TTL_S / 6 + 1
    assert [s.station_id for s in stations.select(None)] == ["a", "c"], "refreshed one TTL after the failure"
    assert source.calls == 3


def test_without_a_cached_list_a_failed_listing_raises(clock: list[float]) -> None:
    source = ListingSource([RuntimeError("vendor down")])
    with pytest.raises(RuntimeError, match="vendor down"):
        directory(source).select(None)
