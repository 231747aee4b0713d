"""The synthetic demo database behind ``carekpi demo``.

A hospital with four clinics, 90 days of history and 60 days of future bookings, in a local
schema a scheduling, portal, call-center and survey system would have; the config that maps it
(``config_yaml``); optional incidents that push KPIs past their targets; and a manifest of
planted dirty records for the data-quality checks.
"""

from __future__ import annotations

from kpis.demo.dirty import DIRTY_RECORDS, DirtyRecord
from kpis.demo.generator import DemoData, generate
from kpis.demo.incidents import INCIDENTS
from kpis.demo.mapping import config_yaml
from kpis.demo.seeding import SeedSummary, existing, seed

__all__ = [
    "DIRTY_RECORDS",
    "INCIDENTS",
    "DemoData",
    "DirtyRecord",
    "SeedSummary",
    "config_yaml",
    "existing",
    "generate",
    "seed",
]
