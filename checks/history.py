"""A small local history of check runs for the data team: each run's summary and per-check
counts appended to ``checks-history.sqlite`` in the report directory, and each check's trend
(the unexpected ratio per run) read back for the HTML report.

Only what the reports already hold is stored: names, counts, ratios and the run's header;
never a row value or a key. The oldest runs are pruned past ``KEEP_RUNS``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from contextlib import closing
from pathlib import Path

from checks.results import CheckResult, summary
from checks.run_info import RunInfo

FILE = "checks-history.sqlite"
KEEP_RUNS = 500
TREND_RUNS = 30  # runs a trend chart shows
Key = tuple[str, str, str]  # (entity, check, column)

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, run_at TEXT NOT NULL, duration_seconds REAL,
    window TEXT, config TEXT, carekpi_version TEXT, great_expectations_version TEXT,
    checks_run INTEGER, checks_passed INTEGER, checks_failed INTEGER, checks_warned INTEGER,
    checks_not_evaluated INTEGER);
CREATE TABLE IF NOT EXISTS results (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE, entity TEXT NOT NULL,
    check_name TEXT NOT NULL, column_name TEXT NOT NULL, severity TEXT, status TEXT,
    elements INTEGER, unexpected INTEGER, unexpected_ratio REAL,
    PRIMARY KEY (run_id, entity, check_name, column_name));
"""


def unexpected_ratio(result: CheckResult) -> float | None:
    """Share of the checked records that failed (None: a freshness age, or not evaluated)."""
    if result.unit != "ratio" or result.observed is None or result.error is not None:
        return None
    return max(0.0, 1.0 - result.observed)


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=30)
    conn.execute("PRAGMA foreign_keys = ON")
    conn.executescript(SCHEMA)
    return conn


def append(directory: Path, run: RunInfo, results: Iterable[CheckResult]) -> Path:
    """Add one run; returns the history file."""
    results = list(results)
    path = directory / FILE
    counts = summary(results)
    with closing(_connect(path)) as conn, conn:
        cursor = conn.execute(
            "INSERT INTO runs (run_at, duration_seconds, window, config, carekpi_version, "
            "great_expectations_version, checks_run, checks_passed, checks_failed, "
            "checks_warned, checks_not_evaluated) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (run.started_at.isoformat(), run.duration_seconds, run.window, run.config_path,
             run.carekpi_version, run.great_expectations_version, counts["checks_run"],
             counts["checks_passed"], counts["checks_failed"], counts["checks_warned"],
             counts["checks_not_evaluated"]))
        conn.executemany(
            "INSERT OR REPLACE INTO results VALUES (?,?,?,?,?,?,?,?,?)",
            [(cursor.lastrowid, r.entity, r.check, r.column, r.severity, r.status, r.elements,
              r.unexpected, unexpected_ratio(r)) for r in results])
        conn.execute("DELETE FROM runs WHERE id NOT IN (SELECT id FROM runs ORDER BY id DESC "
                     "LIMIT ?)", (KEEP_RUNS,))
    return path


def trends(directory: Path, runs: int = TREND_RUNS) -> dict[Key, list[float | None]]:
    """Each check's unexpected ratio over the last ``runs`` runs, oldest first (None where the
    check was absent or not measured in a run)."""
    path = directory / FILE
    if not path.exists():
        return {}
    with closing(_connect(path)) as conn:
        ids = [i for (i,) in conn.execute("SELECT id FROM runs ORDER BY id DESC LIMIT ?",
                                          (runs,))][::-1]
        if not ids:
            return {}
        position = {run_id: i for i, run_id in enumerate(ids)}
        found: dict[Key, list[float | None]] = {}
        rows = conn.execute(
            "SELECT run_id, entity, check_name, column_name, unexpected_ratio FROM results "
            "WHERE run_id >= ? ORDER BY run_id", (ids[0],))
        for run_id, entity, check, column, ratio in rows:
            series = found.setdefault((entity, check, column), [None] * len(ids))
            series[position[run_id]] = ratio
    return found
