"""Label cardinality caps: past a label's cap, values fold into ``other`` and are counted; so do
values shaped like personal data, and values off the operator's ``labels.allow`` list."""

from __future__ import annotations

import threading
from collections import Counter

from kpis import label_values, names
from kpis.catalog import Kpi
from kpis.config import Labels
from kpis.snapshot import Cell, Histogram, volume


class LabelCaps:
    def __init__(self, labels: Labels) -> None:
        self.labels = labels
        self.folded: Counter[str] = Counter()  # label -> values folded, over the process life
        self._lock = threading.Lock()

    def fold(self, kpi: Kpi, cells: list[Cell]) -> list[Cell]:
        for label in kpi.label_dimensions:
            cells = self._fold_label(label, cells, kpi)
        return cells

    def _fold_label(self, label: str, cells: list[Cell], kpi: Kpi) -> list[Cell]:
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
        ranked = sorted(weight, key=lambda v: (-weight[v], v))
        keep = [v for v in ranked if v not in unsafe]
        keep = keep[: cap - 1] if len(keep) + len(unsafe) > cap else keep
        dropped = set(weight) - set(keep)
        if not dropped:
            return cells
        with self._lock:
            self.folded[label] += len(dropped)
        merged: dict[tuple[tuple[str, str], ...], Cell] = {}
        for cell in cells:
            labels = tuple((k, names.OTHER if k == label and v in dropped else v)
                           for k, v in cell.labels)
            merged[labels] = _add(merged[labels], cell, labels) if labels in merged else Cell(
                labels, dict(cell.counts), cell.histogram, cell.spread)
        return list(merged.values())


def _add(a: Cell, b: Cell, labels: tuple[tuple[str, str], ...]) -> Cell:
    counts = {k: a.counts.get(k, 0) + b.counts.get(k, 0) for k in {*a.counts, *b.counts}}
    histogram: Histogram | None = a.histogram
    if a.histogram is not None and b.histogram is not None:
        histogram = a.histogram.merged(b.histogram)
    spread = a.spread.merged(b.spread) if a.spread and b.spread else a.spread or b.spread
    return Cell(labels, counts, histogram, spread)
