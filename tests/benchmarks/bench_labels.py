"""A label with a million distinct values: `carekpi collect` on an appointments table whose
`clinic` column is distinct on every row (a patient number mapped by mistake), on PostgreSQL.
Prints the collect process's peak resident memory and wall time, and the time of the raw
GROUP BY that a hand-written exporter would run, so the README's figures can be re-measured.

    python tests/benchmarks/bench_labels.py [--rows 1000000] [--runs 2] [--json]

The appointment KPIs that the mapping allows run with the default cap (100 values per label):
the exporter reads the rows while the label has at most 10 x 100 values, then folds it in the
database (collectors/labels.py).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import sqlalchemy as sa
import yaml

from tests.benchmarks.bench_serve import create_database
from tests.benchmarks.run import SERVER

CAREKPI = str(Path(sys.executable).with_name("carekpi"))
AS_OF = datetime(2026, 3, 2, 12, tzinfo=UTC)


def seed(url: str, rows: int) -> None:
    """``rows`` appointments over the 30 days before AS_OF, each with its own clinic value."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        present = conn.execute(sa.text("SELECT to_regclass('appt')")).scalar()
        if present and conn.execute(sa.text("SELECT count(*) FROM appt")).scalar() == rows:
            return
        conn.execute(sa.text("DROP TABLE IF EXISTS appt"))
        conn.execute(sa.text(
            "CREATE TABLE appt (id bigint PRIMARY KEY, site text, start_at timestamp, "
            "booked_at timestamp, st text, arrived_at timestamp, roomed_at timestamp)"))
        conn.execute(sa.text(
            "INSERT INTO appt SELECT g, 'p' || lpad(g::text, 8, '0'), s, s - interval '5 days', "
            "CASE WHEN g % 7 = 0 THEN 'NS' ELSE 'OK' END, s, s + (g % 3600) * interval '1 s' "
            "FROM generate_series(1, :n) g, "
            "LATERAL (SELECT CAST(:end AS timestamp) - (g % 2592000) * interval '1 s' AS s) t"),
            {"n": rows, "end": AS_OF.replace(tzinfo=None)})
        conn.execute(sa.text("CREATE INDEX ON appt (start_at)"))
        conn.execute(sa.text("ANALYZE appt"))
    engine.dispose()


def config(url: str) -> dict[str, Any]:
    return {"version": 1, "sources": {"main": {"url": url, "query_timeout": "300s"}},
            "entities": {"appointments": {
                "source": "main", "table": "appt",
                "fields": {"id": "id", "clinic": "site", "start": "start_at",
                           "created": "booked_at", "status": "st", "arrived": "arrived_at",
                           "provider_start": "roomed_at"},
                "codes": {"status": {"noshow": ["NS"], "fulfilled": ["OK"]}}}}}


def collect(config_path: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of one `carekpi collect` process."""
    started = time.perf_counter()
    process = subprocess.Popen([CAREKPI, "collect", "--config", str(config_path), "--as-of",
                                AS_OF.isoformat(), "--format", "json"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) not in (0, 1):
        raise SystemExit(f"carekpi collect failed ({os.waitstatus_to_exitcode(status)})")
    return seconds, usage.ru_maxrss / 1024


def serve(config_path: Path, seconds: float) -> float:
    """Peak resident MiB of `carekpi serve` over ``seconds`` (refreshing every 10 s, scraped
    every second), read from /proc."""
    import socket
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data = yaml.safe_load(config_path.read_text())
    data["sources"]["main"]["refresh_interval"] = "10s"
    served = config_path.with_name("serve.yaml")
    served.write_text(yaml.safe_dump(data))
    process = subprocess.Popen([CAREKPI, "serve", "--config", str(served), "--port", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak, until = 0.0, time.monotonic() + seconds
    try:
        while time.monotonic() < until and process.poll() is None:
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
            status = Path(f"/proc/{process.pid}/status").read_text()
            rss = next(int(line.split()[1]) for line in status.splitlines()
                       if line.startswith("VmRSS:"))
            peak = max(peak, rss / 1024)
            time.sleep(1)
    finally:
        process.terminate()
        process.wait(30)
    return peak


def raw_group_by(url: str) -> float:
    """A hand-written exporter's query: no-shows and appointments per clinic over 30 days."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    started = time.perf_counter()
    with engine.connect() as conn:
        conn.execute(sa.text(
            "SELECT site, count(*), count(*) FILTER (WHERE st = 'NS') FROM appt "
            "WHERE start_at >= :lo AND start_at < :hi GROUP BY site"),
            {"lo": (AS_OF - timedelta(days=30)).replace(tzinfo=None),
             "hi": AS_OF.replace(tzinfo=None)}).all()
    seconds = time.perf_counter() - started
    engine.dispose()
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--server", default=SERVER)
    parser.add_argument("--database", default="carekpi_bench_labels")
    parser.add_argument("--serve", type=float, default=60.0,
                        help="seconds to run `carekpi serve` for its peak memory (0: skip)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    url = f"{args.server}/{args.database}"
    create_database(args.server, args.database)
    seed(url, args.rows)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "carekpi.yaml"
        path.write_text(yaml.safe_dump(config(url)))
        runs = [collect(path) for _ in range(args.runs)]
        serve_peak = serve(path, args.serve) if args.serve else None
    raw = min(raw_group_by(url) for _ in range(args.runs))
    out = {"rows": args.rows, "distinct_clinics": args.rows,
           "collect_seconds": round(min(s for s, _ in runs), 2),
           "collect_peak_rss_mib": round(max(m for _, m in runs), 1),
           "raw_group_by_seconds": round(raw, 2),
           "serve_peak_rss_mib": None if serve_peak is None else round(serve_peak, 1)}
    print(json.dumps(out) if args.json else
          f"{args.rows:,} distinct clinics: carekpi collect {out['collect_seconds']} s, peak "
          f"RSS {out['collect_peak_rss_mib']} MiB; the raw GROUP BY {out['raw_group_by_seconds']} "
          f"s; carekpi serve for {args.serve:g} s: peak RSS {out['serve_peak_rss_mib']} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
