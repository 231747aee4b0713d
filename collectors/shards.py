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

from collections.abc import Sequence
from typing import Protocol, TypeVar

from kpis.sharding import Shard


class Sharded(Protocol):
    """What the assignment reads of a refresh unit."""

    @property
    def source(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def cost(self) -> int: ...


U = TypeVar("U", bound=Sharded)


def assign(units: Sequence[Sharded], count: int) -> list[int]:
    """The shard (1-based) of each unit: per source, costliest first to the least loaded
    shard (ties: the lower index), so equal configs give equal assignments everywhere."""
    owner = [1] * len(units)
    if count <= 1:
        return owner
    by_source: dict[str, list[int]] = {}
    for i, unit in enumerate(units):
        by_source.setdefault(unit.source, []).append(i)
    total = [0] * count  # across sources, so the costliest units do not all go to shard 1
    for _, members in sorted(by_source.items()):
        load = [0] * count
        for i in sorted(members, key=lambda i: (-units[i].cost, units[i].name)):
            target = min(range(count), key=lambda s: (load[s], total[s], s))
            load[target] += max(units[i].cost, 1)
            total[target] += max(units[i].cost, 1)
            owner[i] = target + 1
    return owner


def select(units: Sequence[U], shard: Shard | None) -> list[U]:
    """The units of ``shard`` (all of them when unsharded), in their original order."""
    if shard is None or shard.whole:
        return list(units)
    owner = assign(units, shard.count)
    return [u for u, o in zip(units, owner, strict=True) if o == shard.index]


def owned_sources(units: Sequence[Sharded], shard: Shard | None) -> set[str] | None:
    """The sources whose own series (``carekpi_source_up``) this shard exports: those whose
    first unit by name it owns. None when unsharded (every source)."""
    if shard is None or shard.whole:
        return None
    owner = assign(units, shard.count)
    first: dict[str, tuple[str, int]] = {}
    for unit, o in zip(units, owner, strict=True):
        if unit.source not in first or unit.name < first[unit.source][0]:
            first[unit.source] = (unit.name, o)
    return {source for source, (_, o) in first.items() if o == shard.index}


def owns_position(position: int, shard: Shard | None) -> bool:
    """For what has no unit (KPIs that cannot be computed): dealt round-robin by catalog
    position."""
    return shard is None or shard.whole or position % shard.count == shard.index - 1
