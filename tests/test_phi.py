"""PHI canary: marker values planted in every PHI-like column of the demo database, and in mapped
columns that could leak through errors (a status code, a clinic value that is long free text),
never come out of any command: stdout, stderr (debug logs), HTTP bodies, report files.
A canary password in a database URL never comes out either.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from kpis.demo import schema
from tests.test_exporter import free_port, scrape, scrape_when

CARE = [sys.executable, "-m", "kpis"]
TOKEN = "ZQXCANARY"
# Every PHI-like column of the demo schema (see kpis/demo/schema.py), never mapped.
PHI_COLUMNS = {
    "appointment": ["patient_name", "patient_phone", "mrn", "visit_note"],
    "portal_message": ["sender_name", "subject", "body"],
    "call_log": ["caller_phone"],  # mapped as calls.caller_ref: compared in SQL only
    "post_visit_followup": ["call_notes"],
    "patient_complaint": ["complainant_name", "complaint_text"],
    "survey_invite": ["patient_phone"],
    "survey_answer": ["comment_text"],
}
FREE_TEXT_CLINIC = f"{TOKEN} clinic: patient Jane Roe called twice about her bill, very upset"
# A label column holding free text (over 64 characters): folded into "other", never exported.
# (A short, label-like value in a label column is by design a label value.)
LONG_LABEL = TOKEN + " {}: free text typed into a code field by a clerk, far too long for a label"
PASSWORD = "CanaryPass123"
CANARY_URL = f"postgresql+psycopg://carekpi:{PASSWORD}@127.0.0.1:1/x"


def marker(table: str, column: str) -> str:
    return f"{TOKEN}-{table}-{column}"


def plant(url: str) -> None:
    """Markers in every PHI column of every row; in mapped columns for a few rows."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        for table, columns in PHI_COLUMNS.items():
            values = ", ".join(f"{c} = '{marker(table, c)}-' || CAST({key} AS TEXT)"
                               for c in columns for key in [_key(table)])
            conn.execute(sa.text(f"UPDATE {table} SET {values}"))
        for table in schema.ENTITY_TABLES.values():
            key = _key(table.name)
            conn.execute(sa.text(f"UPDATE {table.name} SET site_code = :v WHERE {key} % 97 = 0"),
                         {"v": FREE_TEXT_CLINIC})
        conn.execute(sa.text("UPDATE appointment SET appt_status = :v, dept_code = :d "
                             "WHERE appt_id % 89 = 0"),
                     {"v": f"{TOKEN} status typed in by a clerk",
                      "d": LONG_LABEL.format("department")})
        conn.execute(sa.text("UPDATE portal_message SET channel = :v, priority = :p "
                             "WHERE msg_id % 89 = 0"),
                     {"v": LONG_LABEL.format("channel"), "p": f"{TOKEN} priority note"})
        conn.execute(sa.text("UPDATE call_log SET queue_name = :v WHERE call_id % 89 = 0"),
                     {"v": LONG_LABEL.format("queue")})
        counts = {t: conn.execute(sa.text(f"SELECT count(*) FROM {t} WHERE {c[0]} LIKE :m"),
                                  {"m": f"{TOKEN}%"}).scalar_one()
                  for t, c in PHI_COLUMNS.items()}
    engine.dispose()
    assert all(n > 0 for n in counts.values()), counts


def _key(table: str) -> str:
    return next(c.name for c in schema.metadata.tables[table].primary_key.columns)


def run(*args: str, timeout: float = 600) -> str:
    done = subprocess.run([*CARE, *args], capture_output=True, text=True, timeout=timeout)
    return f"$ carekpi {' '.join(args)}\nexit {done.returncode}\n{done.stdout}\n{done.stderr}"


