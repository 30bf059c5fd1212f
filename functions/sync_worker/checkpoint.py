"""A durable copy of the cursors in DynamoDB, written after every cycle, restored into an empty Redis.

Why: Redis holds the cursors, and a Redis node that is replaced or restarts without its data (dev
runs ElastiCache without a replica) would otherwise send every station back to the start of its
backfill window and republish all of it. With this checkpoint an empty Redis is filled from the
last finished cycle, so what is sent twice after a Redis loss is at most the readings of the cycle
that was running when Redis went away.

Layout: the cursor hash is split over `SHARDS` items (partition key `env`, sort key `shard`), each
the gzip'd JSON of its fields, so 100,000 stations stay far below DynamoDB's 400 KB item limit and a
cycle writes only the shards whose cursors moved (on demand, that is a few write units per cycle).
The cursor hashes of every reading endpoint, and the published-through hash beside each, are copied
field for field (`StateStore.raw_cursors` names each field after its hash and station).

Fencing: each item carries the fencing token of the lease holder that wrote it, and a write is
conditional on not going below the token already there, so a worker that lost its lease cannot
overwrite a newer holder's checkpoint, just as it cannot move a cursor in Redis.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import zlib
from datetime import UTC, datetime
from typing import Any

from functions.sync_worker.observability import logger

#: Items the cursor hash is split over (fixed: a station's shard must not move between cycles).
SHARDS = 16


class CheckpointFenced(RuntimeError):
    """A newer lease holder wrote the checkpoint: this worker's copy is stale and was not written."""


def shard_of(field: str) -> int:
    return zlib.crc32(field.encode("utf-8")) % SHARDS


def _encode(content: dict[str, str]) -> bytes:
    return gzip.compress(json.dumps(content, sort_keys=True, separators=(",", ":")).encode("utf-8"), mtime=0)


class CursorCheckpoint:
    def __init__(self, table_name: str, env: str, *, client: Any | None = None) -> None:
        if client is None:
            import boto3
            from botocore.config import Config

            # The endpoint comes from the environment like every boto3 client's (AWS_ENDPOINT_URL_DYNAMODB
            # for a local DynamoDB or moto), the region from AWS_REGION, which ECS sets.
            client = boto3.client(
                "dynamodb",
                config=Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=3, read_timeout=10),
            )
        self.client = client
        self.table_name = table_name
        self.env = env
        #: shard -> digest of what this process last wrote there (unchanged shards are not written again).
        self._written: dict[int, str] = {}

    def save(self, cursors: dict[str, str], fencing_token: int) -> int:
        """Write the shards whose content changed since this process last wrote them; returns how
        many were written. `CheckpointFenced` when a newer lease holder has written."""
        shards: list[dict[str, str]] = [{} for _ in range(SHARDS)]
        for field, value in cursors.items():
            shards[shard_of(field)][field] = value
        written = 0
        now = datetime.now(UTC).isoformat()
        for index, content in enumerate(shards):
            blob = _encode(content)
            digest = hashlib.sha256(blob).hexdigest()
            if self._written.get(index) == digest:
                continue
            try:
                self.client.put_item(
                    TableName=self.table_name,
                    Item={
                        "env": {"S": self.env},
                        "shard": {"N": str(index)},
                        "cursors": {"B": blob},
                        "stations": {"N": str(len(content))},
                        "fencing_token": {"N": str(fencing_token)},
                        "written_at": {"S": now},
                    },
                    ConditionExpression="attribute_not_exists(fencing_token) OR fencing_token <= :token",
                    ExpressionAttributeValues={":token": {"N": str(fencing_token)}},
                )
            except self.client.exceptions.ConditionalCheckFailedException:
                raise CheckpointFenced(
                    f"checkpoint shard {index} was written by a newer lease holder than token {fencing_token}"
                ) from None
            self._written[index] = digest
            written += 1
        return written

    def load(self) -> dict[str, str]:
        """Every cursor of the last checkpoint ({} when there is none)."""
        cursors: dict[str, str] = {}
        paginator = self.client.get_paginator("query")
        for page in paginator.paginate(
            TableName=self.table_name,
            KeyConditionExpression="#env = :env",
            ExpressionAttributeNames={"#env": "env"},
            ExpressionAttributeValues={":env": {"S": self.env}},
            ConsistentRead=True,
        ):
            for item in page.get("Items", []):
                blob = item["cursors"]["B"]
                cursors.update(json.loads(gzip.decompress(blob)))
        logger.debug("checkpoint loaded", extra={"cursors": len(cursors)})
        return cursors

    def forget(self) -> None:
        """Write every shard again at the next `save` (after a restore, the table and this process agree
        on nothing until then)."""
        self._written.clear()
