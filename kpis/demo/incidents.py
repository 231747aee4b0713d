"""Planted incidents: each makes one KPI cross its target the way it does in real life, so the
demo shows an alert firing and a dashboard turning red."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from kpis.demo.world import Row, World
from kpis.errors import CareKPIError

INCIDENTS: dict[str, str] = {
    "portal-backlog": "DTN's portal inbox has not been worked for a business day and 6 hours: "
                      "messages past their SLA deadline pile up unanswered (response_sla, "
                      "sla_breach_backlog)",
    "no-show-spike": "PED's no-show rate jumps to about 30 % over the last 7 days (no_show)",
    "long-waits": "DTN's in-person patients wait 50-110 minutes more to be seen today "
                  "(wait_to_be_seen p90 over 1 h, visit_cycle_time)",
    "call-abandonment": "callers hang up in the queue on about 18 % of today's calls "
                        "(call_abandonment)",
    "stale-feed": "the appointments feed stopped 6 hours ago: no booking newer than now - 6 h "
                  "(freshness)",
}
STALE_FEED_TABLE, STALE_FEED_COLUMN = "appointment", "booked_at"
STALE_FEED_AGE = timedelta(hours=6)


def check(names: Sequence[str]) -> frozenset[str]:
    """The incident names as a set; an unknown name is a CareKPIError naming the known ones."""
    if isinstance(names, str):
        names = [names]
    for name in names:
        if name not in INCIDENTS:
            raise CareKPIError(f"unknown demo incident {name!r}; known incidents: "
                               f"{', '.join(INCIDENTS)}")
    return frozenset(names)


def stop_feed(world: World, tables: dict[str, list[Row]]) -> None:
    """stale-feed: drop the bookings the broken interface never delivered."""
    if "stale-feed" not in world.incidents:
        return
    cutoff = world.now - STALE_FEED_AGE
    tables[STALE_FEED_TABLE] = [r for r in tables[STALE_FEED_TABLE]
                                if r[STALE_FEED_COLUMN] <= cutoff]
