"""Operator-facing failures: one line that names what is wrong, and a distinct exit code.

Library exceptions (botocore, redis-py, requests) are translated here, in one place, so that no
command ever shows a traceback for a condition the operator can fix.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from enum import IntEnum
from typing import ParamSpec, TypeVar

import typer
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
)
from rich.console import Console
from rich.markup import escape


class ExitCode(IntEnum):
    FAILED = 1  # the remote side refused or the request failed for another reason
    USAGE = 2  # Click's own code for bad arguments
    UNKNOWN_ENV = 3  # no config/<env>.yaml, or the config is invalid
    AWS_ACCESS = 4  # no credentials / region, or AWS unreachable
    NOT_DEPLOYED = 5  # the environment's stacks or one of their outputs is missing
    REDIS_UNREACHABLE = 6


class CliError(Exception):
    """A failure the operator can act on; `message` is printed as is, without a traceback."""

    def __init__(self, message: str, exit_code: ExitCode = ExitCode.FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def translate(exc: BaseException) -> CliError | None:
    """The operator-facing form of a library exception, or None when it is a bug (let it surface)."""
    import redis

    from functions.common.signal import InvalidSignal

    if isinstance(exc, CliError):
        return exc
    if isinstance(exc, InvalidSignal):
        return CliError(f"invalid signal: {exc.reason}", ExitCode.USAGE)
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return CliError(
            "no AWS credentials found: set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY "
            "(or run `aws sso login`)",
            ExitCode.AWS_ACCESS,
        )
    if isinstance(exc, NoRegionError):
        return CliError("no AWS region: pass --region or set AWS_REGION", ExitCode.AWS_ACCESS)
    if isinstance(exc, EndpointConnectionError):
        return CliError(f"cannot reach AWS: {exc}", ExitCode.AWS_ACCESS)
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code, message = error.get("Code", "?"), error.get("Message", str(exc))
        if code == "ValidationError" and "does not exist" in message:
            return CliError(f"stack not deployed: {message}", ExitCode.NOT_DEPLOYED)
        if code in {
            "ExpiredToken",
            "ExpiredTokenException",
            "InvalidClientTokenId",
            "UnrecognizedClientException",
            "SignatureDoesNotMatch",
            "AccessDenied",
            "AccessDeniedException",
        }:
            return CliError(f"AWS refused the credentials ({code}): {message}", ExitCode.AWS_ACCESS)
        return CliError(f"AWS error {code} in {exc.operation_name}: {message}")
    if isinstance(exc, redis.AuthenticationError):
        return CliError(f"Redis refused the AUTH token: {exc}", ExitCode.REDIS_UNREACHABLE)
    if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
        return CliError(f"Redis unreachable: {exc}", ExitCode.REDIS_UNREACHABLE)
    return None


P = ParamSpec("P")
R = TypeVar("R")


def operator_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Wrap a Typer command: known failures become `error: <one line>` on stderr and a non-zero exit."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except Exception as exc:
            failure = translate(exc)
            if failure is None:
                raise
            Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {escape(failure.message)}")
            raise typer.Exit(int(failure.exit_code)) from None

    return wrapper
