"""Every silenced finding says which rule and why: a ruff suppression names its code followed by
" - reason", a mypy one its error code followed by a "# reason" comment; never a bare one or a
whole-file one. ruff and mypy check the codes exist and are needed (`warn_unused_ignores`); this
checks the reasons are there."""

from __future__ import annotations

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SKIPPED_DIRS = {"node_modules", "cdk.out", "build", "__pycache__"}

NOQA = re.compile(r"#\s*noqa\b(?P<rest>.*)$", re.IGNORECASE)
NOQA_WITH_REASON = re.compile(r"^:\s*[A-Z]+[0-9]+(\s*,\s*[A-Z]+[0-9]+)*\s*(-|—|\(|:|#)\s*\S")
TYPE_IGNORE = re.compile(r"#\s*type:\s*ignore\b(?P<rest>.*)$")
TYPE_IGNORE_WITH_REASON = re.compile(r"^\[[a-z0-9_, -]+\]\s*#\s*\S")
FILE_WIDE = re.compile(r"^#\s*(ruff|mypy|flake8)\s*:\s*(noqa|ignore)", re.IGNORECASE)


def _python_files() -> list[Path]:
    files: list[Path] = []
    for folder, dirs, names in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS and not d.startswith(".") and not d.endswith(".egg-info")]
        files.extend(Path(folder, name) for name in names if name.endswith(".py"))
    return files


def _unexplained() -> list[str]:
    found: list[str] = []
    for path in _python_files():
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            where = f"{path.relative_to(ROOT)}:{number}: {line.strip()[:120]}"
            if FILE_WIDE.match(line.strip()):
                found.append(where)
            if (m := NOQA.search(line)) and not NOQA_WITH_REASON.match(m.group("rest")):
                found.append(where)
            if (m := TYPE_IGNORE.search(line)) and not TYPE_IGNORE_WITH_REASON.match(m.group("rest")):
                found.append(where)
    return found


def test_every_noqa_and_type_ignore_names_its_rule_and_why() -> None:
    assert _unexplained() == []


def test_the_check_tells_a_reason_from_none() -> None:
    assert NOQA_WITH_REASON.match(": E402 - after the sys.path insert")
    assert not NOQA_WITH_REASON.match(": E402")
    assert not NOQA_WITH_REASON.match("")
    assert TYPE_IGNORE_WITH_REASON.match("[union-attr]  # set by start()")
    assert not TYPE_IGNORE_WITH_REASON.match("[union-attr]")
    assert not TYPE_IGNORE_WITH_REASON.match("")
