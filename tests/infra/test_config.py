"""The environment config: typed, strict, and failing with one message that names every bad field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from app import build_app
from config import CONFIG_DIR, ConfigError, known_environments, load_environment
from config.schema import DeployedCache, EnvironmentConfig, IdentityMode, ProfileName, SignalTransport, WorkerMode

pytestmark = pytest.mark.infra


def write_env(config_dir: Path, env: str, **overrides: object) -> Path:
    raw = yaml.safe_load((CONFIG_DIR / "dev.yaml").read_text())
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / f"{env}.yaml").write_text(yaml.safe_dump(raw))
    return config_dir


def test_dev_and_prod_load_as_typed_configs():
    assert known_environments() == ["dev", "prod"]
    dev, prod = load_environment("dev"), load_environment("prod")
    assert isinstance(dev, EnvironmentConfig)
    assert dev.name == "dev"
    assert dev.is_env_agnostic and dev.account is None and dev.region is None
    assert prod.region == "eu-west-1" and not prod.is_env_agnostic
    assert dev.worker.mode is WorkerMode.PER_SIGNAL and dev.signal_transport is SignalTransport.SQS
    assert prod.platform.profile is ProfileName.AZURE_IOT_HUB
    assert prod.platform.azure is not None and prod.platform.azure.policy_name == "device"
    assert prod.platform.identity_mode is IdentityMode.PER_DEVICE
    assert dev.platform.profile is ProfileName.GENERIC and dev.platform.identity_mode is IdentityMode.GATEWAY
    assert (dev.cache.replicas, dev.cache.multi_az) == (0, False)
    assert (prod.cache.replicas, prod.cache.multi_az, prod.retain_data) == (1, True, True)


def test_invalid_file_lists_every_bad_field_in_one_message(tmp_path):
    write_env(
        tmp_path,
        "broken",
        schedule="every 3 minutes",
        log_retention_days=13,
        colour="blue",
        worker={"cpu": 300, "desired_count": 2},
        cache={"port": 6379},
        platform={"profile": "mqtt-thing"},
        source={"base_url": "not a url"},
    )
    with pytest.raises(ConfigError) as info:
        load_environment("broken", tmp_path)
    message = str(info.value)
    for field in (
        "schedule",
        "log_retention_days",
        "colour: unknown field",
        "worker.desired_count",
        "worker.cpu: must be one of",
        "cache.port",
        "platform.profile",
        "source.base_url",
    ):
        assert field in message, f"{field!r} missing from:\n{message}"
    assert "8 invalid field(s)" in message
    assert str(tmp_path / "broken.yaml") in message


def test_unknown_environment_lists_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown environment 'staging'.*Known environments: dev, prod"):
        load_environment("staging")


def test_app_loading_fails_with_the_config_message(tmp_path):
    write_env(tmp_path, "broken", log_retention_days=13, worker={"memory_mib": 100})
    with pytest.raises(ConfigError) as info:
        build_app("broken", outdir=str(tmp_path / "out"), config_dir=tmp_path)
    assert "log_retention_days" in str(info.value) and "memory_mib 100 is not valid" in str(info.value)
    with pytest.raises(ConfigError, match="Known environments: broken"):
        build_app("nope", outdir=str(tmp_path / "out"), config_dir=tmp_path)


def test_file_name_and_name_field_must_agree(tmp_path):
    write_env(tmp_path, "blue", name="green")
    with pytest.raises(ConfigError, match=r"name: must equal the file name 'blue'"):
        load_environment("blue", tmp_path)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            {"platform": {"profile": "aws_iot_core"}},
            "platform.secrets.aws_iot_certificate: profile aws_iot_core needs it",
        ),
        ({"platform": {"endpoint": "mqtt://hub.example.com:1883"}}, "platform.endpoint: must start with mqtts://"),
        ({"cache": {"multi_az": True, "replicas": 0}}, "multi_az requires replicas >= 1"),
        ({"account": "123456789012"}, "account is set but region is not"),
        ({"schedule": "rate(1 minutes)"}, "schedule"),
        ({"network": {"nat_count": 0}}, "network.nat_count"),
        ({"network": {"nat_instance_type": "t3.nano"}}, "network.nat_instance_type"),
        ({"source": {"stations": []}}, "source.stations"),
    ],
)
def test_cross_field_rules_name_the_field(tmp_path, overrides, expected):
    write_env(tmp_path, "x", **overrides)
    with pytest.raises(ConfigError, match="invalid field") as info:
        load_environment("x", tmp_path)
    assert expected in str(info.value)


@pytest.mark.parametrize("schedule", ["rate(1 minute)", "rate(5 minutes)", "rate(2 hours)", "cron(0/3 * * * ? *)"])
def test_valid_schedule_expressions_are_accepted(tmp_path, schedule):
    write_env(tmp_path, "x", schedule=schedule)
    assert load_environment("x", tmp_path).schedule == schedule


def write_platform(config_dir: Path, env: str, platform: dict[str, object]) -> Path:
    """dev.yaml with its whole `platform` section replaced."""
    raw = yaml.safe_load((CONFIG_DIR / "dev.yaml").read_text())
    raw["platform"] = platform
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / f"{env}.yaml").write_text(yaml.safe_dump(raw))
    return config_dir


AZURE = {"profile": "azure_iot_hub", "endpoint": "mqtts://hub.azure-devices.net:8883", "client_id": "gw"}
AWS = {
    "profile": "aws_iot_core",
    "endpoint": "mqtts://x-ats.iot.eu-west-1.amazonaws.com:8883",
    "client_id": "thing",
    "secrets": {"aws_iot_certificate": "c", "aws_iot_private_key": "k"},
}
GENERIC = {
    "profile": "generic",
    "endpoint": "mqtts://broker.example.com:8883",
    "client_id": "c2c",
    "username": "c2c",
    "secrets": {"mqtt_password": "p"},
}


def test_every_platform_problem_is_reported_at_once_under_its_own_field(tmp_path):
    write_platform(
        tmp_path,
        "x",
        {
            **AZURE,
            "endpoint": "mqtt://hub.azure-devices.net:1883",
            "username": "u",
            "identity_mode": "per-device",
            "aws": {"protocol": 5},
            "secrets": {"azure_sas_key": "a", "azure_device_keys": "b", "mqtt_password": "c"},
        },
    )
    with pytest.raises(ConfigError) as info:
        load_environment("x", tmp_path)
    lines = str(info.value).splitlines()
    expected = [
        "platform.endpoint: must start with mqtts://",
        "platform.secrets.mqtt_password: not used by profile azure_iot_hub",
        "platform.aws: only used by profile aws_iot_core",
        "platform.username: only used by profile generic",
        "platform.secrets.azure_sas_key: profile azure_iot_hub needs exactly one of",
        "platform.azure.policy_name: required in per-device mode with secrets.azure_sas_key",
    ]
    assert lines[0].endswith(f"{len(expected)} invalid field(s):")
    for line, start in zip(lines[1:], expected, strict=True):
        assert line.startswith(f"  - {start}"), line


@pytest.mark.parametrize(
    ("platform", "expected"),
    [
        ({**AZURE}, "platform.secrets.azure_sas_key: profile azure_iot_hub needs exactly one of"),
        ({**AZURE, "secrets": {"azure_connection_string": "s", "azure_device_keys": "k"}}, "(got 2)"),
        (
            {**AZURE, "azure": {"policy_name": "device"}, "secrets": {"azure_connection_string": "s"}},
            "platform.azure.policy_name: only used with secrets.azure_sas_key",
        ),
        ({**AZURE, "azure": {"token_ttl_s": 60}, "secrets": {"azure_sas_key": "k"}}, "platform.azure.token_ttl_s"),
        (
            {**AZURE, "azure": {"api_version": "latest"}, "secrets": {"azure_sas_key": "k"}},
            "platform.azure.api_version",
        ),
        (
            {**AWS, "secrets": {"aws_iot_certificate": "c"}},
            "platform.secrets.aws_iot_private_key: profile aws_iot_core needs it",
        ),
        ({**AWS, "aws": {"topic": "c2c/{env}/+/telemetry"}}, "platform.aws.topic: a publish topic cannot contain"),
        ({**AWS, "aws": {"topic": "a/b/c/d/e/f/g/h/{station_id}"}}, "at most 7 slashes"),
        ({**AWS, "aws": {"topic": "c2c/{site}/{station_id}"}}, "platform.aws.topic: unknown placeholder 'site'"),
        ({**AWS, "aws": {"protocol": 4}}, "platform.aws.protocol"),
        (
            {**AWS, "identity_mode": "per-device", "identity_template": "ess"},
            "platform.identity_template: must contain {station_id}",
        ),
        ({**AWS, "max_connections": 10}, "platform.max_connections: only used with identity_mode per-device"),
        ({**AWS, "identity_template": "ess-{station_id}"}, "platform.identity_template: only used with identity_mode"),
        ({**GENERIC, "secrets": {}}, "platform.secrets.mqtt_password: profile generic needs"),
        (
            {**GENERIC, "secrets": {"mqtt_client_certificate": "c"}},
            "platform.secrets.mqtt_client_private_key: a client certificate needs both",
        ),
        ({**GENERIC, "username": None}, "platform.username: required with secrets.mqtt_password"),
        (
            {**GENERIC, "secrets": {"mqtt_client_certificate": "same", "mqtt_client_private_key": "same"}},
            "names the same secret 'same'",
        ),
        (
            {**GENERIC, "secrets": {"mqtt_password": "p", "aws_iot_certificate": "c"}},
            "platform.secrets.aws_iot_certificate: not used by profile generic",
        ),
        ({**GENERIC, "azure": {"policy_name": "device"}}, "platform.azure: only used by profile azure_iot_hub"),
        ({**GENERIC, "generic": {"status_topic": "c2c/{env}/#"}}, "platform.generic.status_topic"),
        ({**GENERIC, "identity_mode": "per-station"}, "platform.identity_mode"),
    ],
)
def test_platform_rules_name_the_field(tmp_path, platform, expected):
    write_platform(tmp_path, "x", platform)
    with pytest.raises(ConfigError, match="invalid field") as info:
        load_environment("x", tmp_path)
    assert expected in str(info.value)


@pytest.mark.parametrize(
    "platform",
    [
        {**AZURE, "secrets": {"azure_sas_key": "k"}},  # gateway with the device's key
        {**AZURE, "identity_mode": "per-device", "azure": {"policy_name": "device"}, "secrets": {"azure_sas_key": "k"}},
        {**AZURE, "identity_mode": "per-device", "max_connections": 200, "secrets": {"azure_device_keys": "k"}},
        {**AZURE, "identity_mode": "per-device", "secrets": {"azure_connection_string": "policy-connection"}},
        {**AWS, "aws": {"topic": "$aws/rules/ingest/c2c/{env}/{station_id}", "protocol": "3.1.1"}},
        {**GENERIC, "generic": {"protocol": 5, "status_topic": ""}},
        {**GENERIC, "username": None, "secrets": {"mqtt_client_certificate": "c", "mqtt_client_private_key": "k"}},
    ],
)
def test_valid_platform_sections_are_accepted(tmp_path, platform):
    write_platform(tmp_path, "x", platform)
    assert load_environment("x", tmp_path).platform.profile.value == platform["profile"]


def test_every_retention_the_schema_accepts_maps_to_a_cdk_retention():
    # The schema (no CDK import) and the stacks each list CloudWatch's retention values; they must agree.
    from config.schema import ALLOWED_LOG_RETENTION_DAYS
    from infra.retention import RETENTION_BY_DAYS

    assert set(RETENTION_BY_DAYS) == set(ALLOWED_LOG_RETENTION_DAYS)


DEPLOYED_CACHE = {"port": 6380, "engine_version": "8.0"}


def _cache_refusal(tmp_path: Path, **cache: object) -> str:
    write_env(tmp_path, "x", cache={**cache, "deployed": DEPLOYED_CACHE}, schedule="rate(1 minutes)")
    with pytest.raises(ConfigError) as info:
        load_environment("x", tmp_path)
    return str(info.value)


def test_a_port_change_that_would_replace_the_deployed_cache_is_refused_with_the_migration(tmp_path):
    # Port: "Update requires: Replacement" for AWS::ElastiCache::ReplicationGroup.
    message = _cache_refusal(tmp_path, port=6390)
    assert "2 invalid field(s)" in message  # reported together with the other bad field
    assert "cache.port: 6390 differs from the deployed cache's 6380" in message
    assert "aws elasticache create-snapshot" in message and "set cache.deployed to the new values" in message


def test_an_engine_downgrade_the_deployed_cache_cannot_take_is_refused_with_the_migration(tmp_path):
    message = _cache_refusal(tmp_path, port=6380, engine_version="7.2")
    assert "cache.engine_version: 7.2 is older than the deployed cache's 8.0" in message
    assert "cannot downgrade an engine in place" in message and "set cache.deployed to the new values" in message


def test_every_change_the_deployed_cache_cannot_take_is_reported_at_once(tmp_path):
    message = _cache_refusal(tmp_path, port=6390, engine_version="7.2")
    assert "3 invalid field(s)" in message
    assert "cache.port: 6390 differs" in message and "cache.engine_version: 7.2 is older" in message


def test_changes_the_deployed_cache_takes_in_place_pass(tmp_path):
    # Node type, replicas, Multi-AZ and an engine upgrade update in place (no replacement).
    cache = {"port": 6380, "engine_version": "8.1", "node_type": "cache.t4g.small", "replicas": 1, "multi_az": True}
    write_env(tmp_path, "x", cache={**cache, "deployed": DEPLOYED_CACHE})
    config = load_environment("x", tmp_path)
    assert config.cache.engine_version == "8.1" and config.cache.deployed == DeployedCache(**DEPLOYED_CACHE)


def test_a_deployed_record_names_every_guarded_value(tmp_path):
    write_env(tmp_path, "x", cache={"deployed": {"port": 6380}})
    with pytest.raises(ConfigError, match=r"cache\.deployed\.engine_version"):
        load_environment("x", tmp_path)


def test_prod_records_its_deployed_cache():
    prod = load_environment("prod")
    assert prod.cache.deployed is not None and prod.cache.deployed.port == prod.cache.port
    assert prod.cache.deployed.engine_version == prod.cache.engine_version
