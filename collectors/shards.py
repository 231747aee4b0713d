"""Sharding: N exporter processes split the refresh units of one config between them.

The unit (the KPIs one query evaluates) is the grain, never a slice of a unit's rows: every
KPI is computed whole by exactly one shard, so its label caps, its ``other`` folding and its
exclusion counts are the unsharded exporter's, and the union of the shards' series is the
unsharded exporter's series for series. A clinic-hash predicate inside a unit would split the
process's rows but not the database's work (each shard would scan the same window range to
hash every row) and would cap labels per shard. Within each source the units are dealt by
cost (largest first, to the least loaded shard), so each database's load is split too. Every
shard computes the same assignment from the same config; no coordination is needed.

Series that belong to a source rather than a unit (``carekpi_source_up``) are exported by the
shard that owns the source's first unit; KPIs that cannot be computed (``available 0``) by
their position in the catalog.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from kpis.errors import CareKPIError

_SPEC = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")
U = TypeVar("U")


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` (1-based) of ``count``."""

    index: int = 1
    count: int = 1

    @classmethod
    def parse(cls, text: str, where: str = "--shard") -> Shard:
        match = _SPEC.match(text or "")
        if not match:
            raise CareKPIError(f"{where} {text!r}: expected I/N, e.g. 1/3")
        index, count = int(match.group(1)), int(match.group(2))
        if count < 1 or not 1 <= index <= count:
            raise CareKPIError(f"{where} {text!r}: I must be between 1 and N")
        return cls(index, count)

    @property
    def whole(self) -> bool:
        return self.count == 1

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def assign(units: Sequence[U], source: Callable[[U], str], cost: Callable[[U], int],
           name: Callable[[U], str], count: int) -> list[int]:
    """The shard (1-based) of each unit: per source, costliest first to the least loaded
    shard (ties: the lower index), so equal configs give equal assignments everywhere."""
    owner = [1] * len(units)
    if count <= 1:
        return owner
    by_source: dict[str, list[int]] = {}
    for i, unit in enumerate(units):
        by_source.setdefault(source(unit), []).append(i)
    for members in by_source.values():
        load = [0] * count
        for i in sorted(members, key=lambda i: (-cost(units[i]), name(units[i]))):
            target = min(range(count), key=lambda s: (load[s], s))
            load[target] += max(cost(units[i]), 1)
            owner[i] = target + 1
    return owner


def select(units: Sequence[U], shard: Shard, source: Callable[[U], str],
           cost: Callable[[U], int], name: Callable[[U], str]) -> list[U]:
    """The units of ``shard``, in their original order."""
    if shard.whole:
        return list(units)
    owner = assign(units, source, cost, name, shard.count)
    return [u for u, o in zip(units, owner, strict=True) if o == shard.index]


def source_owners(units: Sequence[U], shard_count: int, source: Callable[[U], str],
                  cost: Callable[[U], int], name: Callable[[U], str]) -> dict[str, int]:
    """The shard that exports each source's own series: the owner of its first unit by name."""
    owner = assign(units, source, cost, name, shard_count)
    first: dict[str, tuple[str, int]] = {}
    for unit, o in zip(units, owner, strict=True):
        key = (name(unit), o)
        if source(unit) not in first or key < first[source(unit)]:
            first[source(unit)] = key
    return {s: o for s, (_, o) in first.items()}


def owns_position(position: int, shard: Shard) -> bool:
    """For things with no unit (unavailable KPIs): dealt round-robin by catalog position."""
    return shard.whole or position % shard.count == shard.index - 1
