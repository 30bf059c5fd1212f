"""One keep-alive HTTP pool to the vendor, with rate limiting, retries and error classification.

Every vendor call goes through `HttpTransport.get_json`, which is the one place that turns HTTP
outcomes into the worker's four error classes:
  connection error, timeout, 5xx, malformed JSON -> retried, then TransientError
  429                                            -> retried after Retry-After, then ThrottledError
  401/403                                        -> one credential refresh + retry, then AuthError
  404 and other 4xx                              -> PermanentError (retrying cannot help)
Retries are tenacity's (exponential backoff with jitter, or the server's Retry-After); the pool is
sized to the worker's concurrency and blocks rather than opening throwaway connections.
"""

from __future__ import annotations

import logging
import random
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, stop_after_delay
from tenacity.wait import wait_base, wait_exponential_jitter

from functions.sync_worker.errors import AuthError, PermanentError, SyncError, ThrottledError, TransientError
from functions.sync_worker.ratelimit import TokenBucket
from functions.sync_worker.source.auth import VendorAuth
from functions.sync_worker.source.config import HttpConfig, RetryConfig

log = logging.getLogger(__name__)


@dataclass
class SourceCounters:
    """What the source did, for metrics and tests; thread-safe increments."""

    requests: int = 0
    retries: int = 0
    throttled: int = 0
    auth_refreshes: int = 0
    rate_limit_wait_s: float = 0.0
    readings_skipped: int = 0
    readings_out_of_window: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, name: str, amount: float = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + amount)

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            return {k: v for k, v in vars(self).items() if not k.startswith("_")}


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class _WaitRetryAfterOrBackoff(wait_base):
    """Wait what a 429 asked for (plus a little jitter so waiting threads do not return in lockstep),
    otherwise exponential backoff with jitter."""

    def __init__(self, cfg: RetryConfig) -> None:
        self._backoff = wait_exponential_jitter(
            multiplier=cfg.backoff_initial_s, max=cfg.backoff_max_s, jitter=cfg.jitter_s
        )
        self._jitter = cfg.jitter_s

    def __call__(self, retry_state: RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(exc, ThrottledError) and exc.retry_after_s is not None:
            return exc.retry_after_s + random.uniform(0, self._jitter)
        return self._backoff(retry_state)


class _AuthRejected(AuthError):
    """401/403 from the vendor, carrying the credential that was refused."""

    def __init__(self, message: str, credential: str | None, station_id: str | None) -> None:
        super().__init__(message, station_id=station_id)
        self.credential = credential


class HttpTransport:
    def __init__(self, cfg: HttpConfig, *, pool_size: int, counters: SourceCounters | None = None) -> None:
        self.cfg = cfg
        self.counters = counters or SourceCounters()
        self.timeout = (cfg.connect_timeout_s, cfg.read_timeout_s)
        self.session = requests.Session()
        self.session.trust_env = cfg.trust_env
        self.session.headers.update({"Accept": "application/json", **cfg.headers})
        # pool_block: a thread waits for a free keep-alive connection instead of opening one that the
        # full pool would then discard (connection churn is what this worker exists to avoid).
        # Retries are tenacity's below, so urllib3's own are off (max_retries=0).
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=max(1, pool_size), pool_block=True, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.rate_limiter = TokenBucket(cfg.rate_limit.rps, cfg.rate_limit.burst) if cfg.rate_limit else None
        self.auth: VendorAuth | None = None
        retries = cfg.retries
        self._max_retry_after = retries.max_retry_after_s
        self._retrying = Retrying(
            retry=retry_if_exception(self._retryable),
            stop=stop_after_attempt(retries.attempts) | stop_after_delay(retries.max_elapsed_s),
            wait=_WaitRetryAfterOrBackoff(retries),
            before_sleep=self._before_sleep,
            reraise=True,
        )

    def _retryable(self, exc: BaseException) -> bool:
        if isinstance(exc, ThrottledError):
            return exc.retry_after_s is None or exc.retry_after_s <= self._max_retry_after
        return isinstance(exc, TransientError)

    def _before_sleep(self, state: RetryCallState) -> None:
        self.counters.add("retries")
        exc = state.outcome.exception() if state.outcome else None
        log.debug("vendor call failed, retrying", extra={"attempt": state.attempt_number, "error": str(exc)})

    def get_json(
        self, url: str, params: dict[str, str] | None = None, *, station_id: str | None = None
    ) -> tuple[Any, requests.Response]:
        """GET and decode JSON, retried per config; raises only `SyncError` subclasses."""
        try:
            return self._retrying(self._attempt, url, params, station_id)
        except _AuthRejected as first:
            if self.auth is None:
                raise AuthError(str(first), station_id=station_id) from first
            self.counters.add("auth_refreshes")
            if not self.auth.refresh(first.credential):
                raise AuthError(f"{first} (credentials could not be renewed)", station_id=station_id) from first
            try:
                return self._retrying(self._attempt, url, params, station_id)
            except _AuthRejected as second:
                raise AuthError(f"{second} (after renewing credentials)", station_id=station_id) from second

    def _attempt(
        self, url: str, params: dict[str, str] | None, station_id: str | None
    ) -> tuple[Any, requests.Response]:
        if self.rate_limiter is not None:
            waited = self.rate_limiter.acquire()
            if waited:
                self.counters.add("rate_limit_wait_s", waited)
        self.counters.add("requests")
        try:
            resp = self.session.get(url, params=params, auth=self.auth, timeout=self.timeout)
        except SyncError:
            raise  # from the auth object (token endpoint), already classified
        except requests.Timeout as exc:
            raise TransientError(f"vendor timed out: {exc.__class__.__name__}", station_id=station_id) from exc
        except requests.RequestException as exc:
            raise TransientError(f"vendor unreachable: {exc.__class__.__name__}: {exc}", station_id=station_id) from exc
        status = resp.status_code
        if status == 200 or (200 <= status < 300 and status != 204):
            try:
                return resp.json(), resp
            except ValueError as exc:  # requests' JSONDecodeError is a ValueError
                raise TransientError(
                    f"malformed JSON from {resp.url} ({len(resp.content)} bytes)", station_id=station_id
                ) from exc
        if status == 204:
            return None, resp
        detail = resp.text[:200].strip()
        if status == 429:
            self.counters.add("throttled")
            retry_after = parse_retry_after(resp.headers.get("Retry-After"))
            raise ThrottledError(
                f"vendor throttled (429), Retry-After={retry_after}", retry_after_s=retry_after, station_id=station_id
            )
        if status in (401, 403):
            credential = self.auth.credential_of(resp.request) if self.auth is not None else None
            raise _AuthRejected(f"vendor refused credentials: HTTP {status} {detail}", credential, station_id)
        if status >= 500:
            raise TransientError(f"vendor error HTTP {status}: {detail}", station_id=station_id)
        raise PermanentError(f"vendor answered HTTP {status} for {resp.url}: {detail}", station_id=station_id)

    def close(self) -> None:
        self.session.close()
