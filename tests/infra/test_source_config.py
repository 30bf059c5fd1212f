"""The environment's `source` section: a vendor config or a plug-in adapter, its own settings, and a
map of secret names to Secrets Manager secrets that reaches the worker as ecs.Secret values."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Template

from app import build_app
from config import ConfigError, load_environment
from infra.worker_env import worker_environment, worker_named_secrets
from tests.infra.test_config import write_env

pytestmark = pytest.mark.infra

ADAPTER = "functions.sync_worker.source.examples.csv_meter:CsvMeterSource"


def test_every_source_problem_is_named_at_once(tmp_path):
    write_env(
        tmp_path,
        "bad",
        source={
            "base_url": "https://vendor.example.com",
            "vendor": "simulator",
            "adapter": ADAPTER,
            "settings": {"x": 1},
            "secrets": {"api_key": "a/b", "unused": "c/d"},
            "api_key_secret": "a/b",
        },
    )
    with pytest.raises(ConfigError) as info:
        load_environment("bad", tmp_path)
    text = str(info.value)
    assert "source.vendor: set exactly one of source.vendor and source.adapter" in text
    assert "source.api_key_secret: names the secret `api_key` a second time" in text
    assert "source.secrets.unused: not read by vendor simulator" in text


def test_a_secret_the_vendor_reads_must_be_deployed(tmp_path):
    write_env(tmp_path, "nokey", source={"vendor": "simulator", "api_key_secret": None})
    with pytest.raises(ConfigError, match=r"source.secrets.api_key: vendor simulator reads secret 'api_key'"):
        load_environment("nokey", tmp_path)
    write_env(tmp_path, "novendor", source={"vendor": "acme"})
    with pytest.raises(ConfigError, match=r"source.vendor: no vendor config acme.yaml"):
        load_environment("novendor", tmp_path)


def test_an_adapter_with_its_settings_and_secrets_deploys_without_touching_the_stacks(tmp_path):
    source = {
        "base_url": "https://meters.example.com",
        "adapter": ADAPTER,
        "settings": {"token_header": "X-Meter-Token"},
        "secrets": {"meter_token": "c2c-sync/adapter/meter-token"},
        "vendor": None,
        "api_key_secret": None,
    }
    write_env(tmp_path, "meters", source=source)
    config = load_environment("meters", tmp_path)
    env = worker_environment(config)
    assert env["C2C_SOURCE_ADAPTER"] == ADAPTER and "C2C_SOURCE_CONFIG" not in env
    assert json.loads(env["C2C_SOURCE_SETTINGS"]) == {"token_header": "X-Meter-Token"}
    assert worker_named_secrets(config)["C2C_SOURCE_METER_TOKEN"] == "c2c-sync/adapter/meter-token"
    _, stacks = build_app("meters", outdir=str(tmp_path / "out"), config_dir=tmp_path)
    task = Template.from_stack(stacks.sync_service).find_resources("AWS::ECS::TaskDefinition")
    (container,) = next(iter(task.values()))["Properties"]["ContainerDefinitions"]
    secrets = {s["Name"]: json.dumps(s["ValueFrom"]) for s in container["Secrets"]}
    assert ":secret:c2c-sync/adapter/meter-token" in secrets["C2C_SOURCE_METER_TOKEN"]
    assert "C2C_SOURCE_API_KEY" not in secrets
    plain = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert plain["C2C_SOURCE_ADAPTER"] == ADAPTER


#: The shipped vendors as an operator configures them (docs/vendors/<name>.md): the secret names the
#: definition reads, each deployed from its own Secrets Manager secret.
SHIPPED_VENDORS: dict[str, dict[str, Any]] = {
    "solaredge": {
        "base_url": "https://monitoringapi.solaredge.com",
        "api_key_secret": "c2c-sync/vendors/solaredge-api-key",
        "secrets": {},
    },
    "huawei_fusionsolar": {
        "base_url": "https://eu5.fusionsolar.huawei.com",
        "api_key_secret": None,
        "secrets": {"user": "c2c-sync/vendors/fs-user", "system_code": "c2c-sync/vendors/fs-system-code"},
    },
}


@pytest.mark.parametrize("vendor", sorted(SHIPPED_VENDORS))
def test_a_shipped_vendor_synthesizes_with_its_secrets_as_ecs_secrets_only(tmp_path, vendor):
    source = {"vendor": vendor, **SHIPPED_VENDORS[vendor]}
    write_env(tmp_path, "vendor", source=source)
    config = load_environment("vendor", tmp_path)
    named = dict(config.source.named_secrets)
    assert named and worker_named_secrets(config).items() >= {
        (f"C2C_SOURCE_{name.upper()}", secret) for name, secret in named.items()
    }
    _, stacks = build_app("vendor", outdir=str(tmp_path / "out"), config_dir=tmp_path)
    task = Template.from_stack(stacks.sync_service).find_resources("AWS::ECS::TaskDefinition")
    (container,) = next(iter(task.values()))["Properties"]["ContainerDefinitions"]
    secrets = {s["Name"]: json.dumps(s["ValueFrom"]) for s in container["Secrets"]}
    for name, secret in named.items():
        assert f":secret:{secret}" in secrets[f"C2C_SOURCE_{name.upper()}"]
    assert {n for n in secrets if n.startswith("C2C_SOURCE_")} == {f"C2C_SOURCE_{n.upper()}" for n in named}
    plain = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert plain["C2C_SOURCE_CONFIG"] == vendor and plain["C2C_SOURCE_URL"] == source["base_url"]
    assert not any(name.startswith("C2C_SOURCE_") and name in plain for name in secrets)


def test_the_station_list_ttl_reaches_the_worker_and_a_bad_one_is_named(tmp_path):
    write_env(tmp_path, "ttl", source={"vendor": "solaredge", "station_list_ttl_s": 10800})
    config = load_environment("ttl", tmp_path)
    assert worker_environment(config)["C2C_STATION_LIST_TTL_S"] == "10800"
    assert "C2C_STATION_LIST_TTL_S" not in worker_environment(load_environment("dev"))  # the worker's default
    write_env(tmp_path, "short", source={"vendor": "solaredge", "station_list_ttl_s": 5})
    with pytest.raises(ConfigError, match=r"source.station_list_ttl_s"):
        load_environment("short", tmp_path)
