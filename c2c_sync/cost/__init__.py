"""What an environment costs a month, read from its synthesized templates at on-demand list prices.

`c2c-sync cost --env NAME` / `make cost ENV=NAME`: prices.yaml (dated, per region) holds the rates
and the usage assumptions; pricing.py prices each billable resource type; report.py prints.
"""

from __future__ import annotations

from pathlib import Path

from c2c_sync.cost import report
from c2c_sync.cost.pricing import Estimate, LineItem, UnpricedResources, estimate
from c2c_sync.cost.table import PriceTable, load_prices
from c2c_sync.cost.templates import Assembly

#: The region an environment without one (deployed wherever the credentials point) is priced in.
DEFAULT_REGION = "us-east-1"


def estimate_env(
    env: str, cdk_out: Path, region: str | None, *, free_tier: bool = True, table: PriceTable | None = None
) -> Estimate:
    """Price `cdk_out/<env>/` in `region` (the config's region, else DEFAULT_REGION)."""
    note = ""
    if region is None:
        region, note = DEFAULT_REGION, "the config pins no region; --region to price another"
    assembly = Assembly.from_dir(cdk_out / env)
    return estimate(env, assembly, table or load_prices(), region, note, free_tier=free_tier)


__all__ = [
    "DEFAULT_REGION",
    "Assembly",
    "Estimate",
    "LineItem",
    "PriceTable",
    "UnpricedResources",
    "estimate",
    "estimate_env",
    "load_prices",
    "report",
]
