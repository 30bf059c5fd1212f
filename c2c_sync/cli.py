"""`c2c-sync`: the operator CLI (Typer + Rich).

    c2c-sync signal start|stop|sync-now|reload --env NAME [--via sns|url|redis] [--stations a,b]
    c2c-sync status --env NAME [--json] [--redis-url URL]
    c2c-sync validate-config --env NAME
    c2c-sync synth --env NAME
    c2c-sync cost --env NAME [--json] [--region R] [--cdk-out DIR]
    c2c-sync preflight --env NAME   (what would break a deploy; `make deploy` runs it first)
    c2c-sync demo [--stations N --cycles N --interval S ...]   (the whole system, locally)

Every command that talks to AWS takes --region and --endpoint-url (AWS_ENDPOINT_URL), so the
same code runs against a real account, LocalStack, or moto's server in the tests.
"""

from __future__ import annotations

import subprocess
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from c2c_sync import environments, outputs, redis_target, render, signals, status
from c2c_sync.aws import AwsTarget
from c2c_sync.demo.command import demo_command
from c2c_sync.errors import CliError, ExitCode, operator_errors

app = typer.Typer(
    name="c2c-sync",
    help="Drive and inspect a deployed c2c-sync environment.",
    no_args_is_help=True,
    add_completion=False,
    # Failures the operator can fix are translated by `operator_errors`; anything else is a bug and
    # keeps its plain traceback (Rich's pretty traceback would print local variables' repr).
    pretty_exceptions_enable=False,
)

EnvOption = Annotated[str, typer.Option("--env", "-e", help="Environment name: one config/<env>.yaml.")]
RegionOption = Annotated[
    str | None,
    typer.Option(
        "--region", envvar="AWS_REGION", help="AWS region (default: AWS_REGION / AWS_DEFAULT_REGION / profile)."
    ),
]
EndpointOption = Annotated[
    str | None,
    typer.Option("--endpoint-url", envvar="AWS_ENDPOINT_URL", help="Send every AWS call here (moto, LocalStack)."),
]
RedisUrlOption = Annotated[
    str | None,
    typer.Option(
        "--redis-url", help="Redis to use instead of the stack's ElastiCache (e.g. through a tunnel, or a local Redis)."
    ),
]


class SignalVerb(StrEnum):
    START = "start"
    STOP = "stop"
    SYNC_NOW = "sync-now"
    RELOAD = "reload"


def _stations(value: str | None) -> list[str] | None:
    if value is None:
        return None
    stations = [item.strip() for item in value.split(",") if item.strip()]
    if not stations:
        raise CliError("--stations is empty: give a comma-separated list of station ids", ExitCode.USAGE)
    return stations


@app.command("signal")
@operator_errors
def signal_command(
    verb: Annotated[SignalVerb, typer.Argument(help="start | stop | sync-now | reload")],
    env: EnvOption,
    via: Annotated[
        signals.Via,
        typer.Option(
            help="sns: the start topic; url: the trigger's function URL "
            "(SigV4); redis: PUBLISH on the worker's channel."
        ),
    ] = signals.Via.SNS,
    stations: Annotated[str | None, typer.Option(help="Comma-separated subset of station ids.")] = None,
    redis_url: RedisUrlOption = None,
    region: RegionOption = None,
    endpoint_url: EndpointOption = None,
) -> None:
    """Send a start signal to ENV; prints the signal id on stdout."""
    environments.require_known(env)
    command = signals.VERBS[verb.value]
    station_list = _stations(stations)
    aws = AwsTarget(region=region, endpoint_url=endpoint_url)
    if via is signals.Via.URL:
        url = outputs.discover(env, aws).get(outputs.OutputKey.TRIGGER_FUNCTION_URL)
        sent = signals.send_url(command, station_list, url, aws)
    else:
        signal = signals.build_signal(command, station_list)
        if via is signals.Via.SNS:
            topic = outputs.discover(env, aws).get(outputs.OutputKey.START_TOPIC_ARN)
            sent = signals.send_sns(signal, topic, aws)
        else:
            target = redis_target.resolve(redis_url, lambda: outputs.discover(env, aws), aws)
            sent = signals.send_redis(signal, target)
    err = Console(stderr=True, soft_wrap=True, highlight=False)
    subset = f" for {len(sent.stations)} station(s)" if sent.stations else ""
    err.print(f"{sent.command.value}{subset} via {sent.via.value}: {sent.detail}")
    if sent.signal_id:
        typer.echo(sent.signal_id)
    else:
        err.print("the trigger accepted the request but did not return a signal id")


