"""Price every resource of an environment's templates: one line per billable resource, a total.

Sizes come from the templates (node types, task CPU/memory, NAT kind and count, alarms' metrics);
traffic comes from the price table's `usage` section and the schedule in the template. A resource
type that is neither priced here nor listed as free in the table is an error, so a new billable
resource cannot slip into a template without a price.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from c2c_sync.cost.table import PriceTable, RegionPrices, Usage
from c2c_sync.cost.templates import Assembly, Resource, strings_in

GB = 1024**3
_RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
_UNIT_MINUTES = {"minute": 1, "hour": 60, "day": 1440}


class UnpricedResources(Exception):
    """Billable resource types the price table does not price (every one of them, at once)."""

    def __init__(self, resources: list[Resource]) -> None:
        self.resources = resources
        listed = "; ".join(f"{r.type} ({r.stack}/{r.logical_id})" for r in resources)
        super().__init__(
            f"{len(resources)} resource(s) of a type the price table does not price: {listed}. "
            "Price the type in c2c_sync/cost/pricing.py (and its rates in prices.yaml), "
            "or list it under free_types if it costs nothing by itself."
        )


@dataclass(frozen=True)
class LineItem:
    stack: str
    logical_id: str
    type: str
    monthly_usd: float
    detail: str


@dataclass(frozen=True)
class Estimate:
    env: str
    region: str
    region_note: str
    as_of: str
    hours_per_month: int
    items: list[LineItem]
    assumptions: list[str] = field(default_factory=list)

    @property
    def total_usd(self) -> float:
        return sum(item.monthly_usd for item in self.items)

    def by_type(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for item in self.items:
            totals[item.type] = totals.get(item.type, 0.0) + item.monthly_usd
        return totals


@dataclass(frozen=True)
class _Context:
    env: str
    assembly: Assembly
    prices: RegionPrices
    usage: Usage
    hours: int
    #: Schedule ticks (start signals, trigger invocations, cycles) per month.
    ticks: float
    #: Quantities the account's always-free allowances apply to (FREE_TIER_RATES keys), summed.
    meter: dict[str, float] = field(default_factory=dict)

    def use(self, quantity: str, amount: float) -> None:
        self.meter[quantity] = self.meter.get(quantity, 0.0) + amount

    @property
    def stations(self) -> int:
        return self.usage.stations_for(self.env)

    @property
    def egress_gb(self) -> float:
        return self.stations * self.ticks * self.usage.egress_bytes_per_station_cycle / GB

    @property
    def ingress_gb(self) -> float:
        return self.stations * self.ticks * self.usage.ingress_bytes_per_station_cycle / GB


Pricer = Callable[[_Context, Resource], tuple[float, str]]


def _nat_gateway(ctx: _Context, resource: Resource) -> tuple[float, str]:
    gateways = len(ctx.assembly.of_type("AWS::EC2::NatGateway"))
    # The worker is one task behind one of the gateways; spread evenly, the total is the same.
    processed = (ctx.egress_gb + ctx.ingress_gb) / max(gateways, 1)
    hours = ctx.hours * ctx.prices.nat_gateway_hour
    return hours + processed * ctx.prices.nat_gateway_gb, f"{ctx.hours} h + {processed:.1f} GB processed"


def _public_ipv4(ctx: _Context, resource: Resource) -> tuple[float, str]:
    return ctx.hours * ctx.prices.public_ipv4_hour, "public IPv4 address"


def _instance(ctx: _Context, resource: Resource) -> tuple[float, str]:
    instance_type = str(resource.properties.get("InstanceType"))
    if instance_type not in ctx.prices.ec2_instance_hour:
        raise KeyError(f"no EC2 price for {instance_type!r} ({resource.stack}/{resource.logical_id})")
    cost = ctx.hours * ctx.prices.ec2_instance_hour[instance_type]
    mappings = resource.properties.get("BlockDeviceMappings") or []
    volume = sum(int(m.get("Ebs", {}).get("VolumeSize", 0)) for m in mappings) or ctx.usage.nat_instance_volume_gb
    cost += volume * ctx.prices.ebs_gp3_gb_month
    detail = f"{instance_type}, {volume} GB gp3"
    interfaces = resource.properties.get("NetworkInterfaces") or []
    subnet = ctx.assembly.referenced(resource.stack, resource.properties.get("SubnetId"))
    public_subnet = subnet is not None and bool(subnet.properties.get("MapPublicIpOnLaunch"))
    if public_subnet or any(i.get("AssociatePublicIpAddress") for i in interfaces):
        cost += ctx.hours * ctx.prices.public_ipv4_hour
        detail += ", public IPv4"
    return cost, detail


def _vpc_endpoint(ctx: _Context, resource: Resource) -> tuple[float, str]:
    kind = resource.properties.get("VpcEndpointType", "Gateway")
    if kind == "Gateway":
        return 0.0, "gateway endpoint (no charge)"
    azs = len(resource.properties.get("SubnetIds") or [])
    return azs * ctx.hours * ctx.prices.interface_endpoint_az_hour, f"interface endpoint in {azs} AZ(s)"


def _replication_group(ctx: _Context, resource: Resource) -> tuple[float, str]:
    props = resource.properties
    engine = str(props.get("Engine", "redis")).lower()
    node_type = str(props["CacheNodeType"])
    rates = ctx.prices.elasticache_node_hour.get(engine, {})
    if node_type not in rates:
        raise KeyError(f"no ElastiCache price for {engine} {node_type} ({resource.stack}/{resource.logical_id})")
    if "NumCacheClusters" in props:
        nodes = int(props["NumCacheClusters"])
    else:
        nodes = int(props.get("NumNodeGroups", 1)) * (1 + int(props.get("ReplicasPerNodeGroup", 0)))
    cost = nodes * ctx.hours * rates[node_type]
    detail = f"{nodes} x {node_type} ({engine})"
    snapshots = int(props.get("SnapshotRetentionLimit", 0))
    if snapshots > 0:
        cost += ctx.usage.cache_backup_gb * snapshots * ctx.prices.elasticache_backup_gb_month
        detail += f", {snapshots} daily snapshots"
    return cost, detail


def _fargate_service(ctx: _Context, resource: Resource) -> tuple[float, str]:
    task = ctx.assembly.referenced(resource.stack, resource.properties.get("TaskDefinition"))
    if task is None:
        raise KeyError(f"{resource.stack}/{resource.logical_id}: task definition not in the template")
    count = int(resource.properties.get("DesiredCount", 1))
    vcpu = int(task.properties["Cpu"]) / 1024
    memory_gb = int(task.properties["Memory"]) / 1024
    arch = str((task.properties.get("RuntimePlatform") or {}).get("CpuArchitecture", "X86_64")).lower()
    rate = ctx.prices.fargate[arch]
    tasks = count * ctx.hours * (vcpu * rate.vcpu_hour + memory_gb * rate.gb_hour)
    spot = spot_share(resource)
    if spot:
        tasks *= 1 - spot * ctx.usage.fargate_spot_discount
    egress = ctx.egress_gb * ctx.prices.internet_egress_gb
    metrics = ctx.usage.custom_metrics_always * ctx.prices.cloudwatch_custom_metric_month
    ctx.use("egress_gb", ctx.egress_gb)
    ctx.use("custom_metrics", ctx.usage.custom_metrics_always)
    capacity = f"Fargate Spot (assumed -{ctx.usage.fargate_spot_discount:.0%})" if spot else "Fargate"
    detail = (
        f"{count} x {capacity} {arch} {vcpu:g} vCPU / {memory_gb:g} GB; {ctx.egress_gb:.1f} GB to the internet; "
        f"{ctx.usage.custom_metrics_always} EMF metrics"
    )
    return tasks + egress + metrics, detail


def spot_share(service: Resource) -> float:
    """The share of a service's tasks its capacity provider strategy puts on FARGATE_SPOT (by weight)."""
    strategy = service.properties.get("CapacityProviderStrategy") or []
    total = sum(int(item.get("Weight", 0)) for item in strategy)
    spot = sum(int(item.get("Weight", 0)) for item in strategy if item.get("CapacityProvider") == "FARGATE_SPOT")
    return spot / total if total else 0.0


