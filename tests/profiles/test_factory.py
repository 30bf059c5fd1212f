"""`build_profile(settings)` from the environment: each profile's variables, and errors that name them."""

from __future__ import annotations

import json

import pytest

from functions.sync_worker.settings import ConfigError, load_settings
from functions.sync_worker.uplink.profiles import ProfileConfigError
from functions.sync_worker.uplink.profiles import build_profile as build_from_settings
from functions.sync_worker.uplink.profiles.aws_iot_core import AwsIotCoreProfile
from functions.sync_worker.uplink.profiles.azure_iot_hub import AzureIotHubProfile
from functions.sync_worker.uplink.profiles.generic import GenericProfile
from tests.profiles.conftest import DEVICE_KEY


def build_profile():
    """What the worker does at startup: its settings from the environment, then the profile."""
    return build_from_settings(load_settings())


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    import os

    for name in list(os.environ):
        if name.startswith("C2C_"):
            monkeypatch.delenv(name)


def test_azure_from_device_connection_string(monkeypatch):
    monkeypatch.setenv("C2C_PLATFORM_PROFILE", "azure_iot_hub")
    monkeypatch.setenv(
        "C2C_AZURE_CONNECTION_STRING", f"HostName=hub1.azure-devices.net;DeviceId=gw;SharedAccessKey={DEVICE_KEY}"
    )
    monkeypatch.setenv("C2C_AZURE_TOKEN_TTL_S", "600")
    profile = build_profile()
    assert isinstance(profile, AzureIotHubProfile)
    assert profile.identity_for("any") == "gw" and profile.token_ttl_s == 600
    assert profile.connection_spec("gw").username == "hub1.azure-devices.net/gw/?api-version=2021-04-12"


def test_azure_per_device_with_policy_connection_string(monkeypatch):
    monkeypatch.setenv("C2C_PLATFORM_PROFILE", "azure_iot_hub")
    monkeypatch.setenv(
        "C2C_AZURE_CONNECTION_STRING",
        f"HostName=hub1.azure-devices.net;SharedAccessKeyName=device;SharedAccessKey={DEVICE_KEY}",
    )
    monkeypatch.setenv("C2C_AZURE_IDENTITY_MODE", "per-device")
    monkeypatch.setenv("C2C_AZURE_DEVICE_ID_TEMPLATE", "ess-{station_id}")
    profile = build_profile()
    assert profile.identity_for("7") == "ess-7"
    assert profile.connection_spec("ess-7").password.endswith("&skn=device")


def test_azure_per_device_keys_json(monkeypatch):
    monkeypatch.setenv("C2C_PLATFORM_PROFILE", "azure_iot_hub")
    monkeypatch.setenv("C2C_AZURE_HOSTNAME", "hub1.azure-devices.net")
    monkeypatch.setenv("C2C_AZURE_IDENTITY_MODE", "per-device")
    monkeypatch.setenv("C2C_AZURE_DEVICE_KEYS", json.dumps({"a": DEVICE_KEY, "b": DEVICE_KEY}))
    profile = build_profile()
    assert profile.connection_spec(profile.identity_for("b")).client_id == "b"


@pytest.mark.parametrize(
    "env,message",
    [
        ({}, "C2C_AZURE_HOSTNAME .*is required"),
        ({"C2C_AZURE_HOSTNAME": "h.azure-devices.net", "C2C_AZURE_DEVICE_KEY": DEVICE_KEY}, "C2C_AZURE_DEVICE_ID"),
        ({"C2C_AZURE_HOSTNAME": "h.azure-devices.net", "C2C_AZURE_DEVICE_ID": "d"}, "no credentials"),
        (
            {
                "C2C_AZURE_HOSTNAME": "h.azure-devices.net",
                "C2C_AZURE_IDENTITY_MODE": "per-device",
                "C2C_AZURE_DEVICE_KEYS": "[1]",
            },
            "must be a JSON object",
        ),
        ({"C2C_AZURE_CONNECTION_STRING": "HostName=h;DeviceId=d;SharedAccessKey=!!!"}, "not valid base64"),
        (
            {
                "C2C_AZURE_CONNECTION_STRING": "HostName=h;DeviceId=d;SharedAccessKey=" + DEVICE_KEY,
                "C2C_AZURE_TOKEN_TTL_S": "0",
            },
            "C2C_AZURE_TOKEN_TTL_S",
        ),
    ],
)
def test_azure_bad_settings_name_the_variable(monkeypatch, env, message):
    monkeypatch.setenv("C2C_PLATFORM_PROFILE", "azure_iot_hub")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ProfileConfigError, match=message) as err:
        build_profile()
    assert DEVICE_KEY not in str(err.value)


