"""Snapshots of every stack for dev and prod, normalised so they are stable on any machine.

Update deliberately with `pytest tests/infra/test_snapshots.py --snapshot-update` and review the diff.
"""

from __future__ import annotations

import json
import re

import pytest
from syrupy.extensions.json import JSONSnapshotExtension

from tests.infra.conftest import PARTS

pytestmark = pytest.mark.infra

_ASSET_HASH = re.compile(r"\b[0-9a-f]{64}\b")
_ACCOUNT_ID = re.compile(r"(?<![0-9])[0-9]{12}(?![0-9])")


def normalise(template: dict) -> dict:
    """Asset hashes (S3 keys `<hash>.zip`, image tags, asset paths) and account ids -> placeholders."""
    text = json.dumps(template, sort_keys=True)
    text = _ASSET_HASH.sub("<ASSET_HASH>", text)
    text = _ACCOUNT_ID.sub("<ACCOUNT_ID>", text)
    return json.loads(text)


def test_normalise_replaces_hashes_image_tags_and_account_ids():
    image = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/repo:" + "ab" * 32
    out = normalise({"Image": image, "S3Key": "cd" * 32 + ".zip", "Port": 6380})
    assert out == {
        "Image": "<ACCOUNT_ID>.dkr.ecr.eu-west-1.amazonaws.com/repo:<ASSET_HASH>",
        "S3Key": "<ASSET_HASH>.zip",
        "Port": 6380,
    }


@pytest.fixture
def json_snapshot(snapshot):
    return snapshot.use_extension(JSONSnapshotExtension)


@pytest.mark.parametrize("part", PARTS)
def test_stack_matches_snapshot(env_synth, part, json_snapshot):
    assert normalise(env_synth.templates[part]) == json_snapshot
