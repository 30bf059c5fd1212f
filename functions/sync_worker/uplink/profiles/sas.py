"""Azure shared access signature (SAS) tokens, computed as Microsoft documents them for IoT Hub.

    string_to_sign = url_encode(resource_uri) + "\\n" + expiry            (expiry: Unix seconds)
    signature      = base64(HMAC-SHA256(key=base64_decode(key), msg=string_to_sign))
    token          = "SharedAccessSignature sr={url_encode(resource_uri)}&sig={url_encode(signature)}&se={expiry}"
                     + "&skn={policy_name}" when the key is a shared access policy's key

A device key signs `{hub}.azure-devices.net/devices/{device_id}`; a policy key with DeviceConnect
permission can sign the hub URI (or the device URI) and names itself with `skn`. Implemented here
rather than through `azure-iot-device`, which pins paho-mqtt < 2.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from dataclasses import dataclass, field
from urllib.parse import quote

from functions.sync_worker.errors import PermanentError


def _url_encode(value: str) -> str:
    # Everything but unreserved characters percent-encoded, upper-case hex (as .NET's
    # WebUtility.UrlEncode and JavaScript's encodeURIComponent do in Microsoft's samples).
    return quote(value, safe="")


def decode_key(key_b64: str) -> bytes:
    """The raw HMAC key of a base64 device/policy key; a malformed key is a configuration error."""
    try:
        return base64.b64decode(key_b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise PermanentError(f"Azure SAS key is not valid base64: {exc}") from None


def generate_sas_token(resource_uri: str, key_b64: str, expiry: int, policy_name: str | None = None) -> str:
    """The SAS token for `resource_uri` valid until `expiry` (Unix seconds)."""
    encoded_uri = _url_encode(resource_uri)
    string_to_sign = f"{encoded_uri}\n{int(expiry)}".encode()
    digest = hmac.new(decode_key(key_b64), string_to_sign, hashlib.sha256).digest()
    signature = base64.b64encode(digest).decode("ascii")
    token = f"SharedAccessSignature sr={encoded_uri}&sig={_url_encode(signature)}&se={int(expiry)}"
    if policy_name:
        token += f"&skn={_url_encode(policy_name)}"
    return token


@dataclass(frozen=True, slots=True)
class SasToken:
    """A token with both clocks of its life: `expiry` (wall, what Azure checks) and `renew_at`
    (monotonic, when the uplink should reconnect with a fresh one)."""

    token: str = field(repr=False)
    expiry: int
    renew_at: float


@dataclass(frozen=True, slots=True)
class SasTokenIssuer:
    """Issues tokens for one key. TTL and renewal margin are configurable; the margin is capped at
    a fifth of the TTL so that a short TTL (tests, strict policies) still renews before expiry."""

    key_b64: str = field(repr=False)
    ttl_s: int = 3600
    renew_margin_s: float = 300.0
    policy_name: str | None = None

    def __post_init__(self) -> None:
        decode_key(self.key_b64)  # fail at configuration time, not at the first connect
        if self.ttl_s < 1:
            raise PermanentError(f"Azure SAS token TTL must be at least 1 s, got {self.ttl_s}")

    @property
    def effective_margin_s(self) -> float:
        return min(self.renew_margin_s, self.ttl_s / 5)

    def issue(self, resource_uri: str, *, wall_now: float | None = None, mono_now: float | None = None) -> SasToken:
        wall = time.time() if wall_now is None else wall_now
        mono = time.monotonic() if mono_now is None else mono_now
        expiry = int(wall + self.ttl_s)
        # Renew against the truncated expiry so rounding never pushes renewal past it.
        renew_at = mono + (expiry - wall) - self.effective_margin_s
        return SasToken(generate_sas_token(resource_uri, self.key_b64, expiry, self.policy_name), expiry, renew_at)
