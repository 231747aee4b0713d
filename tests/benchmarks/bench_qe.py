"""query-exporter (PyPI ``query-exporter``) on the same data: its own venv, equivalent
no-show, wait-to-be-seen and response-SLA queries (written the way its users write them: one
query per KPI, windows joined from a VALUES list, ``now()``), two Prometheus replicas scraping
every 15 s. Run twice: without ``interval`` (the default: the queries run on every scrape)
and with ``interval: 60`` (what its docs recommend, decoupling queries from scrapes)."""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from kpis import catalog
from tests.benchmarks.bench_serve import (
    QE_VENV,
    Say,
    _db_stats,
    _get,
    _percentiles,
    _port,
    replicas,
)

WINDOWS = "(VALUES ('1h', interval '1 hour'), ('1d', interval '1 day'), " \
          "('7d', interval '7 days'), ('30d', interval '30 days')) AS w(win, span)"


def _queries(schema: str) -> dict[str, str]:
    bounds = ", ".join(f"({b})" for b in catalog.get("wait_to_be_seen").buckets)
    return {
        "no_show": f"""
SELECT a.site_code AS clinic, w.win AS window,
       count(*) FILTER (WHERE a.appt_status = 'NOS') AS carekpi_qe_no_show_numerator,
       count(*) FILTER (WHERE a.appt_status IN ('ARR','CHK','CMP','NOS'))
         AS carekpi_qe_no_show_denominator
FROM {schema}.appointment a JOIN {WINDOWS} ON a.slot_start >= now()::timestamp - w.span
WHERE a.slot_start >= now()::timestamp - interval '30 days' AND a.slot_start < now()::timestamp
GROUP BY 1, 2""",
        "wait": f"""
SELECT a.site_code AS clinic, w.win AS window, b.le::text AS le,
       count(*) FILTER (WHERE extract(epoch FROM a.provider_seen_at
                          - greatest(a.checkin_at, a.slot_start)) <= b.le)
         AS carekpi_qe_wait_to_be_seen_bucket
FROM {schema}.appointment a JOIN {WINDOWS} ON a.slot_start >= now()::timestamp - w.span
     CROSS JOIN (VALUES {bounds}) AS b(le)
WHERE a.slot_start >= now()::timestamp - interval '30 days' AND a.slot_start < now()::timestamp
  AND a.provider_seen_at IS NOT NULL
GROUP BY 1, 2, 3""",
        "response_sla": f"""
SELECT m.site_code AS clinic, m.channel, w.win AS window,
       count(*) FILTER (WHERE m.first_staff_reply_at <= m.received_at
           + CASE WHEN m.priority = 'urgent' THEN interval '4 hours' ELSE interval '1 day' END)
         AS carekpi_qe_response_sla_numerator,
       count(*) AS carekpi_qe_response_sla_denominator
FROM {schema}.portal_message m JOIN {WINDOWS}
     ON m.received_at >= now()::timestamp - w.span - interval '1 day'
WHERE m.received_at >= now()::timestamp - interval '31 days'
  AND m.received_at < now()::timestamp - interval '1 day'
GROUP BY 1, 2, 3""",
    }


def config(dsn: str, schema: str, interval: int | None) -> dict[str, Any]:
    gauges = {"carekpi_qe_no_show_numerator": ["clinic", "window"],
              "carekpi_qe_no_show_denominator": ["clinic", "window"],
              "carekpi_qe_wait_to_be_seen_bucket": ["clinic", "window", "le"],
              "carekpi_qe_response_sla_numerator": ["clinic", "channel", "window"],
              "carekpi_qe_response_sla_denominator": ["clinic", "channel", "window"]}
    metrics = {name: {"type": "gauge", "description": name, "labels": labels}
               for name, labels in gauges.items()}
    queries: dict[str, Any] = {}
    for name, sql in _queries(schema).items():
        query: dict[str, Any] = {"databases": ["bench"], "sql": sql, "metrics": [
            m for m in gauges if m.startswith(f"carekpi_qe_{name}")] or [
            "carekpi_qe_wait_to_be_seen_bucket"]}
        if interval:
            query["interval"] = interval
        queries[name] = query
    return {"databases": {"bench": {"dsn": dsn.replace("postgresql://", "postgresql://", 1)}},
            "metrics": metrics, "queries": queries}


def install(say: Say) -> Path:
    exe = QE_VENV / "bin" / "query-exporter"
    if not exe.exists():
        say(f"installing query-exporter into {QE_VENV} ...")
        subprocess.run(["python3", "-m", "venv", str(QE_VENV)], check=True)
        subprocess.run([str(QE_VENV / "bin" / "pip"), "install", "-q", "query-exporter",
                        "psycopg[binary]"], check=True)
    return exe


def run(dsn: str, schema: str, seconds: float, say: Say) -> dict[str, Any]:
    exe = install(say)
    out: dict[str, Any] = {}
    for interval, prefix in ((None, "qe"), (60, "qe_interval")):
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "config.yaml"
            path.write_text(yaml.safe_dump(config(dsn, schema, interval)), encoding="utf-8")
            port = _port()
            proc = subprocess.Popen([str(exe), "--config", str(path), "--port", str(port),
                                     "--host", "127.0.0.1", "--log-level", "error"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            url = f"http://127.0.0.1:{port}/metrics"
            try:
                time.sleep(3)
                _get(url, timeout=120)  # warm-up: connect, first run
                time.sleep(11)  # idle backends report statistics up to 10 s late
                before = _db_stats(dsn)
                samples = replicas(url, seconds)
                time.sleep(11)
                after = _db_stats(dsn)
                body = _get(url, timeout=120).decode()
            finally:
                proc.terminate()
                proc.wait(10)
        db_ms = after[1] - before[1]
        out[f"{prefix}_db_seconds_per_minute"] = round(db_ms / 1000 / (seconds / 60), 3)
        out[f"{prefix}_queries"] = after[0] - before[0]
        out[f"{prefix}_series"] = sum(1 for line in body.splitlines()
                                      if line.startswith("carekpi_qe_"))
        out.update(_percentiles(f"{prefix}_scrape", samples))
        say(f"query-exporter (interval={interval}): "
            f"{ {k: v for k, v in out.items() if k.startswith(prefix + '_')} }")
    return out
