"""Instantiate every stack of one environment from its validated config.

This is the only place that reads the config; each stack gets typed constructor arguments.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from constructs import Construct

from config.schema import (
    CpuArchitecture,
    EnvironmentConfig,
    NatKind,
    SignalTransport,
    WorkerCapacity,
    WorkerMode,
)
from functions.common.signal import Command
from infra.naming import heartbeat_alarm_name, stack_name
from infra.retention import retention_days
from infra.stack_options import StackOptions
from infra.worker_env import worker_environment, worker_named_secrets
from stacks.cache import CacheStack
from stacks.messaging import MessagingStack
from stacks.monitoring import AlarmSettings, MonitoringStack
from stacks.network import NatSettings, NetworkStack
from stacks.sync_service import SyncServiceProps, SyncServiceStack
from stacks.trigger import RedisPublish, TriggerStack


@dataclass(frozen=True)
class EnvironmentStacks:
    network: NetworkStack
    messaging: MessagingStack
    cache: CacheStack
    sync_service: SyncServiceStack
    trigger: TriggerStack
    monitoring: MonitoringStack

    def all(self) -> list[cdk.Stack]:
        return [self.network, self.messaging, self.cache, self.sync_service, self.trigger, self.monitoring]


def internet_ports(config: EnvironmentConfig) -> list[int]:
    """TCP ports the worker opens to the internet: the MQTT broker's and the vendor API's."""
    mqtt = urlsplit(config.platform.endpoint)
    source = urlsplit(str(config.source.base_url))
    return sorted({mqtt.port or 8883, source.port or (443 if source.scheme == "https" else 80)})


def add_environment(scope: Construct, config: EnvironmentConfig) -> EnvironmentStacks:
    """Add the six stacks of `config`'s environment to `scope` (normally the cdk.App)."""
    env = None if config.is_env_agnostic else cdk.Environment(account=config.account, region=config.region)
    retention = retention_days(config.log_retention_days)
    removal = cdk.RemovalPolicy.RETAIN if config.retain_data else cdk.RemovalPolicy.DESTROY
    redis_signals = config.signal_transport is SignalTransport.REDIS
    alarm_name = heartbeat_alarm_name(config.name)

    def common(part: str, *, stateful: bool) -> StackOptions:
        return {
            "stack_name": stack_name(config.name, part),
            "env": env,
            "tags": dict(config.tags),
            "description": f"c2c-sync {config.name}: {part.lower()} ({'stateful' if stateful else 'stateless'})",
            "termination_protection": stateful and config.retain_data,
        }

    messaging = MessagingStack(
        scope,
        stack_name(config.name, "Messaging"),
        env_name=config.name,
        max_cycle_s=config.worker.max_cycle_s,
        removal_policy=removal,
        **common("Messaging", stateful=True),
    )
    network = NetworkStack(
        scope,
        stack_name(config.name, "Network"),
        nat=NatSettings(
            instance=config.network.nat is NatKind.INSTANCE,
            count=config.network.nat_count,
            instance_type=config.network.nat_instance_type,
        ),
        internet_ports=internet_ports(config),
        redis_port=config.cache.port,
        log_retention=retention,
        log_key=messaging.key,
        trigger_in_vpc=redis_signals,
        removal_policy=removal,
        **common("Network", stateful=True),
    )
    clients: list[ec2.ISecurityGroup] = [network.worker_security_group]
    if network.trigger_security_group is not None:
        clients.append(network.trigger_security_group)
    cache = CacheStack(
        scope,
        stack_name(config.name, "Cache"),
        env_name=config.name,
        vpc=network.vpc,
        client_security_groups=clients,
        node_type=config.cache.node_type,
        replicas=config.cache.replicas,
        multi_az=config.cache.multi_az,
        engine_version=config.cache.engine_version,
        port=config.cache.port,
        log_retention=retention,
        key=messaging.key,
        removal_policy=removal,
        **common("Cache", stateful=True),
    )
    sync_service = SyncServiceStack(
        scope,
        stack_name(config.name, "SyncService"),
        props=SyncServiceProps(
            env_name=config.name,
            cpu=config.worker.cpu,
            memory_mib=config.worker.memory_mib,
            arm64=config.worker.architecture is CpuArchitecture.ARM64,
            desired_count=config.worker.desired_count,
            environment=worker_environment(config),
            named_secrets=worker_named_secrets(config),
            log_retention=retention,
            container_insights=config.worker.container_insights,
            spot=config.worker.capacity is WorkerCapacity.SPOT,
            checkpoint_removal_policy=removal,
        ),
        vpc=network.vpc,
        security_group=network.worker_security_group,
        start_queue=None if redis_signals else messaging.start_queue,
        key=messaging.key,
        redis_auth_secret=cache.auth_secret,
        redis_url=f"rediss://{cache.endpoint_address}:{cache.endpoint_port}/0",
        **common("SyncService", stateful=False),
    )
    trigger = TriggerStack(
        scope,
        stack_name(config.name, "Trigger"),
        env_name=config.name,
        schedule_expression=config.schedule,
        schedule_command=(
            Command.SYNC_NOW if config.worker.mode is WorkerMode.PER_SIGNAL else Command.START_SYNC
        ).value,
        retry_attempts=config.trigger.retry_attempts,
        reserved_concurrency=config.trigger.reserved_concurrency,
        log_retention=retention,
        start_topic=messaging.start_topic,
        key=messaging.key,
        cluster=sync_service.cluster,
        service=sync_service.service,
        heartbeat_alarm_name=alarm_name,
        redis=RedisPublish(
            host=cache.endpoint_address,
            port=cache.endpoint_port,
            auth_secret=cache.auth_secret,
            vpc=network.vpc,
            security_group=network.trigger_security_group,
        )
        if redis_signals and network.trigger_security_group is not None
        else None,
        **common("Trigger", stateful=False),
    )
    monitoring = MonitoringStack(
        scope,
        stack_name(config.name, "Monitoring"),
        env_name=config.name,
        settings=AlarmSettings(
            failure_ratio=config.alarms.failure_ratio,
            failure_ratio_period_minutes=config.alarms.failure_ratio_period_minutes,
            lambda_errors=config.alarms.lambda_errors,
            running_tasks_periods=config.alarms.running_tasks_periods,
            desired_count=config.worker.desired_count,
            emails=tuple(config.alarms.notify.emails),
            notify_topic_arn=config.alarms.notify.topic_arn,
        ),
        key=messaging.key,
        dead_letter_queue=messaging.dead_letter_queue,
        schedule_dead_letter_queue=trigger.schedule_dead_letter_queue,
        trigger_failure_queue=trigger.async_failure_queue,
        trigger_function=trigger.function,
        cluster=sync_service.cluster,
        service=sync_service.service,
        self_heal_topic=trigger.self_heal_topic,
        heartbeat_alarm_name=alarm_name,
        dashboard=config.monitoring.dashboard,
        **common("Monitoring", stateful=False),
    )
    return EnvironmentStacks(network, messaging, cache, sync_service, trigger, monitoring)
