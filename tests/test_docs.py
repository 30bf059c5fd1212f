"""The repository explains itself: README links ARCHITECTURE.md, nothing points outside the
repository for its design, and no comment or doc stands in for an explanation with a tracker
reference (an issue number) or a word from the project's history instead of what the thing is."""

from __future__ import annotations

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Generated, installed or vendored trees: not ours to read (and every hidden directory but .ci).
SKIPPED_DIRS = {"node_modules", "cdk.out", "build", "__pycache__", "__snapshots__"}
TEXT_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".toml", ".ini", ".txt", ".sh", ".json", ""}
THIS_FILE = Path(__file__).resolve()


def _text_files() -> list[Path]:
    files: list[Path] = []
    for folder, dirs, names in os.walk(ROOT):
        dirs[:] = [
            d
            for d in dirs
            if d not in SKIPPED_DIRS and not d.endswith(".egg-info") and (d == ".ci" or not d.startswith("."))
        ]
        files.extend(Path(folder, name) for name in names if Path(name).suffix in TEXT_SUFFIXES)
    return files


def _offending(pattern: re.Pattern[str]) -> list[str]:
    found: list[str] = []
    for path in _text_files():
        if path.resolve() == THIS_FILE:
            continue
        text = path.read_text(errors="replace")
        found.extend(
            f"{path.relative_to(ROOT)}:{n}: {line.strip()[:100]}"
            for n, line in enumerate(text.splitlines(), 1)
            if pattern.search(line)
        )
    return found


def test_readme_links_the_architecture_document() -> None:
    assert (ROOT / "ARCHITECTURE.md").is_file()
    assert "](ARCHITECTURE.md)" in (ROOT / "README.md").read_text()


def test_nothing_points_outside_the_repository_for_its_design() -> None:
    assert _offending(re.compile(r"\.\./shared|shared/DESIGN")) == []


def test_no_comment_or_doc_cites_an_issue_number_or_the_seed() -> None:
    assert _offending(re.compile(r"issue\s[0-9]|the\sseed", re.IGNORECASE)) == []
