"""Report writers: a terminal table, JSON, JUnit XML (for CI) and a standalone HTML page.

Every writer reads :class:`checks.results.CheckResult` only: counts, ratios, thresholds and,
on request, primary keys. No row value can reach a report because none is in a result.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path
from typing import Any, TextIO
from xml.etree import ElementTree as ET

from checks.describe import describe
from checks.results import CheckResult, exit_code, format_ratio, summary
from checks.run_info import RunInfo

log = logging.getLogger(__name__)

STATUS_STYLE = {"passed": "green", "failed": "bold red", "warning": "yellow", "error": "bold red"}


def threshold_text(result: CheckResult) -> str:
    if result.threshold is None:
        return "-"
    prefix = "<= " if result.unit == "seconds" else ">= "
    return prefix + format_ratio(result.threshold, result.unit)


def count_text(value: int | None) -> str:
    return "-" if value is None else str(value)


def write_text(results: list[CheckResult], out: TextIO, *, strict: bool = False,
               color: bool | None = None) -> None:
    """A table for people; rich colours on a terminal, plain text when piped."""
    from rich.console import Console
    from rich.table import Table

    console = Console(file=out, force_terminal=color, no_color=color is False, width=160,
                      highlight=False)
    table = Table(show_edge=False, pad_edge=False, box=None)
    for heading in ("entity", "check", "column", "severity", "checked", "unexpected",
                    "observed", "threshold", "result"):
        table.add_column(heading, justify="right" if heading in (
            "checked", "unexpected", "observed", "threshold") else "left")
    for r in results:
        status = r.status
        table.add_row(r.entity, r.check, r.column, r.severity, count_text(r.elements),
                      count_text(r.unexpected), format_ratio(r.observed, r.unit), threshold_text(r),
                      f"[{STATUS_STYLE[status]}]{status}[/]")
    console.print(table)
    for r in results:
        if r.error:
            console.print(f"{r.entity} {r.check} {r.column}: {r.error}", markup=False)
        if r.failing_keys:
            console.print(f"{r.entity} {r.check} {r.column}: failing keys "
                          f"{', '.join(r.failing_keys)}", markup=False)
    console.print(f"{outcome_line(results)} (exit {exit_code(results, strict)})", markup=False)


def outcome_line(results: list[CheckResult]) -> str:
    counts = summary(results)
    return (f"{counts['checks_run']} checks: {counts['checks_passed']} passed, "
            f"{counts['checks_failed']} failed, {counts['checks_warned']} warnings, "
            f"{counts['checks_not_evaluated']} not evaluated")


def as_json(results: list[CheckResult], run: RunInfo, *, strict: bool = False
            ) -> dict[str, Any]:
    return {
        **run.as_dict(),
        "exit_code": exit_code(results, strict),
        "summary": summary(results),
        "results": [{**r.as_dict(), "description": describe(r)} for r in results],
    }


def write_json(results: list[CheckResult], out: TextIO, run: RunInfo, *,
               strict: bool = False) -> None:
    json.dump(as_json(results, run, strict=strict), out, indent=2, sort_keys=True)
    out.write("\n")


def junit(results: list[CheckResult], run: RunInfo, *, strict: bool = False) -> ET.Element:
    """One testsuite per entity, one testcase per check with its own time; warnings fail only
    with strict. The run's header goes into each suite's properties."""
    root = ET.Element("testsuites", name="carekpi checks",
                      time=f"{run.duration_seconds:.3f}")
    by_entity: dict[str, list[CheckResult]] = {}
    for r in results:
        by_entity.setdefault(r.entity, []).append(r)
    for entity, entity_results in by_entity.items():
        suite = ET.SubElement(root, "testsuite", name=entity, tests=str(len(entity_results)),
                              timestamp=run.started_at.isoformat(timespec="seconds"),
                              time=f"{sum(r.duration_seconds for r in entity_results):.3f}")
        properties = ET.SubElement(suite, "properties")
        for key, value in (("config", run.config_path), ("window", run.window),
                           ("carekpi_version", run.carekpi_version),
                           ("great_expectations_version",
                            run.great_expectations_version or "not installed")):
            ET.SubElement(properties, "property", name=key, value=value)
        failures = errors = 0
        for r in entity_results:
            case = ET.SubElement(suite, "testcase", classname=f"carekpi.checks.{entity}.{r.suite}",
                                 name=f"{r.check}[{r.column}]",
                                 time=f"{r.duration_seconds:.3f}")
            detail = (f"{count_text(r.unexpected)} of {count_text(r.elements)} records "
                      f"unexpected; observed {format_ratio(r.observed, r.unit)}, threshold "
                      f"{threshold_text(r)}, severity {r.severity}")
            if r.error:
                errors += 1
                ET.SubElement(case, "error", message=r.error, type="not-evaluated")
            elif not r.passed and (r.severity == "error" or strict):
                failures += 1
                failure = ET.SubElement(case, "failure", message=detail, type=r.severity)
                if r.failing_keys:
                    failure.text = "failing keys: " + ", ".join(r.failing_keys)
            elif not r.passed:
                ET.SubElement(case, "system-out").text = f"warning: {detail}"
        suite.set("failures", str(failures))
        suite.set("errors", str(errors))
    return root


def write_junit(results: list[CheckResult], out: TextIO, run: RunInfo, *,
                strict: bool = False) -> None:
    root = junit(results, run, strict=strict)
    ET.indent(root)
    out.write(ET.tostring(root, encoding="unicode", xml_declaration=True))
    out.write("\n")


def write_report_dir(results: list[CheckResult], directory: Path, run: RunInfo, *,
                     strict: bool = False) -> None:
    """checks.json, checks.junit.xml and checks.html in ``directory`` (created if needed);
    the run is appended to the directory's history, whose trends the HTML page charts."""
    from checks import history
    from checks.html_report import html_page

    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "checks.json", "w", encoding="utf-8") as out:
        write_json(results, out, run, strict=strict)
    with open(directory / "checks.junit.xml", "w", encoding="utf-8") as out:
        write_junit(results, out, run, strict=strict)
    try:
        history.append(directory, run, results)
        trends = history.trends(directory)
    except (sqlite3.Error, OSError) as exc:  # a damaged history costs the trends, not the run
        log.warning("the history %s could not be used (%s: %s); the reports are written "
                    "without trends", directory / history.FILE, type(exc).__name__, exc)
        trends = {}
    page = html_page(results, run, strict=strict, trends=trends)
    (directory / "checks.html").write_text(page, encoding="utf-8")
