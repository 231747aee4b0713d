"""PromQL building blocks shared by the recording and alerting rules.

Counts are summed before dividing (never average ratios across clinics), and every comparison
with a target reads the exported ``carekpi_kpi_target`` series, so a rule always agrees with the
target the running exporter's config holds.
"""

from __future__ import annotations

from kpis import names
from kpis.catalog import Kpi
from kpis.series import breach_operator, selector, sum_by

CLINIC_LEVEL = "clinic_window"  # per clinic and window; the KPI's one source stays as a label
OVERALL_LEVEL = "window"  # every clinic together, per window
CLINIC_LABELS = (names.SOURCE, names.CLINIC, names.WINDOW)
OVERALL_LABELS = (names.WINDOW,)


def split_dimensions(kpi: Kpi) -> tuple[str, ...]:
    """Derived dimensions that define the KPI itself (A7's reminder and lead time): never summed."""
    return tuple(d for d in kpi.dimensions if d not in kpi.label_dimensions)


def grouping(kpi: Kpi, overall: bool) -> tuple[str, ...]:
    return (*(OVERALL_LABELS if overall else CLINIC_LABELS), *split_dimensions(kpi))


def volume(kpi: Kpi, window: str) -> str:
    """Events behind a KPI's value per clinic in one window (the denominator of the statistic)."""
    if kpi.kind == "proportion":
        metric = names.denominator(kpi)
    elif kpi.kind == "duration":
        metric = f"{names.histogram(kpi)}_count"
    else:
        metric = names.score_count(kpi, "responses")
    return sum_by(grouping(kpi, False), selector(metric, window=window))


def target(kpi: Kpi, per_clinic: bool) -> str:
    """The exported target: one series per clinic (``max by (clinic)``), or the global one."""
    if per_clinic:
        series = selector(names.KPI_TARGET, kpi=kpi.key, clinic="!")
        return f"max by ({names.CLINIC}) ({series})"
    return f"max({selector(names.KPI_TARGET, kpi=kpi.key, clinic='')})"


def past_target(value: str, kpi: Kpi) -> str:
    """``value`` per clinic where it misses the clinic's target, or the global target for a
    clinic the exporter exports no target of its own for. Keeps the left side's value."""
    op = breach_operator(kpi)
    clinic_target = selector(names.KPI_TARGET, kpi=kpi.key, clinic="!")
    return (
        f"(\n  {value}\n    {op} on ({names.CLINIC}) group_left () {target(kpi, True)}\n)\nor\n"
        f"(\n  ({value} unless on ({names.CLINIC}) {clinic_target})\n"
        f"    {op} on () group_left () {target(kpi, False)}\n)"
    )


def target_query(kpi: Kpi) -> str:
    """A template fragment printing the clinic's target (or the global one) humanized."""
    # %q: the clinic as a PromQL string literal (Go's quoting, which PromQL reads): a name
    # such as Children's or a backslash in a value stays inside it.
    clinic = f"max({names.KPI_TARGET}{{kpi='{kpi.key}',clinic=%q}})"
    overall = f"max({names.KPI_TARGET}{{kpi='{kpi.key}',clinic=''}})"
    return (
        f'{{{{ with printf "{clinic} or {overall}" $labels.clinic | query }}}}'
        f"{{{{ . | first | value | {humanizer(kpi)} }}}}{{{{ end }}}}"
    )


def humanizer(kpi: Kpi) -> str:
    """The template function that prints the KPI's statistic in its unit."""
    assert kpi.target is not None
    stat = kpi.target.stat
    if stat == "ratio":
        return "humanizePercentage"
    if stat in ("p50", "p90", "mean", "age"):
        return "humanizeDuration"
    return 'printf "%.0f"'
