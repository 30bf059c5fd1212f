"""The profiles' connection specs, topics and checks, without a broker."""

from __future__ import annotations

import base64
import ssl
from urllib.parse import parse_qsl

import pytest

from functions.sync_worker.errors import PermanentError
from functions.sync_worker.uplink.profile import PlatformProfile
from functions.sync_worker.uplink.profiles.aws_iot_core import AWS_THING_NAME, AwsIotCoreProfile, check_topic
from functions.sync_worker.uplink.profiles.azure_iot_hub import AZURE_DEVICE_ID, AzureCredentials, AzureIotHubProfile
from functions.sync_worker.uplink.profiles.generic import GenericProfile
from functions.sync_worker.uplink.profiles.identity import IdentityMapping, IdentityMode
from functions.sync_worker.uplink.profiles.sas import SasToken, SasTokenIssuer, generate_sas_token
from functions.sync_worker.uplink.profiles.tls import TlsMaterial
from tests.profiles.conftest import DEVICE_KEY, message

HUB = "myhub.azure-devices.net"


def azure(mode=IdentityMode.GATEWAY, **kw) -> AzureIotHubProfile:
    kw.setdefault("credentials", AzureCredentials(device_keys={"gw-1": DEVICE_KEY}))
    return AzureIotHubProfile(
        hostname=HUB, identities=IdentityMapping(mode, "gw-1", "ess-{station_id}", AZURE_DEVICE_ID), **kw
    )


def aws(pki, mode=IdentityMode.GATEWAY, **kw) -> AwsIotCoreProfile:
    client = pki["ca"].client_certificate("gateway-thing")
    material = TlsMaterial(ca_pem=pki["ca"].cert_pem, cert_pem=client.cert_pem, key_pem=client.key_pem)
    return AwsIotCoreProfile(
        endpoint="abc-ats.iot.eu-west-1.amazonaws.com",
        identities=IdentityMapping(mode, "gateway-thing", "{station_id}", AWS_THING_NAME),
        tls_material=material,
        **kw,
    )


# -- Azure IoT Hub ---------------------------------------------------------------------------------


def test_azure_connection_spec_is_iot_hub_shaped():
    profile = azure()
    assert isinstance(profile, PlatformProfile)
    spec = profile.connection_spec("gw-1")
    assert (spec.host, spec.port, spec.client_id, spec.protocol) == (HUB, 8883, "gw-1", 4)
    assert spec.username == f"{HUB}/gw-1/?api-version=2021-04-12"
    assert isinstance(spec.tls, ssl.SSLContext) and spec.tls.verify_mode == ssl.CERT_REQUIRED
    assert spec.password is not None
    fields = dict(item.split("=", 1) for item in spec.password.removeprefix("SharedAccessSignature ").split("&"))
    assert fields["sr"] == f"{HUB}%2Fdevices%2Fgw-1" and "skn" not in fields
    assert spec.password == generate_sas_token(f"{HUB}/devices/gw-1", DEVICE_KEY, int(fields["se"]))
    assert spec.renew_at is not None and spec.will is None


def test_azure_policy_key_signs_with_skn_for_any_device():
    profile = azure(IdentityMode.PER_DEVICE, credentials=AzureCredentials(policy_name="device", policy_key=DEVICE_KEY))
    identity = profile.identity_for("42")
    assert identity == "ess-42"
    spec = profile.connection_spec(identity)
    assert spec.username is not None and spec.password is not None
    assert spec.client_id == "ess-42" and spec.username.startswith(f"{HUB}/ess-42/?")
    assert spec.password.endswith("&skn=device")


def test_azure_device_without_key_or_policy_is_refused():
    profile = azure(IdentityMode.PER_DEVICE)
    with pytest.raises(PermanentError, match="no key for device 'ess-7'"):
        profile.connection_spec(profile.identity_for("7"))