def _task_definition(ctx: _Context, resource: Resource) -> tuple[float, str]:
    """Operator-created secrets the task reads by name (not resources of any template)."""
    names = set()
    for container in resource.properties.get("ContainerDefinitions", []):
        for secret in container.get("Secrets", []):
            text = "".join(strings_in(secret.get("ValueFrom")))
            match = re.search(r":secret:([A-Za-z0-9/_+=.@-]+?)(-\?{6})?$", text)
            if match:
                names.add(match.group(1))
    return len(names) * ctx.prices.secret_month, f"{len(names)} operator-created secret(s)"


def _cluster(ctx: _Context, resource: Resource) -> tuple[float, str]:
    settings = {s.get("Name"): s.get("Value") for s in resource.properties.get("ClusterSettings", [])}
    if settings.get("containerInsights") not in ("enabled", "enhanced"):
        return 0.0, "Container Insights off"
    tasks = sum(int(s.properties.get("DesiredCount", 1)) for s in ctx.assembly.of_type("AWS::ECS::Service"))
    metrics = ctx.usage.container_insights_metrics * ctx.prices.cloudwatch_custom_metric_month
    log_gb = tasks * ctx.usage.container_insights_log_gb_per_task_month
    ctx.use("custom_metrics", ctx.usage.container_insights_metrics)
    ctx.use("logs_ingest_gb", log_gb)
    return metrics + log_gb * ctx.prices.logs_ingest_gb, (
        f"Container Insights: {ctx.usage.container_insights_metrics} metrics, {log_gb:g} GB performance logs"
    )


