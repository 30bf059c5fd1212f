"""The generic HTTP JSON source: any vendor whose REST API is described by a `VendorConfig`.

`load_source("simulator", base_url, secrets)` reads functions/sync_worker/source/vendors/simulator.yaml
(or any path), validates it, and returns an `HttpJsonSource` implementing `SourceAdapter`. Adding a
vendor means writing such a file: URL templates, auth, pagination, and a JMESPath mapping.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import yaml
from pydantic import ValidationError

from functions.common.validation import describe_validation_error
from functions.sync_worker.errors import PermanentError
from functions.sync_worker.source.auth import SecretSource, build_auth
from functions.sync_worker.source.base import ReadingBatch, Station
from functions.sync_worker.source.config import VendorConfig
from functions.sync_worker.source.mapping import MappingError, ReadingMapper, StationMapper
from functions.sync_worker.source.pagination import PageRequest, Paginator
from functions.sync_worker.source.transport import HttpTransport, SourceCounters

log = logging.getLogger(__name__)

VENDORS_DIR = Path(__file__).parent / "vendors"
#: How many skip reasons a batch keeps for the log (the count is always exact).
MAX_SKIP_REASONS = 5


class VendorConfigError(ValueError):
    """The vendor config file is missing or invalid; the message names the file and the field."""


def resolve_config_path(name_or_path: str | Path) -> Path:
    """`simulator` -> vendors/simulator.yaml; anything with a suffix or a slash is a path."""
    text = str(name_or_path)
    if "/" in text or text.endswith((".yaml", ".yml", ".json")):
        path = Path(text)
    else:
        path = next(
            (
                p
                for p in (VENDORS_DIR / f"{text}.yaml", VENDORS_DIR / f"{text}.yml", VENDORS_DIR / f"{text}.json")
                if p.exists()
            ),
            VENDORS_DIR / f"{text}.yaml",
        )
    if not path.exists():
        shipped = sorted(p.stem for p in VENDORS_DIR.glob("*.y*ml"))
        raise VendorConfigError(f"vendor config {text!r} not found ({path}); shipped vendors: {shipped}")
    return path


def load_vendor_config(name_or_path: str | Path) -> VendorConfig:
    path = resolve_config_path(name_or_path)
    try:
        raw = json.loads(path.read_text()) if path.suffix == ".json" else yaml.safe_load(path.read_text())
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise VendorConfigError(f"{path}: not valid YAML/JSON: {exc}") from exc
    try:
        return VendorConfig.model_validate(raw)
    except ValidationError as exc:
        raise VendorConfigError(f"{path}: {describe_validation_error(exc)}") from exc


def _format_time(dt: datetime, fmt: str) -> str:
    dt = dt.astimezone(UTC)
    if fmt == "epoch_s":
        return str(int(dt.timestamp()))
    if fmt == "epoch_ms":
        return str(int(dt.timestamp() * 1000))
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + (f".{dt.microsecond:06d}" if dt.microsecond else "") + "Z"


class HttpJsonSource:
    """`SourceAdapter` over a vendor REST API described by `VendorConfig`. Thread-safe: the cycle
    runner calls `fetch_readings` from `pool_size` threads over one keep-alive session."""

    def __init__(
        self,
        config: VendorConfig,
        *,
        base_url: str | None = None,
        secrets: SecretSource | None = None,
        pool_size: int = 10,
        station_page_size: int | None = None,
    ) -> None:
        self.config = config
        url = base_url or config.base_url
        if not url:
            raise VendorConfigError(f"vendor {config.name!r}: no base URL (set C2C_SOURCE_URL or base_url)")
        self.base_url = url.rstrip("/")
        self.counters = SourceCounters()
        self.transport = HttpTransport(config.http, pool_size=pool_size, counters=self.counters)
        self.transport.auth = build_auth(
            config.auth, self.base_url, secrets or {}, self.transport.session, self.transport.timeout
        )
        self._station_mapper = StationMapper(config.stations)
        self._station_pages = Paginator(config.stations.pagination)
        self._station_page_size = station_page_size or config.stations.page_size
        self._reading_mapper = ReadingMapper(config.readings)
        self._reading_pages = Paginator(config.readings.pagination)
        self._limit_params = [k for k, v in config.readings.params.items() if "{limit}" in v]

    # -- stations ---------------------------------------------------------------------------------
    def list_stations(self) -> list[Station]:
        cfg = self.config.stations
        size = self._station_page_size
        params = {k: v.format(page_size=size) for k, v in cfg.params.items()}
        req: PageRequest | None = self._station_pages.first(self.base_url + cfg.path.format(page_size=size), params)
        stations: list[Station] = []
        seen: set[str] = set()
        pages = 0
        while req is not None:
            pages += 1
            if pages > cfg.max_pages:
                raise PermanentError(f"station list did not end after {cfg.max_pages} pages")
            body, resp = self.transport.get_json(req.url, req.params)
            items = self._station_mapper.items(body)
            if not isinstance(items, list):
                raise PermanentError(f"station list: {cfg.items!r} is not a list in the vendor's answer")
            for item in items:
                try:
                    station = self._station_mapper.station(item)
                except MappingError as exc:
                    log.warning("station list item skipped: %s", exc)
                    continue
                if station.station_id not in seen:
                    seen.add(station.station_id)
                    stations.append(station)
            req = self._station_pages.next(req, body, resp, len(items), size)
        return stations

    # -- readings ---------------------------------------------------------------------------------
    def _render(self, template: str, station_id: str, since: datetime, until: datetime, limit: int) -> str:
        fmt = self.config.readings.time_format
        return template.format(
            station_id=quote(station_id, safe=""),
            since=_format_time(since, fmt),
            until=_format_time(until, fmt),
            limit=limit,
        )

    def fetch_readings(self, station: Station, since: datetime, until: datetime, limit: int) -> ReadingBatch:
        """Readings with since < ts <= until, oldest first, at most `limit` vendor items consumed.

        Items that do not map are skipped and counted (`batch.skipped`, `counters.readings_skipped`)
        instead of failing the station; HTTP failures raise the error classes of `errors.py`.
        """
        if limit < 1:
            raise ValueError("limit must be >= 1")
        if since >= until:
            return ReadingBatch()  # an empty window: nothing to ask the vendor
        cfg = self.config.readings
        sid = station.station_id
        page_limit = min(limit, cfg.max_page_size)
        url = self.base_url + self._render(cfg.path, sid, since, until, page_limit)
        params = {k: self._render(v, sid, since, until, page_limit) for k, v in cfg.params.items()}
        req: PageRequest | None = self._reading_pages.first(url, params)
        mapper = self._reading_mapper
        readings = []
        skipped, out_of_window, consumed = 0, 0, 0
        reasons: list[str] = []
        high_water: datetime | None = None
        has_more = False
        while req is not None:
            body, resp = self.transport.get_json(req.url, req.params, station_id=sid)
            items = mapper.items(body)
            if items is None:
                items = []
            if not isinstance(items, list):
                raise PermanentError(
                    f"readings of {sid}: {cfg.items!r} is not a list in the vendor's answer", station_id=sid
                )
            remaining = limit - consumed
            if len(items) > remaining:
                items, has_more = items[:remaining], True
            for item in items:
                consumed += 1
                try:
                    ts = mapper.timestamp(item)
                except MappingError as exc:
                    skipped += 1
                    if len(reasons) < MAX_SKIP_REASONS:
                        reasons.append(str(exc))
                    continue
                if not since < ts <= until:
                    out_of_window += 1  # a vendor ignoring the window: not ours to publish
                    continue
                if high_water is None or ts > high_water:
                    high_water = ts
                try:
                    readings.append(mapper.reading(sid, item, ts))
                except MappingError as exc:
                    skipped += 1
                    if len(reasons) < MAX_SKIP_REASONS:
                        reasons.append(f"{ts.isoformat()}: {exc}")
            if has_more:
                break
            nxt = self._reading_pages.next(req, body, resp, len(items), page_limit)
            if nxt is not None and consumed >= limit:
                has_more = True
                break
            if nxt is not None and self._limit_params and nxt.params:
                # Ask the next page for only what is left of `limit`.
                left = str(min(limit - consumed, cfg.max_page_size))
                nxt = PageRequest(
                    nxt.url, {**nxt.params, **{k: left for k in self._limit_params if k in nxt.params}}, nxt.page
                )
            req = nxt
        if skipped:
            self.counters.add("readings_skipped", skipped)
            log.warning(
                "readings skipped: do not fit the mapping",
                extra={"station_id": sid, "skipped": skipped, "reasons": reasons},
            )
        if out_of_window:
            self.counters.add("readings_out_of_window", out_of_window)
        readings.sort(key=lambda r: r.ts)
        return ReadingBatch(readings, skipped=skipped, high_water=high_water, has_more=has_more, skip_reasons=reasons)

    def close(self) -> None:
        self.transport.close()


def load_source(
    config_name_or_path: str | Path,
    base_url: str | None = None,
    secrets: Mapping[str, str] | SecretSource | None = None,
    *,
    pool_size: int = 10,
    station_page_size: int | None = None,
) -> HttpJsonSource:
    """Build the adapter for a vendor: a config shipped in `vendors/` by name, or a file path.

    `secrets` maps the names the config's auth uses (e.g. `api_key`, `client_id`, `client_secret`) to
    values, or is a function name -> value (re-read on a 401, so a rotated secret is picked up).
    `pool_size` should equal the worker's concurrency.
    """
    return HttpJsonSource(
        load_vendor_config(config_name_or_path),
        base_url=base_url,
        secrets=secrets,
        pool_size=pool_size,
        station_page_size=station_page_size,
    )