def test_azure_each_connect_gets_a_fresh_token_and_renewal_before_expiry():
    profile = azure(token_ttl_s=5)
    first = profile.connection_spec("gw-1")
    import time

    now = time.monotonic()
    assert first.renew_at is not None
    assert now < first.renew_at <= now + 5
    time.sleep(1.05)
    assert profile.connection_spec("gw-1").password != first.password


def test_azure_topic_and_property_bag():
    msg = message(
        "st/1 ä",
        properties={"schema": "v1", "site name": "Roof & Co"},
        content_type="application/json",
        content_encoding="utf-8",
    )
    topic = azure().topic_for("gw-1", msg)
    prefix = "devices/gw-1/messages/events/"
    assert topic.startswith(prefix)
    bag = topic[len(prefix) :]
    assert bag.split("&")[:3] == [
        "$.mid=st%2F1%20%C3%A4%3A2026-01-01T00%3A00%3A00.000000Z",
        "$.ct=application%2Fjson",
        "$.ce=utf-8",
    ]
    assert "/" not in bag and " " not in bag
    assert dict(parse_qsl(bag)) == {
        "$.mid": msg.message_id,
        "$.ct": "application/json",
        "$.ce": "utf-8",
        "schema": "v1",
        "site name": "Roof & Co",
        "station_id": "st/1 ä",
    }


def test_azure_builds_each_messages_property_bag_once_for_check_and_topic(monkeypatch):
    from functions.sync_worker.uplink.profiles import azure_iot_hub

    built: list[str] = []
    encode = azure_iot_hub.encode_property_bag

    def counting(msg):
        built.append(msg.message_id)
        return encode(msg)

    monkeypatch.setattr(azure_iot_hub, "encode_property_bag", counting)
    profile = azure()
    first, second = message("st-1"), message("st-2")
    profile.check(first, qos=1, retain=False)
    assert profile.topic_for("gw-1", first) == "devices/gw-1/messages/events/" + encode(first)
    assert built == [first.message_id]
    # Another station thread's message in between: each topic still carries its own message's bag.
    profile.check(first, qos=1, retain=False)
    profile.check(second, qos=1, retain=False)
    assert profile.topic_for("gw-1", first) == "devices/gw-1/messages/events/" + encode(first)
    assert profile.topic_for("gw-1", second) == "devices/gw-1/messages/events/" + encode(second)


def test_azure_rejects_qos2_retain_oversize_and_dollar_properties():
    profile = azure()
    ok = message()
    profile.check(ok, qos=1, retain=False)
    profile.check(ok, qos=0, retain=False)
    with pytest.raises(PermanentError, match="QoS 2 is not supported"):
        profile.check(ok, qos=2, retain=False)
    with pytest.raises(PermanentError, match="retained messages are not supported"):
        profile.check(ok, qos=1, retain=True)
    bag = len(profile.topic_for("gw-1", ok)) - len("devices/gw-1/messages/events/")
    fits = message(payload=b"x" * (256 * 1024 - bag))
    profile.check(fits, qos=1, retain=False)
    with pytest.raises(PermanentError, match="over IoT Hub's 262144-byte limit") as err:
        profile.check(message(payload=b"x" * (256 * 1024 - bag + 1)), qos=1, retain=False)
    assert err.value.station_id == "st-1"
    with pytest.raises(PermanentError, match="may not start with"):
        profile.check(message(properties={"$.uid": "x"}), qos=1, retain=False)


def test_azure_invalid_device_id_from_template_is_permanent_for_that_station():
    profile = azure(IdentityMode.PER_DEVICE)
    with pytest.raises(PermanentError, match="not valid") as err:
        profile.identity_for("has space")
    assert err.value.station_id == "has space"
    with pytest.raises(PermanentError, match="at most 128"):
        profile.identity_for("x" * 130)


# -- AWS IoT Core ------------------------------------------------------------------------------------