def _log_group(ctx: _Context, resource: Resource) -> tuple[float, str]:
    ingest = ctx.usage.log_ingest_gb(resource.logical_id)
    retention_days = int(resource.properties.get("RetentionInDays", 3653))
    months = min(retention_days / 30, 12)
    stored = ingest * months
    ctx.use("logs_ingest_gb", ingest)
    cost = ingest * ctx.prices.logs_ingest_gb + stored * ctx.prices.logs_storage_gb_month
    return cost, f"{ingest:g} GB/month ingested, {retention_days} d kept"


def _kms_key(ctx: _Context, resource: Resource) -> tuple[float, str]:
    requests = ctx.usage.kms_requests_month
    ctx.use("kms_requests", requests)
    return ctx.prices.kms_key_month + requests / 10_000 * ctx.prices.kms_per_10k_requests, (
        f"key + {requests} requests"
    )


def _secret(ctx: _Context, resource: Resource) -> tuple[float, str]:
    return ctx.prices.secret_month, "one secret"


def _alarm(ctx: _Context, resource: Resource) -> tuple[float, str]:
    metrics = resource.properties.get("Metrics")
    count = sum(1 for m in metrics if "MetricStat" in m) if metrics else 1
    ctx.use("alarm_metrics", count)
    return count * ctx.prices.cloudwatch_alarm_metric_month, f"{count} metric(s), standard resolution"


def _dashboard(ctx: _Context, resource: Resource) -> tuple[float, str]:
    ctx.use("dashboards", 1)
    return ctx.prices.cloudwatch_dashboard_month, "one dashboard"


def _topic(ctx: _Context, resource: Resource) -> tuple[float, str]:
    ctx.use("sns_publishes", ctx.ticks)
    return ctx.ticks / 1e6 * ctx.prices.sns_per_million_publishes, f"at most {ctx.ticks:.0f} publishes"


def _queue(ctx: _Context, resource: Resource) -> tuple[float, str]:
    if int(resource.properties.get("ReceiveMessageWaitTimeSeconds", 0)) == 0:
        return 0.0, "dead-letter queue (no traffic expected)"
    requests = ctx.usage.sqs_idle_receives_month + 3 * ctx.ticks
    ctx.use("sqs_requests", requests)
    return requests / 1e6 * ctx.prices.sqs_per_million_requests, f"{requests:.0f} requests (long polling)"


