"""Plain-language descriptions of checks, for the reports (built from names, never from rows).

A built-in check is described from the logical model ("Every appointment has a clinic");
a custom check from its Great Expectations name ("department values match regex").
"""

from __future__ import annotations

from checks.results import CheckResult, format_ratio
from kpis.durations import format_seconds

SINGULAR = {"appointments": "appointment", "messages": "message", "calls": "call",
            "follow_ups": "follow-up", "complaints": "complaint", "surveys": "survey response",
            "survey_invitations": "survey invitation"}


def _field(name: str) -> str:
    return name.replace("_", " ")


def _what(result: CheckResult) -> str:
    record = SINGULAR.get(result.entity, result.entity)
    column = _field(result.column)
    if result.check == "completeness":
        article = "an" if column[:1] in "aeiou" else "a"
        return f"Every {record} has {article} {column} (not empty, not blank)"
    if result.check == "record_completeness":
        return f"Every {record} has all of its required fields filled"
    if result.check == "conformance":
        return f"The {column} of every {record} is one of the codes mapped in the config"
    if result.check == "format":
        return f"The {column} of every {record} matches its configured format"
    if result.check == "time_order":
        earlier, _, later = result.column.partition("<=")
        return f"No {record} has its {_field(later)} time before its {_field(earlier)} time"
    if result.check == "score_range":
        return f"Every {record}'s score lies within its scale's range"
    if result.check == "not_future":
        return f"No {record} has its {column} time in the future (beyond the clock-skew " \
            "tolerance)"
    if result.check == "freshness":
        age = format_seconds(result.threshold) if result.threshold else "-"
        return f"The newest {record} {column} time is at most {age} old"
    words = result.expectation.removeprefix("expect_").replace("_", " ")
    words = words.replace(" to be ", " are ").replace(" to ", " ")
    return f"Custom check on {result.entity}: {words} ({result.column})"


def describe(result: CheckResult) -> str:
    """One sentence, with the share required when it is below 100%."""
    text = _what(result)
    if result.unit == "ratio" and result.threshold is not None and result.threshold < 1.0:
        text += f", for at least {format_ratio(result.threshold, 'ratio')} of checked records"
    return text + "."
