"""Build the configured `PlatformProfile` from the environment (see `settings.py` for the names)."""

from __future__ import annotations

import re

from pydantic import ValidationError

from functions.sync_worker.errors import PermanentError
from functions.sync_worker.uplink.profile import PlatformProfile
from functions.sync_worker.uplink.profiles.aws_iot_core import AWS_THING_NAME, AwsIotCoreProfile
from functions.sync_worker.uplink.profiles.azure_iot_hub import AZURE_DEVICE_ID, AzureCredentials, AzureIotHubProfile
from functions.sync_worker.uplink.profiles.generic_tls import GenericTlsProfile
from functions.sync_worker.uplink.profiles.identity import IdentityMapping, IdentityRule
from functions.sync_worker.uplink.profiles.settings import (
    PROTOCOLS,
    AwsIotCoreSettings,
    AzureIotHubSettings,
    GenericMqttSettings,
    ProfileSelection,
    _secret,
)
from functions.sync_worker.uplink.profiles.tls import TlsMaterial

MQTT_CLIENT_ID = IdentityRule(platform="generic", pattern=re.compile(r"[^\x00+#/]+"), max_length=65535,
                              description="any UTF-8 but NUL, '+', '#', '/'")

_PREFIXES = {"azure_iot_hub": "C2C_AZURE_", "aws_iot_core": "C2C_AWS_IOT_", "generic": "C2C_MQTT_"}


class ProfileConfigError(ValueError):
    """Invalid profile settings; the message names each environment variable at fault."""


def _explain(exc: ValidationError, prefix: str) -> ProfileConfigError:
    problems = []
    for err in exc.errors():
        field = "_".join(str(p) for p in err["loc"]).upper()
        name = f"{prefix}{field}" if field else prefix.rstrip("_")
        problems.append(f"{name}: {err['msg']}")
    return ProfileConfigError("; ".join(problems))


def azure_profile(s: AzureIotHubSettings) -> AzureIotHubProfile:
    return AzureIotHubProfile(
        hostname=s.hostname or "",
        identities=IdentityMapping(s.identity_mode, s.device_id, s.device_id_template, AZURE_DEVICE_ID),
        credentials=AzureCredentials(device_keys=s.device_key_map(), policy_name=s.policy_name,
                                     policy_key=_secret(s.policy_key)),
        tls_material=TlsMaterial(ca_file=s.ca_file, ca_pem=s.ca_pem),
        api_version=s.api_version, token_ttl_s=s.token_ttl_s, renew_margin_s=s.token_renew_margin_s,
        port=s.port or 8883, keepalive_s=s.keepalive_s, connect_host=s.connect_host,
    )


def aws_profile(s: AwsIotCoreSettings, env: str) -> AwsIotCoreProfile:
    return AwsIotCoreProfile(
        endpoint=s.endpoint or "",
        identities=IdentityMapping(s.identity_mode, s.thing_name, s.thing_name_template, AWS_THING_NAME),
        tls_material=TlsMaterial(ca_file=s.ca_file, ca_pem=s.ca_pem, cert_file=s.cert_file,
                                 cert_pem=_secret(s.cert_pem), key_file=s.key_file, key_pem=_secret(s.key_pem)),
        topic_template=s.topic, env=env, port=s.port or 8883, protocol=PROTOCOLS[s.protocol], keepalive_s=s.keepalive_s,
        connect_host=s.connect_host,
    )


def generic_profile(s: GenericMqttSettings, env: str) -> GenericTlsProfile:
    tls = None
    if s.uses_tls:
        tls = TlsMaterial(ca_file=s.ca_file, ca_pem=s.ca_pem, cert_file=s.cert_file, cert_pem=_secret(s.cert_pem),
                          key_file=s.key_file, key_pem=_secret(s.key_pem), insecure=s.insecure)
    return GenericTlsProfile(
        host=s.host, port=s.port,
        identities=IdentityMapping(s.identity_mode, s.client_id, s.client_id_template, MQTT_CLIENT_ID),
        username=s.username, password=_secret(s.password), tls_material=tls, protocol=PROTOCOLS[s.protocol],
        keepalive_s=s.keepalive_s, env=env, topic_template=s.topic, status_topic_template=s.status_topic,
        max_payload_bytes=s.max_payload_bytes,
    )


def build_profile(platform: str | None = None, env: str | None = None) -> PlatformProfile:
    """The profile `C2C_PLATFORM_PROFILE` names (or `platform`), configured from its env vars.

    Raises `ProfileConfigError` naming the variables at fault; the worker refuses to start on it.
    """
    try:
        selection = ProfileSelection(**{k: v for k, v in {"platform_profile": platform, "env": env}.items() if v})
    except ValidationError as exc:
        raise _explain(exc, "C2C_") from None
    name = selection.platform_profile
    prefix = _PREFIXES[name]
    try:
        if name == "azure_iot_hub":
            return azure_profile(AzureIotHubSettings())
        if name == "aws_iot_core":
            return aws_profile(AwsIotCoreSettings(), selection.env)
        return generic_profile(GenericMqttSettings(), selection.env)
    except ValidationError as exc:
        raise _explain(exc, prefix) from None
    except PermanentError as exc:  # a rule the profile itself checks (identity names, templates, keys)
        raise ProfileConfigError(str(exc)) from None