def _function(ctx: _Context, resource: Resource) -> tuple[float, str]:
    invoked = any(
        ctx.assembly.referenced(rule.stack, target.get("Arn")) == resource
        for rule in ctx.assembly.of_type("AWS::Events::Rule")
        for target in rule.properties.get("Targets", [])
    )
    if not invoked:
        return 0.0, "deploy-time only"
    arch = (resource.properties.get("Architectures") or ["x86_64"])[0]
    gb = int(resource.properties.get("MemorySize", 128)) / 1024
    seconds = ctx.ticks * ctx.usage.lambda_duration_ms / 1000
    rate = ctx.prices.lambda_arm64_gb_second if arch == "arm64" else ctx.prices.lambda_x86_64_gb_second
    cost = ctx.ticks / 1e6 * ctx.prices.lambda_per_million_requests + gb * seconds * rate
    ctx.use("lambda_requests", ctx.ticks)
    ctx.use(f"lambda_{arch}_gb_seconds", gb * seconds)
    if (resource.properties.get("TracingConfig") or {}).get("Mode") == "Active":
        cost += ctx.ticks / 1e6 * ctx.prices.xray_per_million_traces
        ctx.use("xray_traces", ctx.ticks)
    return cost, f"{ctx.ticks:.0f} invocations x {ctx.usage.lambda_duration_ms} ms"


def _dynamodb_table(ctx: _Context, resource: Resource) -> tuple[float, str]:
    if resource.properties.get("BillingMode") != "PAY_PER_REQUEST":
        raise KeyError(f"{resource.stack}/{resource.logical_id}: only on-demand (PAY_PER_REQUEST) tables are priced")
    # The cursor checkpoint: each shard item written once per cycle, one write unit per started KB;
    # a restore reads every shard strongly consistent, one read unit per started 4 KB.
    usage = ctx.usage
    shard_kb = ctx.stations * usage.checkpoint_bytes_per_station / usage.checkpoint_shards / 1024
    writes = ctx.ticks * usage.checkpoint_shards * math.ceil(shard_kb)
    reads = usage.checkpoint_restores_month * usage.checkpoint_shards * math.ceil(shard_kb / 4)
    storage_gb = ctx.stations * usage.checkpoint_bytes_per_station / 1024**3
    cost = (
        writes / 1e6 * ctx.prices.dynamodb_per_million_writes
        + reads / 1e6 * ctx.prices.dynamodb_per_million_reads
        + storage_gb * ctx.prices.dynamodb_storage_gb_month
    )
    return cost, f"on-demand: {writes / 1e6:.1f} M writes, {reads / 1e6:.1f} M reads"


PRICERS: dict[str, Pricer] = {
    "AWS::EC2::NatGateway": _nat_gateway,
    "AWS::EC2::EIP": _public_ipv4,
    "AWS::EC2::Instance": _instance,
    "AWS::EC2::VPCEndpoint": _vpc_endpoint,
    "AWS::ElastiCache::ReplicationGroup": _replication_group,
    "AWS::ECS::Service": _fargate_service,
    "AWS::ECS::TaskDefinition": _task_definition,
    "AWS::ECS::Cluster": _cluster,
    "AWS::Logs::LogGroup": _log_group,
    "AWS::KMS::Key": _kms_key,
    "AWS::SecretsManager::Secret": _secret,
    "AWS::CloudWatch::Alarm": _alarm,
    "AWS::CloudWatch::Dashboard": _dashboard,
    "AWS::SNS::Topic": _topic,
    "AWS::SQS::Queue": _queue,
    "AWS::Lambda::Function": _function,
    "AWS::DynamoDB::Table": _dynamodb_table,
}


#: The unit price of each metered quantity, for crediting the account's always-free allowances.
FREE_TIER_RATES: dict[str, Callable[[RegionPrices], float]] = {
    "custom_metrics": lambda p: p.cloudwatch_custom_metric_month,
    "alarm_metrics": lambda p: p.cloudwatch_alarm_metric_month,
    "dashboards": lambda p: p.cloudwatch_dashboard_month,
    "logs_ingest_gb": lambda p: p.logs_ingest_gb,
    "egress_gb": lambda p: p.internet_egress_gb,
    "kms_requests": lambda p: p.kms_per_10k_requests / 10_000,
    "lambda_requests": lambda p: p.lambda_per_million_requests / 1e6,
    "lambda_arm64_gb_seconds": lambda p: p.lambda_arm64_gb_second,
    "lambda_x86_64_gb_seconds": lambda p: p.lambda_x86_64_gb_second,
    "sqs_requests": lambda p: p.sqs_per_million_requests / 1e6,
    "sns_publishes": lambda p: p.sns_per_million_publishes / 1e6,
    "xray_traces": lambda p: p.xray_per_million_traces / 1e6,
}


