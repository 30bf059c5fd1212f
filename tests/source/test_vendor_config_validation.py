"""A vendor config is validated in one pass: every bad field is named with its path at once, so a
new vendor's file is fixed in one round, not one error per load."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from functions.sync_worker.source.http_json import VendorConfigError, load_vendor_config


def problems(tmp_path: Path, stations: dict[str, Any], readings: dict[str, Any] | list[dict[str, Any]]) -> list[str]:
    raw = {"name": "v", "auth": {"type": "api_key"}, "stations": stations, "readings": readings}
    path = tmp_path / "vendor.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(VendorConfigError) as caught:
        load_vendor_config(path)
    # One line, `; `-separated; a message may itself hold `; allowed: ...`.
    return re.split(r"; (?=(?:readings|stations)\.)", str(caught.value).removeprefix(f"{path}: "))


def test_every_bad_template_of_an_endpoint_is_named_with_its_path_in_one_pass(tmp_path):
    found = problems(
        tmp_path,
        {"path": "/sites/{site}", "params": {"size": "{page_size}", "from": "{offset}"}},
        {
            "path": "/sites/{station_id}/{kind}",
            "params": {"start": "{since", "end": "{until}"},
            "headers": {"X-Window": "{window}"},
            "method": "POST",
            "body": {"json": {"query": {"ids": ["{station_id}", "{device}"]}}},
            "time_format": "local",
            "items": "data.[",
            "values": {"v": "v"},
            "colour": "blue",
        },
    )
    prefixes = sorted(p.split(": ", 1)[0] for p in found)
    assert prefixes == [
        "readings.body.json.query.ids.1",
        "readings.colour",
        "readings.headers.X-Window",
        "readings.items",
        "readings.params.start",
        "readings.path",
        "readings.time_format",
        "stations.params.from",
        "stations.path",
    ], found
    by_field = dict(p.split(": ", 1) for p in found)
    assert "unknown placeholder(s) ['kind']" in by_field["readings.path"]
    assert "malformed template '{since'" in by_field["readings.params.start"]
    assert "unknown placeholder(s) ['device']" in by_field["readings.body.json.query.ids.1"]
    assert "'local': iso8601, epoch_s, epoch_ms or a strftime pattern" in by_field["readings.time_format"]
    assert "unknown placeholder(s) ['offset']" in by_field["stations.params.from"]
    assert by_field["readings.colour"] == "unknown field"


def test_the_station_placeholders_are_checked_against_batch_together(tmp_path):
    found = problems(
        tmp_path,
        {"path": "/sites"},
        {"path": "/sites/{station_ids}", "params": {"ids": "{station_ids}"}, "values": {"v": "v"}},
    )
    assert sorted(found) == [
        "readings.params.ids: unknown placeholder(s) ['station_ids'] in '{station_ids}': it needs `batch` "
        "(one station per request: {station_id})",
        "readings.path: unknown placeholder(s) ['station_ids'] in '/sites/{station_ids}': it needs `batch` "
        "(one station per request: {station_id})",
        "readings.path: {station_id} must appear in path, params or body",
    ]


def test_a_list_of_endpoints_names_each_problem_under_its_index(tmp_path):
    good = {"name": "power", "path": "/p/{station_id}", "values": {"v": "v"}}
    bad = {"name": "storage", "path": "/s/{sation_id}", "values": {}}
    found = problems(tmp_path, {"path": "/sites"}, [good, bad])
    assert sorted(p.split(": ", 1)[0] for p in found) == ["readings.1.path", "readings.1.values"]
