"""`c2c-sync cost`: every billable resource of every synthesized template is priced, and the price
of a known resource is what the table says."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from c2c_sync.cli import app
from c2c_sync.cost import Assembly, UnpricedResources, estimate, load_prices
from c2c_sync.cost.pricing import unpriced
from c2c_sync.cost.table import RegionPrices

TABLE = load_prices()


@pytest.mark.infra
def test_every_resource_type_of_every_template_is_priced_or_listed_free(profile_synth):
    assembly = Assembly.from_dir(profile_synth.outdir)
    assert [f"{r.type} {r.stack}/{r.logical_id}" for r in unpriced(assembly, TABLE)] == []


@pytest.mark.infra
def test_a_billable_type_the_table_does_not_price_fails_the_estimate(dev, tmp_path):
    copied = tmp_path / "dev"
    shutil.copytree(dev.outdir, copied, ignore=shutil.ignore_patterns("asset.*"))
    path = copied / "C2C-dev-Cache.template.json"
    template = json.loads(path.read_text())
    database = {"Type": "AWS::RDS::DBInstance", "Properties": {"DBInstanceClass": "db.t4g.micro"}}
    template["Resources"]["Database"] = database
    path.write_text(json.dumps(template))
    with pytest.raises(UnpricedResources) as raised:
        estimate("dev", Assembly.from_dir(copied), TABLE, "us-east-1")
    assert "AWS::RDS::DBInstance (C2C-dev-Cache/Database)" in str(raised.value)


def test_every_priced_region_has_every_rate_and_the_table_is_dated():
    assert TABLE.hours_per_month == 730
    assert {"us-east-1", "eu-west-1"} <= set(TABLE.regions)
    for prices in TABLE.regions.values():
        assert set(prices.fargate) == {"arm64", "x86_64"}
        assert set(prices.elasticache_node_hour) == {"valkey", "redis"}


def test_every_us_east_1_price_records_where_it_was_checked():
    fields = set(RegionPrices.model_fields)
    checked = [name for check in TABLE.checks["us-east-1"].values() for name in check.prices]
    assert set(checked) <= fields, set(checked) - fields  # a check names real prices only
    assert sorted(checked) == sorted(fields)  # every price is checked exactly once
    unconfirmed = TABLE.unconfirmed("us-east-1")
    assert unconfirmed == [n for n in RegionPrices.model_fields if n in unconfirmed]  # in table order
    assert set(unconfirmed) == {n for c in TABLE.checks["us-east-1"].values() if not c.confirmed for n in c.prices}
    # A region nobody checked has every price unconfirmed, and the estimate says which.
    assert TABLE.unconfirmed("eu-west-1") == list(RegionPrices.model_fields)
    listed = estimate("t", _template({}), TABLE, "us-east-1").assumptions[-1]
    assert listed.startswith("prices not confirmed") and all(name in listed for name in unconfirmed)


def _template(resources: dict) -> Assembly:
    return Assembly({"C2C-t-Network": {"Resources": resources}})


def test_fixed_price_resources_cost_hours_times_the_listed_rate():
    rates = TABLE.region("eu-west-1")
    assembly = _template(
        {
            "Nat": {"Type": "AWS::EC2::NatGateway", "Properties": {}},
            "Ip": {"Type": "AWS::EC2::EIP", "Properties": {}},
            "Redis": {
                "Type": "AWS::ElastiCache::ReplicationGroup",
                "Properties": {"Engine": "valkey", "CacheNodeType": "cache.t4g.micro", "NumCacheClusters": 2},
            },
            "S3": {"Type": "AWS::EC2::VPCEndpoint", "Properties": {"VpcEndpointType": "Gateway"}},
        }
    )
    items = {i.logical_id: i.monthly_usd for i in estimate("t", assembly, TABLE, "eu-west-1").items}
    # No schedule in this template: no cycles, so no processed data.
    assert items["Nat"] == pytest.approx(730 * rates.nat_gateway_hour)
    assert items["Ip"] == pytest.approx(730 * rates.public_ipv4_hour)
    assert items["Redis"] == pytest.approx(2 * 730 * rates.elasticache_node_hour["valkey"]["cache.t4g.micro"])
    assert items["S3"] == 0


@pytest.mark.infra
def test_cost_command_prints_the_table_and_json(dev, tmp_path):
    out = tmp_path / "cdk.out"
    out.mkdir()
    (out / "dev").symlink_to(Path(dev.outdir))
    runner = CliRunner()
    table = runner.invoke(app, ["cost", "--env", "dev", "--cdk-out", str(out)])
    assert table.exit_code == 0, table.output
    assert "total" in table.output and "us-east-1" in table.output and "Assumes:" in table.output
    as_json = runner.invoke(app, ["cost", "--env", "dev", "--cdk-out", str(out), "--json"])
    assert as_json.exit_code == 0, as_json.output
    result = json.loads(as_json.output)
    assert result["total_usd_month"] == pytest.approx(sum(i["monthly_usd"] for i in result["items"]), abs=0.01)
    assert result["hours_per_month"] == 730 and result["assumptions"]


def test_cost_command_without_a_synth_says_what_to_run(tmp_path):
    result = CliRunner().invoke(app, ["cost", "--env", "dev", "--cdk-out", str(tmp_path)])
    assert result.exit_code == 1
    assert "make synth" in result.output


# The targets the shipped configs must meet at plain list prices: no always-free allowance credited
# (an account shared with anything else has none of it left for this environment).
DEV_TARGET_USD = 30.0
PROD_TARGET_USD = 120.0


@pytest.mark.infra
def test_shipped_configs_meet_the_cost_targets_at_list_prices(dev, prod):
    dev_cost = estimate("dev", Assembly.from_dir(dev.outdir), TABLE, "us-east-1", free_tier=False)
    prod_cost = estimate("prod", Assembly.from_dir(prod.outdir), TABLE, prod.config.region, free_tier=False)
    assert dev_cost.total_usd <= DEV_TARGET_USD, dev_cost.by_type()
    assert prod_cost.total_usd <= PROD_TARGET_USD, prod_cost.by_type()
    for cost in (dev_cost, prod_cost):
        assert "free tier" not in cost.by_type()
        # No NAT gateway, no Container Insights in either: the two largest items of the old estimate.
        assert "AWS::EC2::NatGateway" not in cost.by_type()
        assert cost.by_type()["AWS::ECS::Cluster"] == 0
    # dev meets its target with the Spot worker and without the dashboard; prod keeps both.
    assert "AWS::CloudWatch::Dashboard" not in dev_cost.by_type()
    assert "AWS::CloudWatch::Dashboard" in prod_cost.by_type()


def _service(strategy: list[dict] | None) -> Assembly:
    service: dict = {"TaskDefinition": {"Ref": "Task"}, "DesiredCount": 1}
    if strategy is not None:
        service["CapacityProviderStrategy"] = strategy
    else:
        service["LaunchType"] = "FARGATE"
    task = {"Cpu": "256", "Memory": "512", "RuntimePlatform": {"CpuArchitecture": "ARM64"}}
    return Assembly(
        {
            "C2C-t-SyncService": {
                "Resources": {
                    "Service": {"Type": "AWS::ECS::Service", "Properties": service},
                    "Task": {"Type": "AWS::ECS::TaskDefinition", "Properties": task},
                }
            }
        }
    )


def test_a_spot_task_is_priced_at_the_assumed_discount_and_says_so():
    usage, rate = TABLE.usage, TABLE.region("us-east-1").fargate["arm64"]
    task = 730 * (0.25 * rate.vcpu_hour + 0.5 * rate.gb_hour)

    def service_line(strategy: list[dict] | None):
        items = estimate("t", _service(strategy), TABLE, "us-east-1", free_tier=False).items
        return next(i for i in items if i.logical_id == "Service")

    on_demand = service_line(None)
    spot = service_line([{"CapacityProvider": "FARGATE_SPOT", "Weight": 1}])
    half = service_line(
        [{"CapacityProvider": "FARGATE_SPOT", "Weight": 1}, {"CapacityProvider": "FARGATE", "Weight": 1}]
    )
    assert 0 < usage.fargate_spot_discount < 1
    assert on_demand.monthly_usd - spot.monthly_usd == pytest.approx(task * usage.fargate_spot_discount)
    assert on_demand.monthly_usd - half.monthly_usd == pytest.approx(task * usage.fargate_spot_discount / 2)
    assert "Fargate Spot (assumed" in spot.detail and "Spot" not in on_demand.detail


@pytest.mark.infra
def test_always_free_allowances_only_lower_the_total_and_are_listed(dev):
    assembly = Assembly.from_dir(dev.outdir)
    with_free = estimate("dev", assembly, TABLE, "us-east-1")
    listed = estimate("dev", assembly, TABLE, "us-east-1", free_tier=False)
    (credit,) = [i for i in with_free.items if i.type == "free tier"]
    assert credit.monthly_usd < 0 and "custom_metrics 10" in credit.detail
    assert with_free.total_usd == pytest.approx(listed.total_usd + credit.monthly_usd)
