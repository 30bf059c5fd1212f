"""Synthesize each environment once per test session and share the result.

Synthesis is the slow part (a few seconds for the first environment, about one for each next),
so every infra test reads the same in-process synth: `dev` (generic broker, gateway) and `prod`
(Azure IoT Hub, per-device with a DeviceConnect policy key) from config/, and test-only variants
written here that turn on what dev/prod leave off:
- `stage`: Redis signal transport, an account-pinned env, continuous mode, AWS IoT Core (mTLS
  secrets, per-device things, topic and MQTT 5);
- `edge`: a generic broker with mutual TLS and a password, MQTT 5, per-device client ids and the
  status topic disabled;
- `hub`: Azure IoT Hub in gateway mode from a device connection string.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from aws_cdk.assertions import Template

from app import build_app
from config import CONFIG_DIR, load_environment
from config.schema import EnvironmentConfig
from infra.environment import EnvironmentStacks
from infra.naming import REPO_ROOT
from tests.support.markers import require_marker

PARTS = ("Network", "Messaging", "Cache", "SyncService", "Trigger", "Monitoring")
STAGE_ACCOUNT = "111122223333"


def cdk_json_context() -> dict[str, object]:
    """The feature flags cdk.json gives the CLI, so in-process synths match `cdk synth`."""
    return dict(json.loads((REPO_ROOT / "cdk.json").read_text())["context"])


def stage_config(config_dir: Path) -> Path:
    raw = yaml.safe_load((CONFIG_DIR / "dev.yaml").read_text())
    raw.update(
        account=STAGE_ACCOUNT,
        region="us-east-1",
        signal_transport="redis",
        retain_data=True,
        tags={"project": "c2c-sync", "environment": "stage"},
    )
    raw["worker"].update(mode="continuous", interval_s=120, architecture="arm64")
    raw["cache"].update(replicas=1, multi_az=True)
    raw["platform"] = {
        "profile": "aws_iot_core",
        "endpoint": "mqtts://abc123-ats.iot.us-east-1.amazonaws.com:8883",
        "client_id": "c2c-stage",
        "identity_mode": "per-device",
        "identity_template": "ess-{station_id}",
        "max_connections": 50,
        "aws": {"topic": "dt/c2c/{env}/{identity}/telemetry", "protocol": 5},
        "secrets": {"aws_iot_certificate": "c2c-sync/stage/cert", "aws_iot_private_key": "c2c-sync/stage/key"},
    }
    raw["source"]["stations"] = ["st-1", "st-2"]
    raw["alarms"]["notify"] = {
        "emails": ["ops@example.com"],
        "topic_arn": f"arn:aws:sns:us-east-1:{STAGE_ACCOUNT}:ops-paging",
    }
    return _write(config_dir, "stage", raw)


#: Platform sections of the profile-only variants (everything else as config/dev.yaml).
PROFILE_VARIANTS: dict[str, dict[str, object]] = {
    "edge": {
        "profile": "generic",
        "endpoint": "mqtts://emqx.example.com:8883",
        "client_id": "c2c-edge",
        "username": "c2c-edge",
        "identity_mode": "per-device",
        "identity_template": "c2c-{station_id}",
        "generic": {"protocol": "5", "status_topic": ""},
        "secrets": {
            "mqtt_password": "c2c-sync/edge/mqtt-password",
            "mqtt_client_certificate": "c2c-sync/edge/mqtt-cert",
            "mqtt_client_private_key": "c2c-sync/edge/mqtt-key",
        },
    },
    "hub": {
        "profile": "azure_iot_hub",
        "endpoint": "mqtts://c2c-hub.azure-devices.net:8883",
        "client_id": "c2c-gateway-hub",
        "azure": {"token_ttl_s": 900},
        "secrets": {"azure_connection_string": "c2c-sync/hub/azure-connection-string"},
    },
}


def profile_config(config_dir: Path, env: str) -> Path:
    raw = yaml.safe_load((CONFIG_DIR / "dev.yaml").read_text())
    raw["platform"] = PROFILE_VARIANTS[env]
    raw["tags"] = {"project": "c2c-sync", "environment": env}
    return _write(config_dir, env, raw)


def _write(config_dir: Path, env: str, raw: dict[str, object]) -> Path:
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / f"{env}.yaml").write_text(yaml.safe_dump(raw))
    return config_dir


@dataclass
class Synth:
    env: str
    config: EnvironmentConfig
    stacks: EnvironmentStacks
    outdir: Path
    templates: dict[str, dict]
    _assertions: dict[str, Template] = field(default_factory=dict)

    def template(self, part: str) -> Template:
        """aws_cdk.assertions view of one stack's template (built once)."""
        if part not in self._assertions:
            self._assertions[part] = Template.from_json(self.templates[part])
        return self._assertions[part]

    def resources(self, part: str, cfn_type: str) -> dict[str, dict]:
        return {k: v for k, v in self.templates[part]["Resources"].items() if v["Type"] == cfn_type}

    def only(self, part: str, cfn_type: str) -> dict:
        found = list(self.resources(part, cfn_type).values())
        assert len(found) == 1, f"{part}: expected one {cfn_type}, found {len(found)}"
        return found[0]


