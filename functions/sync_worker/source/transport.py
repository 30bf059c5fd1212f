"""One keep-alive HTTP pool to the vendor, with rate limiting, retries and error classification.

Every vendor call goes through `HttpTransport.request_json`, which is the one place that turns
HTTP outcomes into the worker's four error classes. The vendor's `errors` rules are tried first
(HTTP status and/or a JMESPath condition on the JSON body, so an error inside an HTTP 200 is an
error), then the defaults:
  connection error, timeout, 5xx, malformed JSON -> retried, then TransientError
  429                                            -> ThrottledError at once (the cycle's shared gate
                                                    waits it out once for every station)
  401/403, or a `reauth` rule                    -> one credential renewal + retry, then AuthError
  404 and other 4xx                              -> PermanentError (retrying cannot help)
Every message that leaves here is redacted: no secret value (API key, password, session token)
reaches a log line, an error or a metric. Retries are tenacity's (exponential backoff with jitter);
the pool is sized to the worker's concurrency and blocks rather than opening throwaway connections.

Vendor calls go to kept-alive connections of our own (http_pool.py) rather than through
`requests.Session.request`: the session's per-call work (merging settings and cookies, hooks,
re-encoding parameters through runtime protocol checks), urllib3's under it, and then building a
`requests.PreparedRequest`/`requests.Response` around `http.client` were measured at well over half
of the worker's CPU per station (bench/cpu_bench.py, bench/http_clients_bench.py). The request is
built as the session would build it (its headers as a template, its cookie jar, the same body
encodings), signed by the same auth objects through the small `VendorRequest` protocol, and the
answer is a `VendorResponse` (http_message.py), so auth, pagination and error rules see what they
saw before. A vendor config with `trust_env` (proxies, .netrc, CA bundles from the environment)
keeps the session path, where those apply.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from http.cookiejar import CookieJar
from typing import Any, NamedTuple
from urllib.parse import quote, quote_plus, urlencode, urlsplit

import jmespath
import requests
from jmespath.exceptions import JMESPathError
from requests.adapters import HTTPAdapter
from requests.exceptions import InvalidJSONError
from requests.utils import requote_uri
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, stop_after_delay
from tenacity.wait import wait_exponential_jitter

from functions.sync_worker.errors import AuthError, PermanentError, SyncError, ThrottledError, TransientError
from functions.sync_worker.observability import logger
from functions.sync_worker.ratelimit import TokenBucket
from functions.sync_worker.source.auth import VendorAuth
from functions.sync_worker.source.concurrency import AdaptiveConcurrency
from functions.sync_worker.source.config import ErrorRule, HttpConfig
from functions.sync_worker.source.cookies import cookie_header, extract_cookies
from functions.sync_worker.source.http_message import Headers, OutgoingRequest, VendorResponse
from functions.sync_worker.source.http_pool import ACCEPT_ENCODING, KeepAlivePool

#: A URL that `requote_uri` would leave as it is: only characters a URL may carry unquoted, no `%`
#: (the base URL and path templates, path values quoted by `_quoted`); anything else is re-quoted.
_PLAIN_URL = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]*")


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
    readings_pending: int = 0
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


class Redactor:
    """Replaces every registered secret value in a text with `***` (thread-safe; values can be
    added later, e.g. a session token after each login)."""

    def __init__(self) -> None:
        self._values: frozenset[str] = frozenset()
        self._lock = threading.Lock()

    def add(self, *values: str | None) -> None:
        with self._lock:
            # Very short values would mask innocent text; no real credential is that short.
            self._values = self._values | {v for v in values if v and len(v) >= 4}

    def __call__(self, text: str) -> str:
        for value in self._values:
            if value in text:
                text = text.replace(value, "***")
                encoded = quote(value, safe="")
                if encoded != value:
                    text = text.replace(encoded, "***")
            elif (encoded := quote(value, safe="")) in text:
                text = text.replace(encoded, "***")
        return text


class _RedactingFilter(logging.Filter):
    """urllib3 logs each request line (URL with its query) at DEBUG: redact it like our own lines."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self._redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self._redact(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


#: The third-party logger that writes request URLs.
_URLLIB3_LOGGER = logging.getLogger("urllib3.connectionpool")