def free_tier_credit(ctx: _Context, allowances: dict[str, float]) -> LineItem:
    """The account's always-free allowances (not the 12-month trial) set against this environment."""
    credit = 0.0
    parts = []
    for quantity, allowance in allowances.items():
        used = ctx.meter.get(quantity, 0.0)
        covered = min(used, allowance)
        if covered > 0:
            credit += covered * FREE_TIER_RATES[quantity](ctx.prices)
            parts.append(f"{quantity} {covered:g}")
    return LineItem("account", "AlwaysFreeAllowances", "free tier", -credit, ", ".join(parts) or "nothing covered")


def schedule_ticks(assembly: Assembly, hours: int) -> tuple[float, str]:
    """Start signals per month from the schedule rule (`rate(...)`; a cron is assumed hourly)."""
    for rule in assembly.of_type("AWS::Events::Rule"):
        expression = str(rule.properties.get("ScheduleExpression", ""))
        match = _RATE.match(expression)
        if match:
            minutes = int(match.group(1)) * _UNIT_MINUTES[match.group(2).rstrip("s")]
            return hours * 60 / minutes, f"schedule {expression}"
        if expression.startswith("cron("):
            return float(hours), f"schedule {expression} (assumed hourly)"
    return 0.0, "no schedule"


def unpriced(assembly: Assembly, table: PriceTable) -> list[Resource]:
    return [r for r in assembly if r.type not in PRICERS and r.type not in table.free_types]


def estimate(
    env: str,
    assembly: Assembly,
    table: PriceTable,
    region: str,
    region_note: str = "",
    *,
    free_tier: bool = True,
) -> Estimate:
    """Monthly on-demand cost of every billable resource of `assembly`; raises UnpricedResources.

    With `free_tier`, one more line credits the account's always-free allowances (CloudWatch's 10
    metrics, 10 alarm metrics, 3 dashboards and 5 GB of logs, 100 GB of data out, ...): true when
    the environment has its account to itself, as dev usually does; `--no-free-tier` prices without.
    """
    missing = unpriced(assembly, table)
    if missing:
        raise UnpricedResources(missing)
    ticks, schedule = schedule_ticks(assembly, table.hours_per_month)
    ctx = _Context(env, assembly, table.region(region), table.usage, table.hours_per_month, ticks)
    items = []
    for resource in assembly:
        pricer = PRICERS.get(resource.type)
        if pricer is None:
            continue
        cost, detail = pricer(ctx, resource)
        items.append(LineItem(resource.stack, resource.logical_id, resource.type, cost, detail))
    if free_tier:
        items.append(free_tier_credit(ctx, table.always_free))
    usage = table.usage
    assumptions = [
        f"{table.hours_per_month} hours a month; on-demand list prices of {region} as of {table.as_of}; "
        + ("the account's always-free allowances credited" if free_tier else "no free tier"),
        f"{ctx.stations} stations; {schedule}: {ticks:.0f} cycles a month",
        f"per station-cycle {usage.egress_bytes_per_station_cycle} bytes out, "
        f"{usage.ingress_bytes_per_station_cycle} in: {ctx.egress_gb:.1f} GB out, {ctx.ingress_gb:.1f} GB in",
        "log ingestion GB/month by log group: " + ", ".join(f"{k} {v:g}" for k, v in usage.log_ingest_gb_month.items()),
        f"{usage.custom_metrics_always} custom metrics emitted every hour; trigger {usage.lambda_duration_ms} ms "
        f"per invocation; {usage.kms_requests_month} KMS requests",
        f"Fargate Spot {usage.fargate_spot_discount:.0%} below the on-demand rate (AWS: up to 70 %; the Spot "
        "price varies with supply and demand)",
        f"prices not confirmed against a published page (prices.yaml `checks`): {', '.join(table.unconfirmed(region))}",
    ]
    return Estimate(env, region, region_note, table.as_of, table.hours_per_month, items, assumptions)
