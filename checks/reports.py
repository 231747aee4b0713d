"""Report writers: a terminal table, JSON, JUnit XML (for CI) and a standalone HTML page.

Every writer reads :class:`checks.results.CheckResult` only: counts, ratios, thresholds and,
on request, primary keys. No row value can reach a report because none is in a result.
"""

from __future__ import annotations

import html
import json
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO
from xml.etree import ElementTree as ET

from checks.results import CheckResult, exit_code, format_ratio, summary

STATUS_STYLE = {"passed": "green", "failed": "bold red", "warning": "yellow", "error": "bold red"}


def _threshold(result: CheckResult) -> str:
    if result.threshold is None:
        return "-"
    prefix = "<= " if result.unit == "seconds" else ">= "
    return prefix + format_ratio(result.threshold, result.unit)


def _count(value: int | None) -> str:
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
        table.add_row(r.entity, r.check, r.column, r.severity, _count(r.elements),
                      _count(r.unexpected), format_ratio(r.observed, r.unit), _threshold(r),
                      f"[{STATUS_STYLE[status]}]{status}[/]")
    console.print(table)
    for r in results:
        if r.error:
            console.print(f"{r.entity} {r.check} {r.column}: {r.error}", markup=False)
        if r.failing_keys:
            console.print(f"{r.entity} {r.check} {r.column}: failing keys "
                          f"{', '.join(r.failing_keys)}", markup=False)
    counts = summary(results)
    console.print(f"{counts['checks']} checks: {counts['passed']} passed, {counts['failed']} "
                  f"failed, {counts['warning']} warnings, {counts['error']} not evaluated "
                  f"(exit {exit_code(results, strict)})", markup=False)


def as_json(results: list[CheckResult], *, strict: bool = False, since: str | None = None,
            generated_at: datetime | None = None) -> dict[str, Any]:
    return {
        "generated_at": generated_at.isoformat() if generated_at else None,
        "since": since,
        "exit_code": exit_code(results, strict),
        "summary": summary(results),
        "results": [r.as_dict() for r in results],
    }


def write_json(results: list[CheckResult], out: TextIO, **kwargs: Any) -> None:
    json.dump(as_json(results, **kwargs), out, indent=2, sort_keys=True)
    out.write("\n")


def junit(results: list[CheckResult], *, strict: bool = False) -> ET.Element:
    """One testsuite per entity, one testcase per check; warnings fail only with strict."""
    root = ET.Element("testsuites", name="carekpi checks")
    by_entity: dict[str, list[CheckResult]] = {}
    for r in results:
        by_entity.setdefault(r.entity, []).append(r)
    for entity, entity_results in by_entity.items():
        suite = ET.SubElement(root, "testsuite", name=entity, tests=str(len(entity_results)))
        failures = errors = 0
        for r in entity_results:
            case = ET.SubElement(suite, "testcase", classname=f"carekpi.checks.{entity}.{r.suite}",
                                 name=f"{r.check}[{r.column}]",
                                 time=f"{r.duration_seconds:.3f}")
            detail = (f"{_count(r.unexpected)} of {_count(r.elements)} records unexpected; "
                      f"observed {format_ratio(r.observed, r.unit)}, threshold {_threshold(r)}, "
                      f"severity {r.severity}")
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


def write_junit(results: list[CheckResult], out: TextIO, *, strict: bool = False) -> None:
    root = junit(results, strict=strict)
    ET.indent(root)
    out.write(ET.tostring(root, encoding="unicode", xml_declaration=True))
    out.write("\n")


def html_page(results: list[CheckResult], *, strict: bool = False) -> str:
    counts = summary(results)
    rows = []
    for r in results:
        cells = (r.entity, r.suite, r.check, r.column, r.severity, _count(r.elements),
                 _count(r.unexpected), format_ratio(r.observed, r.unit), _threshold(r), r.status)
        keys = ", ".join(r.failing_keys)
        note = r.error or (f"failing keys: {keys}" if keys else "")
        rows.append(f'<tr class="{r.status}">' + "".join(
            f"<td>{html.escape(c)}</td>" for c in (*cells, note)) + "</tr>")
    head = "".join(f"<th>{h}</th>" for h in ("entity", "suite", "check", "column", "severity",
                                             "checked", "unexpected", "observed", "threshold",
                                             "result", "note"))
    return (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>CareKPI data-quality "
        "checks</title><style>body{font-family:sans-serif}table{border-collapse:collapse}"
        "td,th{padding:2px 8px;border-bottom:1px solid #ddd}.failed,.error{background:#fdd}"
        ".warning{background:#ffd}</style></head><body>\n"
        f"<h1>CareKPI data-quality checks</h1>\n<p>{counts['checks']} checks: "
        f"{counts['passed']} passed, {counts['failed']} failed, {counts['warning']} warnings, "
        f"{counts['error']} not evaluated; exit code {exit_code(results, strict)}</p>\n"
        f"<table><thead><tr>{head}</tr></thead><tbody>\n" + "\n".join(rows)
        + "\n</tbody></table></body></html>\n"
    )


def write_report_dir(results: list[CheckResult], directory: Path, *, strict: bool = False,
                     since: str | None = None, generated_at: datetime | None = None) -> None:
    """checks.json, checks.junit.xml and checks.html in ``directory`` (created if needed)."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "checks.json", "w", encoding="utf-8") as out:
        write_json(results, out, strict=strict, since=since, generated_at=generated_at)
    with open(directory / "checks.junit.xml", "w", encoding="utf-8") as out:
        write_junit(results, out, strict=strict)
    (directory / "checks.html").write_text(html_page(results, strict=strict), encoding="utf-8")
