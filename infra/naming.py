"""Names shared by several stacks (stack names, alarm names) and the repository's paths."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS_DIR = REPO_ROOT / "functions"
#: Cache of pip-installed Lambda dependencies, keyed by what was installed (see lambda_bundling).
BUILD_CACHE_DIR = REPO_ROOT / "build" / "lambda-deps"


def stack_name(env: str, part: str) -> str:
    """`C2C-dev-Network`: the CloudFormation stack name of one part of one environment."""
    return f"C2C-{env}-{part}"


def heartbeat_alarm_name(env: str) -> str:
    """Known before synthesis, so the trigger can be told which alarm means "worker silent"
    without a cross-stack reference from Trigger to Monitoring (Monitoring depends on Trigger)."""
    return f"C2C-{env}-HeartbeatStale"
