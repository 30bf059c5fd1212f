"""The environment config: typed, strict, and failing with one message that names every bad field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from app import build_app
from config import CONFIG_DIR, ConfigError, known_environments, load_environment
from config.schema import EnvironmentConfig, PlatformProfile, SignalTransport, WorkerMode

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
    assert isinstance(dev, EnvironmentConfig) and dev.name == "dev"
    assert dev.is_env_agnostic and dev.account is None and dev.region is None
    assert prod.region == "eu-west-1" and not prod.is_env_agnostic
    assert dev.worker.mode is WorkerMode.PER_SIGNAL and dev.signal_transport is SignalTransport.SQS
    assert prod.platform.profile is PlatformProfile.AZURE_IOT_HUB
    assert (dev.cache.replicas, dev.cache.multi_az) == (0, False)
    assert (prod.cache.replicas, prod.cache.multi_az, prod.retain_data) == (1, True, True)


def test_invalid_file_lists_every_bad_field_in_one_message(tmp_path):
    write_env(
        tmp_path, "broken",
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
    for field in ("schedule", "log_retention_days", "colour: unknown field", "worker.desired_count",
                  "worker.cpu: must be one of", "cache.port", "platform.profile", "source.base_url"):
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
        ({"platform": {"profile": "aws_iot_core"}}, "needs secrets.aws_iot_certificate, secrets.aws_iot_private_key"),
        ({"platform": {"profile": "azure_iot_hub", "endpoint": "mqtt://hub.example.com:1883",
                       "secrets": {"azure_sas_key": "x"}}}, "requires TLS"),
        ({"cache": {"multi_az": True, "replicas": 0}}, "multi_az requires replicas >= 1"),
        ({"account": "123456789012"}, "account is set but region is not"),
        ({"schedule": "rate(1 minutes)"}, "schedule"),
        ({"network": {"nat_gateways": 0}}, "network.nat_gateways"),
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
