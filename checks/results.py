"""PHI-safe check results: counts, ratios and thresholds only, never a value from a row.

Failing rows are identified by count; by primary key only when the user asks for it
(``--show-failing-keys``), and then by key alone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_CANNOT_RUN = 0, 1, 2
MAX_KEYS = 100  # failing keys listed per check, at most


@dataclass(frozen=True)
class CheckResult:
    entity: str
    suite: str
    check: str
    column: str
    severity: str
    expectation: str
    elements: int | None  # records checked
    unexpected: int | None  # records failing the check
    observed: float | None  # the ratio that passed (0..1), or the age in seconds (freshness)
    threshold: float | None
    passed: bool
    unit: str = "ratio"
    error: str | None = None  # why the check could not be evaluated (a static, value-free text)
    failing_keys: tuple[str, ...] = field(default_factory=tuple)
    duration_seconds: float = 0.0

    @property
    def status(self) -> str:
        if self.error is not None:
            return "error"
        if self.passed:
            return "passed"
        return "failed" if self.severity == "error" else "warning"

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["failing_keys"] = list(self.failing_keys)
        data["status"] = self.status
        return data


def exit_code(results: list[CheckResult], strict: bool = False) -> int:
    """0 all passed (warnings allowed unless strict), 1 a check failed, 2 a check could not run."""
    if any(r.error is not None for r in results):
        return EXIT_CANNOT_RUN
    for result in results:
        if not result.passed and (result.severity == "error" or strict):
            return EXIT_FAILED
    return EXIT_OK


SUMMARY_KEYS = {"passed": "checks_passed", "failed": "checks_failed",
                "warning": "checks_warned", "error": "checks_not_evaluated"}


def summary(results: list[CheckResult]) -> dict[str, int]:
    """Checks by outcome; the keys name outcomes, never a severity (``checks_failed`` are
    failed error-severity checks, ``checks_warned`` failed warning-severity ones)."""
    counts = {"checks_run": len(results), **{key: 0 for key in SUMMARY_KEYS.values()}}
    for result in results:
        counts[SUMMARY_KEYS[result.status]] += 1
    return counts


def format_ratio(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "seconds":
        return f"{value:.0f}s"
    return f"{100 * value:.2f}%"