def test_aws_from_pem_secrets(monkeypatch, pki):
    client = pki["ca"].client_certificate("thing-a")
    monkeypatch.setenv("C2C_PLATFORM_PROFILE", "aws_iot_core")
    monkeypatch.setenv("C2C_ENV", "prod")
    monkeypatch.setenv("C2C_AWS_IOT_ENDPOINT", "abc-ats.iot.eu-west-1.amazonaws.com")
    monkeypatch.setenv("C2C_AWS_IOT_THING_NAME", "thing-a")
    monkeypatch.setenv("C2C_AWS_IOT_CERT_PEM", client.cert_pem)
    monkeypatch.setenv("C2C_AWS_IOT_KEY_PEM", client.key_pem)
    monkeypatch.setenv("C2C_AWS_IOT_PROTOCOL", "5")
    profile = build_profile()
    assert isinstance(profile, AwsIotCoreProfile)
    spec = profile.connection_spec(profile.identity_for("s1"))
    assert (spec.client_id, spec.protocol) == ("thing-a", 5)


def test_aws_without_certificate_names_the_variables(monkeypatch):
    monkeypatch.setenv("C2C_PLATFORM_PROFILE", "aws_iot_core")
    monkeypatch.setenv("C2C_AWS_IOT_ENDPOINT", "e")
    monkeypatch.setenv("C2C_AWS_IOT_THING_NAME", "t")
    with pytest.raises(ProfileConfigError, match="C2C_AWS_IOT_CERT_PEM"):
        build_profile()


def test_aws_bad_key_pem_is_clear_and_does_not_echo_it(monkeypatch, pki):
    client = pki["ca"].client_certificate("thing-b")
    monkeypatch.setenv("C2C_PLATFORM_PROFILE", "aws_iot_core")
    monkeypatch.setenv("C2C_AWS_IOT_ENDPOINT", "e")
    monkeypatch.setenv("C2C_AWS_IOT_THING_NAME", "thing-b")
    monkeypatch.setenv("C2C_AWS_IOT_CERT_PEM", client.cert_pem)
    monkeypatch.setenv("C2C_AWS_IOT_KEY_PEM", "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n")
    profile = build_profile()  # certificates load lazily, on the first connect
    from functions.sync_worker.errors import PermanentError

    with pytest.raises(PermanentError, match="client certificate/key could not be loaded") as err:
        profile.connection_spec("thing-b")
    assert "c2VjcmV0" not in str(err.value)


def test_generic_mqtts_with_client_certificate(monkeypatch, pki):
    client = pki["ca"].client_certificate("c2c-dev")
    monkeypatch.setenv("C2C_MQTT_URL", "mqtts://broker.example:8884")
    monkeypatch.setenv("C2C_MQTT_CLIENT_ID", "c2c-dev")
    monkeypatch.setenv("C2C_MQTT_CA_FILE", str(pki["ca"].cert_path))
    monkeypatch.setenv("C2C_MQTT_CERT_FILE", str(client.cert_path))
    monkeypatch.setenv("C2C_MQTT_KEY_FILE", str(client.key_path))
    profile = build_profile()
    assert isinstance(profile, GenericProfile)
    spec = profile.connection_spec("c2c-dev")
    assert (spec.host, spec.port, spec.tls is not None) == ("broker.example", 8884, True)
    assert spec.will is not None and spec.will.topic == "c2c/dev/status/c2c-dev"


def test_generic_bad_url_and_unknown_profile(monkeypatch):
    monkeypatch.setenv("C2C_MQTT_URL", "http://x")
    with pytest.raises(ConfigError, match="C2C_MQTT_URL"):
        build_profile()
    monkeypatch.delenv("C2C_MQTT_URL")
    monkeypatch.setenv("C2C_PLATFORM_PROFILE", "iot_thing")
    with pytest.raises(ConfigError, match="C2C_PLATFORM_PROFILE"):
        build_profile()


def test_generic_profile_rules_name_the_problem(monkeypatch):
    monkeypatch.setenv("C2C_MQTT_CLIENT_ID", "gw/1")  # '/' is not allowed in an MQTT client id here
    with pytest.raises(ProfileConfigError, match="identity 'gw/1' is not valid"):
        build_profile()
    monkeypatch.setenv("C2C_MQTT_CLIENT_ID", "gw-1")
    monkeypatch.setenv("C2C_MQTT_STATUS_TOPIC", "c2c/{env}/#")
    with pytest.raises(ConfigError, match="C2C_MQTT_STATUS_TOPIC"):
        build_profile()


