"""The demo's carekpi.yaml: the worked example that maps the demo's local schema to the
logical model (kpis/demo/carekpi.yaml, filled with the database URL and the holidays)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from importlib import resources

from kpis.demo.clinics import holidays_between
from kpis.demo.generator import utc_now
from kpis.demo.world import FUTURE_DAYS, HISTORY_DAYS


def config_yaml(url: str, *, now: datetime | None = None) -> str:
    """The config text for a demo database at ``url``; holidays cover the data around ``now``
    (default: the current time)."""
    moment = utc_now(now if now is not None else datetime.now(UTC))
    first = (moment - timedelta(days=HISTORY_DAYS + 7)).date()
    last = (moment + timedelta(days=FUTURE_DAYS + 7)).date()
    holidays = ", ".join(d.isoformat() for d in holidays_between(first, last))
    template = (resources.files("kpis") / "demo" / "carekpi.yaml").read_text(encoding="utf-8")
    # JSON strings are valid YAML double-quoted scalars: any URL is quoted safely.
    return (template.replace("@URL@", json.dumps(url)).replace("@HOLIDAYS@", f"[{holidays}]")
            .replace("@HISTORY_DAYS@", str(HISTORY_DAYS))
            .replace("@FUTURE_DAYS@", str(FUTURE_DAYS)))
