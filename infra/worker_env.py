"""The worker's platform-profile variables from the environment config's `platform` section.

The names are the ones the worker's profile settings read (functions/sync_worker/uplink/profiles/
settings.py, documented in its README): C2C_AZURE_* for azure_iot_hub, C2C_AWS_IOT_* for
aws_iot_core, C2C_MQTT_* for generic. Plain values become container environment variables; secret
*names* become `ecs.Secret`s in the sync-service stack. A field left unset in the config emits
nothing, so the worker's own default applies.
"""

from __future__ import annotations

import json

from config.schema import EnvironmentConfig, IdentityMode, PlatformConfig, ProfileName, SignalTransport
from functions.common.source_secrets import source_secret_env

#: PlatformSecrets field -> the container env var that receives the secret's value.
PLATFORM_SECRET_ENV: dict[str, str] = {
    "mqtt_password": "C2C_MQTT_PASSWORD",
    "mqtt_client_certificate": "C2C_MQTT_CERT_PEM",
    "mqtt_client_private_key": "C2C_MQTT_KEY_PEM",
    "azure_sas_key": "C2C_AZURE_SAS_KEY",
    "azure_connection_string": "C2C_AZURE_CONNECTION_STRING",
    "azure_device_keys": "C2C_AZURE_DEVICE_KEYS",
    "aws_iot_certificate": "C2C_AWS_IOT_CERT_PEM",
    "aws_iot_private_key": "C2C_AWS_IOT_KEY_PEM",
}

#: Each profile's prefix and the names its settings give the identity mode and template.
IDENTITY_ENV: dict[ProfileName, tuple[str, str]] = {
    ProfileName.GENERIC: ("C2C_MQTT_IDENTITY_MODE", "C2C_MQTT_CLIENT_ID_TEMPLATE"),
    ProfileName.AZURE_IOT_HUB: ("C2C_AZURE_IDENTITY_MODE", "C2C_AZURE_DEVICE_ID_TEMPLATE"),
    ProfileName.AWS_IOT_CORE: ("C2C_AWS_IOT_IDENTITY_MODE", "C2C_AWS_IOT_THING_NAME_TEMPLATE"),
}
#: Bound of the per-device connection pool (uplink/pool.py), whatever the profile.
MAX_CONNECTIONS_ENV = "C2C_MQTT_MAX_CONNECTIONS"

#: (section, field) -> env var of the profile-specific settings.
SECTION_ENV: dict[tuple[str, str], str] = {
    ("azure", "policy_name"): "C2C_AZURE_POLICY_NAME",
    ("azure", "token_ttl_s"): "C2C_AZURE_TOKEN_TTL_S",
    ("azure", "api_version"): "C2C_AZURE_API_VERSION",
    ("aws", "topic"): "C2C_AWS_IOT_TOPIC",
    ("aws", "protocol"): "C2C_AWS_IOT_PROTOCOL",
    ("generic", "protocol"): "C2C_MQTT_PROTOCOL",
    ("generic", "status_topic"): "C2C_MQTT_STATUS_TOPIC",
}


def platform_environment(platform: PlatformConfig) -> dict[str, str]:
    """Plain (non-secret) profile variables: identity mode always, everything else only when set."""
    mode_var, template_var = IDENTITY_ENV[platform.profile]
    env = {"C2C_PLATFORM_PROFILE": platform.profile.value, mode_var: platform.identity_mode.value}
    if platform.identity_mode is IdentityMode.PER_DEVICE:
        if platform.identity_template is not None:
            env[template_var] = platform.identity_template
        if platform.max_connections is not None:
            env[MAX_CONNECTIONS_ENV] = str(platform.max_connections)
    if platform.username is not None:
        env["C2C_MQTT_USERNAME"] = platform.username
    for (section, field), env_var in SECTION_ENV.items():
        values = getattr(platform, section)
        value = getattr(values, field) if values is not None else None
        if value is not None:
            env[env_var] = str(value)
    return env


def platform_named_secrets(platform: PlatformConfig) -> dict[str, str]:
    """Env var -> NAME of each Secrets Manager secret the profile reads."""
    return {
        env_var: name
        for field, env_var in PLATFORM_SECRET_ENV.items()
        if (name := getattr(platform.secrets, field)) is not None
    }


def worker_environment(config: EnvironmentConfig) -> dict[str, str]:
    """The worker's plain (non-secret) C2C_* variables, read by functions/sync_worker/settings.py."""
    env = {
        "C2C_ENV": config.name,
        "C2C_MODE": config.worker.mode.value,
        "C2C_INTERVAL_S": str(config.worker.interval_s),
        "C2C_MQTT_URL": config.platform.endpoint,
        "C2C_MQTT_CLIENT_ID": config.platform.client_id,
        **platform_environment(config.platform),
        "C2C_SOURCE_URL": str(config.source.base_url).rstrip("/"),
    }
    if config.source.vendor is not None:
        env["C2C_SOURCE_CONFIG"] = config.source.vendor
    if config.source.adapter is not None:
        env["C2C_SOURCE_ADAPTER"] = config.source.adapter
        env["C2C_SOURCE_SETTINGS"] = json.dumps(config.source.settings, separators=(",", ":"), sort_keys=True)
    if config.signal_transport is SignalTransport.REDIS:
        env["C2C_SIGNAL_URL"] = "redis"
    if config.source.stations:
        env["C2C_STATIONS"] = ",".join(config.source.stations)
    if config.source.station_list_ttl_s is not None:
        env["C2C_STATION_LIST_TTL_S"] = f"{config.source.station_list_ttl_s:g}"
    return env


def worker_named_secrets(config: EnvironmentConfig) -> dict[str, str]:
    """Env var -> name of each operator-created secret the worker needs."""
    source = {source_secret_env(name): secret for name, secret in config.source.named_secrets.items()}
    return {**source, **platform_named_secrets(config.platform)}


__all__ = [
    "IDENTITY_ENV",
    "MAX_CONNECTIONS_ENV",
    "PLATFORM_SECRET_ENV",
    "SECTION_ENV",
    "platform_environment",
    "platform_named_secrets",
    "worker_environment",
    "worker_named_secrets",
]