@app.command("status")
@operator_errors
def status_command(
    env: EnvOption,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable JSON (stable keys).")] = False,
    cycles: Annotated[int, typer.Option(min=0, max=50, help="How many past cycles to show.")] = 5,
    worst: Annotated[int, typer.Option(min=0, help="How many most-lagging stations to list.")] = 5,
    redis_url: RedisUrlOption = None,
    region: RegionOption = None,
    endpoint_url: EndpointOption = None,
) -> None:
    """Lease, heartbeat, last cycles, cursor lag and DLQ depth of ENV."""
    environments.require_known(env)
    aws = AwsTarget(region=region, endpoint_url=endpoint_url)
    stack_outputs = outputs.discover(env, aws)
    dlq_url = stack_outputs.get(outputs.OutputKey.DLQ_URL)
    target = redis_target.resolve(redis_url, lambda: stack_outputs, aws)
    client = target.connect()
    try:
        result = status.gather(
            env,
            client,
            target.describe(),
            aws.client("sqs"),
            dlq_url,
            stack_outputs.optional(outputs.OutputKey.START_QUEUE_URL),
            cycles=cycles,
            worst=worst,
        )
    finally:
        client.close()
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
    else:
        Console(highlight=False).print(render.status_view(result))


@app.command("validate-config")
@operator_errors
def validate_config_command(env: EnvOption) -> None:
    """Load config/ENV.yaml through the typed schema; print OK or every bad field."""
    environments.require_known(env)
    from c2c_sync.config_check import check

    problems = check(env)
    path = environments.config_dir() / f"{env}.yaml"
    if problems:
        err = Console(stderr=True, soft_wrap=True, highlight=False)
        err.print(f"[bold red]{path}: {len(problems)} problem(s)[/]")
        for problem in problems:
            err.print(f"  {problem}", markup=False)
        raise typer.Exit(int(ExitCode.UNKNOWN_ENV))
    typer.echo(f"OK {path}")


@app.command("synth")
@operator_errors
def synth_command(
    env: EnvOption,
    output: Annotated[Path | None, typer.Option(help="cdk.out directory (default cdk.out/<env>).")] = None,
    quiet: Annotated[bool, typer.Option(help="Do not print the templates.")] = True,
) -> None:
    """Run `cdk synth -c env=ENV` from the repository root."""
    environments.require_known(env)
    result = subprocess.run(synth_args(env, output, quiet), cwd=environments.REPO_ROOT, check=False)
    if result.returncode:
        raise typer.Exit(result.returncode)


def synth_args(env: str, output: Path | None, quiet: bool) -> list[str]:
    cdk = environments.REPO_ROOT / "node_modules" / ".bin" / "cdk"
    if not cdk.exists():
        raise CliError(f"the CDK CLI is not installed at {cdk}: run `make install`")
    args = [str(cdk), "synth", "-c", f"env={env}", "--output", str(output or Path("cdk.out") / env)]
    return args + (["--quiet"] if quiet else [])


@app.command("cost")
@operator_errors
def cost_command(
    env: EnvOption,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable JSON.")] = False,
    region: Annotated[
        str | None, typer.Option(help="Price in this region (default: the config's region, else us-east-1).")
    ] = None,
    cdk_out: Annotated[Path, typer.Option(help="Where `make synth` wrote cdk.out/<env>/.")] = Path("cdk.out"),
    free_tier: Annotated[
        bool, typer.Option(help="Credit the account's always-free allowances (true when ENV has its own account).")
    ] = True,
) -> None:
    """Monthly on-demand cost of ENV from its synthesized templates (run `make synth` first)."""
    environments.require_known(env)
    from c2c_sync import cost
    from config import load_environment

    try:
        config_region = load_environment(env, environments.config_dir()).region
        estimate = cost.estimate_env(env, cdk_out, region or config_region, free_tier=free_tier)
    except (FileNotFoundError, KeyError, cost.UnpricedResources) as exc:
        raise CliError(str(exc).strip("'\""), ExitCode.FAILED) from exc
    if as_json:
        typer.echo(cost.report.as_json(estimate))
    else:
        # Wide enough for the table whatever the terminal (it is mostly read in CI logs and pipes).
        Console(highlight=False, width=200).print(cost.report.as_table(estimate))


@app.command("preflight")
@operator_errors
def preflight_command(env: EnvOption, region: RegionOption = None, endpoint_url: EndpointOption = None) -> None:
    """Check ENV can be deployed: endpoints, secrets, account/region, Docker arm64, alarm subscribers."""
    environments.require_known(env)
    from c2c_sync.preflight import run_preflight
    from config import ConfigError, load_environment

    try:
        config = load_environment(env, environments.config_dir())
    except ConfigError as exc:
        raise CliError(str(exc), ExitCode.UNKNOWN_ENV) from exc
    aws = AwsTarget(region=region or config.region, endpoint_url=endpoint_url)
    problems, account, aws_region = run_preflight(config, aws)
    for problem in problems:
        typer.echo(str(problem))
    if problems:
        raise CliError(f"preflight: {len(problems)} problem(s) before deploying {env} to {account}/{aws_region}")
    typer.echo(f"preflight OK: {env} can deploy to {account}/{aws_region}")


# The local end-to-end run behind `make demo` (c2c_sync/demo/).
app.command("demo")(demo_command)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
