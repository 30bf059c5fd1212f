"""The vendor config schema: everything the generic HTTP JSON source needs to talk to one vendor.

A vendor is a YAML/JSON file validated here (unknown keys are errors, so a typo fails at load
time with the field named), not code. Secrets are never in the file: auth names the keys of the
secrets mapping the worker passes in (from Secrets Manager or the environment).
"""

from __future__ import annotations

import string
from typing import Annotated, Any, Literal, TypeVar

import jmespath
from jmespath.exceptions import JMESPathError
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from functions.common.source_secrets import (
    DEFAULT_API_KEY_SECRET,
    DEFAULT_BEARER_SECRET,
    DEFAULT_CLIENT_ID_SECRET,
    DEFAULT_CLIENT_SECRET_SECRET,
    auth_secret_names,
)
from functions.common.state import DEFAULT_ENDPOINT


def _check_jmespath(expression: str) -> str:
    try:
        jmespath.compile(expression)
    except JMESPathError as exc:
        raise ValueError(f"invalid JMESPath {expression!r}: {exc}") from exc
    return expression


#: A JMESPath expression, compiled at validation time so a typo names its field.
JmesPath = Annotated[str, AfterValidator(_check_jmespath)]

ValueType = Literal["any", "float", "int", "str", "bool"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# -- auth -----------------------------------------------------------------------------------------
class ApiKeyAuth(_Strict):
    type: Literal["api_key"]
    header: str = "X-Api-Key"
    #: Send the key as this query parameter instead of a header (it is redacted from every log
    #: line, error and metric that would carry the URL).
    query_param: str | None = None
    secret: str = DEFAULT_API_KEY_SECRET  # key in the secrets mapping
    prefix: str = ""  # e.g. "ApiKey " for vendors that want a scheme in the header


class BearerAuth(_Strict):
    type: Literal["bearer"]
    secret: str = DEFAULT_BEARER_SECRET


class OAuth2ClientCredentials(_Strict):
    type: Literal["oauth2_client_credentials"]
    token_url: str  # absolute, or relative to the base URL
    client_id_secret: str = DEFAULT_CLIENT_ID_SECRET
    client_secret_secret: str = DEFAULT_CLIENT_SECRET_SECRET
    scope: str | None = None
    #: client_secret_post: id/secret in the form body; client_secret_basic: HTTP Basic.
    client_auth: Literal["client_secret_post", "client_secret_basic"] = "client_secret_post"
    #: Renew this long before `expires_in` runs out, so no request carries a token about to die.
    refresh_skew_s: float = Field(30.0, ge=0)
    default_expires_in_s: float = Field(3600.0, gt=0)


class LoginRequest(_Strict):
    method: Literal["GET", "POST"] = "POST"
    path: str  # relative to the base URL
    #: Body fields (JSON or form); `{name}` in a value is the secret `name` (listed in `secrets`).
    json_body: dict[str, str] | None = Field(None, alias="json")
    form: dict[str, str] | None = None
    headers: dict[str, str] = Field(default_factory=dict)


class TokenSource(_Strict):
    """Where the login answer carries the session token."""

    source: Literal["header", "cookie", "body"] = Field(alias="from")
    #: Header or cookie name (case-insensitive header), or a JMESPath on the body.
    name: str


class TokenUse(_Strict):
    """How later calls send the token."""

    send_as: Literal["header", "cookie"] = Field("header", alias="as")
    name: str
    prefix: str = ""


class SessionLogin(_Strict):
    """Log in with named secrets, keep the token the vendor returns, send it on every call, and log
    in again (once per failed call) when the vendor says the session expired: HTTP 401/403 or an
    `errors` rule with `error: reauth`."""

    type: Literal["session"]
    login: LoginRequest
    secrets: list[str]  # the secret names the login body uses
    token: TokenSource
    send: TokenUse
    #: Log in again after this long even without an expiry signal (None: only when told).
    ttl_s: float | None = Field(None, gt=0)
    #: Logins are rate-limited by vendors: never two within this interval (a second expiry inside
    #: it fails the call as an auth error instead of hammering the login).
    min_login_interval_s: float = Field(10.0, ge=0)

    @model_validator(mode="after")
    def _placeholders(self) -> SessionLogin:
        body = {**(self.login.json_body or {}), **(self.login.form or {}), **self.login.headers}
        used = set().union(*(_placeholders(v) for v in body.values())) if body else set()
        if bad := used - set(self.secrets):
            raise ValueError(f"login: placeholder(s) {sorted(bad)} are not in secrets {self.secrets}")
        return self


AuthConfig = Annotated[ApiKeyAuth | BearerAuth | OAuth2ClientCredentials | SessionLogin, Field(discriminator="type")]


class ErrorRule(_Strict):
    """Map a vendor answer to an error class: by HTTP status, by a JMESPath condition on the JSON
    body (such as success == `false` && failCode == `407`), or both. Rules are tried in order before the
    default classification (5xx transient, 429 throttled, 401/403 reauth, other 4xx permanent); a
    2xx answer no rule matches is data."""

    status: list[int] | None = None
    when: JmesPath | None = None
    error: Literal["throttled", "reauth", "permanent", "transient"]
    #: JMESPath to the vendor's own message, kept in the error.
    message: JmesPath | None = None
    #: For `throttled`: how long to back off when the vendor gives no Retry-After.
    retry_after_s: float | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _matches_something(self) -> ErrorRule:
        if self.status is None and self.when is None:
            raise ValueError("an error rule needs `status`, `when` or both")
        return self


# -- pagination -----------------------------------------------------------------------------------
class NoPagination(_Strict):
    type: Literal["none"]


class PageNumberPagination(_Strict):
    type: Literal["page_number"]
    page_param: str = "page"
    start: int = 1
    #: JMESPath to the number of pages; without it, a short or empty page ends the list.
    total_pages: JmesPath | None = None


class OffsetPagination(_Strict):
    """`startIndex`/`size` style: the next page starts where this one ended."""

    type: Literal["offset"]
    offset_param: str = "offset"
    start: int = 0
    #: JMESPath to the total number of items; without it, a short or empty page ends the list.
    total: JmesPath | None = None


class CursorPagination(_Strict):
    type: Literal["cursor"]
    param: str = "cursor"
    next: JmesPath = "next_cursor"  # JMESPath to the next-page token; null/empty = last page
    #: Send the first request's other params (since, until, ...) along with the cursor.
    keep_params: bool = True


class LinkPagination(_Strict):
    type: Literal["link"]
    #: JMESPath to the next page's URL in the body; null = use the RFC 8288 `Link: <...>; rel="next"` header.
    next: JmesPath | None = None


PaginationConfig = Annotated[
    NoPagination | PageNumberPagination | OffsetPagination | CursorPagination | LinkPagination,
    Field(discriminator="type"),
]


# -- mapping --------------------------------------------------------------------------------------
class ValueSpec(_Strict):
    path: JmesPath  # evaluated on one reading item
    type: ValueType = "any"
    required: bool = False  # a required value that is null makes the reading unmappable


class TimestampSpec(_Strict):
    path: JmesPath = "timestamp"
    #: iso8601 | epoch_s | epoch_ms | a strptime pattern such as "%Y-%m-%d %H:%M:%S"
    format: str = "iso8601"
    #: Applied to timestamps without an offset.
    assume_utc_offset_s: int = 0


def _placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


Loc = tuple[str | int, ...]


def _problem(loc: Loc, message: str, value: object) -> InitErrorDetails:
    # The message goes in through the context: a template's own braces must not be formatted.
    return InitErrorDetails(
        type=PydanticCustomError("value_error", "{message}", {"message": message}), loc=loc, input=value
    )


def _raise_all(problems: list[InitErrorDetails]) -> None:
    """Every problem found at once, each under its own field path (not only the first)."""
    if problems:
        raise ValidationError.from_exception_data("template", problems)


def _templates_of(value: object, loc: Loc = ()) -> list[tuple[Loc, str]]:
    """Every string of a request template (path, params, headers, body) with where it sits."""
    if isinstance(value, RequestBody):
        return _templates_of(value.json_body, ("json",)) + _templates_of(value.form, ("form",))
    if isinstance(value, str):
        return [(loc, value)]
    if isinstance(value, dict):
        return [found for k, v in value.items() for found in _templates_of(v, (*loc, k))]
    if isinstance(value, list):
        return [found for i, v in enumerate(value) for found in _templates_of(v, (*loc, i))]
    return []


def _placeholder_problems(value: object, allowed: set[str]) -> list[InitErrorDetails]:
    """One problem per template string that is malformed or names a placeholder not in `allowed`."""
    problems: list[InitErrorDetails] = []
    for loc, template in _templates_of(value):
        try:
            used = _placeholders(template)
        except ValueError as exc:  # "{since" or "}": not a template str.format can fill
            problems.append(_problem(loc, f"malformed template {template!r}: {exc}", template))
            continue
        if bad := used - allowed:
            message = f"unknown placeholder(s) {sorted(bad)} in {template!r}; allowed: {sorted(allowed)}"
            problems.append(_problem(loc, message, template))
    return problems


class CallBudget(_Strict):
    """A vendor's call budget, e.g. 300 per day or 2 per 5 minutes. Counted in Redis (across
    restarts and workers); a call that does not fit waits for the next cycle."""

    calls: int = Field(ge=1)
    period_s: float = Field(gt=0)
    #: Whose calls share the count: `endpoint` (this endpoint's, every station), `station` (each
    #: station's own, across the endpoints with a station budget of this period: "300 a day per
    #: site") or `vendor` (the account's, across the endpoints with a vendor budget of this period).
    scope: Literal["endpoint", "station", "vendor"] = "endpoint"


class BatchSpec(_Strict):
    """Up to `size` stations in one request: `{station_ids}` in the path, params or body is their
    ids joined by `join` (`join: null` and `{station_ids}` as a whole JSON body value: a JSON
    array); each item of the answer goes to the station its `id` path names."""

    size: int = Field(ge=2, le=1000)
    join: str | None = ","
    id: JmesPath


class SnapshotSpec(_Strict):
    """An endpoint answering current values with no time per item: the time is a field of the
    whole answer (`time`, a JMESPath on the envelope read with `timestamp.format`) or, without it,
    the request time; floored to `resolution_s`."""

    time: JmesPath | None = None
    resolution_s: int = Field(300, ge=1)


class RequestBody(_Strict):
    """A request body template: JSON (`json`) or form fields (`form`); placeholders in string
    values are replaced (each encoded once, by the body's own encoding)."""

    json_body: dict[str, Any] | None = Field(None, alias="json")
    form: dict[str, str] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> RequestBody:
        if (self.json_body is None) == (self.form is None):
            raise ValueError("body: give exactly one of `json` or `form`")
        return self

    def templates(self) -> list[str]:
        return [template for _, template in _templates_of(self)]


#: What a station-list request may use, and what a readings request may (`station_ids` with `batch`).
STATIONS_PLACEHOLDERS = {"page_size"}
READINGS_PLACEHOLDERS = {"since", "until", "limit", "station_id"}
_Template = TypeVar("_Template", str, dict[str, str], RequestBody | None)


class StationsEndpoint(_Strict):
    method: Literal["GET", "POST"] = "GET"
    body: RequestBody | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    path: str = "/v1/sites"
    params: dict[str, str] = Field(default_factory=dict)  # may use {page_size}
    page_size: int = Field(100, ge=1)
    pagination: PaginationConfig = Field(default_factory=lambda: NoPagination(type="none"))
    items: JmesPath = "@"  # the list of stations in one page
    id: JmesPath = "id"
    name: JmesPath | None = "name"
    attributes: dict[str, JmesPath] = Field(default_factory=dict)
    max_pages: int = Field(10_000, ge=1)
    #: Ask for the pages after the first at once when the first says how many there are. Off for a
    #: vendor that throttles a burst of calls to one interface (its list is read page by page).
    concurrent_pages: bool = True

    @field_validator("path", "params", "headers", "body")
    @classmethod
    def _known_placeholders(cls, value: _Template) -> _Template:
        _raise_all(_placeholder_problems(value, STATIONS_PLACEHOLDERS))
        return value


class ReadingsEndpoint(_Strict):
    #: The endpoint's name: its cursor's key and the first part of each reading's series.
    name: str = Field(DEFAULT_ENDPOINT, pattern=r"^[A-Za-z0-9_.-]+$")
    method: Literal["GET", "POST"] = "GET"
    body: RequestBody | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    path: str = "/v1/sites/{station_id}/telemetry"
    params: dict[str, str] = Field(default_factory=dict)  # may use {since} {until} {limit} {station_id}
    #: How {since} and {until} are written: iso8601 (…Z, or the station's offset), epoch_s, epoch_ms,
    #: or a strftime pattern such as "%Y-%m-%d %H:%M:%S" (in the station's zone).
    time_format: str = "iso8601"
    #: The station attribute holding its time zone (IANA name or offset): request times are written
    #: and offset-less response times read in it. Without it, both are UTC (or `assume_utc_offset_s`).
    station_zone: str | None = None
    #: The longest window one request may ask for; longer windows are split (oldest first).
    max_window_s: float | None = Field(None, gt=0)
    max_page_size: int = Field(1000, ge=1)  # the vendor's cap on one page
    pagination: PaginationConfig = Field(default_factory=lambda: NoPagination(type="none"))
    items: JmesPath = "@"
    timestamp: TimestampSpec = Field(default_factory=TimestampSpec)
    values: dict[str, ValueSpec]
    #: JMESPath to the device / meter serial of an item, for stations with several: the series
    #: becomes `<name>/<serial>` and each device gets its own message ids.
    series: JmesPath | None = None
    #: Readings nested per device (`batteries[] {serialNumber, telemetries[]}`): `items` lists the
    #: devices, `nested` is the JMESPath from a device to its readings; `series` and `batch.id`
    #: are read on the device, `timestamp` and `values` on each reading.
    nested: JmesPath | None = None
    #: Each cycle re-reads from `cursor - lookback_s` (late and revised values); an item still
    #: unreported (its values null) holds the cursor while it is younger than this.
    lookback_s: float = Field(3600.0, ge=0)
    #: The window ends at `now - settle_s`: values younger than that are not asked for yet.
    settle_s: float = Field(0.0, ge=0)
    #: The vendor's call budgets this endpoint draws on (one or a list, at most one per scope):
    #: every page is a call, and takes one from each.
    budget: list[CallBudget] = Field(default_factory=list)
    #: Several stations per request (see `BatchSpec`).
    batch: BatchSpec | None = None
    #: Current values without a time per item (see `SnapshotSpec`).
    snapshot: SnapshotSpec | None = None
    #: The vendor returns items oldest first across pages: the cursor may move page by page.
    #: Otherwise (the default) it moves only when the whole window has been read.
    ordered: bool = False
    #: JMESPath on the answer (the whole envelope) to the time up to which the vendor says it is
    #: complete, e.g. its own clock when it clamps the window; read with `timestamp.format`. Without
    #: it the window is complete up to the `until` asked for once its last page is read.
    answered_until: JmesPath | None = None

    @field_validator("budget", mode="before")
    @classmethod
    def _one_or_many_budgets(cls, raw: object) -> object:
        if raw is None:
            return []
        return [raw] if isinstance(raw, dict) else raw

    @field_validator("budget")
    @classmethod
    def _one_per_scope(cls, budgets: list[CallBudget]) -> list[CallBudget]:
        scopes = [b.scope for b in budgets]
        if dupes := sorted({s for s in scopes if scopes.count(s) > 1}):
            raise ValueError(f"at most one budget per scope, repeated: {dupes}")
        return budgets

    @field_validator("values", mode="before")
    @classmethod
    def _shorthand(cls, raw: object) -> object:
        """`name: "json.path"` is short for `name: {path: "json.path"}`."""
        if isinstance(raw, dict):
            return {k: ({"path": v} if isinstance(v, str) else v) for k, v in raw.items()}
        return raw

    @field_validator("path", "params", "headers", "body")
    @classmethod
    def _known_placeholders(cls, value: _Template) -> _Template:
        # `{station_ids}` is checked against `batch` once the whole endpoint is read.
        _raise_all(_placeholder_problems(value, {*READINGS_PLACEHOLDERS, "station_ids"}))
        return value

    @field_validator("time_format")
    @classmethod
    def _time_format(cls, value: str) -> str:
        if value not in ("iso8601", "epoch_s", "epoch_ms") and "%" not in value:
            raise ValueError(f"{value!r}: iso8601, epoch_s, epoch_ms or a strftime pattern")
        return value

    @field_validator("values")
    @classmethod
    def _some_values(cls, value: dict[str, ValueSpec]) -> dict[str, ValueSpec]:
        if not value:
            raise ValueError("map at least one value")
        return value

    @model_validator(mode="after")
    def _station_placeholders(self) -> ReadingsEndpoint:
        """What needs the whole endpoint: `{station_ids}` only with `batch`, and the station's key
        (`{station_id}`, or `{station_ids}` for a batch) somewhere in the request."""
        located = [
            (loc, template)
            for field, value in (("path", self.path), ("params", self.params), ("headers", self.headers))
            for loc, template in _templates_of(value, (field,))
        ] + [(("body", *loc), template) for loc, template in _templates_of(self.body)]
        problems = []
        if self.batch is None:
            problems = [
                _problem(
                    loc,
                    f"unknown placeholder(s) ['station_ids'] in {template!r}: it needs `batch` "
                    "(one station per request: {station_id})",
                    template,
                )
                for loc, template in located
                if "station_ids" in _placeholders(template)
            ]
        key = "{station_ids}" if self.batch else "{station_id}"
        if not any(key in template for loc, template in located if loc[0] != "headers"):
            problems.append(_problem(("path",), f"{key} must appear in path, params or body", self.path))
        _raise_all(problems)
        return self


# -- transport ------------------------------------------------------------------------------------
class RetryConfig(_Strict):
    attempts: int = Field(4, ge=1)  # total tries of one request, the first included
    backoff_initial_s: float = Field(0.2, ge=0)
    backoff_max_s: float = Field(5.0, ge=0)
    jitter_s: float = Field(0.2, ge=0)
    #: A Retry-After longer than this is not waited out inside the call: ThrottledError goes up at once.
    max_retry_after_s: float = Field(30.0, ge=0)
    #: Stop retrying once this much time has passed since the first try.
    max_elapsed_s: float = Field(60.0, gt=0)


class RateLimitConfig(_Strict):
    rps: float = Field(gt=0)
    burst: int = Field(1, ge=1)


class HttpConfig(_Strict):
    #: Concurrent requests the vendor allows (e.g. 3 per API key). Sustained 429s lower the limit
    #: (halved), successes raise it again (+1 per `recover_after` successes) up to this value.
    max_concurrency: int | None = Field(None, ge=1)
    connect_timeout_s: float = Field(3.05, gt=0)
    read_timeout_s: float = Field(10.0, gt=0)
    retries: RetryConfig = Field(default_factory=RetryConfig)
    rate_limit: RateLimitConfig | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    #: Vendor error rules, tried in order on every answer (see `ErrorRule`).
    errors: list[ErrorRule] = Field(default_factory=list)
    #: Honour HTTP(S)_PROXY / .netrc from the environment (off: .netrc could silently replace auth).
    trust_env: bool = False


class VendorConfig(_Strict):
    name: str
    description: str = ""
    base_url: str | None = None  # C2C_SOURCE_URL overrides it
    auth: AuthConfig
    http: HttpConfig = Field(default_factory=HttpConfig)
    stations: StationsEndpoint
    #: One reading endpoint, or a list of them (each with its own `name` and cursor).
    readings: list[ReadingsEndpoint]

    @field_validator("readings", mode="before")
    @classmethod
    def _one_or_many(cls, raw: object) -> object:
        return [raw] if isinstance(raw, dict) else raw

    @model_validator(mode="after")
    def _unique_endpoints(self) -> VendorConfig:
        names = [ep.name for ep in self.readings]
        if not names:
            raise ValueError("readings: configure at least one endpoint")
        if dupes := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"readings: endpoint names must be unique, repeated: {dupes}")
        return self


def required_secrets(cfg: AuthConfig) -> list[str]:
    """The secret names an auth config reads (what the deployment must provide)."""
    return auth_secret_names(cfg.model_dump())
