#!/usr/bin/env python3
"""The CDK app: `cdk synth -c env=dev` builds every stack of config/dev.yaml.

The environment's file is read and validated here, once; the stacks receive typed arguments.
cdk-nag's AwsSolutions checks run on every synth, so an unacknowledged finding fails `cdk synth`.
Context keys read here (and only here): `env` (default dev) and `config_dir` (default config/).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

# The pinned Node 20 is past end-of-life for jsii; its banner adds nothing to a synth.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from config import CONFIG_DIR, ConfigError, load_environment

if TYPE_CHECKING:
    import aws_cdk as cdk

    from infra.environment import EnvironmentStacks

DEFAULT_ENV = "dev"


def add_checks(app: cdk.App) -> None:
    """cdk-nag AwsSolutions over the whole app. Acknowledgements are also written into the
    templates' Metadata (cdk_nag.rules_to_suppress), so every reason is reviewable in cdk.out."""
    import aws_cdk as cdk
    from cdk_nag import AwsSolutionsChecks

    cdk.Validations.of(app).add_plugins(
        AwsSolutionsChecks(app, verbose=True, write_suppressions_to_cloud_formation=True)
    )


def build_app(
    env_name: str | None = None,
    *,
    outdir: str | None = None,
    config_dir: str | os.PathLike[str] | None = None,
    context: dict[str, object] | None = None,
) -> tuple[cdk.App, EnvironmentStacks]:
    """Build (not synthesize) the app of one environment; raises ConfigError for a bad config.

    Under the CLI, `env`/`config_dir` come from `-c` context; tests pass them as arguments.
    """
    import aws_cdk as cdk  # imported here so a bad config is reported before jsii starts

    from infra.environment import add_environment

    app = cdk.App(analytics_reporting=False, outdir=outdir, context=context)
    env_name = env_name or str(app.node.try_get_context("env") or DEFAULT_ENV)
    config = load_environment(env_name, Path(config_dir or app.node.try_get_context("config_dir") or CONFIG_DIR))
    stacks = add_environment(app, config)
    add_checks(app)
    return app, stacks


def _cli_context() -> dict[str, object]:
    """The context the CDK CLI hands the app (CDK_CONTEXT_JSON, or its overflow file), read
    without aws_cdk so a bad config fails in a fraction of a second instead of after jsii starts."""
    context: dict[str, object] = {}
    try:
        context.update(json.loads(os.environ.get("CDK_CONTEXT_JSON") or "{}"))
        overflow = os.environ.get("CONTEXT_OVERFLOW_LOCATION_ENV")
        if overflow:
            with open(overflow, encoding="utf-8") as handle:
                context.update(json.load(handle))
    except (OSError, ValueError):
        return {}
    return context


def main() -> int:
    context = _cli_context()
    try:
        # Validate first (cheap), then build: the App reads the same context itself.
        load_environment(str(context.get("env") or DEFAULT_ENV), str(context.get("config_dir") or CONFIG_DIR))
        app, _ = build_app()
    except ConfigError as exc:
        print(f"c2c-sync: cannot synthesize: {exc}", file=sys.stderr)
        return 1
    app.synth()
    return 0


if __name__ == "__main__":
    sys.exit(main())
