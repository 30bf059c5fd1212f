"""TLS client contexts for the platforms: verification always on unless explicitly disabled for
local use, a CA bundle (file or PEM text), and an optional client certificate for mTLS.

Certificates arrive either as file paths (local runs) or as PEM text (ECS injects Secrets Manager
values as environment variables). `ssl` can only load a certificate chain from files, so PEM text
is written to a private temporary file, loaded, and the file removed at once.
"""

from __future__ import annotations

import os
import ssl
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from functions.sync_worker.errors import PermanentError


@dataclass(frozen=True, slots=True)
class TlsMaterial:
    """Where the trust anchors and the client certificate come from. PEM text wins over a file."""

    ca_file: str | None = None
    ca_pem: str | None = None
    cert_file: str | None = None
    cert_pem: str | None = None
    key_file: str | None = None
    key_pem: str | None = field(default=None, repr=False)  # private key: never in a repr or a log
    insecure: bool = False
    alpn_protocols: tuple[str, ...] = ()

    @property
    def has_client_certificate(self) -> bool:
        return bool((self.cert_file or self.cert_pem) and (self.key_file or self.key_pem))


def _load_client_certificate(ctx: ssl.SSLContext, material: TlsMaterial) -> None:
    cert_given = bool(material.cert_file or material.cert_pem)
    key_given = bool(material.key_file or material.key_pem)
    if cert_given != key_given:
        raise PermanentError("a client certificate needs both the certificate and its private key")
    if not cert_given:
        return
    with tempfile.TemporaryDirectory(prefix="c2c-tls-") as tmp:
        os.chmod(tmp, 0o700)
        cert_path = material.cert_file
        key_path = material.key_file
        if material.cert_pem:
            cert_path = str(Path(tmp) / "cert.pem")
            Path(cert_path).write_text(material.cert_pem)
        if material.key_pem:
            key_path = str(Path(tmp) / "key.pem")
            fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(material.key_pem)
        if cert_path is None or key_path is None:  # cert_given == key_given: a file or PEM of each
            raise PermanentError("a client certificate needs both the certificate and its private key")
        try:
            ctx.load_cert_chain(certfile=cert_path, keyfile=key_path)
        except (ssl.SSLError, OSError) as exc:
            # Never echo PEM content: the key is a secret.
            raise PermanentError(
                f"client certificate/key could not be loaded: {exc.__class__.__name__}: "
                f"{getattr(exc, 'reason', None) or exc.strerror or 'invalid'}"
            ) from None


def build_tls_context(material: TlsMaterial) -> ssl.SSLContext:
    """A client context with TLS >= 1.2 and hostname + chain verification (unless `insecure`)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if material.insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx.check_hostname = True
        ctx.verify_mode = ssl.CERT_REQUIRED
        try:
            if material.ca_pem:
                ctx.load_verify_locations(cadata=material.ca_pem)
            elif material.ca_file:
                ctx.load_verify_locations(cafile=material.ca_file)
            else:
                ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
        except (ssl.SSLError, OSError) as exc:
            raise PermanentError(f"CA bundle could not be loaded: {exc.__class__.__name__}") from None
    _load_client_certificate(ctx, material)
    if material.alpn_protocols:
        ctx.set_alpn_protocols(list(material.alpn_protocols))
    return ctx


class LazyTlsContext:
    """A profile's TLS context, built on the first connect and shared by all its connections:
    a bad certificate or key fails that connect with a clear error rather than at import, and N
    per-device connections do not load the same chain N times."""

    def __init__(self, material: TlsMaterial | None) -> None:
        self._material = material
        self._context: ssl.SSLContext | None = None
        self._lock = threading.Lock()

    def get(self) -> ssl.SSLContext | None:
        """None when the profile has no TLS material (plain TCP)."""
        if self._material is None:
            return None
        with self._lock:
            if self._context is None:
                self._context = build_tls_context(self._material)
            return self._context