def _synth(env: str, outdir: Path, config_dir: Path = CONFIG_DIR) -> Synth:
    require_marker("infra", "synthesize the CDK app")
    app, stacks = build_app(env, outdir=str(outdir), config_dir=config_dir, context=cdk_json_context())
    assembly = app.synth()
    templates = {part: assembly.get_stack_by_name(f"C2C-{env}-{part}").template for part in PARTS}
    return Synth(env=env, config=load_environment(env, config_dir), stacks=stacks, outdir=outdir, templates=templates)


@pytest.fixture(scope="session")
def dev(tmp_path_factory) -> Synth:
    return _synth("dev", tmp_path_factory.mktemp("cdk-dev"))


@pytest.fixture(scope="session")
def prod(tmp_path_factory) -> Synth:
    return _synth("prod", tmp_path_factory.mktemp("cdk-prod"))


@pytest.fixture(scope="session")
def stage(tmp_path_factory) -> Synth:
    config_dir = stage_config(tmp_path_factory.mktemp("stage-config"))
    return _synth("stage", tmp_path_factory.mktemp("cdk-stage"), config_dir)


@pytest.fixture(scope="session")
def edge(tmp_path_factory) -> Synth:
    config_dir = profile_config(tmp_path_factory.mktemp("edge-config"), "edge")
    return _synth("edge", tmp_path_factory.mktemp("cdk-edge"), config_dir)


@pytest.fixture(scope="session")
def hub(tmp_path_factory) -> Synth:
    config_dir = profile_config(tmp_path_factory.mktemp("hub-config"), "hub")
    return _synth("hub", tmp_path_factory.mktemp("cdk-hub"), config_dir)


@pytest.fixture(scope="session", params=["dev", "prod"])
def env_synth(request) -> Synth:
    """Each configured environment in turn."""
    return request.getfixturevalue(request.param)


@pytest.fixture(scope="session", params=["dev", "prod", "stage"])
def any_synth(request) -> Synth:
    """dev, prod and the `stage` variant (every stack differs between them)."""
    return request.getfixturevalue(request.param)


@pytest.fixture(scope="session", params=["dev", "prod", "stage", "edge", "hub"])
def profile_synth(request) -> Synth:
    """One synth per platform profile and identity mode (edge/hub differ from dev only in `platform`)."""
    return request.getfixturevalue(request.param)


CHECKOV = REPO_ROOT / ".venv-checkov" / "bin" / "checkov"


@dataclass(frozen=True)
class CheckovReport:
    failed: list[dict]
    skipped: list[dict]
    passed: int
    seconds: float


@pytest.fixture(scope="session")
def checkov_report(tmp_path_factory, dev, prod, stage, edge, hub) -> CheckovReport:
    """checkov once over every template of every variant (one process, ~10 s of the session)."""
    import shutil
    import subprocess
    import time

    assert CHECKOV.exists(), f"{CHECKOV} is missing: run `make install` (it installs requirements-checkov.txt)"
    root = tmp_path_factory.mktemp("checkov")
    for synth in (dev, prod, stage, edge, hub):
        for template in synth.outdir.glob("*.template.json"):
            shutil.copy(template, root / template.name)
    started = time.monotonic()
    # --skip-download: no Prisma Cloud lookups (no internet here; every check runs locally).
    args = [str(CHECKOV), "-d", str(root), "--framework", "cloudformation", "--compact"]
    result = subprocess.run(
        [*args, "--skip-download", "-o", "json"], capture_output=True, text=True, timeout=600, check=False
    )
    assert result.stdout, result.stderr[-2000:]
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    failed = [check for report in reports for check in report["results"].get("failed_checks", [])]
    skipped = [check for report in reports for check in report["results"].get("skipped_checks", [])]
    passed = sum(report["summary"]["passed"] for report in reports)
    return CheckovReport(failed, skipped, passed, time.monotonic() - started)
