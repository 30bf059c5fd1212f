"""`validate-config`: load one environment's config through its typed schema and list what is wrong.

`config.load_environment` is imported lazily: the rest of the CLI must work even when the config
schema cannot be imported (e.g. a broken checkout), and this is the only command that needs it.
"""

from __future__ import annotations

import importlib

import yaml
from pydantic import ValidationError


def check(env: str) -> list[str]:
    """Every problem found loading `config/<env>.yaml`, one line each (empty when it is valid)."""
    try:
        load_environment = importlib.import_module("config").load_environment
    except (ImportError, AttributeError) as exc:
        return [f"cannot import config.load_environment: {exc}"]
    try:
        load_environment(env)
    except ValidationError as exc:
        return [_field_problem(error) for error in exc.errors()]
    except yaml.YAMLError as exc:
        return [f"not valid YAML: {exc}".replace("\n", " ")]
    except (ValueError, KeyError, TypeError, OSError) as exc:
        # The config package may wrap pydantic's error in its own (a ValueError naming the fields).
        cause = exc.__cause__
        if isinstance(cause, ValidationError):
            return [_field_problem(error) for error in cause.errors()]
        return [line for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
    return []


def _field_problem(error) -> str:
    where = ".".join(str(part) for part in error["loc"]) or "(file)"
    value = error.get("input")
    shown = "" if isinstance(value, (dict, list)) or value is None else f" (got {value!r})"
    return f"{where}: {error['msg']}{shown}"
