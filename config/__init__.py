"""Per-environment configuration: `load_environment("dev")` reads and validates config/dev.yaml.

The CDK app calls this once (app.py) and hands typed values to the stacks; stacks never read
CDK context themselves.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from config.schema import EnvironmentConfig
from functions.common.validation import field_problems

CONFIG_DIR = Path(__file__).resolve().parent


class ConfigError(Exception):
    """An environment that cannot be loaded; the message lists every problem at once."""


def known_environments(config_dir: Path = CONFIG_DIR) -> list[str]:
    """Names of the environments that have a config file (config/<name>.yaml)."""
    return sorted(p.stem for p in Path(config_dir).glob("*.yaml"))


def load_environment(name: str, config_dir: Path | str = CONFIG_DIR) -> EnvironmentConfig:
    """Read, validate and return config/<name>.yaml, or raise ConfigError naming every bad field."""
    config_dir = Path(config_dir)
    path = config_dir / f"{name}.yaml"
    known = known_environments(config_dir)
    if name not in known:
        raise ConfigError(
            f"unknown environment {name!r}: no {path}. Known environments: {', '.join(known) or '(none)'}"
        )
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of fields at the top level")

    problems: list[str] = []
    if raw.get("name", name) != name:
        problems.append(f"name: must equal the file name {name!r} (got {raw.get('name')!r})")
    try:
        config = EnvironmentConfig.model_validate({"name": name, **raw})
    except ValidationError as exc:
        problems.extend(field_problems(exc))
        config = None
    if problems:
        listing = "\n".join(f"  - {p}" for p in problems)
        raise ConfigError(f"{path}: {len(problems)} invalid field(s):\n{listing}")
    assert config is not None
    return config


__all__ = ["CONFIG_DIR", "ConfigError", "EnvironmentConfig", "known_environments", "load_environment"]
