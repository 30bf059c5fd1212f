"""Print each synthesized stack and its resource count: `python -m infra.report cdk.out dev prod`.

Reads cdk.out/<env>/manifest.json (written by `cdk synth --output cdk.out/<env>`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def stack_resource_counts(assembly_dir: Path) -> dict[str, int]:
    """Stack name -> number of resources in its template, in manifest order."""
    manifest = json.loads((assembly_dir / "manifest.json").read_text())
    counts: dict[str, int] = {}
    for name, artifact in manifest["artifacts"].items():
        if artifact.get("type") != "aws:cloudformation:stack":
            continue
        template = json.loads((assembly_dir / artifact["properties"]["templateFile"]).read_text())
        counts[name] = len(template.get("Resources", {}))
    return counts


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: python -m infra.report <cdk.out> <env> [<env> ...]", file=sys.stderr)
        return 2
    root = Path(argv[0])
    for env in argv[1:]:
        counts = stack_resource_counts(root / env)
        print(f"{env}: {len(counts)} stacks, {sum(counts.values())} resources  (cdk.out/{env}/)")
        for name, count in counts.items():
            print(f"  {name:<28} {count:>4} resources")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
