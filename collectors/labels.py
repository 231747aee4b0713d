"""Label cardinality caps: past a label's cap, values fold into ``other`` and are counted; so do
values shaped like personal data, and values off the operator's ``labels.allow`` list.

A label whose query returns more than WIDE times its cap of distinct values (a patient number
mapped as ``clinic``, a free-text queue name) is folded in the database from then on: the
query keeps the KEEP x cap values with the most records and sums the rest as ``other``, so
memory follows the cap, not the data. Below that, the ranking is by each KPI's own volume."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from kpis import label_values, names
from kpis.catalog import Kpi
from kpis.config import Labels
from kpis.snapshot import Cell, volume

WIDE = 10
KEEP = 4


class TooWide(Exception):
    """A query's label ``index`` has more than WIDE x its cap distinct values."""

    def __init__(self, index: int) -> None:
        super().__init__(index)
        self.index = index


class LabelCaps:
    def __init__(self, labels: Labels) -> None:
        self.labels = labels
        self.folded: Counter[str] = Counter()  # label -> values folded, over the process life
        self._in_database: dict[str, dict[int, int]] = {}  # query -> label index -> kept
        self._lock = threading.Lock()

    def in_database(self, query: str) -> dict[int, int]:
        """The labels (by index) the query folds in the database, and how many values each
        keeps."""
        with self._lock:
            return dict(self._in_database.get(query, {}))

    def widened(self, query: str, index: int, label: str) -> None:
        """From now on, fold the query's label ``index`` in the database."""
        with self._lock:
            self._in_database.setdefault(query, {})[index] = KEEP * self.labels.cap(label)

    def rows(self, result: Iterable[Any], labels: dict[int, str]) -> list[Any]:
        """The result's rows, read while each watched label (index -> name) has at most WIDE x
        its cap distinct values; past that, TooWide, having held no more rows than that."""
        ceilings = {i: WIDE * self.labels.cap(name) for i, name in labels.items()}
        seen: dict[int, set[Any]] = {i: set() for i in ceilings}
        rows = []
        for row in result:
            for i, values in seen.items():
                values.add(row[i])
                if len(values) > ceilings[i]:
                    raise TooWide(i)
            rows.append(row)
        return rows

    def fold(self, kpi: Kpi, cells: list[Cell], in_database: Mapping[str, int] | None = None
             ) -> list[Cell]:
        """The cells with each label past its cap folded; ``in_database``: label -> values the
        query already folded into ``other`` (counted with the rest)."""
        for label in kpi.label_dimensions:
            cells = self._fold_label(label, cells, kpi, (in_database or {}).get(label, 0))
        return cells

    def _fold_label(self, label: str, cells: list[Cell], kpi: Kpi, before: int) -> list[Cell]:
        cap = self.labels.cap(label)
        weight: dict[str, float] = {}
        for cell in cells:
            value = cell.label(label)
            if value is not None:
                weight[value] = weight.get(value, 0.0) + volume(kpi, cell) + 1e-9
        allowed = self.labels.allowed(label)
        if allowed is not None:  # the operator's list: only known codes are exported
            unsafe = {v for v in weight if v not in allowed}
        else:  # never personal data or free text (kpis.label_values)
            unsafe = {v for v in weight if label_values.personal_or_free_text(v)}
        if names.OTHER in weight:  # folded already (in the database): it holds the other slot
            unsafe.add(names.OTHER)
        ranked = sorted(weight, key=lambda v: (-weight[v], v))
        keep = [v for v in ranked if v not in unsafe]
        keep = keep[: cap - 1] if len(keep) + len(unsafe) > cap else keep
        dropped = set(weight) - set(keep)
        if before:
            with self._lock:
                self.folded[label] += before
        if not dropped:
            return cells
        with self._lock:
            self.folded[label] += len(dropped - {names.OTHER})
        merged: dict[tuple[tuple[str, str], ...], Cell] = {}
        for cell in cells:
            labels = tuple((k, names.OTHER if k == label and v in dropped else v)
                           for k, v in cell.labels)
            merged[labels] = merged[labels].plus(cell, labels) if labels in merged else Cell(
                labels, dict(cell.counts), cell.histogram, cell.spread)
        return list(merged.values())
