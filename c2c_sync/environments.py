"""Which environments exist (one `config/<name>.yaml` each) and loading their typed config.

Discovery needs only the file names, so `signal` and `status` work without importing the config
schema; `validate-config` imports `config.load_environment` lazily.
"""

from __future__ import annotations

import os
from pathlib import Path

from c2c_sync.errors import CliError, ExitCode

#: Overrides the config directory (tests, or an operator with configs kept elsewhere).
CONFIG_DIR_ENV = "C2C_CONFIG_DIR"
REPO_ROOT = Path(__file__).resolve().parent.parent


def config_dir() -> Path:
    return Path(os.environ.get(CONFIG_DIR_ENV) or REPO_ROOT / "config")


def known_envs() -> list[str]:
    return sorted(p.stem for p in config_dir().glob("*.yaml"))


def require_known(name: str) -> str:
    """Return `name` if `config/<name>.yaml` exists, else fail listing the known environments."""
    known = known_envs()
    if name not in known:
        listed = ", ".join(known) if known else f"none: {config_dir()} has no *.yaml"
        raise CliError(f"unknown environment {name!r} (known: {listed})", ExitCode.UNKNOWN_ENV)
    return name


def stack_prefix(env: str) -> str:
    """Every stack of an environment is named `C2C-<env>-<Part>`."""
    return f"C2C-{env}-"
