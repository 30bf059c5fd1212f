"""Small validation cases: signal times and station ids, the station filter, missing secrets, and the
exit codes of `run --once`, `run`, `validate-config` and `--dry-run` (real worker processes against
the simulator, Redis and mosquitto where the command needs them)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from functions.common.signal import InvalidSignal, StartSignal, parse_signal
from functions.sync_worker.cli import main
from functions.sync_worker.settings import ConfigError, load_settings
from functions.trigger.events import HttpCommand
from tests.worker.conftest import REPO_ROOT, base_env

BODY = '{{"v": 1, "command": "sync_now", "source": "cli", "issued_at": {issued_at}}}'


@pytest.mark.parametrize("issued_at", ["0", "1700000000", "1700000000000.5", '"1970-01-01T00:00:00Z"', "true"])
def test_a_signal_time_that_is_a_number_or_the_epoch_is_rejected(issued_at):
    with pytest.raises(InvalidSignal, match="issued_at"):
        parse_signal(BODY.format(issued_at=issued_at))


def test_a_signal_time_in_iso_8601_utc_is_accepted():
    assert parse_signal(BODY.format(issued_at='"2026-03-01T10:00:00Z"')).issued_at.year == 2026


@pytest.mark.parametrize("station", ["NE=33554000", "plant:7", "a.b_c-1", "(x)y", "id@site$1", "50%", "o'brien*!"])
def test_real_vendor_station_ids_pass_the_signal_schema_the_trigger_and_the_worker_settings(station, monkeypatch):
    signal = parse_signal(json.dumps({"v": 1, "command": "sync_now", "source": "cli", "stations": [station]}))
    assert signal.stations == [station]
    assert HttpCommand.model_validate({"command": "sync_now", "stations": [station]}).stations == [station]
    assert load_settings(stations=f"{station},other").stations == [station, "other"]


@pytest.mark.parametrize(
    "station", ["a/b", "a+b", "a#b", "a b", "tab\tid", "é", "a?b", "a,b", "{x}", 'q"', "x" * 129, ""]
)
def test_station_ids_that_would_break_a_topic_a_url_or_a_log_line_are_refused(station):
    with pytest.raises(InvalidSignal, match="stations"):
        parse_signal(json.dumps({"v": 1, "command": "sync_now", "source": "cli", "stations": [station]}))
    with pytest.raises(ValueError):
        StartSignal(command="sync_now", source="cli", stations=[station])


@pytest.mark.parametrize("value", [",", " , ,", " "])
def test_a_station_filter_that_names_no_station_is_refused_not_read_as_every_station(value, monkeypatch, capsys):
    with pytest.raises(ConfigError, match="C2C_STATIONS"):
        load_settings(stations=value)
    monkeypatch.setenv("C2C_SOURCE_API_KEY", "k")
    monkeypatch.setenv("C2C_STATIONS", value)
    assert main(["validate-config"]) == 2
    assert "C2C_STATIONS" in capsys.readouterr().err


def _worker_cli(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    import os

    full_env = {k: v for k, v in os.environ.items() if not k.startswith("C2C_")}
    full_env.update(env, PYTHONPATH=str(REPO_ROOT))
    return subprocess.run(
        [sys.executable, "-m", "functions.sync_worker", *args],
        cwd=REPO_ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _env(tmp_path, source_url: str = "http://127.0.0.1:9", **extra: str) -> dict[str, str]:
    return base_env(
        mqtt_url="mqtt://127.0.0.1:1883",
        redis_url="redis://127.0.0.1:6379/0",
        source_url=source_url,
        tmp_path=tmp_path,
        **extra,
    )


@pytest.mark.parametrize("command", [["run"], ["run", "--once"], ["run", "--dry-run"], ["validate-config"]])
@pytest.mark.integration  # runs the worker CLI as a process
def test_a_missing_api_key_exits_2_naming_the_variable_without_a_traceback(command, tmp_path):
    env = _env(tmp_path)
    del env["C2C_SOURCE_API_KEY"]
    result = _worker_cli(env, *command)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "C2C_SOURCE_API_KEY" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.integration  # runs the worker CLI as a process
def test_dry_run_reports_a_profile_config_error_in_one_line(tmp_path):
    env = _env(tmp_path, C2C_PLATFORM_PROFILE="azure_iot_hub")  # needs a hub host name it does not get
    result = _worker_cli(env, "run", "--dry-run")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("invalid configuration: ") and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.integration
def test_run_once_exits_1_when_the_station_list_cannot_be_read_and_reports_it_as_a_failed_metric(
    mosquitto, redis_server, simulator_factory, tmp_path
):
    sim = simulator_factory(stations=3)
    env = base_env(
        mqtt_url=mosquitto.url,
        redis_url=redis_server.url,
        source_url=sim.url,
        tmp_path=tmp_path,
        C2C_SOURCE_API_KEY="wrong-key",  # the vendor answers 401 to the station list
    )
    result = _worker_cli(env, "run", "--once", timeout=90)
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    emf = [json.loads(line) for line in result.stdout.splitlines() if '"_aws"' in line and "StationListFailed" in line]
    assert emf, "no cycle metrics"
    assert emf[-1]["StationListFailed"] in (1, [1.0]) and emf[-1]["StationsFailed"] in (0, [0.0])


@pytest.mark.integration
def test_dry_run_reports_an_unreadable_station_list_in_one_line(simulator_factory, tmp_path):
    sim = simulator_factory(stations=2)
    result = _worker_cli(_env(tmp_path, source_url=sim.url, C2C_SOURCE_API_KEY="wrong-key"), "run", "--dry-run")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("dry run failed: station list:"), result.stderr


def test_signal_version_true_is_not_version_1():
    """Found by the fuzz: `true == 1` in Python, and Literal[1] alone took it."""
    with pytest.raises(InvalidSignal, match="v: "):
        parse_signal('{"v": true, "command": "sync_now", "source": "cli"}')
