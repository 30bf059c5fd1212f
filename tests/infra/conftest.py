"""Synthesize each environment once per test session and share the result.

Synthesis is the slow part (a few seconds per environment), so every infra test reads the same
in-process synth: `dev` and `prod` from config/, and `stage`, a variant written here that turns on
what dev/prod leave off (Redis signal transport, an account-pinned env, AWS IoT Core secrets,
continuous mode) so those code paths are checked too.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from aws_cdk.assertions import Template  # noqa: E402

from app import build_app  # noqa: E402
from config import CONFIG_DIR, load_environment  # noqa: E402
from config.schema import EnvironmentConfig  # noqa: E402
from stacks.deployment import EnvironmentStacks  # noqa: E402
from stacks.naming import REPO_ROOT  # noqa: E402

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
        "secrets": {"aws_iot_certificate": "c2c-sync/stage/cert", "aws_iot_private_key": "c2c-sync/stage/key"},
    }
    raw["source"]["stations"] = ["st-1", "st-2"]
    raw["alarms"]["emails"] = ["ops@example.com"]
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "stage.yaml").write_text(yaml.safe_dump(raw))
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


@pytest.fixture(scope="session", params=["dev", "prod"])
def env_synth(request) -> Synth:
    """Each configured environment in turn."""
    return request.getfixturevalue(request.param)


@pytest.fixture(scope="session", params=["dev", "prod", "stage"])
def any_synth(request) -> Synth:
    """Every synthesized variant, including the `stage` one."""
    return request.getfixturevalue(request.param)
