"""Connecting to the environment's Redis: a URL given on the command line, or the stack outputs.

ElastiCache runs with TLS and an AUTH token kept in Secrets Manager; the CLI reads the token with
the operator's own credentials and never prints it. ElastiCache sits in isolated subnets, so from
outside the VPC an operator uses a tunnel and `--redis-url`.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from c2c_sync.aws import AwsTarget
from c2c_sync.errors import CliError, ExitCode
from c2c_sync.outputs import OutputKey, StackOutputs
from functions.common.redis_auth import BadAuthSecret, auth_token

_TIMEOUT_S = 5.0


def _retry() -> Retry:
    # One quick retry: an operator should hear about an unreachable Redis in seconds, not after a backoff series.
    return Retry(ExponentialBackoff(cap=0.5, base=0.1), retries=1)


@dataclass(frozen=True)
class RedisTarget:
    """Connection parameters; `password` stays out of `describe()` and of any output."""

    host: str
    port: int
    tls: bool
    password: str | None = None
    db: int = 0
    url: str | None = None  # when given explicitly (it may embed a password; never printed)

    def describe(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://{self.host}:{self.port}/{self.db}"

    def client(self) -> redis.Redis:
        if self.url:
            return redis.Redis.from_url(
                self.url,
                socket_timeout=_TIMEOUT_S,
                socket_connect_timeout=_TIMEOUT_S,
                decode_responses=True,
                retry=_retry(),
            )
        return redis.Redis(
            host=self.host,
            port=self.port,
            db=self.db,
            password=self.password,
            ssl=self.tls,
            socket_timeout=_TIMEOUT_S,
            socket_connect_timeout=_TIMEOUT_S,
            decode_responses=True,
            retry=_retry(),
        )

    def connect(self) -> redis.Redis:
        """A client that has answered PING; failure names the endpoint (not the password)."""
        client = self.client()
        try:
            client.ping()
        except redis.AuthenticationError as exc:
            raise CliError(
                f"Redis at {self.describe()} refused the AUTH token: {exc}", ExitCode.REDIS_UNREACHABLE
            ) from None
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise CliError(
                f"Redis unreachable at {self.describe()}: {exc} (ElastiCache is reachable only "
                "inside the VPC: open a tunnel and pass --redis-url)",
                ExitCode.REDIS_UNREACHABLE,
            ) from None
        return client


def from_url(url: str) -> RedisTarget:
    pool_kwargs = redis.connection.parse_url(url)
    return RedisTarget(
        host=pool_kwargs.get("host", "localhost"),
        port=int(pool_kwargs.get("port", 6379)),
        tls=url.startswith("rediss://"),
        db=int(pool_kwargs.get("db", 0)),
        url=url,
    )


def from_outputs(outputs: StackOutputs, aws: AwsTarget) -> RedisTarget:
    """ElastiCache endpoint and port from the outputs, TLS always on, AUTH token from Secrets Manager."""
    host = outputs.get(OutputKey.REDIS_ENDPOINT)
    port = int(outputs.get(OutputKey.REDIS_PORT))
    secret_arn = outputs.get(OutputKey.REDIS_AUTH_SECRET_ARN)
    secret = aws.client("secretsmanager").get_secret_value(SecretId=secret_arn)["SecretString"]
    return RedisTarget(host=host, port=port, tls=True, password=auth_token_from_secret(secret))


def auth_token_from_secret(secret_string: str) -> str:
    """The token in the AUTH secret (the one rule of `functions.common.redis_auth`), or a CLI error."""
    try:
        return auth_token(secret_string)
    except BadAuthSecret as exc:
        raise CliError(str(exc)) from None


def resolve(redis_url: str | None, outputs_loader, aws: AwsTarget) -> RedisTarget:
    """`--redis-url` wins; otherwise the stack outputs (loaded only when needed)."""
    if redis_url:
        return from_url(redis_url)
    return from_outputs(outputs_loader(), aws)
