"""The vendor config schema: everything the generic HTTP JSON source needs to talk to one vendor.

A vendor is a YAML/JSON file validated here (unknown keys are errors, so a typo fails at load
time with the field named), not code. Secrets are never in the file: auth names the keys of the
secrets mapping the worker passes in (from Secrets Manager or the environment).
"""

from __future__ import annotations

import string
from typing import Annotated, Literal

import jmespath
from jmespath.exceptions import JMESPathError
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator


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
    model_config = ConfigDict(extra="forbid", frozen=True)


# -- auth -----------------------------------------------------------------------------------------
class ApiKeyAuth(_Strict):
    type: Literal["api_key"]
    header: str = "X-Api-Key"
    secret: str = "api_key"  # key in the secrets mapping
    prefix: str = ""  # e.g. "ApiKey " for vendors that want a scheme in the header


class BearerAuth(_Strict):
    type: Literal["bearer"]
    secret: str = "api_token"


class OAuth2ClientCredentials(_Strict):
    type: Literal["oauth2_client_credentials"]
    token_url: str  # absolute, or relative to the base URL
    client_id_secret: str = "client_id"
    client_secret_secret: str = "client_secret"
    scope: str | None = None
    #: client_secret_post: id/secret in the form body; client_secret_basic: HTTP Basic.
    client_auth: Literal["client_secret_post", "client_secret_basic"] = "client_secret_post"
    #: Renew this long before `expires_in` runs out, so no request carries a token about to die.
    refresh_skew_s: float = Field(30.0, ge=0)
    default_expires_in_s: float = Field(3600.0, gt=0)


AuthConfig = Annotated[ApiKeyAuth | BearerAuth | OAuth2ClientCredentials, Field(discriminator="type")]


# -- pagination -----------------------------------------------------------------------------------
class NoPagination(_Strict):
    type: Literal["none"]


class PageNumberPagination(_Strict):
    type: Literal["page_number"]
    page_param: str = "page"
    start: int = 1
    #: JMESPath to the number of pages; without it, a short or empty page ends the list.
    total_pages: JmesPath | None = None


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
    NoPagination | PageNumberPagination | CursorPagination | LinkPagination, Field(discriminator="type")
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


class StationsEndpoint(_Strict):
    path: str = "/v1/sites"
    params: dict[str, str] = Field(default_factory=dict)  # may use {page_size}
    page_size: int = Field(100, ge=1)
    pagination: PaginationConfig = Field(default_factory=lambda: NoPagination(type="none"))
    items: JmesPath = "@"  # the list of stations in one page
    id: JmesPath = "id"
    name: JmesPath | None = "name"
    attributes: dict[str, JmesPath] = Field(default_factory=dict)
    max_pages: int = Field(10_000, ge=1)

    @model_validator(mode="after")
    def _templates(self) -> StationsEndpoint:
        allowed = {"page_size"}
        for template in [self.path, *self.params.values()]:
            if bad := _placeholders(template) - allowed:
                raise ValueError(f"unknown placeholder(s) {sorted(bad)} in {template!r}; allowed: {sorted(allowed)}")
        return self


class ReadingsEndpoint(_Strict):
    path: str = "/v1/sites/{station_id}/telemetry"
    params: dict[str, str] = Field(default_factory=dict)  # may use {since} {until} {limit} {station_id}
    #: How {since} and {until} are rendered: iso8601 (…Z), epoch_s, epoch_ms.
    time_format: Literal["iso8601", "epoch_s", "epoch_ms"] = "iso8601"
    max_page_size: int = Field(1000, ge=1)  # the vendor's cap on one page
    pagination: PaginationConfig = Field(default_factory=lambda: NoPagination(type="none"))
    items: JmesPath = "@"
    timestamp: TimestampSpec = Field(default_factory=TimestampSpec)
    values: dict[str, ValueSpec]

    @field_validator("values", mode="before")
    @classmethod
    def _shorthand(cls, raw: object) -> object:
        """`name: "json.path"` is short for `name: {path: "json.path"}`."""
        if isinstance(raw, dict):
            return {k: ({"path": v} if isinstance(v, str) else v) for k, v in raw.items()}
        return raw

    @model_validator(mode="after")
    def _templates(self) -> ReadingsEndpoint:
        allowed = {"since", "until", "limit", "station_id"}
        for template in [self.path, *self.params.values()]:
            if bad := _placeholders(template) - allowed:
                raise ValueError(f"unknown placeholder(s) {sorted(bad)} in {template!r}; allowed: {sorted(allowed)}")
        if "{station_id}" not in self.path and "{station_id}" not in "".join(self.params.values()):
            raise ValueError("readings: {station_id} must appear in path or params")
        if not self.values:
            raise ValueError("readings.values: map at least one value")
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
    connect_timeout_s: float = Field(3.05, gt=0)
    read_timeout_s: float = Field(10.0, gt=0)
    retries: RetryConfig = Field(default_factory=RetryConfig)
    rate_limit: RateLimitConfig | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    #: Honour HTTP(S)_PROXY / .netrc from the environment (off: .netrc could silently replace auth).
    trust_env: bool = False


class VendorConfig(_Strict):
    name: str
    description: str = ""
    base_url: str | None = None  # C2C_SOURCE_URL overrides it
    auth: AuthConfig
    http: HttpConfig = Field(default_factory=HttpConfig)
    stations: StationsEndpoint
    readings: ReadingsEndpoint