def test_aws_connection_spec_is_mtls_with_thing_name(pki):
    profile = aws(pki)
    spec = profile.connection_spec(profile.identity_for("any-station"))
    assert (spec.host, spec.port, spec.client_id) == ("abc-ats.iot.eu-west-1.amazonaws.com", 8883, "gateway-thing")
    assert spec.username is None and spec.password is None and spec.renew_at is None
    assert spec.tls is not None and spec.tls.verify_mode == ssl.CERT_REQUIRED and spec.tls.check_hostname
    assert profile.limits.max_publish_per_s == 100
    assert profile.topic_for("gateway-thing", message("st-9")) == "c2c/dev/stations/st-9/telemetry"


def test_aws_requires_a_client_certificate(pki):
    with pytest.raises(PermanentError, match="client certificate and private key are required"):
        AwsIotCoreProfile(
            endpoint="e",
            identities=IdentityMapping(IdentityMode.GATEWAY, "t", "{station_id}", AWS_THING_NAME),
            tls_material=TlsMaterial(ca_pem=pki["ca"].cert_pem),
        )


def test_aws_rejects_qos2_and_oversize_allows_retain(pki):
    profile = aws(pki)
    profile.check(message(payload=b"x" * 128 * 1024), qos=1, retain=True)
    with pytest.raises(PermanentError, match="QoS 2 is not supported"):
        profile.check(message(), qos=2, retain=False)
    with pytest.raises(PermanentError, match="131073 bytes, over AWS IoT Core's 131072-byte limit"):
        profile.check(message(payload=b"x" * (128 * 1024 + 1)), qos=1, retain=False)


@pytest.mark.parametrize(
    "topic",
    [
        "a/b/c/d/e/f/g/h",  # 7 slashes, 8 levels
        "t" * 256,
        "$aws/rules/ingest_rule/a/b/c/d/e/f/g/h",  # Basic Ingest prefix does not count
        "$aws/things/thing-1/shadow/update",
    ],
)
def test_aws_topic_rules_accept(topic):
    check_topic(topic)


@pytest.mark.parametrize(
    "topic,reason",
    [
        ("a/b/c/d/e/f/g/h/i", "8 forward slashes"),
        ("t" * 257, "257 bytes"),
        ("é" * 129, "258 bytes"),  # bytes, not characters
        ("$SYS/broker", "reserved for AWS"),
        ("$aws/rules/", "must be \\$aws/rules/<rule_name>"),
        ("a/+/b", "wildcard"),
        ("a/#", "wildcard"),
        ("", "empty"),
    ],
)
def test_aws_topic_rules_reject(topic, reason):
    with pytest.raises(PermanentError, match=reason):
        check_topic(topic)


def test_aws_topic_template_is_checked_up_front(pki):
    with pytest.raises(PermanentError, match="forward slashes"):
        aws(pki, topic_template="a/b/c/d/e/f/g/{station_id}/x")
    profile = aws(pki, topic_template="ess/{station_id}")
    with pytest.raises(PermanentError, match="bytes, over the 256-byte limit") as err:
        profile.check(message("s" * 300), qos=1, retain=False)
    assert err.value.station_id == "s" * 300


def test_aws_formats_and_checks_a_stations_topic_once_and_refuses_a_bad_one_every_time(pki, monkeypatch):
    from functions.sync_worker.uplink.profiles import aws_iot_core

    checked: list[str] = []

    def counting(topic: str) -> None:
        checked.append(topic)
        check_topic(topic)

    profile = aws(pki, topic_template="ess/{station_id}")
    monkeypatch.setattr(aws_iot_core, "check_topic", counting)
    for _ in range(3):
        profile.check(message("st-1"), qos=1, retain=False)
        assert profile.topic_for("gateway-thing", message("st-1")) == "ess/st-1"
    assert checked == ["ess/st-1"]
    for _ in range(2):  # a topic that fails its check is not remembered as valid
        with pytest.raises(PermanentError, match="wildcard") as err:
            profile.check(message("a+b"), qos=1, retain=False)
        assert err.value.station_id == "a+b"
    assert checked == ["ess/st-1", "ess/a+b", "ess/a+b"]


