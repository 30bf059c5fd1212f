"""The plug-in seam: a vendor no config can express is a Python class named in `source.adapter`.

`package.module:Class` (or `entrypoint:<name>`, a `c2c_sync.sources` entry point of an installed
package) names a class built as

    Class(settings=<the adapter's own settings>, secrets=<SecretSource>, base_url=<str | None>,
          pool_size=<int>)

that implements `SourceAdapter` (`source.base`). It declares the secret names it reads as a class
attribute `required_secrets` (a list, or a classmethod `required_secrets(settings)`), so deployment
maps each to a Secrets Manager secret and `validate-config` checks they are set, exactly as for a
configured vendor's `auth`.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from typing import Any

from functions.sync_worker.source.auth import SecretSource
from functions.sync_worker.source.base import SourceAdapter
from functions.sync_worker.source.config import required_secrets
from functions.sync_worker.source.http_json import VendorConfigError, load_vendor_config

ENTRY_POINT_GROUP = "c2c_sync.sources"
_SPEC = re.compile(r"^(?:entrypoint:[\w.-]+|[A-Za-z_][\w.]*:[A-Za-z_]\w*)$")


class AdapterError(ValueError):
    """`source.adapter` names nothing importable, or not a usable class."""


def load_adapter_class(spec: str) -> Callable[..., SourceAdapter]:
    if not _SPEC.match(spec):
        raise AdapterError(f"source adapter {spec!r}: expected package.module:Class or entrypoint:<name>")
    if spec.startswith("entrypoint:"):
        name = spec.split(":", 1)[1]
        found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
        if not found:
            raise AdapterError(f"source adapter {spec!r}: no {ENTRY_POINT_GROUP!r} entry point named {name!r}")
        loaded: Any = found[0].load()
    else:
        module_name, _, attr = spec.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise AdapterError(f"source adapter {spec!r}: cannot import {module_name!r}: {exc}") from exc
        loaded = getattr(module, attr, None)
        if loaded is None:
            raise AdapterError(f"source adapter {spec!r}: {module_name!r} has no {attr!r}")
    if not callable(loaded):
        raise AdapterError(f"source adapter {spec!r} is not a class")
    return loaded  # type: ignore[no-any-return]  # checked callable; its instances are checked on build


def adapter_secrets(cls: Any, settings: Mapping[str, Any]) -> list[str]:
    declared = getattr(cls, "required_secrets", [])
    names = declared(dict(settings)) if callable(declared) else declared
    return [str(n) for n in names]


def source_secret_names(*, vendor: str | None, adapter: str | None, settings: Mapping[str, Any]) -> list[str]:
    """Every secret name the configured source reads: the vendor config's auth, or the adapter's."""
    if adapter:
        return adapter_secrets(load_adapter_class(adapter), settings)
    if vendor:
        return required_secrets(load_vendor_config(vendor).auth)
    raise VendorConfigError("no source: set a vendor config or an adapter")


def build_adapter(
    spec: str, *, settings: Mapping[str, Any], secrets: SecretSource, base_url: str | None, pool_size: int
) -> SourceAdapter:
    cls = load_adapter_class(spec)
    adapter = cls(settings=dict(settings), secrets=secrets, base_url=base_url, pool_size=pool_size)
    if not isinstance(adapter, SourceAdapter):
        missing = [
            m
            for m in ("endpoints", "list_stations", "fetch_readings", "fetch_batch", "close")
            if not hasattr(adapter, m)
        ]
        raise AdapterError(f"source adapter {spec!r} does not implement SourceAdapter: missing {', '.join(missing)}")
    return adapter
