"""The KPI alerts' promtool test cases (``promtool test rules``), built from the catalog.

Every target, backlog and burn-rate alert gets clinics whose series make it fire and clinics
that must stay silent: a healthy clinic, a clinic whose own (lenient) target it meets, a clinic
below the minimum volume, and for burn rates a pair where only one window burns. The expected
values are computed here from the same arithmetic Prometheus uses, so the assertions are exact.
"""

from __future__ import annotations

from typing import Any

from alerts import burn_rate, targets
from alerts.promql import CLINIC_LABELS
from alerts.rendering import render_all
from alerts.settings import KpiRules
from kpis import names
from kpis.catalog import Kpi
from kpis.durations import parse as parse_duration
from kpis.series import QUANTILES, selector

SOURCE = "demo"
VOLUME_FACTOR = 2  # healthy and breaching clinics have twice the minimum volume
Test = dict[str, Any]


def minutes(duration: str) -> int:
    return int(parse_duration(duration).seconds // 60)


def series(metric: str, value: float, length: int, **labels: str) -> dict[str, str]:
    return {"series": selector(metric, **labels), "values": f"{value:g}+0x{length}"}


def proportion_inputs(kpi: Kpi, labels: dict[str, str], num: int, den: int,
                      length: int) -> list[dict[str, str]]:
    return [series(names.numerator(kpi), num, length, **labels),
            series(names.denominator(kpi), den, length, **labels)]


def breaching_count(target: float, op: str, den: int) -> int:
    """A numerator that misses the target: half of it (>=) or twice it plus one (<=)."""
    return int(den * target) // 2 if op == ">=" else min(den, int(den * target) * 2 + 1)


def duration_point(kpi: Kpi, target: float, breach: bool) -> float:
    """Where every observation sits: past the target's bucket (breach) or in the first one."""
    assert kpi.target is not None
    if kpi.target.stat == "mean":
        return 2 * target if breach else target / 2
    if not breach:
        return kpi.buckets[0]
    for lower, upper in zip(kpi.buckets, kpi.buckets[1:], strict=False):
        if lower >= target:
            return upper
    raise ValueError(f"{kpi.key}: no bucket above the target {target:g}")


def duration_value(kpi: Kpi, point: float, count: int) -> float:
    """histogram_quantile (same arithmetic as Prometheus) or the mean of ``count`` points."""
    assert kpi.target is not None
    if kpi.target.stat == "mean":
        return point * count / count
    q = float(QUANTILES[kpi.target.stat])
    index = kpi.buckets.index(point)
    if index == 0 and point <= 0:
        return point
    lower = kpi.buckets[index - 1] if index else 0.0
    return lower + (point - lower) * (q * count / count)


def duration_inputs(kpi: Kpi, labels: dict[str, str], point: float, count: int,
                    length: int) -> list[dict[str, str]]:
    base = names.histogram(kpi)
    rows = [series(f"{base}_bucket", count if point <= le else 0, length, **labels, le=repr(le))
            for le in map(float, kpi.buckets)]
    rows.append(series(f"{base}_bucket", count, length, **labels, le="+Inf"))
    rows.append(series(f"{base}_sum", point * count, length, **labels))
    rows.append(series(f"{base}_count", count, length, **labels))
    return rows


def stat_inputs(item: KpiRules, labels: dict[str, str], breach: bool, volume: int,
                length: int) -> tuple[list[dict[str, str]], float]:
    """Input series of one clinic and window, and the statistic they give."""
    kpi, target = item.kpi, item.target
    assert kpi.target is not None and target is not None
    if kpi.kind == "proportion":
        healthy = volume if kpi.target.op == ">=" else 0
        num = breaching_count(target, kpi.target.op, volume) if breach else healthy
        return proportion_inputs(kpi, labels, num, volume, length), num / volume
    if kpi.kind == "duration":
        point = duration_point(kpi, target, breach)
        return (duration_inputs(kpi, labels, point, volume, length),
                duration_value(kpi, point, volume))
    promoters, detractors = (volume // 4, volume // 2) if breach else (volume, 0)
    rows = [series(names.score_count(kpi, part), count, length, **labels)
            for part, count in zip(names.SCORE_COUNTS, (promoters, detractors, volume),
                                   strict=True)]
    return rows, 100 * (promoters - detractors) / volume


def lenient_target(item: KpiRules, value: float) -> float:
    """A clinic's own target that ``value`` meets, although it misses the global target."""
    assert item.kpi.target is not None
    return max(value * 10, 1.0) if item.kpi.target.op == "<=" else min(0.0, value * 10)


def target_series(kpi: Kpi, value: float, length: int, clinic: str = "") -> dict[str, str]:
    labels = {"kpi": kpi.key, **({"clinic": clinic} if clinic else {})}
    return series(names.KPI_TARGET, value, length, **labels)


def expected(rule: dict[str, Any], labels: dict[str, str], value: float,
             target: float | None) -> dict[str, Any]:
    all_labels: dict[str, str] = {**labels, **rule["labels"]}
    return {"exp_labels": dict(sorted(all_labels.items())),
            "exp_annotations": render_all(rule["annotations"], all_labels, value, target)}


def _clinic_labels(clinic: str, window: str) -> dict[str, str]:
    return dict(zip(CLINIC_LABELS, (SOURCE, clinic, window), strict=True))


def target_test(item: KpiRules, runbook_base: str, job: str) -> Test:
    """Fires for north (own target) and east (global target); silent for south (healthy),
    lenient (meets its own target), tiny (under min_volume) and before ``for`` elapses."""
    rule = targets.target_alert(item, runbook_base, job)
    window, wait = item.alert_window, minutes(item.kpi.alert_for)
    length, volume = wait + 10, max(item.min_volume, 1) * VOLUME_FACTOR
    assert item.target is not None
    inputs = [target_series(item.kpi, item.target, length)]
    firing = []
    clinics = [("north", True, volume, True), ("east", True, volume, False),
               ("south", False, volume, True), ("lenient", True, volume, True)]
    if item.min_volume >= 2:
        clinics.append(("tiny", True, item.min_volume - 1, True))
    for clinic, breach, count, own_target in clinics:
        labels = _clinic_labels(clinic, window)
        rows, value = stat_inputs(item, labels, breach, count, length)
        goal = lenient_target(item, value) if clinic == "lenient" else item.target
        inputs += rows + ([target_series(item.kpi, goal, length, clinic)] if own_target else [])
        if clinic in ("north", "east"):
            firing.append(expected(rule, labels, value, goal))
    return _test(rule["alert"], inputs, wait, firing)


def _test(alert: str, inputs: list[dict[str, str]], wait: int,
          firing: list[dict[str, Any]]) -> Test:
    cases: list[dict[str, Any]] = []
    if wait > 1:
        cases.append({"eval_time": f"{wait - 1}m", "alertname": alert, "exp_alerts": []})
    cases.append({"eval_time": f"{wait + 5}m", "alertname": alert, "exp_alerts": firing})
    return {"name": alert, "interval": "1m", "input_series": inputs, "alert_rule_test": cases}


def backlog_test(item: KpiRules, runbook_base: str, job: str) -> Test:
    """Fires for north (two channels add up) and east (global target); silent for south (0)."""
    rule = targets.backlog_alert(item, runbook_base, job)
    wait = minutes(item.kpi.alert_for)
    length = wait + 10
    assert item.target is not None
    inputs = [target_series(item.kpi, item.target, length)]
    metric = names.backlog(item.kpi)
    firing = []
    for clinic, counts, own_target in (("north", (2, 1), True), ("east", (1,), False),
                                       ("south", (0, 0), True)):
        for channel, count in zip(("portal", "email"), counts, strict=False):
            inputs.append(series(metric, count, length, source=SOURCE, clinic=clinic,
                                 channel=channel))
        if own_target:
            inputs.append(target_series(item.kpi, item.target, length, clinic))
        if sum(counts) > item.target:
            labels = {"source": SOURCE, "clinic": clinic}
            firing.append(expected(rule, labels, float(sum(counts)), item.target))
    return _test(rule["alert"], inputs, wait, firing)


def burning_count(op: str, den: int) -> int:
    """A numerator whose error ratio is about 3/4: past every capped factor's threshold."""
    return den // 4 if op == ">=" else den - den // 4


def burn_value(op: str, num: int, den: int, target: float) -> float:
    """The burn rate as PromQL computes it: error ratio over error budget."""
    ratio = num / den
    return (1 - ratio) / (1 - target) if op == ">=" else ratio / target


def burn_test(item: KpiRules, tier: burn_rate.Tier, runbook_base: str, job: str) -> Test:
    """Fires for burning (both windows); silent for recovered (short window fine), spike
    (long window fine), lenient (its own target leaves a big budget) and tiny (low volume)."""
    rule = burn_rate.burn_alert(item, tier, runbook_base, job)
    kpi, target = item.kpi, item.target
    assert kpi.target is not None and target is not None
    op, length, volume = kpi.target.op, 15, max(item.min_volume, 1) * VOLUME_FACTOR
    lenient = 0.0 if op == ">=" else 1.0
    clinics = [("burning", True, True, volume, target), ("recovered", True, False, volume, target),
               ("spike", False, True, volume, target)]
    if burn_value(op, burning_count(op, volume), volume, lenient) <= tier.factor:
        clinics.append(("lenient", True, True, volume, lenient))
    if item.min_volume >= 2:
        clinics.append(("tiny", True, True, item.min_volume - 1, target))
    inputs = [target_series(kpi, target, length)]
    firing = []
    for clinic, long_burns, short_burns, count, goal in clinics:
        for window, burns in ((tier.long, long_burns), (tier.short, short_burns)):
            num = burning_count(op, count) if burns else (count if op == ">=" else 0)
            inputs += proportion_inputs(kpi, _clinic_labels(clinic, window), num, count, length)
        inputs.append(target_series(kpi, goal, length, clinic))
        if clinic == "burning":
            value = burn_value(op, burning_count(op, count), count, goal)
            firing.append(expected(rule, _clinic_labels(clinic, tier.long), value, goal))
    return _test(rule["alert"], inputs, 0, firing)
