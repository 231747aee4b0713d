"""The standalone HTML report: the run's header, failures first, each expectation named and
described in plain language, and each check's trend over the last runs (an inline SVG).

It reads :class:`CheckResult` and :class:`RunInfo` only (counts, ratios, names), so no row
value can reach the page; every text is escaped.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

from checks.describe import describe
from checks.reports import count_text, outcome_line, threshold_text
from checks.results import CheckResult, exit_code, format_ratio
from checks.run_info import RunInfo

# Failures first, then checks that could not be evaluated, warnings, and passes.
ORDER = {"failed": 0, "error": 1, "warning": 2, "passed": 3}
TrendKey = tuple[str, str, str]  # (entity, check, column)

STYLE = (
    "body{font-family:sans-serif;font-size:14px;margin:1.5em;color:#222}table{border-collapse:collapse}"
    "td,th{padding:3px 8px;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}"
    "td.n{text-align:right}.failed td,.error td{background:#fdd}.warning td{background:#ffd}"
    "dl{display:grid;grid-template-columns:max-content auto;gap:2px 12px}dt{font-weight:bold}"
    "dd{margin:0}.desc{color:#555;font-size:90%}code{font-size:90%}"
)


def _e(text: object) -> str:
    return html.escape(str(text))


def sparkline(ratios: Sequence[float | None], width: int = 120, height: int = 28) -> str:
    """An inline SVG of the unexpected ratio per run (oldest left); a gap where none was
    measured. The y axis runs from 0 to the largest ratio seen (at least 1%)."""
    if not ratios:
        return ""
    top = max([r for r in ratios if r is not None] + [0.01])
    step = width / max(len(ratios) - 1, 1)
    points = [(i * step, height - 2 - (r / top) * (height - 4))
              for i, r in enumerate(ratios) if r is not None]
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    last = ratios[-1]
    title = (f"unexpected ratio over the last {len(ratios)} runs; latest "
             f"{format_ratio(last, 'ratio') if last is not None else 'not measured'}; "
             f"scale 0 to {format_ratio(top, 'ratio')}")
    dots = "".join(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="1.8"/>' for x, y in points[-1:])
    return (f'<svg class="trend" width="{width}" height="{height}" role="img" '
            f'viewBox="0 0 {width} {height}"><title>{_e(title)}</title>'
            f'<line x1="0" y1="{height - 2}" x2="{width}" y2="{height - 2}" stroke="#bbb"/>'
            f'<polyline points="{path}" fill="none" stroke="#c33" stroke-width="1.5"/>'
            f'<g fill="#c33">{dots}</g></svg>')


def _header(run: RunInfo) -> str:
    rows = (("Config", run.config_path), ("Sources", ", ".join(run.sources) or "-"),
            ("Run at", run.started_at.strftime("%Y-%m-%d %H:%M:%S UTC")),
            ("Duration", f"{run.duration_seconds:.1f}s"), ("Window", run.window),
            ("CareKPI", run.carekpi_version),
            ("Great Expectations", run.great_expectations_version or "not installed"))
    return "<dl>" + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in rows) + "</dl>"


def html_page(results: list[CheckResult], run: RunInfo, *, strict: bool = False,
              trends: Mapping[TrendKey, Sequence[float | None]] | None = None) -> str:
    """The page; ``trends`` maps a check to its unexpected ratio over the last runs."""
    ordered = sorted(results, key=lambda r: ORDER[r.status])
    heads = ("result", "entity", "check", "column", "expectation", "severity", "checked",
             "unexpected", "observed", "threshold", "trend", "note")
    rows = []
    for r in ordered:
        keys = ", ".join(r.failing_keys)
        note = r.error or (f"failing keys: {keys}" if keys else "")
        trend = sparkline((trends or {}).get((r.entity, r.check, r.column), ()))
        cells = (
            f"<td><b>{_e(r.status)}</b></td>", f"<td>{_e(r.entity)}</td>",
            f"<td>{_e(r.check)}</td>", f"<td>{_e(r.column)}</td>",
            f'<td><code>{_e(r.expectation)}</code><div class="desc">{_e(describe(r))}</div></td>',
            f"<td>{_e(r.severity)}</td>", f'<td class="n">{_e(count_text(r.elements))}</td>',
            f'<td class="n">{_e(count_text(r.unexpected))}</td>',
            f'<td class="n">{_e(format_ratio(r.observed, r.unit))}</td>',
            f'<td class="n">{_e(threshold_text(r))}</td>', f"<td>{trend}</td>",
            f"<td>{_e(note)}</td>")
        rows.append(f'<tr class="{r.status}">{"".join(cells)}</tr>')
    head = "".join(f"<th>{h}</th>" for h in heads)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>CareKPI data-quality checks</title><style>{STYLE}</style></head><body>\n"
        f"<h1>CareKPI data-quality checks</h1>\n{_header(run)}\n"
        f'<p class="summary">{_e(outcome_line(results))}; exit code '
        f"{exit_code(results, strict)}</p>\n"
        f"<table><thead><tr>{head}</tr></thead><tbody>\n" + "\n".join(rows)
        + "\n</tbody></table></body></html>\n"
    )
