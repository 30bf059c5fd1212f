"""An example adapter: a vendor that answers CSV, which no JSON config can map.

    GET /meters                      -> "meter_id\\n" then one id per line
    GET /meters/<id>/readings.csv?from=<epoch s>&to=<epoch s>
                                     -> "epoch_s,kwh\\n" lines, oldest first; kwh empty = not reported

Selected in config/<env>.yaml with

    source:
      adapter: functions.sync_worker.source.examples.csv_meter:CsvMeterSource
      base_url: https://meters.example.com
      settings: {token_header: X-Meter-Token}
      secrets: {meter_token: c2c-sync/dev/meter-token}

The secret named `meter_token` reaches the worker as C2C_SOURCE_METER_TOKEN (an ecs.Secret).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

import requests

from functions.sync_worker.errors import PermanentError, TransientError
from functions.sync_worker.source.auth import SecretSource, read_secret
from functions.sync_worker.source.base import (
    DEFAULT_ENDPOINT,
    EndpointPlan,
    Reading,
    ReadingBatch,
    Station,
    UnbatchedSource,
)


class CsvMeterSource(UnbatchedSource):
    #: The secrets this adapter reads (deployment maps each to a Secrets Manager secret).
    required_secrets: ClassVar[list[str]] = ["meter_token"]
    #: One reading endpoint; re-read an hour back, so a value reported late is still picked up.
    endpoints: ClassVar[Sequence[EndpointPlan]] = (EndpointPlan(lookback_s=3600),)

    def __init__(
        self, *, settings: dict[str, Any], secrets: SecretSource, base_url: str | None, pool_size: int
    ) -> None:
        if not base_url:
            raise PermanentError("csv_meter: base_url is required")
        self._base = base_url.rstrip("/")
        self._session = requests.Session()
        self._session.headers[str(settings.get("token_header", "X-Meter-Token"))] = read_secret(secrets, "meter_token")
        adapter = requests.adapters.HTTPAdapter(pool_maxsize=max(1, pool_size), pool_block=True)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)

    def _get(self, path: str, params: dict[str, str] | None = None) -> str:
        try:
            resp = self._session.get(self._base + path, params=params, timeout=(3.05, 10))
        except requests.RequestException as exc:
            raise TransientError(f"csv_meter: {exc.__class__.__name__}") from exc
        if resp.status_code >= 500:
            raise TransientError(f"csv_meter: HTTP {resp.status_code}")
        if resp.status_code >= 400:
            raise PermanentError(f"csv_meter: HTTP {resp.status_code} for {path}")
        return resp.text

    def list_stations(self) -> list[Station]:
        lines = self._get("/meters").splitlines()[1:]
        return [Station(line.strip()) for line in lines if line.strip()]

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
        # One endpoint, one request per window: `endpoint` is always the default, `resume` never set.
        text = self._get(
            f"/meters/{station.station_id}/readings.csv",
            {"from": str(int(since.timestamp())), "to": str(int(until.timestamp()))},
        )
        readings, pending = [], []
        for row in csv.DictReader(io.StringIO(text)):
            ts = datetime.fromtimestamp(int(row["epoch_s"]), UTC)
            if not since < ts <= until:
                continue
            if row["kwh"] == "":
                pending.append(ts)  # not reported yet: the runner holds the cursor before it
            else:
                readings.append(Reading(station.station_id, ts, {"energy_kwh": float(row["kwh"])}, series="meter"))
        # One answer per window: complete up to `until` (the runner keeps the cursor before `pending`).
        return ReadingBatch(readings, complete_through=until, pending=pending)

    def close(self) -> None:
        self._session.close()


__all__ = ["CsvMeterSource"]
