"""The synthesized templates of one environment (cdk.out/<env>/*.template.json), as one lookup.

Pricing a resource sometimes needs another one (a service's task definition, a NAT instance's
subnet, the rule that invokes a function), so every resource of every stack is indexed here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Resource:
    stack: str
    logical_id: str
    type: str
    properties: dict[str, Any]


class Assembly:
    """Every resource of one environment's templates, by stack and logical id."""

    def __init__(self, templates: dict[str, dict[str, Any]]) -> None:
        self.templates = templates
        self._by_stack = {
            stack: {
                logical_id: Resource(stack, logical_id, body["Type"], body.get("Properties") or {})
                for logical_id, body in template.get("Resources", {}).items()
            }
            for stack, template in templates.items()
        }

    @classmethod
    def from_dir(cls, directory: Path) -> Assembly:
        """Read every `*.template.json` of a `cdk synth --output` directory."""
        files = sorted(directory.glob("*.template.json"))
        if not files:
            raise FileNotFoundError(f"no *.template.json in {directory}: run `make synth` first")
        return cls({path.name.removesuffix(".template.json"): json.loads(path.read_text()) for path in files})

    def __iter__(self) -> Iterator[Resource]:
        for resources in self._by_stack.values():
            yield from resources.values()

    def of_type(self, cfn_type: str) -> list[Resource]:
        return [resource for resource in self if resource.type == cfn_type]

    def get(self, stack: str, logical_id: str) -> Resource | None:
        return self._by_stack.get(stack, {}).get(logical_id)

    def referenced(self, stack: str, value: object) -> Resource | None:
        """The resource `value` points at: a Ref or Fn::GetAtt within `stack`."""
        if isinstance(value, dict):
            if "Ref" in value:
                return self.get(stack, str(value["Ref"]))
            if "Fn::GetAtt" in value:
                return self.get(stack, str(value["Fn::GetAtt"][0]))
        return None


def strings_in(value: object) -> Iterator[str]:
    """Every literal string inside a CloudFormation value (through Fn::Join and friends)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings_in(item)