def test_azure_gateway_from_the_stacks_standard_variables(monkeypatch):
    # What the sync-service stack sets today: endpoint + client id from the config, the key as C2C_AZURE_SAS_KEY.
    monkeypatch.setenv("C2C_PLATFORM_PROFILE", "azure_iot_hub")
    monkeypatch.setenv("C2C_MQTT_URL", "mqtts://hub9.azure-devices.net:8883")
    monkeypatch.setenv("C2C_MQTT_CLIENT_ID", "gw-9")
    monkeypatch.setenv("C2C_AZURE_SAS_KEY", DEVICE_KEY)
    profile = build_profile()
    spec = profile.connection_spec(profile.identity_for("s"))
    assert (spec.host, spec.port, spec.client_id) == ("hub9.azure-devices.net", 8883, "gw-9")
    assert spec.username == "hub9.azure-devices.net/gw-9/?api-version=2021-04-12" and "skn=" not in spec.password


def test_azure_sas_key_is_the_policy_key_when_a_policy_is_named(monkeypatch):
    monkeypatch.setenv("C2C_PLATFORM_PROFILE", "azure_iot_hub")
    monkeypatch.setenv("C2C_MQTT_URL", "mqtts://hub9.azure-devices.net")
    monkeypatch.setenv("C2C_AZURE_IDENTITY_MODE", "per-device")
    monkeypatch.setenv("C2C_AZURE_POLICY_NAME", "device")
    monkeypatch.setenv("C2C_AZURE_SAS_KEY", DEVICE_KEY)
    profile = build_profile()
    assert profile.connection_spec(profile.identity_for("st-1")).password.endswith("&skn=device")


def test_aws_endpoint_and_thing_from_the_stacks_standard_variables(monkeypatch, pki):
    client = pki["ca"].client_certificate("thing-c")
    monkeypatch.setenv("C2C_PLATFORM_PROFILE", "aws_iot_core")
    monkeypatch.setenv("C2C_MQTT_URL", "mqtts://abc-ats.iot.eu-west-1.amazonaws.com:443")
    monkeypatch.setenv("C2C_MQTT_CLIENT_ID", "thing-c")
    monkeypatch.setenv("C2C_AWS_IOT_CERT_PEM", client.cert_pem)
    monkeypatch.setenv("C2C_AWS_IOT_KEY_PEM", client.key_pem)
    spec = build_profile().connection_spec("thing-c")
    assert (spec.host, spec.port, spec.client_id) == ("abc-ats.iot.eu-west-1.amazonaws.com", 443, "thing-c")


def test_cloud_profiles_take_the_endpoint_and_identity_from_cli_flags_not_only_the_environment(monkeypatch, pki):
    # `run --mqtt-url/--mqtt-client-id` override C2C_MQTT_URL/C2C_MQTT_CLIENT_ID for every profile.
    client = pki["ca"].client_certificate("thing-flag")
    monkeypatch.setenv("C2C_PLATFORM_PROFILE", "aws_iot_core")
    monkeypatch.setenv("C2C_MQTT_URL", "mqtts://from-env-ats.iot.eu-west-1.amazonaws.com:8883")
    monkeypatch.setenv("C2C_AWS_IOT_CERT_PEM", client.cert_pem)
    monkeypatch.setenv("C2C_AWS_IOT_KEY_PEM", client.key_pem)
    settings = load_settings(
        mqtt_url="mqtts://from-flag-ats.iot.eu-west-1.amazonaws.com:443", mqtt_client_id="thing-flag"
    )
    spec = build_from_settings(settings).connection_spec("thing-flag")
    assert (spec.host, spec.port, spec.client_id) == ("from-flag-ats.iot.eu-west-1.amazonaws.com", 443, "thing-flag")

    monkeypatch.setenv("C2C_PLATFORM_PROFILE", "azure_iot_hub")
    monkeypatch.setenv("C2C_AZURE_SAS_KEY", DEVICE_KEY)
    settings = load_settings(mqtt_url="mqtts://hubflag.azure-devices.net:8883", mqtt_client_id="gw-flag")
    spec = build_from_settings(settings).connection_spec("gw-flag")
    assert spec.username == "hubflag.azure-devices.net/gw-flag/?api-version=2021-04-12"
