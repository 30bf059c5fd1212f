"""cfn-lint over every synthesized template: zero errors.

Warnings are reported too; the only one tolerated is W3005 (a DependsOn that a Ref/GetAtt already
implies): CDK itself emits those (e.g. a Lambda's DependsOn on its role's default policy), they are
harmless and not ours to remove.
"""

from __future__ import annotations

import json

import pytest
from cfnlint.api import ManualArgs, lint

from tests.infra.conftest import PARTS

pytestmark = pytest.mark.infra

TOLERATED_WARNINGS = {"W3005"}


@pytest.mark.parametrize("part", PARTS)
def test_template_has_no_cfn_lint_errors(any_synth, part):
    region = any_synth.config.region or "eu-west-1"
    matches = lint(json.dumps(any_synth.templates[part]), config=ManualArgs(regions=[region]))
    errors = [str(m) for m in matches if m.rule.id.startswith("E")]
    assert errors == []
    untolerated = [str(m) for m in matches if not m.rule.id.startswith("E") and m.rule.id not in TOLERATED_WARNINGS]
    assert untolerated == []


@pytest.mark.parametrize("variant", ["edge", "hub"])
def test_platform_variants_sync_service_has_no_cfn_lint_findings(request, variant):
    """edge/hub differ from dev only in the worker's platform wiring (the SyncService stack)."""
    synth = request.getfixturevalue(variant)
    matches = lint(json.dumps(synth.templates["SyncService"]), config=ManualArgs(regions=["eu-west-1"]))
    assert [str(m) for m in matches if m.rule.id not in TOLERATED_WARNINGS] == []
