"""The dated price table (prices.yaml beside this module) and the usage it assumes, typed.

Prices live in the repository, not in code, so a price change is a reviewable one-file diff and
the estimate can say which day its figures are from. Loading validates the whole file at once.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

PRICES_FILE = Path(__file__).with_name("prices.yaml")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FargateRate(_Strict):
    vcpu_hour: float = Field(gt=0)
    gb_hour: float = Field(gt=0)


class RegionPrices(_Strict):
    """On-demand list prices of one region (USD)."""

    fargate: dict[str, FargateRate]
    ec2_instance_hour: dict[str, float]
    ebs_gp3_gb_month: float
    nat_gateway_hour: float
    nat_gateway_gb: float
    public_ipv4_hour: float
    internet_egress_gb: float
    interface_endpoint_az_hour: float
    #: engine (valkey | redis) -> node type -> hourly price.
    elasticache_node_hour: dict[str, dict[str, float]]
    elasticache_backup_gb_month: float
    kms_key_month: float
    kms_per_10k_requests: float
    secret_month: float
    cloudwatch_alarm_metric_month: float
    cloudwatch_dashboard_month: float
    cloudwatch_custom_metric_month: float
    logs_ingest_gb: float
    logs_storage_gb_month: float
    lambda_per_million_requests: float
    lambda_arm64_gb_second: float
    lambda_x86_64_gb_second: float
    sqs_per_million_requests: float
    sns_per_million_publishes: float
    sns_per_100k_emails: float
    xray_per_million_traces: float
    dynamodb_per_million_writes: float
    dynamodb_per_million_reads: float
    dynamodb_storage_gb_month: float


class Usage(_Strict):
    """The traffic the estimate assumes (the templates fix sizes, not traffic); printed with it."""

    stations: dict[str, int]
    log_ingest_gb_month: dict[str, float]
    egress_bytes_per_station_cycle: int = Field(ge=0)
    ingress_bytes_per_station_cycle: int = Field(ge=0)
    custom_metrics_always: int = Field(ge=0)
    container_insights_metrics: int = Field(ge=0)
    container_insights_log_gb_per_task_month: float = Field(ge=0)
    lambda_duration_ms: int = Field(gt=0)
    sqs_idle_receives_month: int = Field(ge=0)
    kms_requests_month: int = Field(ge=0)
    cache_backup_gb: float = Field(ge=0)
    nat_instance_volume_gb: int = Field(gt=0)
    checkpoint_shards: int = Field(gt=0)
    checkpoint_bytes_per_station: float = Field(gt=0)
    checkpoint_restores_month: float = Field(ge=0)
    #: Fargate Spot's discount on the on-demand rate: an assumption, AWS publishes a varying price.
    fargate_spot_discount: float = Field(ge=0, lt=1)

    def stations_for(self, env: str) -> int:
        return self.stations.get(env, self.stations["default"])

    def log_ingest_gb(self, logical_id: str) -> float:
        for prefix, gb in self.log_ingest_gb_month.items():
            if prefix != "default" and logical_id.startswith(prefix):
                return gb
        return self.log_ingest_gb_month["default"]


class PriceCheck(_Strict):
    """Where one group of a region's prices was checked, and whether the page confirmed them."""

    #: The RegionPrices fields this check covers.
    prices: list[str] = Field(min_length=1)
    confirmed: bool
    page: str = Field(min_length=1)
    checked: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$")
    note: str = ""


class PriceTable(_Strict):
    as_of: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$")
    source: str
    hours_per_month: int = Field(gt=0)
    regions: dict[str, RegionPrices]
    usage: Usage
    #: Always-free allowances per account and month, by metered quantity (pricing.FREE_TIER_RATES).
    always_free: dict[str, float]
    free_types: frozenset[str]
    #: Per region, per service: the page each price was checked against (regions absent: unchecked).
    checks: dict[str, dict[str, PriceCheck]]

    def unconfirmed(self, region: str) -> list[str]:
        """The region's prices no check confirmed (all of them for a region nobody checked)."""
        confirmed = {name for check in self.checks.get(region, {}).values() if check.confirmed for name in check.prices}
        return [name for name in RegionPrices.model_fields if name not in confirmed]

    def region(self, name: str) -> RegionPrices:
        if name not in self.regions:
            raise KeyError(f"no prices for region {name!r} (priced: {', '.join(sorted(self.regions))})")
        return self.regions[name]


def load_prices(path: Path = PRICES_FILE) -> PriceTable:
    return PriceTable.model_validate(yaml.safe_load(path.read_text()))
