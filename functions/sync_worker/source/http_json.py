"""The generic HTTP JSON source: any vendor whose REST API is described by a `VendorConfig`.

`load_source("simulator", base_url, secrets)` reads functions/sync_worker/source/vendors/simulator.yaml
(or any path), validates it, and returns an `HttpJsonSource` implementing `SourceAdapter`. Adding a
vendor means writing such a file: URL templates, auth, pagination, and a JMESPath mapping.
"""

from __future__ import annotations

import functools
import json
import re
import string
from collections.abc import Mapping
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml
from pydantic import ValidationError

from functions.common.validation import Location, describe_validation_error, dotted
from functions.sync_worker.errors import PermanentError, TransientError
from functions.sync_worker.observability import logger
from functions.sync_worker.source.auth import SecretSource, build_auth
from functions.sync_worker.source.base import (
    DEFAULT_ENDPOINT,
    TICK,
    BatchAnswer,
    Budget,
    EndpointPlan,
    Reading,
    ReadingBatch,
    Station,
)
from functions.sync_worker.source.config import ReadingsEndpoint, StationsEndpoint, VendorConfig
from functions.sync_worker.source.mapping import MappingError, NotReported, ReadingMapper, StationMapper
from functions.sync_worker.source.pagination import PageRequest, Paginator
from functions.sync_worker.source.timeformats import iso_request_time, local_formatter
from functions.sync_worker.source.timezones import UnknownZone, request_instant, zone_of
from functions.sync_worker.source.transport import HttpTransport, SourceCounters

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
        single = isinstance(raw, dict) and isinstance(raw.get("readings"), dict)
        name = _single_endpoint_path if single else dotted
        raise VendorConfigError(f"{path}: {describe_validation_error(exc, name)}") from exc


def _single_endpoint_path(loc: Location) -> str:
    """A file with one `readings` mapping (not a list): `readings.values.x`, not `readings.0.values.x`."""
    parts = list(loc)
    if parts[:2] == ["readings", 0]:
        del parts[1]
    return dotted(parts)


@functools.lru_cache(maxsize=4096)
def _quoted(value: str) -> str:
    """A path placeholder's value quoted, remembered: a cycle fills the same window bounds and page
    size into every station's request."""
    return quote(value, safe="")


_Template = tuple[str, str, str | None]


def _templates(items: Mapping[str, str]) -> tuple[_Template, ...]:
    """(key, template, the placeholder it is exactly or None) of each query parameter or header:
    a template that is one placeholder is filled with `str(value)`, what `format` gives for the
    str and int values filled in, without parsing the template on every call."""
    return tuple(
        (key, template, whole.group(1) if (whole := _WHOLE_PLACEHOLDER.fullmatch(template)) else None)
        for key, template in items.items()
    )


def _filled(templates: tuple[_Template, ...], values: dict[str, object]) -> dict[str, str]:
    return {
        key: str(values[name]) if name is not None else template.format(**values) for key, template, name in templates
    }


class _RequestPlan:
    """What a request of one endpoint needs from its config, worked out once: the placeholders of
    its path (only those are quoted per call) and its parameter and header templates."""

    __slots__ = ("cfg", "headers", "params", "path", "path_names")

    def __init__(self, cfg: ReadingsEndpoint | StationsEndpoint) -> None:
        self.cfg = cfg
        self.path = cfg.path
        self.path_names = tuple(sorted(_placeholder_names(cfg.path)))
        self.params = _templates(cfg.params)
        self.headers = _templates(cfg.headers)