def serve(config: Path, *needles: str) -> str:
    port = free_port()
    child = subprocess.Popen([*CARE, "serve", "--config", str(config), "--bind", "127.0.0.1",
                              "--port", str(port), "--log-level", "debug"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        bodies = [scrape_when(f"{url}/metrics", *needles, timeout=180)]
        bodies += [scrape(f"{url}/metrics") for _ in range(3)]
        for path in ("/", "/nope", "/metrics?debug=1"):
            try:
                bodies.append(scrape(url + path))
            except OSError as exc:  # an HTTP error status: its body counts too
                bodies.append(str(exc) + (exc.read().decode() if hasattr(exc, "read") else ""))
    finally:
        child.send_signal(signal.SIGTERM)
        out, err = child.communicate(timeout=60)
    return "\n".join([*bodies, out, err])


def leaks(text: str, needle: str) -> list[str]:
    return [line[:200] for line in text.splitlines() if needle.lower() in line.lower()]


@pytest.mark.slow
def test_planted_markers_never_come_out(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/demo.db"
    config = tmp_path / "carekpi.yaml"
    outputs = [run("demo", "--seed-only", "--db", url, "--config-out", str(config),
                   "--log-level", "debug")]
    plant(url)
    outputs += [
        run("collect", "--once", "--config", str(config), "--format", "json",
            "--log-level", "debug"),
        run("collect", "--once", "--config", str(config), "--format", "prometheus",
            "--log-level", "debug"),
        run("config", "show", "--config", str(config)),
        serve(config, "carekpi_no_show_numerator{", "carekpi_nps_responses{"),
    ]
    reports = tmp_path / "reports"
    for fmt in ("json", "junit", "text"):
        outputs.append(run("checks", "run", "--config", str(config), "--format", fmt,
                           "--report-dir", str(reports / fmt), "--show-failing-keys",
                           "--metrics-file", str(tmp_path / f"checks-{fmt}.prom")))
    files = [p for p in [*reports.rglob("*"), *tmp_path.glob("checks-*.prom")] if p.is_file()]
    assert {p.name for p in files} >= {"checks.json", "checks.junit.xml", "checks.html"}
    outputs += [f"== {p}\n{p.read_text(errors='replace')}" for p in files]
    everything = "\n".join(outputs)
    # The runs happened and produced numbers (a test that cannot fail is a defect).
    assert "carekpi_no_show_numerator{" in everything and '"no_show"' in everything
    assert 'clinic="other"' in everything  # the free-text clinic value was folded
    found = leaks(everything, TOKEN)
    assert found == [], f"{len(found)} lines, e.g. {sorted(set(found))[:10]}"


@pytest.mark.slow
def test_a_canary_password_never_comes_out(tmp_path: Path) -> None:
    config = tmp_path / "carekpi.yaml"
    config.write_text(f"""version: 1
sources:
  hospital:
    url: {CANARY_URL}
    connect_timeout: 1s
    refresh_interval: 1s
entities:
  appointments:
    source: hospital
    table: appt
    fields: {{id: id, clinic: site, start: start_at, status: st}}
""")
    outputs = [
        run("config", "show", "--config", str(config)),
        run("config", "validate", "--config", str(config)),
        run("collect", "--once", "--config", str(config), "--log-level", "debug"),
        run("collect", "--once", "--config", str(config), "--format", "prometheus",
            "--log-level", "debug"),
        run("checks", "run", "--config", str(config), "--format", "json"),
        serve(config, 'carekpi_source_up{source="hospital"} 0.0',
              'carekpi_kpi_refresh_errors_total{kpi="no_show",source="hospital"}'),
    ]
    everything = "\n".join(outputs)
    assert "carekpi:***@127.0.0.1:1/x" in everything  # config show masks, it does not drop
    assert leaks(everything, PASSWORD) == []


@pytest.mark.slow
def test_live_validation_quotes_no_database_values(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/demo.db"
    config = tmp_path / "carekpi.yaml"
    run("demo", "--seed-only", "--db", url, "--config-out", str(config))
    plant(url)
    output = run("config", "validate", "--config", str(config))
    assert "local code(s) in the data are not mapped" in output  # the check ran
    assert leaks(output, TOKEN) == []


@pytest.mark.slow
@pytest.mark.parametrize("column", ["mrn", "patient_phone"])
def test_validation_quotes_no_record_or_phone_number_from_a_code_field_mapped_by_mistake(
        column: str, tmp_path: Path) -> None:
    """A code field mapped to the wrong column lists the unmapped values a label could carry;
    record and phone numbers are counted, not shown."""
    url = f"sqlite:///{tmp_path}/demo.db"
    config = tmp_path / "carekpi.yaml"
    run("demo", "--seed-only", "--db", url, "--config-out", str(config))
    config.write_text(config.read_text().replace("booking_channel: book_channel",
                                                 f"booking_channel: {column}", 1))
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:  # phone numbers written as codes are: no space, no parenthesis
        conn.execute(sa.text("UPDATE appointment SET patient_phone = "
                             "'555-' || substr('0000000' || appt_id, -7, 7)"))
        values = {v for (v,) in conn.execute(sa.text(f"SELECT DISTINCT {column} FROM appointment"))
                  if v}
    engine.dispose()
    output = run("config", "validate", "--config", str(config))
    assert "not code-like, not shown" in output  # the check ran and counted them
    assert len(values) > 100 and [v for v in values if v in output] == []