class _CompiledRule:
    def __init__(self, rule: ErrorRule) -> None:
        self.rule = rule
        self.status = frozenset(rule.status) if rule.status is not None else None
        self.when = jmespath.compile(rule.when) if rule.when else None
        self.message = jmespath.compile(rule.message) if rule.message else None

    def matches(self, status: int, body: Any) -> bool:
        if self.status is not None and status not in self.status:
            return False
        if self.when is not None:
            try:
                return bool(self.when.search(body))
            except JMESPathError:
                return False
        return True

    def vendor_message(self, body: Any) -> str:
        if self.message is None:
            return ""
        try:
            found = self.message.search(body)
        except JMESPathError:
            return ""
        return "" if found is None else f": {str(found)[:200]}"


class _Call(NamedTuple):
    """One vendor call's arguments (a tuple: built on every call, where a frozen dataclass's
    `__init__` cost a microsecond)."""

    method: str
    url: str
    params: dict[str, str] | None
    json_body: Any
    form: dict[str, str] | None
    headers: dict[str, str] | None
    station_id: str | None


# Sized for a few cycles of window bounds: larger only fills slowly, which shows as RSS creep.
@functools.lru_cache(maxsize=512)
def _quote_plus(value: str, safe: str = "", encoding: str | None = None, errors: str | None = None) -> str:
    """`quote_plus` remembered: a cycle sends the same window bounds and page size to every station."""
    return quote_plus(value, safe, encoding, errors)


@functools.lru_cache(maxsize=256)
def _query(params: tuple[tuple[str, str], ...]) -> str:
    """A query string remembered: most calls of a cycle differ only in the path (the station)."""
    return urlencode(params, doseq=True, quote_via=_quote_plus)


def _may_hold_cookies(jar: CookieJar) -> bool:
    """False when the jar is surely empty, without `len(jar)`, which walks every cookie under the
    jar's lock on each call. The jar's domain table is the standard library's since Python 2; if
    it ever goes, counting is still right."""
    table = getattr(jar, "_cookies", None)
    return bool(table) if isinstance(table, dict) else len(jar) > 0


def _path_of(url: str | None) -> str:
    """The URL without its query: a query may carry an API key."""
    return urlsplit(url or "")._replace(query="", fragment="").geturl()


class _FirstFailure:
    """The first attempt's retryable failure, replayed as tenacity's first attempt."""

    def __init__(self, failure: TransientError, started: float) -> None:
        self.failure: TransientError | None = failure
        self.started = started

    def take(self) -> TransientError | None:
        failure, self.failure = self.failure, None
        return failure


class _AuthRejected(AuthError):
    """401/403 from the vendor, carrying the credential that was refused."""

    def __init__(self, message: str, credential: str | None, station_id: str | None) -> None:
        super().__init__(message, station_id=station_id)
        self.credential = credential


