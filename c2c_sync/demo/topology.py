"""Create the messaging stack's resources in moto's server from the stack's own synthesized template.

moto's CloudFormation cannot deploy this template (it has no AWS::SNS::Subscription, and does not
resolve every key-policy intrinsic), so each resource is created with the API call CloudFormation
would make, with the template's properties passed through unchanged: visibility timeout,
retention, long-poll wait, redrive policy (maxReceiveCount → DLQ), KMS key on queues and topic,
queue and topic policies, raw message delivery on the subscription. A resource type or property
this module does not know fails the demo loudly instead of being dropped: the demo must never run
on a topology the stack does not have.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from graphlib import TopologicalSorter
from typing import Any

#: moto's default account and the region the demo uses.
ACCOUNT_ID = "123456789012"
REGION = "eu-west-1"

_SQS_PROPERTIES = {
    "VisibilityTimeout",
    "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds",
    "KmsMasterKeyId",
    "KmsDataKeyReusePeriodSeconds",
    "RedrivePolicy",
    "DelaySeconds",
    "MaximumMessageSize",
    "SqsManagedSseEnabled",
}
_SNS_TOPIC_PROPERTIES = {"DisplayName", "KmsMasterKeyId"}
_SUBSCRIPTION_ATTRIBUTES = {"RawMessageDelivery", "FilterPolicy", "FilterPolicyScope", "RedrivePolicy"}


class UnsupportedTemplate(RuntimeError):
    """The template holds something the demo cannot reproduce in moto."""


@dataclass
class Created:
    """Physical ids by logical id: `ref` is what `Ref` returns, `attrs` what `Fn::GetAtt` does."""

    ref: dict[str, str] = field(default_factory=dict)
    attrs: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Messaging:
    """The created start topic, queue and DLQ (the stack's outputs) and how the queue is configured."""

    topic_arn: str
    queue_url: str
    dlq_url: str
    queue_attributes: dict[str, str]
    subscription_attributes: dict[str, str]
    kms_alias: str | None

    @property
    def max_receive_count(self) -> int:
        return int(json.loads(self.queue_attributes["RedrivePolicy"])["maxReceiveCount"])

    def describe(self) -> str:
        q = self.queue_attributes
        raw = self.subscription_attributes.get("RawMessageDelivery", "false")
        return (
            f"SNS start topic → SQS start queue (raw delivery {raw}, visibility {q.get('VisibilityTimeout')} s, "
            f"long-poll {q.get('ReceiveMessageWaitTimeSeconds')} s, retention {q.get('MessageRetentionPeriod')} s) "
            f"→ DLQ after {self.max_receive_count} receives; KMS {self.kms_alias or 'key'}"
        )


def deploy(template: dict[str, Any], client: Callable[[str], Any], name_prefix: str) -> Messaging:
    """Create every resource of `template` through `client(service)` (boto3 clients bound to moto)."""
    resources: dict[str, dict[str, Any]] = template["Resources"]
    created = Created()
    order = TopologicalSorter(
        {lid: _references(res.get("Properties", {})) & resources.keys() for lid, res in resources.items()}
    ).static_order()
    for logical_id in order:
        resource = resources[logical_id]
        kind = resource["Type"]
        create = _CREATORS.get(kind)
        if create is None:
            raise UnsupportedTemplate(f"{logical_id}: resource type {kind} is not reproduced by the demo")
        props = _resolve(resource.get("Properties", {}), created)
        create(logical_id, props, created, client, name_prefix)
    outputs = {key: _resolve(out["Value"], created) for key, out in template.get("Outputs", {}).items()}
    for required in ("StartTopicArn", "StartQueueUrl", "DlqUrl"):
        if required not in outputs:
            raise UnsupportedTemplate(f"the messaging template has no {required} output")
    sqs, sns = client("sqs"), client("sns")
    queue_attributes = sqs.get_queue_attributes(QueueUrl=outputs["StartQueueUrl"], AttributeNames=["All"])["Attributes"]
    subscriptions = sns.list_subscriptions_by_topic(TopicArn=outputs["StartTopicArn"])["Subscriptions"]
    queue_arn = queue_attributes["QueueArn"]
    subscription = next((s for s in subscriptions if s["Endpoint"] == queue_arn), None)
    if subscription is None:
        raise UnsupportedTemplate("the start queue is not subscribed to the start topic")
    sub_attrs = sns.get_subscription_attributes(SubscriptionArn=subscription["SubscriptionArn"])["Attributes"]
    aliases = [v for k, v in created.ref.items() if resources[k]["Type"] == "AWS::KMS::Alias"]
    return Messaging(
        outputs["StartTopicArn"],
        outputs["StartQueueUrl"],
        outputs["DlqUrl"],
        queue_attributes,
        sub_attrs,
        aliases[0] if aliases else None,
    )


# -- intrinsic functions -----------------------------------------------------------------------

_PSEUDO = {
    "AWS::AccountId": ACCOUNT_ID,
    "AWS::Partition": "aws",
    "AWS::Region": REGION,
    "AWS::URLSuffix": "amazonaws.com",
}


def _references(value: Any) -> set[str]:
    if isinstance(value, dict):
        if set(value) == {"Ref"}:
            return {value["Ref"]}
        if set(value) == {"Fn::GetAtt"}:
            return {value["Fn::GetAtt"][0]}
        return set().union(*(_references(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_references(v) for v in value)) if value else set()
    return set()


def _resolve(value: Any, created: Created) -> Any:
    if isinstance(value, dict):
        if set(value) == {"Ref"}:
            name = value["Ref"]
            if name in _PSEUDO:
                return _PSEUDO[name]
            if name not in created.ref:
                raise UnsupportedTemplate(f"Ref to {name}, which is not created (yet)")
            return created.ref[name]
        if set(value) == {"Fn::GetAtt"}:
            logical_id, attribute = value["Fn::GetAtt"]
            try:
                return created.attrs[logical_id][attribute]
            except KeyError:
                raise UnsupportedTemplate(f"Fn::GetAtt {logical_id}.{attribute} is not available") from None
        if set(value) == {"Fn::Join"}:
            separator, parts = value["Fn::Join"]
            return separator.join(str(_resolve(p, created)) for p in parts)
        if any(key.startswith("Fn::") for key in value):
            raise UnsupportedTemplate(f"intrinsic {sorted(value)} is not supported by the demo")
        return {k: _resolve(v, created) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, created) for v in value]
    return value


def _known(logical_id: str, props: dict[str, Any], allowed: set[str]) -> None:
    unknown = set(props) - allowed
    if unknown:
        raise UnsupportedTemplate(f"{logical_id}: properties {sorted(unknown)} are not reproduced by the demo")


def _as_attribute(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


# -- one creator per resource type -------------------------------------------------------------


def _kms_key(lid: str, props: dict, created: Created, client: Callable[[str], Any], prefix: str) -> None:
    _known(lid, props, {"Description", "EnableKeyRotation", "KeyPolicy", "PendingWindowInDays", "KeySpec", "KeyUsage"})
    kms = client("kms")
    kwargs: dict[str, Any] = {"Description": props.get("Description", ""), "Policy": json.dumps(props["KeyPolicy"])}
    if "KeySpec" in props:
        kwargs["KeySpec"] = props["KeySpec"]
    if "KeyUsage" in props:
        kwargs["KeyUsage"] = props["KeyUsage"]
    meta = kms.create_key(**kwargs)["KeyMetadata"]
    if props.get("EnableKeyRotation"):
        kms.enable_key_rotation(KeyId=meta["KeyId"])
    created.ref[lid] = meta["KeyId"]
    created.attrs[lid] = {"Arn": meta["Arn"], "KeyId": meta["KeyId"]}


def _kms_alias(lid: str, props: dict, created: Created, client: Callable[[str], Any], prefix: str) -> None:
    _known(lid, props, {"AliasName", "TargetKeyId"})
    client("kms").create_alias(AliasName=props["AliasName"], TargetKeyId=props["TargetKeyId"])
    created.ref[lid] = props["AliasName"]


def _sqs_queue(lid: str, props: dict, created: Created, client: Callable[[str], Any], prefix: str) -> None:
    _known(lid, props, _SQS_PROPERTIES)
    sqs = client("sqs")
    url = sqs.create_queue(QueueName=f"{prefix}-{lid}", Attributes={k: _as_attribute(v) for k, v in props.items()})[
        "QueueUrl"
    ]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    created.ref[lid] = url
    created.attrs[lid] = {"Arn": arn, "QueueUrl": url, "QueueName": arn.rsplit(":", 1)[1]}


def _sqs_queue_policy(lid: str, props: dict, created: Created, client: Callable[[str], Any], prefix: str) -> None:
    _known(lid, props, {"PolicyDocument", "Queues"})
    for url in props["Queues"]:
        client("sqs").set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(props["PolicyDocument"])})
    created.ref[lid] = lid


