"""SAS tokens: ours against an independent implementation of Microsoft's published algorithm, and
against a published test vector."""

from __future__ import annotations

import base64
import hashlib
import hmac
import urllib.parse

import pytest

from functions.sync_worker.errors import PermanentError
from functions.sync_worker.uplink.profiles.sas import SasTokenIssuer, generate_sas_token

KEY = "+XLy+MVZ+aTeOnVzN2kLeB16O+kSxmz6g3rS6fAf6rw="
EXPIRY = 1471940363


def independent_sas_token(uri: str, key: str, expiry: int, policy_name: str | None = None) -> str:
    """Written from Microsoft's "Control access to IoT Hub with SAS" Python sample, independently
    of the module under test: string-to-sign = quote_plus(uri) + '\\n' + expiry, HMAC-SHA256 with
    the base64-decoded key, fields sr, sig, se[, skn] assembled with urlencode (quote_plus)."""
    sign_key = f"{urllib.parse.quote_plus(uri)}\n{int(expiry)}"
    signature = base64.b64encode(hmac.HMAC(base64.b64decode(key), sign_key.encode("utf-8"), hashlib.sha256).digest())
    raw = {"sr": uri, "sig": signature, "se": str(int(expiry))}
    if policy_name is not None:
        raw["skn"] = policy_name
    return "SharedAccessSignature " + urllib.parse.urlencode(raw)


def fields_of(token: str) -> dict[str, str]:
    prefix, _, fields = token.partition(" ")
    assert prefix == "SharedAccessSignature"
    return dict(item.split("=", 1) for item in fields.split("&"))


@pytest.mark.parametrize(
    "uri,policy",
    [
        ("myhub.azure-devices.net/devices/station-001", None),
        ("myhub.azure-devices.net/devices/ess-4.2_%?:(roof)!*@$=,'", None),  # every special char a device id may hold
        ("myhub.azure-devices.net/devices/station-001", "device"),
        ("myhub.azure-devices.net", "iothubowner"),
    ],
)
def test_token_equals_independent_implementation(uri, policy):
    ours = generate_sas_token(uri, KEY, EXPIRY, policy)
    assert ours == independent_sas_token(uri, KEY, EXPIRY, policy)


def test_token_matches_published_vectors():
    # Published in Azure's IoT CLI extension tests (azure-iot-cli-extension, TestSasTokenAuth).
    device = fields_of(
        generate_sas_token("iot-hub-for-test.azure-devices.net/devices/iot-device-for-test", KEY, EXPIRY)
    )
    assert device == {
        "sr": "iot-hub-for-test.azure-devices.net%2Fdevices%2Fiot-device-for-test",
        "sig": "SIumZ1ACqqPJZ2okHDlW9MSYKykEpqsQY3z6FMOICd4%3D",
        "se": "1471940363",
    }
    policy = fields_of(generate_sas_token("iot-hub-for-test.azure-devices.net", KEY, EXPIRY, "iothubowner"))
    assert policy == {
        "sr": "iot-hub-for-test.azure-devices.net",
        "sig": "770sPjjYxRYpNz8%2FhEN7XR5XU5KDGYGTinSP8YyeTXw%3D",
        "se": "1471940363",
        "skn": "iothubowner",
    }


def test_different_expiry_or_key_changes_the_signature():
    base = fields_of(generate_sas_token("h/devices/d", KEY, EXPIRY))["sig"]
    assert fields_of(generate_sas_token("h/devices/d", KEY, EXPIRY + 1))["sig"] != base
    other_key = base64.b64encode(b"another key of 32 bytes ........").decode()
    assert fields_of(generate_sas_token("h/devices/d", other_key, EXPIRY))["sig"] != base


def test_issuer_expiry_and_renewal_before_it():
    issuer = SasTokenIssuer(key_b64=KEY, ttl_s=3600, renew_margin_s=300)
    token = issuer.issue("h/devices/d", wall_now=1_000_000.4, mono_now=50.0)
    assert token.expiry == 1_003_600
    assert fields_of(token.token)["se"] == "1003600"
    assert token.renew_at == pytest.approx(50.0 + 3599.6 - 300)


def test_short_ttl_still_renews_before_expiry():
    issuer = SasTokenIssuer(key_b64=KEY, ttl_s=5, renew_margin_s=300)
    token = issuer.issue("h/devices/d", wall_now=100.0, mono_now=0.0)
    assert token.expiry == 105
    assert token.renew_at == pytest.approx(4.0)  # margin capped at ttl/5: renew 1 s before expiry


def test_malformed_key_is_a_clear_permanent_error():
    with pytest.raises(PermanentError, match="not valid base64"):
        SasTokenIssuer(key_b64="not base64 !!")
