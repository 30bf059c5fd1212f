"""Build the configured `PlatformProfile` (see `settings.py` for the platforms' variables).

`generic` is built from the worker's own `WorkerSettings` (its `C2C_MQTT_*` fields, so the CLI
flags that override them apply); `azure_iot_hub` and `aws_iot_core` read their own prefixed
variables (`C2C_AZURE_*`, `C2C_AWS_IOT_*`).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from functions.common.validation import describe_validation_error
from functions.sync_worker.errors import PermanentError
from functions.sync_worker.settings import WorkerSettings
from functions.sync_worker.uplink.profile import PlatformProfile
from functions.sync_worker.uplink.profiles.aws_iot_core import AWS_THING_NAME, AwsIotCoreProfile
from functions.sync_worker.uplink.profiles.azure_iot_hub import AZURE_DEVICE_ID, AzureCredentials, AzureIotHubProfile
from functions.sync_worker.uplink.profiles.generic import MQTT_CLIENT_ID, GenericProfile
from functions.sync_worker.uplink.profiles.identity import IdentityMapping, IdentityMode
from functions.sync_worker.uplink.profiles.settings import PROTOCOLS, AwsIotCoreSettings, AzureIotHubSettings, _secret
from functions.sync_worker.uplink.profiles.tls import TlsMaterial

_PREFIXES = {"azure_iot_hub": "C2C_AZURE_", "aws_iot_core": "C2C_AWS_IOT_", "generic": "C2C_MQTT_"}


class ProfileConfigError(ValueError):
    """Invalid profile settings; the message names each environment variable at fault."""


def _explain(exc: ValidationError, prefix: str) -> ProfileConfigError:
    """Each bad field under its environment variable: `C2C_AZURE_HOSTNAME: Field required`."""
    return ProfileConfigError(
        describe_validation_error(
            exc, lambda loc: f"{prefix}{'_'.join(str(p) for p in loc).upper()}", top_level=prefix.rstrip("_")
        )
    )


def azure_profile(s: AzureIotHubSettings) -> AzureIotHubProfile:
    return AzureIotHubProfile(
        hostname=s.hostname or "",
        identities=IdentityMapping(s.identity_mode, s.device_id, s.device_id_template, AZURE_DEVICE_ID),
        credentials=AzureCredentials(
            device_keys=s.device_key_map(), policy_name=s.policy_name, policy_key=_secret(s.policy_key)
        ),
        tls_material=TlsMaterial(ca_file=s.ca_file, ca_pem=s.ca_pem),
        api_version=s.api_version,
        token_ttl_s=s.token_ttl_s,
        renew_margin_s=s.token_renew_margin_s,
        port=s.port or 8883,
        keepalive_s=s.keepalive_s,
        connect_host=s.connect_host,
    )


def aws_profile(s: AwsIotCoreSettings, env: str) -> AwsIotCoreProfile:
    return AwsIotCoreProfile(
        endpoint=s.endpoint or "",
        identities=IdentityMapping(s.identity_mode, s.thing_name, s.thing_name_template, AWS_THING_NAME),
        tls_material=TlsMaterial(
            ca_file=s.ca_file,
            ca_pem=s.ca_pem,
            cert_file=s.cert_file,
            cert_pem=_secret(s.cert_pem),
            key_file=s.key_file,
            key_pem=_secret(s.key_pem),
        ),
        topic_template=s.topic,
        env=env,
        port=s.port or 8883,
        protocol=PROTOCOLS[s.protocol],
        keepalive_s=s.keepalive_s,
        connect_host=s.connect_host,
    )


def generic_profile(s: WorkerSettings) -> GenericProfile:
    url = urlsplit(s.mqtt_url)
    tls = None
    if url.scheme == "mqtts":
        tls = TlsMaterial(
            ca_file=s.mqtt_ca_file,
            ca_pem=s.mqtt_ca_pem,
            cert_file=s.mqtt_cert_file,
            cert_pem=_secret(s.mqtt_cert_pem),
            key_file=s.mqtt_key_file,
            key_pem=_secret(s.mqtt_key_pem),
            insecure=s.mqtt_insecure,
        )
    return GenericProfile(
        host=url.hostname or "",
        port=url.port or (8883 if tls else 1883),
        identities=IdentityMapping(
            IdentityMode(s.mqtt_identity_mode), s.client_id, s.mqtt_client_id_template, MQTT_CLIENT_ID
        ),
        username=s.mqtt_username,
        password=_secret(s.mqtt_password),
        tls_material=tls,
        protocol=PROTOCOLS[s.mqtt_protocol],
        keepalive_s=s.mqtt_keepalive_s,
        env=s.env,
        topic_template=s.mqtt_topic,
        status_topic_template=s.mqtt_status_topic,
        max_payload_bytes=s.mqtt_max_payload_bytes,
    )


def build_profile(settings: WorkerSettings) -> PlatformProfile:
    """The profile `settings.platform_profile` (`C2C_PLATFORM_PROFILE`) names.

    Raises `ProfileConfigError` naming the variables at fault; the worker refuses to start on it.
    """
    name = settings.platform_profile
    # The worker's merged view (flags over environment) of the endpoint and client id.
    shared: dict[str, Any] = {"C2C_MQTT_URL": settings.mqtt_url, "C2C_MQTT_CLIENT_ID": settings.mqtt_client_id}
    try:
        if name == "azure_iot_hub":
            return azure_profile(AzureIotHubSettings(**shared))
        if name == "aws_iot_core":
            return aws_profile(AwsIotCoreSettings(**shared), settings.env)
        return generic_profile(settings)
    except ValidationError as exc:
        raise _explain(exc, _PREFIXES[name]) from None
    except PermanentError as exc:  # a rule the profile itself checks (identity names, templates, keys)
        raise ProfileConfigError(str(exc)) from None
