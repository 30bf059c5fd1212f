"""Vendor credentials as `requests` auth objects: API-key header, static bearer, OAuth2 client credentials.

Each can `refresh()` after the vendor answered 401/403: the OAuth2 one fetches a new token (once,
however many threads saw the 401 at the same time); the static ones re-read their secret, which
helps only when the secret was rotated, so they report whether anything changed.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from urllib.parse import urljoin

import requests
from requests.auth import AuthBase, HTTPBasicAuth

from functions.sync_worker.errors import AuthError, TransientError
from functions.sync_worker.source.config import ApiKeyAuth, AuthConfig, BearerAuth, OAuth2ClientCredentials

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


class VendorAuth(AuthBase, ABC):
    """Adds credentials to each request; `refresh(sent)` renews them after a 401/403."""

    @abstractmethod
    def credential_of(self, request: requests.PreparedRequest) -> str | None:
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

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers[self._header] = self._prefix + self._value
        return request

    def credential_of(self, request: requests.PreparedRequest) -> str | None:
        value = request.headers.get(self._header)
        return value.decode() if isinstance(value, bytes) else value

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

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.current_token()}"
        return request

    def credential_of(self, request: requests.PreparedRequest) -> str | None:
        header = request.headers.get("Authorization", "")
        text = header.decode() if isinstance(header, bytes) else header
        return text[7:] if text.startswith("Bearer ") else None

    def refresh(self, failed_credential: str | None) -> bool:
        with self._lock:
            if failed_credential is None or failed_credential == self._token:
                self._token = None
                self._fetch()
            return True


def build_auth(
    cfg: AuthConfig, base_url: str, secrets: SecretSource, session: requests.Session, timeout: tuple[float, float]
) -> VendorAuth:
    if isinstance(cfg, ApiKeyAuth):
        return HeaderSecretAuth(secrets, cfg.secret, cfg.header, cfg.prefix)
    if isinstance(cfg, BearerAuth):
        return HeaderSecretAuth(secrets, cfg.secret, "Authorization", "Bearer ")
    return OAuth2ClientCredentialsAuth(cfg, base_url, secrets, session, timeout)
