"""Every metric, label, recording-rule and alert name CareKPI uses, in one place.

Collectors, rules and dashboards import their names from here, so a renamed metric cannot
leave a dashboard or an alert behind (the drift tests check the generated files too).
"""

from __future__ import annotations

from kpis.catalog import Kpi

PREFIX = "carekpi"

# Labels (low-cardinality dimensions only; never an identifier or free text).
CLINIC, WINDOW, KPI, SOURCE, ENTITY, LE = "clinic", "window", "kpi", "source", "entity", "le"
OTHER = "other"  # the value label values fold into past the cap

# Self-metrics of the exporter.
SOURCE_UP = f"{PREFIX}_source_up"
KPI_UP = f"{PREFIX}_kpi_up"
KPI_AVAILABLE = f"{PREFIX}_kpi_available"
KPI_LAST_SUCCESS = f"{PREFIX}_kpi_last_success_timestamp_seconds"
KPI_REFRESH_DURATION = f"{PREFIX}_kpi_refresh_duration_seconds"
KPI_REFRESH_ERRORS = f"{PREFIX}_kpi_refresh_errors"  # counter: exposed with _total
KPI_ROWS_READ = f"{PREFIX}_kpi_rows_read"  # counter: exposed with _total
KPI_EVALUATION_TIME = f"{PREFIX}_kpi_evaluation_timestamp_seconds"
KPI_TARGET = f"{PREFIX}_kpi_target"
LABEL_VALUES_FOLDED = f"{PREFIX}_label_values_folded"  # counter: exposed with _total
NEWEST_RECORD = f"{PREFIX}_entity_newest_record_timestamp_seconds"
BUILD_INFO = f"{PREFIX}_build"  # info: exposed as carekpi_build_info
CALENDAR_OPEN = f"{PREFIX}_calendar_open"  # 1 inside the calendar's opening hours, else 0
CALENDAR = "calendar"  # its label: the calendar's name
DEFAULT_CALENDAR = "default"  # the name of ``kpis.calendar``

# Data-quality checks (issue: checks).
CHECK_PASSED = f"{PREFIX}_check_passed"
CHECK_EVALUATED = f"{PREFIX}_check_evaluated"
CHECK_OBSERVED_RATIO = f"{PREFIX}_check_observed_ratio"
CHECK_UNEXPECTED = f"{PREFIX}_check_unexpected_elements"
CHECK_ELEMENTS = f"{PREFIX}_check_elements"
CHECK_LAST_RUN = f"{PREFIX}_check_last_run_timestamp_seconds"
CHECK_DURATION = f"{PREFIX}_check_duration_seconds"

SCORE_COUNTS = ("promoters", "detractors", "responses")


def numerator(kpi: Kpi) -> str:
    return f"{PREFIX}_{kpi.key}_numerator"


def denominator(kpi: Kpi) -> str:
    return f"{PREFIX}_{kpi.key}_denominator"


def histogram(kpi: Kpi) -> str:
    """Base name of a duration KPI's histogram (samples _bucket, _sum, _count)."""
    return f"{PREFIX}_{kpi.key}_seconds"


def score_count(kpi: Kpi, part: str) -> str:
    return f"{PREFIX}_{kpi.key}_{part}"


def backlog(kpi: Kpi) -> str:
    return f"{PREFIX}_{kpi.key}"


def count_metric(kpi: Kpi, part: str) -> str:
    """The series name of one count of a proportion or score KPI."""
    if part in ("numerator", "denominator"):
        return f"{PREFIX}_{kpi.key}_{part}"
    return score_count(kpi, part)


def kpi_metrics(kpi: Kpi) -> tuple[str, ...]:
    """The series names a KPI's collector emits (histograms with their sample suffixes)."""
    if kpi.kind == "proportion":
        return numerator(kpi), denominator(kpi)
    if kpi.kind == "duration":
        base = histogram(kpi)
        return f"{base}_bucket", f"{base}_sum", f"{base}_count"
    if kpi.kind == "score":
        return tuple(score_count(kpi, p) for p in SCORE_COUNTS)
    if kpi.kind == "backlog":
        return (backlog(kpi),)
    return (NEWEST_RECORD,)


# Recording rules: level:metric:operations (Prometheus naming practice).
def ratio_rule(kpi: Kpi, level: str = "clinic_window") -> str:
    return f"{level}:{PREFIX}_{kpi.key}:ratio"


def quantile_rule(kpi: Kpi, q: str, level: str = "clinic_window") -> str:
    """q is p50 or p90."""
    return f"{level}:{histogram(kpi)}:{q}"


def mean_rule(kpi: Kpi, level: str = "clinic_window") -> str:
    return f"{level}:{histogram(kpi)}:mean"


def score_rule(kpi: Kpi, level: str = "clinic_window") -> str:
    return f"{level}:{PREFIX}_{kpi.key}:score"


def value_rule(kpi: Kpi, level: str = "clinic_window") -> str:
    """The recording rule holding the KPI's targeted statistic (ratio, quantile, mean, score)."""
    assert kpi.target is not None
    stat = kpi.target.stat
    if stat == "ratio":
        return ratio_rule(kpi, level)
    if stat in ("p50", "p90"):
        return quantile_rule(kpi, stat, level)
    if stat == "mean":
        return mean_rule(kpi, level)
    return score_rule(kpi, level)


def camel(key: str) -> str:
    return "".join(part.capitalize() for part in key.split("_"))


def alert_name(kpi: Kpi, suffix: str = "TargetBreach") -> str:
    return f"CareKPI{camel(kpi.key)}{suffix}"


ALERT_SOURCE_DOWN = "CareKPISourceDown"
ALERT_REFRESH_STALE = "CareKPIRefreshStale"
ALERT_EXPORTER_ABSENT = "CareKPIExporterAbsent"
ALERT_DUPLICATE_SHARD = "CareKPIDuplicateShard"
ALERT_STALE_FEED = "CareKPIStaleFeed"
ALERT_SUSPECT = "CareKPIResultSuspect"

KPI_REFRESH_INTERVAL = f"{PREFIX}_kpi_refresh_interval_seconds"
EXCLUDED_RECORDS = f"{PREFIX}_kpi_excluded_records"  # gauge per kpi, reason, window
KPI_SUSPECT = f"{PREFIX}_kpi_suspect"  # 1 per doubtful cell: kpi, source, reason, cell labels
KPI_VARIANT = f"{PREFIX}_kpi_variant"  # 1: the pinned variant the mapping allowed

# The load CareKPI puts on each source, per refresh unit (counters: exposed with _total).
UNIT = "unit"
SOURCE_QUERY_SECONDS = f"{PREFIX}_source_query_seconds"
SOURCE_QUERIES = f"{PREFIX}_source_queries"
SOURCE_ROWS_READ = f"{PREFIX}_source_rows_read"


def resource_labels(pairs: tuple[str, ...], option: str = "--label") -> dict[str, str]:
    """Kubernetes resource labels given as ``KEY=VALUE`` on the command line (the Prometheus
    Operator's rule and ServiceMonitor selectors match them)."""
    from kpis.errors import CareKPIError

    labels = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise CareKPIError(f"{option} {pair!r}: expected KEY=VALUE")
        labels[key.strip()] = value.strip()
    return labels