def _placeholder_names(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def _fill(node: Any, values: dict[str, object], ids: list[str] | None = None) -> Any:
    """A JSON body template with placeholders filled in its string leaves. A leaf that is exactly
    one placeholder keeps the value's JSON type (`{limit}` a number, an epoch `{since}` a number;
    `{station_ids}` a JSON array of the batch's ids when `ids` is given)."""
    if isinstance(node, str):
        if node == "{station_ids}" and ids is not None:
            return list(ids)
        whole = _WHOLE_PLACEHOLDER.fullmatch(node)
        if whole is not None and whole.group(1) in values:
            return values[whole.group(1)]
        return node.format(**values)
    if isinstance(node, dict):
        return {k: _fill(v, values, ids) for k, v in node.items()}
    if isinstance(node, list):
        return [_fill(v, values, ids) for v in node]
    return node


@dataclass
class _Collected:
    """One station's share of an answer, while it is read."""

    readings: list[Reading] = field(default_factory=list)
    pending: list[datetime] = field(default_factory=list)
    skipped: int = 0
    reasons: list[str] = field(default_factory=list)

    def skip(self, reason: str) -> None:
        self.skipped += 1
        if len(self.reasons) < MAX_SKIP_REASONS:
            self.reasons.append(reason)

    def batch(self, complete: datetime | None) -> ReadingBatch:
        self.readings.sort(key=lambda r: r.ts)
        return ReadingBatch(
            self.readings,
            complete_through=complete,
            pending=self.pending,
            skipped=self.skipped,
            skip_reasons=self.reasons,
        )


@dataclass(frozen=True)
class _Resume:
    """Where a window continues: the start of its current sub-window and the next vendor page of it
    (None: the sub-window's first request)."""

    since: datetime
    next_page: PageRequest | None


def _whole_seconds(fmt: str) -> bool:
    return fmt == "epoch_s" or (fmt not in ("iso8601", "epoch_ms") and "%f" not in fmt)


_WHOLE_PLACEHOLDER = re.compile(r"\{(\w+)\}")


# 512: a cycle brings a few new instants; a bigger cache only fills over thousands of cycles (RSS creep).
@functools.lru_cache(maxsize=512)
def _format_time(dt: datetime, fmt: str, zone: tzinfo | None = None) -> str | int:
    """A request time: epoch (a number), ISO 8601 (UTC `Z`, or the station's offset) or a strftime
    pattern in the station's zone (DST-correct: zoneinfo picks the offset of that instant).

    Remembered: a cycle asks every station for the same window bounds. Equal instants share an entry
    whatever their tzinfo, which is right: the text depends only on the instant, format and zone."""
    if fmt == "epoch_s":
        return int(dt.timestamp())
    if fmt == "epoch_ms":
        return int(dt.timestamp() * 1000)
    local = dt.astimezone(zone or UTC)
    if fmt != "iso8601":
        return _local_formatter(fmt)(local)
    return iso_request_time(local, zone)


#: One formatter per pattern (a vendor config has one or two), decided once.
_local_formatter = functools.lru_cache(maxsize=64)(local_formatter)


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
            config.auth,
            self.base_url,
            secrets or {},
            self.transport.session,
            self.transport.timeout,
            redact=self.transport.redact.add,
        )
        self._station_mapper = StationMapper(config.stations)
        self._station_pages = Paginator(config.stations.pagination)
        self._station_page_size = station_page_size or config.stations.page_size
        self._pool_size = max(1, pool_size)
        self._endpoints = {ep.name: (ep, ReadingMapper(ep), Paginator(ep.pagination)) for ep in config.readings}
        #: By the config object's identity: the endpoint configs live as long as this source.
        requested: list[ReadingsEndpoint | StationsEndpoint] = [config.stations, *config.readings]
        self._plans = {id(cfg): _RequestPlan(cfg) for cfg in requested}

    # -- stations ---------------------------------------------------------------------------------
    def list_stations(self) -> list[Station]:
        """Every station, in the vendor's page order. When the first page says how many pages there
        are, the rest are asked for at once (within the vendor's concurrency): a 10,000-station list
        is 100 round trips, which one after the other added a third to the first cycle."""
        cfg = self.config.stations
        size = self._station_page_size
        first = self._station_pages.first(self._request(cfg, {"page_size": size}))
        stations: list[Station] = []
        seen: set[str] = set()
        body, resp = self._call(first)
        count = self._add_stations(body, stations, seen)
        rest = self._station_pages.remaining(first, body, count)
        if rest is not None:
            if 1 + len(rest) > cfg.max_pages:
                raise PermanentError(f"station list did not end after {cfg.max_pages} pages")
            answers = self._call_all(rest) if cfg.concurrent_pages else (self._call(req) for req in rest)
            for page_body, _ in answers:
                self._add_stations(page_body, stations, seen)
            return stations
        pages = 1
        req = self._station_pages.next(first, body, resp, count, size)
        while req is not None:
            pages += 1
            if pages > cfg.max_pages:
                raise PermanentError(f"station list did not end after {cfg.max_pages} pages")
            body, resp = self._call(req)
            count = self._add_stations(body, stations, seen)
            req = self._station_pages.next(req, body, resp, count, size)
        return stations

    def _add_stations(self, body: Any, stations: list[Station], seen: set[str]) -> int:
        """The stations of one page appended (first occurrence of an id wins); the page's item count."""
        items = self._station_mapper.items(body)
        if not isinstance(items, list):
            raise PermanentError(f"station list: {self.config.stations.items!r} is not a list in the vendor's answer")
        for item in items:
            try:
                station = self._station_mapper.station(item)
            except MappingError as exc:
                logger.warning("station list item skipped", extra={"reason": str(exc)})
                continue
            if station.station_id not in seen:
                seen.add(station.station_id)
                stations.append(station)
        return len(items)

    def _call_all(self, reqs: list[PageRequest]) -> list[tuple[Any, Any]]:
        """The answers to `reqs` in their order, asked for concurrently. The transport's own limiter
        (the vendor's `max_concurrency`, lowered by 429s) and keep-alive pool still bound what is in
        flight; the threads are capped to them so none merely waits. The first failure fails all
        (each call has already had its retries) and the requests not yet sent are dropped."""
        workers = min(len(reqs), self.config.http.max_concurrency or self._pool_size)
        if workers <= 1:
            return [self._call(r) for r in reqs]
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="station-list")
        try:
            futures = [pool.submit(self._call, r) for r in reqs]
            wait(futures, return_when=FIRST_EXCEPTION)
            failed = next((f for f in futures if f.done() and f.exception() is not None), None)
            if failed is not None:
                failed.result()  # raises that page's error, as the sequential listing would
            return [future.result() for future in futures]
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    # -- readings ---------------------------------------------------------------------------------
    @property
    def endpoints(self) -> list[EndpointPlan]:
        """The reading endpoints the runner syncs, each with its own cursor."""
        return [
            EndpointPlan(
                ep.name,
                # A snapshot is re-read each cycle: remember its digests one step back at least.
                max(ep.lookback_s, ep.snapshot.resolution_s) if ep.snapshot else ep.lookback_s,
                ep.settle_s,
                tuple(Budget(b.calls, b.period_s, b.scope) for b in ep.budget),
                ep.batch.size if ep.batch else 1,
            )
            for ep in self.config.readings
        ]

    def _request(
        self, cfg: ReadingsEndpoint | StationsEndpoint, values: dict[str, object], ids: list[str] | None = None
    ) -> PageRequest:
        """The first request of an endpoint with its placeholders filled in, each encoded exactly once:
        quoted in the path, form-encoded by the transport in the query, to JSON or form encoding in a body."""
        plan = self._plans.get(id(cfg))
        if plan is None or plan.cfg is not cfg:  # an endpoint config this source was not built with
            plan = _RequestPlan(cfg)
        path = plan.path.format(**{k: _quoted(str(values[k])) for k in plan.path_names})
        body = cfg.body
        return PageRequest(
            self.base_url + path,
            _filled(plan.params, values),
            method=cfg.method,
            json_body=_fill(body.json_body, values, ids) if body is not None and body.json_body is not None else None,
            form={k: v.format(**values) for k, v in body.form.items()} if body is not None and body.form else None,
            headers=_filled(plan.headers, values) if plan.headers else None,
        )

    def _call(self, req: PageRequest, station_id: str | None = None) -> tuple[Any, Any]:
        return self.transport.request_json(
            req.method,
            req.url,
            req.params,
            json_body=req.json_body,
            form=req.form,
            headers=req.headers,
            station_id=station_id,
        )

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
        """One vendor page of readings with since < ts <= until (`resume` continues the window).

        Items without a value yet are reported in `batch.pending`, items that do not map are skipped
        and counted (`batch.skipped`, `counters.readings_skipped`) instead of failing the station;
        HTTP failures raise the error classes of `errors.py`. The window is known complete only
        after its last page (page by page when the endpoint is `ordered`).
        """
        answer = self.fetch_batch([station], since, until, limit, endpoint=endpoint, resume=resume)
        batch = answer.batches[station.station_id]
        batch.resume = answer.resume
        return batch

    def fetch_batch(
        self,
        stations: list[Station],
        since: datetime,
        until: datetime,
        limit: int,
        *,
        endpoint: str = DEFAULT_ENDPOINT,
        resume: object | None = None,
    ) -> BatchAnswer:
        """One vendor page for up to `batch.size` stations in one request, fanned out to each
        station by the endpoint's `batch.id` path (one station: the plain `fetch_readings`)."""
        if limit < 1:
            raise ValueError("limit must be >= 1")
        cfg, mapper, pages = self._endpoints[endpoint]
        by_id = {st.station_id: st for st in stations}
        sid = stations[0].station_id if len(stations) == 1 else None
        if since >= until and cfg.snapshot is None:
            # An empty window: nothing to ask the vendor.
            return BatchAnswer({s: ReadingBatch(complete_through=until) for s in by_id}, None)
        zone = self._zone(cfg, stations[0])
        zones = {s: self._zone(cfg, st) for s, st in by_id.items()} if cfg.station_zone else {}
        chunk_since, req = (resume.since, resume.next_page) if isinstance(resume, _Resume) else (since, None)
        if _whole_seconds(cfg.time_format):
            # The vendor hears `until` to the second: the answer is complete up to that, not beyond.
            until = max(chunk_since, until.replace(microsecond=0))
        chunk_until = min(until, chunk_since + timedelta(seconds=cfg.max_window_s)) if cfg.max_window_s else until
        if _whole_seconds(cfg.time_format):
            chunk_until = max(chunk_since, chunk_until.replace(microsecond=0))
        if req is None:
            ids = list(by_id)
            values: dict[str, object] = {
                "station_id": ids[0],
                "station_ids": ",".join(ids) if cfg.batch is None else (cfg.batch.join or ",").join(ids),
                "since": _format_time(chunk_since, cfg.time_format, zone),
                "until": _format_time(
                    request_instant(chunk_until, zone, upper=True) if zone else chunk_until, cfg.time_format, zone
                ),
                "limit": min(limit, cfg.max_page_size),
            }
            as_array = cfg.batch is not None and cfg.batch.join is None
            req = pages.first(self._request(cfg, values, ids if as_array else None))
        window_end = until
        since, until = chunk_since, chunk_until
        requested_at = datetime.now(UTC)
        body, resp = self._call(req, sid)
        items = mapper.items(body)
        if not isinstance(items, list):
            # `data: null` in an HTTP 200 is the vendor failing, not "no readings": the station must
            # not count as synced (an error rule can name the vendor's own message and class).
            raise TransientError(
                f"readings of {sid or f'{len(by_id)} stations'}: {cfg.items!r} is not a list in the vendor's "
                f"answer: {self.transport.redact(json.dumps(body)[:200])}",
                station_id=sid,
            )
        snapshot_ts = self._snapshot_time(cfg, mapper, body, requested_at, sid) if cfg.snapshot else None
        found: dict[str, _Collected] = {s: _Collected() for s in by_id}
        skipped, out_of_window = 0, 0
        reasons: list[str] = []
        latest: datetime | None = None
        #: The previous time of each (station, series) in answer order: a site-local time in a
        #: repeated autumn hour that would go back from it is the hour's second occurrence.
        previous: dict[tuple[str, object], datetime] = {}
        for parent, item in mapper.flatten(items):
            owner = sid if cfg.batch is None else mapper.station_of(parent)
            if owner not in found:
                out_of_window += 1  # a station we did not ask for (or no id): not ours to publish
                continue
            collected = found[owner]
            order_key = (owner, mapper.order_key(parent, item))
            try:
                ts = snapshot_ts or mapper.timestamp(item, zones.get(owner, zone), previous.get(order_key))
            except MappingError as exc:
                collected.skip(str(exc))
                continue
            previous[order_key] = ts
            if snapshot_ts is None and not since < ts <= until:
                out_of_window += 1  # a vendor ignoring the window: not ours to publish
                continue
            if latest is None or ts > latest:
                latest = ts
            try:
                collected.readings.append(mapper.reading(owner, item, ts, parent))
            except NotReported:
                collected.pending.append(ts)
            except MappingError as exc:
                collected.skip(f"{ts.isoformat()}: {exc}")
        nxt = pages.next(req, body, resp, len(items), min(limit, cfg.max_page_size))
        following: _Resume | None = None
        if nxt is None:
            complete: datetime | None = self._answered_until(mapper, body, until, sid, zone)
            if until < window_end:
                following = _Resume(until, None)  # the next sub-window
        else:
            following = _Resume(since, nxt)
            # Oldest first: more items at `latest` itself may be on the next page.
            complete = latest - TICK if cfg.ordered and latest is not None else None
        for owner, collected in found.items():
            skipped += collected.skipped
            reasons.extend(collected.reasons[: MAX_SKIP_REASONS - len(reasons)])
            if collected.skipped:
                logger.warning(
                    "readings skipped: do not fit the mapping",
                    extra={
                        "station_id": owner,
                        "endpoint": endpoint,
                        "skipped": collected.skipped,
                        "reasons": collected.reasons,
                    },
                )
            if collected.pending:
                self.counters.add("readings_pending", len(collected.pending))
        if skipped:
            self.counters.add("readings_skipped", skipped)
        if out_of_window:
            self.counters.add("readings_out_of_window", out_of_window)
        batches = {owner: c.batch(complete) for owner, c in found.items()}
        return BatchAnswer(batches, following)

    def _snapshot_time(
        self, cfg: ReadingsEndpoint, mapper: ReadingMapper, body: Any, requested_at: datetime, sid: str | None
    ) -> datetime:
        """The one time of a snapshot answer: a field of the envelope, or the request time, floored
        to the configured resolution (so re-reads inside one step share the reading's id)."""
        assert cfg.snapshot is not None
        try:
            at = mapper.snapshot_time(body) or requested_at
        except MappingError as exc:
            raise PermanentError(f"snapshot time: {exc}", station_id=sid) from exc
        step = cfg.snapshot.resolution_s
        return datetime.fromtimestamp(at.timestamp() // step * step, UTC)

    @staticmethod
    def _zone(cfg: ReadingsEndpoint, station: Station) -> tzinfo | None:
        if cfg.station_zone is None:
            return None
        try:
            return zone_of(station.attributes.get(cfg.station_zone))
        except UnknownZone as exc:
            raise PermanentError(
                f"station {station.station_id}: attribute {cfg.station_zone!r}: {exc}", station_id=station.station_id
            ) from exc

    @staticmethod
    def _answered_until(
        mapper: ReadingMapper, body: Any, until: datetime, sid: str | None, zone: tzinfo | None
    ) -> datetime:
        try:
            answered = mapper.answered_until(body, zone)
        except MappingError as exc:
            raise PermanentError(f"readings of {sid}: unreadable answered_until: {exc}", station_id=sid) from exc
        return until if answered is None else min(until, answered)

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
