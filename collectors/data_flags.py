"""Samples that flag a KPI's numbers: records left out per reason, and doubtful cells.

Both keep every label of the cell (clinic, the KPI's dimensions, window), so no two samples of
a family share a label set.
"""

from __future__ import annotations

from prometheus_client.samples import Sample

from kpis import names, plausibility
from kpis.catalog import Kpi
from kpis.snapshot import EXCLUDED, KpiResult


def exclusion_samples(kpi: Kpi, results: list[KpiResult]) -> list[Sample]:
    """The KPI's samples of the excluded-records family: one per reason and cell, with every
    label of the cell (clinic, the KPI's dimensions such as queue or channel, window), so no
    two samples share a label set. Cells that still collide (none should) are added up."""
    counts: dict[tuple[tuple[str, str], ...], float] = {}
    for result in results:
        for cell in result.cells:
            if cell.label(names.WINDOW) is None:
                continue
            for part, count in cell.counts.items():
                if part.startswith(EXCLUDED):
                    key = ((names.KPI, kpi.key), (names.SOURCE, result.source),
                           ("reason", part.removeprefix(EXCLUDED)), *cell.labels)
                    counts[key] = counts.get(key, 0.0) + count
    return [Sample(names.EXCLUDED_RECORDS, dict(key), value) for key, value in counts.items()]


def suspect_samples(kpi: Kpi, results: list[KpiResult]) -> list[Sample]:
    """The KPI's samples of the suspect family: 1 per doubtful cell and reason."""
    samples = {}
    for result in results:
        for cell in result.cells:
            for doubt in plausibility.doubts(kpi, cell):
                key = ((names.KPI, kpi.key), (names.SOURCE, result.source),
                       ("reason", doubt.reason), *cell.labels)
                samples[key] = Sample(names.KPI_SUSPECT, dict(key), 1.0)
    return list(samples.values())