class HttpTransport:
    def __init__(self, cfg: HttpConfig, *, pool_size: int, counters: SourceCounters | None = None) -> None:
        self.cfg = cfg
        self.counters = counters or SourceCounters()
        self.redact = Redactor()
        self._log_filter = _RedactingFilter(self.redact)
        _URLLIB3_LOGGER.addFilter(self._log_filter)
        self._rules = [_CompiledRule(rule) for rule in cfg.errors]
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
        # The direct path: kept-alive connections of our own, sized and blocking like the adapter,
        # and the session's headers as one template copied per call (nothing changes them later).
        self._headers = Headers(self.session.headers.items())
        self._headers["Accept-Encoding"] = ACCEPT_ENCODING
        self._pool = KeepAlivePool(
            size=pool_size, connect_timeout_s=cfg.connect_timeout_s, read_timeout_s=cfg.read_timeout_s
        )
        self.rate_limiter = TokenBucket(cfg.rate_limit.rps, cfg.rate_limit.burst) if cfg.rate_limit else None
        self.concurrency = AdaptiveConcurrency(cfg.max_concurrency) if cfg.max_concurrency else None
        self.auth: VendorAuth | None = None
        retries = cfg.retries
        self._retrying = Retrying(
            retry=retry_if_exception(self._retryable),
            stop=stop_after_attempt(retries.attempts) | stop_after_delay(retries.max_elapsed_s),
            wait=wait_exponential_jitter(
                multiplier=retries.backoff_initial_s, max=retries.backoff_max_s, jitter=retries.jitter_s
            ),
            before=self._from_first_attempt,
            before_sleep=self._before_sleep,
            reraise=True,
        )

    @staticmethod
    def _retryable(exc: BaseException) -> bool:
        # Not ThrottledError: each thread waiting out its own 429 is how throttling compounds. The
        # cycle's shared gate waits once for everyone and stops the cycle when it persists.
        return isinstance(exc, TransientError)

    def _before_sleep(self, state: RetryCallState) -> None:
        self.counters.add("retries")
        exc = state.outcome.exception() if state.outcome else None
        logger.debug(
            "vendor call failed, retrying", extra={"attempt": state.attempt_number, "error": self.redact(str(exc))}
        )

    def get_json(
        self, url: str, params: dict[str, str] | None = None, *, station_id: str | None = None
    ) -> tuple[Any, VendorResponse]:
        return self.request_json("GET", url, params, station_id=station_id)

    def request_json(
        self,
        method: str,
        url: str,
        params: dict[str, str] | None = None,
        *,
        json_body: Any = None,
        form: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        station_id: str | None = None,
    ) -> tuple[Any, VendorResponse]:
        """One vendor call, its JSON decoded, retried per config; raises only `SyncError`
        subclasses, with every secret redacted from their messages."""
        call = _Call(method, url, params, json_body, form, headers, station_id)
        try:
            try:
                return self._with_retries(call)
            except _AuthRejected as first:
                if self.auth is None:
                    raise AuthError(str(first), station_id=station_id) from first
                self.counters.add("auth_refreshes")
                if not self.auth.refresh(first.credential):
                    raise AuthError(f"{first} (credentials could not be renewed)", station_id=station_id) from first
                try:
                    return self._with_retries(call)
                except _AuthRejected as second:
                    raise AuthError(f"{second} (after renewing credentials)", station_id=station_id) from second
        except SyncError as exc:
            redacted = self.redact(str(exc))
            if redacted != str(exc):
                exc.args = (redacted,)
            raise

    def _with_retries(self, call: _Call) -> tuple[Any, VendorResponse]:
        """The first attempt runs on its own: tenacity's bookkeeping per call (its state objects,
        action lists, thread-local statistics) was a sixth of the vendor call's CPU, for a retry
        that almost no call needs. A retryable failure hands over to tenacity, which sees that
        attempt as its first (same stop, wait and before-sleep, elapsed time counted from it)."""
        started = time.monotonic()
        try:
            return self._attempt(call)
        except TransientError as exc:
            return self._retrying(self._attempt_again, call, _FirstFailure(exc, started))

    def _attempt_again(self, call: _Call, first: _FirstFailure) -> tuple[Any, VendorResponse]:
        failure = first.take()
        if failure is not None:
            raise failure
        return self._attempt(call)

    @staticmethod
    def _from_first_attempt(state: RetryCallState) -> None:
        """Tenacity's clock starts when the first attempt did, not when tenacity took over."""
        if state.attempt_number == 1:
            first = state.args[1]
            if isinstance(first, _FirstFailure):
                state.start_time = first.started

    def _attempt(self, call: _Call) -> tuple[Any, VendorResponse]:
        station_id = call.station_id
        if self.rate_limiter is not None:
            waited = self.rate_limiter.acquire()
            if waited:
                self.counters.add("rate_limit_wait_s", waited)
        self.counters.add("requests")
        send = self._send_via_session if self.session.trust_env else self._send
        try:
            if self.concurrency is None:
                resp = send(call)
            else:
                with self.concurrency:
                    resp = send(call)
        except SyncError:
            raise  # from the auth object (token endpoint), already classified
        except requests.Timeout as exc:
            raise TransientError(f"vendor timed out: {exc.__class__.__name__}", station_id=station_id) from exc
        except requests.RequestException as exc:
            raise TransientError(f"vendor unreachable: {exc.__class__.__name__}: {exc}", station_id=station_id) from exc
        status = resp.status_code
        body: Any = None
        decoded = False
        if status != 204 and resp.content:
            try:
                body, decoded = resp.json(), True
            except ValueError:  # JSONDecodeError and UnicodeDecodeError are ValueErrors: not JSON
                decoded = False  # (a plain try: `contextlib.suppress` costs a context manager per call)
        if self._rules:
            try:
                self._apply_rules(status, body, resp, station_id)
            except ThrottledError:
                if self.concurrency is not None:
                    self.concurrency.throttled()
                raise
        if 200 <= status < 300:
            if self.concurrency is not None:
                self.concurrency.succeeded()
            if status != 204 and resp.content and not decoded:
                raise TransientError(
                    f"malformed JSON from {_path_of(resp.url)} ({len(resp.content)} bytes)", station_id=station_id
                )
            return body, resp
        detail = resp.text[:200].strip()
        if status == 429:
            self.counters.add("throttled")
            if self.concurrency is not None:
                self.concurrency.throttled()
            retry_after = parse_retry_after(resp.headers.get("Retry-After"))
            raise ThrottledError(
                f"vendor throttled (429), Retry-After={retry_after}", retry_after_s=retry_after, station_id=station_id
            )
        if status in (401, 403):
            what = f"vendor refused credentials: HTTP {status} {detail}"
            raise _AuthRejected(what, self._credential(resp), station_id)
        if status >= 500:
            raise TransientError(f"vendor error HTTP {status}: {detail}", station_id=station_id)
        raise PermanentError(f"vendor answered HTTP {status} for {_path_of(resp.url)}: {detail}", station_id=station_id)

    def _send_via_session(self, call: _Call) -> VendorResponse:
        """The `requests` session path: environment proxies, .netrc and CA bundles apply."""
        return VendorResponse.of(
            self.session.request(
                call.method,
                call.url,
                params=call.params,
                json=call.json_body,
                data=call.form,
                headers=call.headers,
                auth=self.auth,
                timeout=self.timeout,
            )
        )

    def _send(self, call: _Call) -> VendorResponse:
        """The call built as the session would build it (its headers, cookie jar, body encoding and
        auth, in that order) and sent on the kept-alive pool, which raises `requests`' exceptions
        for `_attempt` to classify."""
        method = call.method.upper()
        url = call.url if _PLAIN_URL.fullmatch(call.url) else requote_uri(call.url)
        if call.params:
            # Every value is quoted here and nothing in the query is left to re-quote.
            query = _query(tuple(call.params.items()))
            url = f"{url}&{query}" if "?" in url else f"{url}?{query}"
        headers = self._headers.copy()
        if call.headers:
            for name, value in call.headers.items():
                if value is None:
                    headers.pop(name, None)
                else:
                    headers[name] = value
        jar = self.session.cookies
        if _may_hold_cookies(jar) and "Cookie" not in headers:
            cookie = cookie_header(jar, url, headers)
            if cookie is not None:
                headers["Cookie"] = cookie
        body: bytes | None = None
        if call.form:
            body = urlencode(call.form, doseq=True).encode()
            if "Content-Type" not in headers:
                headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif call.json_body is not None:
            try:
                body = json.dumps(call.json_body, allow_nan=False).encode()
            except ValueError as exc:
                raise InvalidJSONError(f"the request body is not JSON: {exc}") from exc
            if "Content-Type" not in headers:
                headers["Content-Type"] = "application/json"
        if body:
            headers["Content-Length"] = str(len(body))
        elif method not in ("GET", "HEAD") and "Content-Length" not in headers:
            headers["Content-Length"] = "0"
        request = OutgoingRequest(method, url, headers, body)
        if self.auth is not None:
            self.auth.sign(request)
        resp = self._pool.send(method, request.url, body, headers)
        resp.request = request
        if resp.set_cookies:
            extract_cookies(jar, request.url, resp.set_cookies)
        return resp

    def _apply_rules(self, status: int, body: Any, resp: VendorResponse, station_id: str | None) -> None:
        """The vendor's error rules, first match wins; raises the error class it names."""
        for compiled in self._rules:
            if not compiled.matches(status, body):
                continue
            rule = compiled.rule
            what = f"vendor error (HTTP {status}, rule {rule.when or rule.status}){compiled.vendor_message(body)}"
            if rule.error == "throttled":
                self.counters.add("throttled")
                retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                raise ThrottledError(
                    what,
                    retry_after_s=retry_after if retry_after is not None else rule.retry_after_s,
                    station_id=station_id,
                )
            if rule.error == "reauth":
                raise _AuthRejected(what, self._credential(resp), station_id)
            if rule.error == "permanent":
                raise PermanentError(what, station_id=station_id)
            raise TransientError(what, station_id=station_id)

    def _credential(self, resp: VendorResponse) -> str | None:
        """The credential the refused request carried, so concurrent renewals happen once."""
        if self.auth is None or resp.request is None:
            return None
        return self.auth.credential_of(resp.request)

    def close(self) -> None:
        _URLLIB3_LOGGER.removeFilter(self._log_filter)
        self._pool.close()
        self.session.close()
