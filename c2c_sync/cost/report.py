"""The estimate as a table (per resource, most expensive first, then the total) or as JSON."""

from __future__ import annotations

import json
from dataclasses import asdict

from rich.table import Table

from c2c_sync.cost.pricing import Estimate


def as_json(estimate: Estimate) -> str:
    return json.dumps(
        {
            "env": estimate.env,
            "region": estimate.region,
            "region_note": estimate.region_note,
            "prices_as_of": estimate.as_of,
            "hours_per_month": estimate.hours_per_month,
            "total_usd_month": round(estimate.total_usd, 2),
            "by_type_usd_month": {k: round(v, 2) for k, v in sorted(estimate.by_type().items())},
            "assumptions": estimate.assumptions,
            "items": [{**asdict(item), "monthly_usd": round(item.monthly_usd, 4)} for item in estimate.items],
        },
        indent=2,
    )


def as_table(estimate: Estimate) -> Table:
    note = f" ({estimate.region_note})" if estimate.region_note else ""
    title = f"{estimate.env}: ${estimate.total_usd:.2f}/month, {estimate.region}{note}, prices as of {estimate.as_of}"
    table = Table(
        title=title,
        caption="Assumes: " + "; ".join(estimate.assumptions),
        caption_justify="left",
    )
    table.add_column("stack")
    table.add_column("resource")
    table.add_column("type")
    table.add_column("what is priced")
    table.add_column("USD/month", justify="right")
    for item in sorted(estimate.items, key=lambda i: -i.monthly_usd):
        stack = item.stack.removeprefix(f"C2C-{estimate.env}-")
        table.add_row(stack, item.logical_id, item.type, item.detail, f"{item.monthly_usd:.2f}")
    table.add_section()
    table.add_row("total", "", "", f"{len(estimate.items)} billable resources", f"{estimate.total_usd:.2f}")
    return table
