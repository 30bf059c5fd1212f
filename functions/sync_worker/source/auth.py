"""Vendor credentials: API key (header or query parameter), static bearer, OAuth2 client
credentials, and a session login whose token comes back in a header, a cookie or the body.

Each signs a `VendorRequest` (the direct path's own request, or a `requests.PreparedRequest` seen
through `PreparedView` when the object is a `requests` auth hook on the session path).

Each can `refresh()` after the vendor answered 401/403: the OAuth2 one fetches a new token (once,
however many threads saw the 401 at the same time); the static ones re-read their secret, which
helps only when the secret was rotated, so they report whether anything changed.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import jmespath
import requests
from requests.auth import AuthBase, HTTPBasicAuth

from functions.sync_worker.errors import AuthError, ThrottledError, TransientError
from functions.sync_worker.source.config import (
    ApiKeyAuth,
    AuthConfig,
    BearerAuth,
    OAuth2ClientCredentials,
    SessionLogin,
    required_secrets,
)
from functions.sync_worker.source.http_message import PreparedView, VendorRequest

#: Secrets as a mapping, or a function that (re)reads one by name, e.g. from Secrets Manager.
SecretSource = Mapping[str, str] | Callable[[str], str]


def read_secret(source: SecretSource, name: str) -> str:
    try:
        value = source(name) if callable(source) else source[name]
    except KeyError:
        value = None
    if not value:
        raise AuthError(f"secret {name!r} is not set (the vendor config's auth names it)")
    return value


def with_query_param(url: str, name: str, value: str) -> str:
    """`url` with one more query parameter, form-encoded as `requests` encodes `params`."""
    base, hash_, fragment = url.partition("#")
    pair = urlencode({name: value})
    return f"{base}{'&' if '?' in base else '?'}{pair}{hash_}{fragment}"


class VendorAuth(AuthBase, ABC):
    """Adds credentials to each request; `refresh(sent)` renews them after a 401/403."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        """As a `requests` auth hook (the session path)."""
        self.sign(PreparedView(request))
        return request

    @abstractmethod
    def sign(self, request: VendorRequest) -> None:
        """Put the current credential on the request."""

    @abstractmethod
    def credential_of(self, request: VendorRequest) -> str | None:
        """The credential a sent request carried, so concurrent refreshes happen once."""

    @abstractmethod
    def refresh(self, failed_credential: str | None) -> bool:
        """Renew credentials; True if a retry could now succeed (something changed)."""


class HeaderSecretAuth(VendorAuth):
    """A static secret in a header: X-Api-Key, or `Authorization: Bearer <token>`."""

    def __init__(self, secrets: SecretSource, secret_name: str, header: str, prefix: str = "") -> None:
        self._secrets, self._name, self._header, self._prefix = secrets, secret_name, header, prefix
        self._lock = threading.Lock()
        self._value = read_secret(secrets, secret_name)

    def sign(self, request: VendorRequest) -> None:
        request.set_header(self._header, self._prefix + self._value)

    def credential_of(self, request: VendorRequest) -> str | None:
        return request.header(self._header)

    def refresh(self, failed_credential: str | None) -> bool:
        with self._lock:
            if failed_credential is not None and failed_credential != self._prefix + self._value:
                return True  # another thread already picked up a new secret
            if callable(self._secrets):
                fresh = read_secret(self._secrets, self._name)
                if fresh != self._value:
                    self._value = fresh
                    return True
            return False


class QuerySecretAuth(VendorAuth):
    """A static secret in a query parameter (`?api_key=...`). The transport redacts its value from
    every message, since the URL that carries it shows up in exceptions."""

    def __init__(self, secrets: SecretSource, secret_name: str, param: str) -> None:
        self._secrets, self._name, self._param = secrets, secret_name, param
        self._lock = threading.Lock()
        self._value = read_secret(secrets, secret_name)

    def sign(self, request: VendorRequest) -> None:
        request.url = with_query_param(request.url, self._param, self._value)

    def credential_of(self, request: VendorRequest) -> str | None:
        values = parse_qs(urlsplit(request.url).query).get(self._param)
        return values[-1] if values else None

    def refresh(self, failed_credential: str | None) -> bool:
        with self._lock:
            if failed_credential is not None and failed_credential != self._value:
                return True
            if callable(self._secrets):
                fresh = read_secret(self._secrets, self._name)
                if fresh != self._value:
                    self._value = fresh
                    return True
            return False


class SessionLoginAuth(VendorAuth):
    """Logs in with named secrets, keeps the token the vendor hands back (header, cookie or body
    field) and sends it on every call (header or cookie). One login however many threads need it;
    at most one per `min_login_interval_s`, because vendors rate-limit (and count) logins."""

    def __init__(
        self,
        cfg: SessionLogin,
        base_url: str,
        secrets: SecretSource,
        session: requests.Session,
        timeout: tuple[float, float],
        on_token: Callable[[str], None] = lambda token: None,
    ) -> None:
        self._cfg = cfg
        self._url = base_url.rstrip("/") + "/" + cfg.login.path.lstrip("/")
        self._secrets, self._session, self._timeout = secrets, session, timeout
        self._on_token = on_token
        self._values = {name: read_secret(secrets, name) for name in cfg.secrets}
        self._body_path = jmespath.compile(cfg.token.name) if cfg.token.source == "body" else None
        self._lock = threading.Lock()
        self._token: str | None = None
        self._obtained_at = 0.0
        self._last_login = -float("inf")
        self.logins = 0

    def _render(self, fields: dict[str, str] | None) -> dict[str, str] | None:
        return None if fields is None else {k: v.format(**self._values) for k, v in fields.items()}

    def _login(self) -> None:
        """Called with the lock held."""
        login = self._cfg.login
        self._last_login = time.monotonic()
        self.logins += 1
        try:
            resp = self._session.request(
                login.method,
                self._url,
                json=self._render(login.json_body),
                data=self._render(login.form),
                headers=self._render(login.headers),
                timeout=self._timeout,
            )
        except requests.RequestException as exc:
            raise TransientError(f"login unreachable: {exc.__class__.__name__}") from exc
        if resp.status_code >= 500:
            raise TransientError(f"login answered HTTP {resp.status_code}")
        if resp.status_code == 429:
            raise ThrottledError("login throttled (429)")
        token = self._token_from(resp)
        if not token:
            detail = resp.text[:200].strip()
            for value in self._values.values():
                detail = detail.replace(value, "***")
            raise AuthError(f"login refused or no token in the answer: HTTP {resp.status_code} {detail}")
        self._on_token(token)
        self._token = token
        self._obtained_at = time.monotonic()

    def _token_from(self, resp: requests.Response) -> str | None:
        where = self._cfg.token
        if where.source == "header":
            return resp.headers.get(where.name)
        if where.source == "cookie":
            return resp.cookies.get(where.name)
        try:
            found = self._body_path.search(resp.json()) if self._body_path else None
        except ValueError:
            return None
        return found if isinstance(found, str) else None

    def current_token(self) -> str:
        with self._lock:
            expired = self._cfg.ttl_s is not None and time.monotonic() - self._obtained_at >= self._cfg.ttl_s
            if self._token is None or expired:
                self._login()
            return self._token  # type: ignore[return-value]  # set by _login or it raised

    def sign(self, request: VendorRequest) -> None:
        token = self.current_token()
        send = self._cfg.send
        if send.send_as == "header":
            request.set_header(send.name, send.prefix + token)
        else:
            cookie = f"{send.name}={send.prefix}{token}"
            existing = request.header("Cookie")
            request.set_header("Cookie", f"{existing}; {cookie}" if existing else cookie)

    def credential_of(self, request: VendorRequest) -> str | None:
        send = self._cfg.send
        if send.send_as == "header":
            value = request.header(send.name)
            return value[len(send.prefix) :] if value else None
        for part in (request.header("Cookie") or "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == send.name:
                return value[len(send.prefix) :]
        return None

    def refresh(self, failed_credential: str | None) -> bool:
        with self._lock:
            if failed_credential is not None and self._token is not None and failed_credential != self._token:
                return True  # another thread logged in again meanwhile
            if time.monotonic() - self._last_login < self._cfg.min_login_interval_s:
                return False  # logins are rate-limited: the expiry right after a login is not fixed by another
            self._token = None
            self._login()
            return True


class OAuth2ClientCredentialsAuth(VendorAuth):
    """Client-credentials grant with a cached token, renewed before expiry and after a 401."""

    def __init__(
        self,
        cfg: OAuth2ClientCredentials,
        base_url: str,
        secrets: SecretSource,
        session: requests.Session,
        timeout: tuple[float, float],
    ) -> None:
        self._cfg = cfg
        self._token_url = (
            urljoin(base_url.rstrip("/") + "/", cfg.token_url.lstrip("/"))
            if not cfg.token_url.startswith(("http://", "https://"))
            else cfg.token_url
        )
        self._secrets, self._session, self._timeout = secrets, session, timeout
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at = 0.0

    def _fetch(self) -> None:
        """Called with the lock held: one token request however many threads need it."""
        client_id = read_secret(self._secrets, self._cfg.client_id_secret)
        client_secret = read_secret(self._secrets, self._cfg.client_secret_secret)
        form = {"grant_type": "client_credentials"}
        if self._cfg.scope:
            form["scope"] = self._cfg.scope
        basic = None
        if self._cfg.client_auth == "client_secret_basic":
            basic = HTTPBasicAuth(client_id, client_secret)
        else:
            form.update(client_id=client_id, client_secret=client_secret)
        try:
            resp = self._session.post(self._token_url, data=form, auth=basic, timeout=self._timeout)
        except requests.RequestException as exc:
            raise TransientError(f"token endpoint unreachable: {exc.__class__.__name__}: {exc}") from exc
        if resp.status_code in (400, 401, 403):
            raise AuthError(f"token endpoint refused the client credentials: HTTP {resp.status_code}")
        if resp.status_code >= 300:
            raise TransientError(f"token endpoint answered HTTP {resp.status_code}")
        try:
            body = resp.json()
            token = body["access_token"]
            expires_in = float(body.get("expires_in") or self._cfg.default_expires_in_s)
        except (ValueError, KeyError, TypeError) as exc:
            raise TransientError(f"token endpoint answered an unusable body: {exc}") from exc
        self._token = token
        self._expires_at = time.monotonic() + expires_in - min(self._cfg.refresh_skew_s, expires_in / 2)

    def current_token(self) -> str:
        with self._lock:
            if self._token is None or time.monotonic() >= self._expires_at:
                self._fetch()
            token = self._token
            if token is None:  # _fetch sets it or raises
                raise TransientError("token endpoint gave no token")
            return token

    def sign(self, request: VendorRequest) -> None:
        request.set_header("Authorization", f"Bearer {self.current_token()}")

    def credential_of(self, request: VendorRequest) -> str | None:
        text = request.header("Authorization") or ""
        return text[7:] if text.startswith("Bearer ") else None

    def refresh(self, failed_credential: str | None) -> bool:
        with self._lock:
            if failed_credential is None or failed_credential == self._token:
                self._token = None
                self._fetch()
            return True


def build_auth(
    cfg: AuthConfig,
    base_url: str,
    secrets: SecretSource,
    session: requests.Session,
    timeout: tuple[float, float],
    redact: Callable[..., None] = lambda *values: None,
) -> VendorAuth:
    """The auth object for `cfg`; every secret value it reads (and each session token it gets) is
    handed to `redact` so the transport can keep it out of every message."""
    redact(*(read_secret(secrets, name) for name in required_secrets(cfg)))
    if isinstance(cfg, ApiKeyAuth):
        if cfg.query_param:
            return QuerySecretAuth(secrets, cfg.secret, cfg.query_param)
        return HeaderSecretAuth(secrets, cfg.secret, cfg.header, cfg.prefix)
    if isinstance(cfg, BearerAuth):
        return HeaderSecretAuth(secrets, cfg.secret, "Authorization", "Bearer ")
    if isinstance(cfg, SessionLogin):
        return SessionLoginAuth(cfg, base_url, secrets, session, timeout, on_token=redact)
    return OAuth2ClientCredentialsAuth(cfg, base_url, secrets, session, timeout)
