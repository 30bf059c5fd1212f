#!/usr/bin/env python3
"""The CDK app: `cdk synth -c env=dev` builds every stack of config/dev.yaml.

The environment's file is read and validated here, once; the stacks receive typed arguments.
cdk-nag's AwsSolutions checks run on every synth, so a finding fails `cdk synth` itself.
"""

from __future__ import annotations

import os
import sys

# The pinned Node 20 is past end-of-life for jsii; the banner adds nothing to a synth.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

import aws_cdk as cdk  # noqa: E402
from cdk_nag import AwsSolutionsChecks  # noqa: E402

from config import CONFIG_DIR, ConfigError, load_environment  # noqa: E402
from stacks.deployment import EnvironmentStacks, add_environment  # noqa: E402

DEFAULT_ENV = "dev"


def add_checks(app: cdk.App) -> None:
    """cdk-nag AwsSolutions over the whole app; acknowledgements are also written into the
    templates' Metadata (cdk_nag.rules_to_suppress) so every reason is reviewable in cdk.out."""
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app, verbose=True, write_suppressions_to_cloud_formation=True))


def build_app(env_name: str, *, outdir: str | None = None, config_dir: str | os.PathLike[str] = CONFIG_DIR,
              context: dict[str, object] | None = None) -> tuple[cdk.App, EnvironmentStacks]:
    """Build (not synthesize) the app for one environment; raises ConfigError on a bad config."""
    config = load_environment(env_name, config_dir)
    app = cdk.App(outdir=outdir, context=context) if outdir else cdk.App(context=context)
    stacks = add_environment(app, config)
    add_checks(app)
    return app, stacks


def main() -> int:
    probe = cdk.App()  # reads the CLI's context (-c env=..., cdk.json) and output directory
    env_name = str(probe.node.try_get_context("env") or DEFAULT_ENV)
    config_dir = str(probe.node.try_get_context("config_dir") or CONFIG_DIR)
    try:
        config = load_environment(env_name, config_dir)
    except ConfigError as exc:
        print(f"c2c-sync: cannot synthesize environment {env_name!r}:\n{exc}", file=sys.stderr)
        return 1
    add_environment(probe, config)
    add_checks(probe)
    probe.synth()
    return 0


if __name__ == "__main__":
    sys.exit(main())
