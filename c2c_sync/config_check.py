"""`validate-config`: load one environment's config through its typed schema and list what is wrong.

`config.load_environment` is imported lazily: the rest of the CLI must work even when the config
schema cannot be imported (e.g. a broken checkout), and this is the only command that needs it.
"""

from __future__ import annotations

import importlib

from c2c_sync.environments import config_dir


def check(env: str) -> list[str]:
    """Every problem found loading `<config dir>/<env>.yaml`, one line each (empty when it is valid)."""
    try:
        config = importlib.import_module("config")
        load_environment, config_error = config.load_environment, config.ConfigError
    except (ImportError, AttributeError) as exc:
        return [f"cannot import config.load_environment: {exc}"]
    try:
        load_environment(env, config_dir=config_dir())
    except config_error as exc:
        # ConfigError's message is "<path>: N invalid field(s):\n  - field: why" or one line.
        lines = [line.strip().removeprefix("- ") for line in str(exc).splitlines() if line.strip()]
        return lines[1:] if len(lines) > 1 else lines
    return []