def test_aws_port_443_offers_alpn(pki):
    spec = aws(pki, port=443).connection_spec("gateway-thing")
    assert spec.port == 443  # ALPN is set on the context; ssl exposes no getter, so the live test covers it


# -- generic ---------------------------------------------------------------------------------------


def test_generic_spec_has_offline_will_and_online_message(pki):
    profile = GenericProfile(
        host="127.0.0.1",
        port=8883,
        protocol=5,
        env="prod",
        identities=IdentityMapping(IdentityMode.GATEWAY, "c2c-prod", "{station_id}", AWS_THING_NAME),
        tls_material=TlsMaterial(ca_pem=pki["ca"].cert_pem),
    )
    spec = profile.connection_spec("c2c-prod")
    assert spec.protocol == 5 and spec.tls is not None and spec.will is not None
    assert (spec.will.topic, spec.will.payload, spec.will.retain) == ("c2c/prod/status/c2c-prod", b"offline", True)
    online = profile.online_message("c2c-prod")
    assert online is not None
    assert (online.topic, online.payload, online.retain) == ("c2c/prod/status/c2c-prod", b"online", True)
    profile.check(message(), qos=2, retain=True)
    with pytest.raises(PermanentError, match="QoS 3"):
        profile.check(message(), qos=3, retain=False)


def test_generic_status_topic_can_be_disabled_and_tls_is_optional():
    profile = GenericProfile(
        host="h",
        port=1883,
        status_topic_template="",
        identities=IdentityMapping(IdentityMode.GATEWAY, "c", "{station_id}", AWS_THING_NAME),
    )
    spec = profile.connection_spec("c")
    assert spec.will is None and spec.tls is None and profile.online_message("c") is None


def test_secrets_stay_out_of_the_reprs_of_profiles_specs_and_credentials(pki):
    """A profile, a connection spec or TLS material in a log line or a traceback must not carry a
    password, a device/policy key, a SAS token or a private key."""
    policy_key = base64.b64encode(b"a policy key of thirty-two bytes").decode()
    hub = AzureIotHubProfile(
        hostname="hub.azure-devices.net",
        identities=IdentityMapping(IdentityMode.GATEWAY, "gw-1", "{station_id}", AZURE_DEVICE_ID),
        credentials=AzureCredentials(device_keys={"gw-1": DEVICE_KEY}, policy_name="device", policy_key=policy_key),
    )
    spec = hub.connection_spec("gw-1")
    token = SasToken(
        generate_sas_token("hub.azure-devices.net/devices/gw-1", DEVICE_KEY, 4_000_000_000), 4_000_000_000, 0.0
    )
    client = pki["ca"].client_certificate("repr-test")
    material = TlsMaterial(cert_pem=client.cert_pem, key_pem=client.key_pem)
    generic = GenericProfile(
        host="127.0.0.1",
        port=1883,
        username="worker",
        password="hunter2-password",
        identities=IdentityMapping(IdentityMode.GATEWAY, "c2c", "{station_id}", AZURE_DEVICE_ID),
    )
    secrets = [
        DEVICE_KEY,
        policy_key,
        spec.password,
        token.token,
        client.key_pem.strip().splitlines()[1],
        "hunter2-password",
    ]
    issuer = SasTokenIssuer(policy_key, policy_name="device")
    reprs = " ".join(repr(x) for x in (hub, spec, token, issuer, material, generic, generic.connection_spec("c2c")))
    assert spec.password and "SharedAccessSignature" not in reprs
    for secret in secrets:
        assert secret not in reprs
    assert "gw-1" in reprs and "worker" in reprs  # the rest of the repr is still there
