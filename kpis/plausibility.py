"""The plausibility guard: a result the data makes doubtful is marked suspect, never a plain
green. Two rules, for every KPI and cell:

- ``most_excluded``: exclusion rules (data defects, short abandons, exclusion rules of the
  mapping) left out more than half of the records the cell would rest on;
- ``identical_durations``: every duration the cell rests on is the same value (all waits
  exactly 0 s: a timestamp mapped to the wrong column, or two columns mapped to one).

``most_excluded`` also marks an A2 cell with more cancellations of unknown time than known
late ones: cancellations are a small share of bookings, so left-out ones never make most of
the records, yet the rate could be several times what it shows (a cancellation-time column
that is always empty reads as 0 % late).

Cells resting on fewer than MIN_RECORDS records are not judged: small numbers coincide.
"""

from __future__ import annotations

from dataclasses import dataclass

from kpis.catalog import Kpi
from kpis.snapshot import EXCLUDED, Cell, volume

MIN_RECORDS = 10
MOST = 0.5
MOST_EXCLUDED = "most_excluded"
IDENTICAL_DURATIONS = "identical_durations"
REASONS = (MOST_EXCLUDED, IDENTICAL_DURATIONS)
UNKNOWN_CANCELLATIONS = "unknown_cancellation_time"  # A2's exclusion (collectors/access_plans)


@dataclass(frozen=True)
class Doubt:
    reason: str  # one of REASONS: a low-cardinality label value
    detail: str  # counts only, never a record's value


def doubts(kpi: Kpi, cell: Cell) -> list[Doubt]:
    """Why the cell's value is doubtful (empty when it is not)."""
    found = []
    excluded = {k.removeprefix(EXCLUDED): v for k, v in cell.counts.items()
                if k.startswith(EXCLUDED) and v}
    left_out = sum(excluded.values())
    population = volume(kpi, cell) + left_out
    unknown = excluded.get(UNKNOWN_CANCELLATIONS, 0)
    late = cell.counts.get("numerator", 0)
    if population >= MIN_RECORDS and left_out > MOST * population:
        reasons = ", ".join(f"{k} {v:g}" for k, v in sorted(excluded.items(),
                                                             key=lambda kv: -kv[1]))
        found.append(Doubt(MOST_EXCLUDED, f"{left_out:g} of {population:g} records left out "
                                          f"({reasons})"))
    elif unknown >= MIN_RECORDS and unknown > late:
        found.append(Doubt(MOST_EXCLUDED, f"{unknown:g} cancellations of unknown time left "
                                          f"out, against {late:g} known to be late"))
    spread = cell.spread
    if spread is not None and spread.count >= MIN_RECORDS and spread.identical:
        assert spread.low is not None
        found.append(Doubt(IDENTICAL_DURATIONS,
                           f"all {spread.count} durations are exactly {spread.low:g} s"))
    return found