def _sns_topic(lid: str, props: dict, created: Created, client: Callable[[str], Any], prefix: str) -> None:
    _known(lid, props, _SNS_TOPIC_PROPERTIES)
    arn = client("sns").create_topic(
        Name=f"{prefix}-{lid}", Attributes={k: _as_attribute(v) for k, v in props.items()}
    )["TopicArn"]
    created.ref[lid] = arn
    created.attrs[lid] = {"TopicArn": arn, "TopicName": arn.rsplit(":", 1)[1]}


def _sns_topic_policy(lid: str, props: dict, created: Created, client: Callable[[str], Any], prefix: str) -> None:
    _known(lid, props, {"PolicyDocument", "Topics"})
    for arn in props["Topics"]:
        client("sns").set_topic_attributes(
            TopicArn=arn, AttributeName="Policy", AttributeValue=json.dumps(props["PolicyDocument"])
        )
    created.ref[lid] = lid


def _sns_subscription(lid: str, props: dict, created: Created, client: Callable[[str], Any], prefix: str) -> None:
    _known(lid, props, {"TopicArn", "Protocol", "Endpoint"} | _SUBSCRIPTION_ATTRIBUTES)
    attributes = {k: _as_attribute(props[k]) for k in _SUBSCRIPTION_ATTRIBUTES if k in props}
    arn = client("sns").subscribe(
        TopicArn=props["TopicArn"],
        Protocol=props["Protocol"],
        Endpoint=props["Endpoint"],
        Attributes=attributes,
        ReturnSubscriptionArn=True,
    )["SubscriptionArn"]
    created.ref[lid] = arn


_CREATORS: dict[str, Callable[[str, dict, Created, Callable[[str], Any], str], None]] = {
    "AWS::KMS::Key": _kms_key,
    "AWS::KMS::Alias": _kms_alias,
    "AWS::SQS::Queue": _sqs_queue,
    "AWS::SQS::QueuePolicy": _sqs_queue_policy,
    "AWS::SNS::Topic": _sns_topic,
    "AWS::SNS::TopicPolicy": _sns_topic_policy,
    "AWS::SNS::Subscription": _sns_subscription,
}
