"""CareKPI performance benchmark at scale: refresh against raw SQL, growth with history,
scrape latency, database time next to query-exporter, start-up and memory.

Not part of the test run; takes about 15 minutes (seeding 10 million appointments: about 2
minutes on 2 cores, reused on later runs). Needs a local PostgreSQL (default: trust auth as
postgres on 127.0.0.1:5432); everything lives in database ``carekpi_bench``, one schema per
size (``bench_<N>``), with the demo schema's tables and indexes and the demo config
(kpis/demo/carekpi.yaml) pointed at it.

Figures (``--json`` prints one key per figure; otherwise a table, ratios first):

- refresh_vs_raw: CareKPI's refresh of the 11 KPIs of the three heaviest units (appointments
  7, calls 3, response_sla) over the hand-written SQL of bench_raw.py giving the same counts
  (asserted equal for no_show, the wait_to_be_seen histogram count and response_sla), at the
  largest size. Medians after a warm-up. Target <= 1.25.
- growth: a full refresh (every KPI, all windows, all clinics: ``collect``, the units
  on the source's 2 connections) at the largest size over the smallest. Targets:
  refresh_seconds_<largest> <= 1.5, growth <= 1.3. refresh_one_connection_seconds_<N>: the
  same with pool_size 1, the units one after another (about the database time of a full
  refresh); refresh_vs_raw compares on one connection too, as the raw SQL runs.
- scrape_p50_ms / scrape_p99_ms / scrape_db_queries: ``carekpi serve`` (subprocess, refresh
  interval 1 h) scraped by 50 concurrent scrapers, each on its own kept-alive connection and
  sending Prometheus' own headers (OpenMetrics preferred, gzip), all 50 at the same instant,
  once a second for 20 s; label caps that allow every clinic (>= 10,000 series); timed to
  the last byte; queries counted from pg_stat_database.xact_commit of the bench database.
  Targets p99 <= 50 ms, 0 queries. scrape_identity_*: the same bursts asking for neither
  (3 MB uncompressed text each, as curl would). scrape_refreshing_*: the Prometheus bursts
  for 45 s while every unit refreshes every 15 s against the database on the same 2 cores.
- carekpi_db_seconds_per_minute (target <= 0.5 at the largest size): database time per
  minute of all 25 KPIs at the default cadences (1h and 1d windows every 60 s, 7d every
  5 min, 30d every 15 min): each refresh unit's median query time (client-measured, like
  carekpi_source_query_seconds_total: statement sent to rows received) times its refreshes
  per minute; db_seconds_per_minute_<N> per size and unit_query_seconds_<N> per unit;
  db_seconds_per_minute_server_<N>: the same from PostgreSQL's own active time.
- query-exporter: installed into its own venv (~/.cache/carekpi-bench/qe-venv), equivalent
  no-show, wait and response-SLA queries, scraped by two simulated Prometheus replicas every
  15 s; database time per minute from pg_stat_database.active_time, next to CareKPI's
  measured the same way (``carekpi serve``, refresh interval 60 s, the same two replicas,
  over --qe-seconds, so mostly the 1h/1d refreshes): carekpi_db_seconds_per_minute_measured.
- startup_seconds: spawn of ``carekpi serve`` to its first successful scrape (HTTP 200, a
  body that parses; Prometheus records up = 1); target <= 2 s. startup_first_kpi_seconds and
  startup_all_kpis_seconds: to the first KPI refreshed and to every KPI refreshed (bounded
  below by the full refresh time on 2 cores).
- rss_mb: resident memory of ``carekpi serve`` (largest size, about 33,000 series; refreshing
  back to back, scraped every second as Prometheus scrapes: OpenMetrics, gzip) after
  ``--memory-cycles`` refreshes (default 240 = an hour at 15 s; target <= 80 MB with 30,000
  series); memory_series: the series it served. rss_mb_with_text_scraper:
  the same for a quarter of the cycles with a plain-text client scraping every second too.

Examples:

    /work/venv/bin/python tests/benchmarks/run.py
    /work/venv/bin/python tests/benchmarks/run.py --appointments 1000000,3000000 --json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import sqlalchemy as sa
import yaml

from collectors.evaluate import evaluate, run_unit, units
from collectors.labels import LabelCaps
from collectors.load import LoadMeter
from kpis import config as config_module
from kpis.db import engines as engine_factory
from kpis.demo import config_yaml
from tests.benchmarks import bench_qe, bench_raw, bench_seed, bench_serve

SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"
ASSERTED = ("no_show", "wait_to_be_seen", "response_sla")


def bench_config(url: str, schema: str, as_of: datetime, interval: str = "60s",
                 max_values: int = 1000) -> dict[str, Any]:
    """The demo config, its entities in ``schema``, label caps above the bench's clinics."""
    data = yaml.safe_load(config_yaml(url, now=as_of))
    for entity in data["entities"].values():
        entity["schema"] = schema
    data["sources"]["demo"]["refresh_interval"] = interval
    data["sources"]["demo"]["query_timeout"] = "300s"
    data["labels"] = {"max_values": max_values}
    return data


def one_connection(data: dict[str, Any]) -> dict[str, Any]:
    """The config with its source's units run one after another (pool_size 1)."""
    data["sources"]["demo"]["pool_size"] = 1
    return data


def parse(data: dict[str, Any]) -> config_module.Config:
    return config_module.parse(data, "bench.yaml")


def time_refresh(config: config_module.Config, as_of: datetime, runs: int,
                 only: tuple[str, ...] | None = None) -> tuple[float, dict[str, float], list]:
    """Median wall time of evaluate() after one warm-up, and the median per KPI."""
    engines = {n: engine_factory.create(n, s) for n, s in config.sources.items()}
    try:
        results = evaluate(config, engines, as_of, only)
        failed = [r.kpi.key for r in results if r.error]
        if failed:
            raise SystemExit(f"refresh failed for {failed}: {results[0].error}")
        totals, per_kpi = [], {}
        for _ in range(runs):
            started = time.perf_counter()
            results = evaluate(config, engines, as_of, only)
            totals.append(time.perf_counter() - started)
            for r in results:
                per_kpi.setdefault(r.kpi.key, []).append(r.duration_seconds)
        return statistics.median(totals), {k: statistics.median(v) for k, v in
                                           per_kpi.items()}, results
    finally:
        for engine in engines.values():
            engine.dispose()


def cadence_load(config: config_module.Config, as_of: datetime, runs: int
                 ) -> tuple[float, dict[str, float]]:
    """Database seconds per minute at the config's cadences (kpis/cadence.py): each refresh
    unit's median query time (client-measured, as carekpi_source_query_seconds_total is,
    after a warm-up) times its refreshes per minute; and the per-unit medians."""
    engines = {n: engine_factory.create(n, s) for n, s in config.sources.items()}
    caps = LabelCaps(config.labels)
    per_unit: dict[str, float] = {}
    per_minute = 0.0
    try:
        for unit in units(config):
            taken = []
            for run in range(runs + 1):
                meter = LoadMeter()
                results = run_unit(engines[unit.source], config, unit, as_of, caps, meter)
                if any(r.error for r in results):
                    raise SystemExit(f"refresh of {unit.name} failed: {results[0].error}")
                if run:
                    taken.append(sum(load.seconds for load in meter.totals().values()))
            per_unit[unit.label] = statistics.median(taken)
            per_minute += per_unit[unit.label] * 60.0 / unit.interval
    finally:
        for engine in engines.values():
            engine.dispose()
    return per_minute, per_unit


def server_load(config: config_module.Config, as_of: datetime, dsn: str, rounds: int
                ) -> float:
    """The same per minute from PostgreSQL's own clock: the units of each cadence refreshed
    ``rounds`` times, pg_stat_database.active_time (parallel workers included) read around
    them, times the cadence's refreshes per minute."""
    engines = {n: engine_factory.create(n, s) for n, s in config.sources.items()}
    caps = LabelCaps(config.labels)
    per_minute = 0.0
    try:
        every = units(config)
        for unit in every:  # warm
            run_unit(engines[unit.source], config, unit, as_of, caps)
        for interval in sorted({unit.interval for unit in every}):
            before = bench_serve._db_stats(dsn)[1]
            for _ in range(rounds):
                for unit in (u for u in every if u.interval == interval):
                    run_unit(engines[unit.source], config, unit, as_of, caps)
            time.sleep(11)  # PostgreSQL reports an idle backend's statistics up to 10 s late
            active = (bench_serve._db_stats(dsn)[1] - before) / 1000 / rounds
            per_minute += active * 60.0 / interval
    finally:
        for engine in engines.values():
            engine.dispose()
    return per_minute


def time_raw(dsn: str, schema: str, config: config_module.Config, as_of: datetime,
             runs: int) -> tuple[float, dict]:
    now = as_of.replace(tzinfo=None)
    windows = [(f, w.seconds) for f, w in zip(
        ("1h", "1d", "7d", "30d"), config.kpis.windows, strict=True)]
    counts = bench_raw.run(dsn, schema, config, now, windows)
    totals = []
    for _ in range(runs):
        started = time.perf_counter()
        bench_raw.run(dsn, schema, config, now, windows)
        totals.append(time.perf_counter() - started)
    return statistics.median(totals), counts


def compare(results: list, raw: dict) -> dict[str, int]:
    """Cells whose counts differ from the raw SQL's, per KPI (0 everywhere = same numbers)."""
    mismatches: dict[str, int] = {}
    for result in results:
        key = result.kpi.key
        if key not in bench_raw.KPIS:
            continue
        bad = 0
        seen = 0
        for cell in result.cells:
            labels = dict(cell.labels)
            dims = [labels[d] for d in result.kpi.label_dimensions]
            row = raw.get((labels["window"], *dims), {})
            seen += 1
            if cell.histogram is not None:
                bad += cell.histogram.count != row.get(f"{key}_n")
            else:
                bad += (cell.counts["numerator"], cell.counts["denominator"]) != (
                    row.get(f"{key}_num"), row.get(f"{key}_den"))
        mismatches[key] = bad if seen else -1
    return mismatches


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--appointments", default="1000000,10000000",
                        help="comma-separated sizes (smallest and largest are compared)")
    parser.add_argument("--server", default=SERVER, help="SQLAlchemy URL of the server")
    parser.add_argument("--database", default="carekpi_bench",
                        help="the bench database (created when missing)")
    parser.add_argument("--refresh-only", action="store_true",
                        help="only the refresh figures: full refresh, database time per minute "
                             "at the default cadences, refresh_vs_raw and growth")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per median")
    parser.add_argument("--memory-cycles", type=int, default=240)
    parser.add_argument("--qe-seconds", type=float, default=120.0,
                        help="how long two replicas scrape query-exporter")
    parser.add_argument("--skip-qe", action="store_true", help="skip query-exporter")
    parser.add_argument("--reseed", action="store_true")
    parser.add_argument("--json", action="store_true", help="one JSON object, a key per figure")
    args = parser.parse_args(argv)
    say = (lambda *a: print(*a, file=sys.stderr, flush=True)) if args.json else (
        lambda *a: print(*a, flush=True))
    sizes = sorted(int(s) for s in args.appointments.split(","))
    url = f"{args.server}/{args.database}"
    bench_serve.create_database(args.server, args.database)
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    seeded = {}
    for n in sizes:
        as_of = None if args.reseed else bench_seed.existing(engine, n)
        if as_of is None:
            say(f"seeding {n:,} appointments ...")
            as_of, _ = bench_seed.seed(engine, n, say)
        seeded[n] = as_of
    out: dict[str, Any] = {}
    full = {}
    dsn = url.replace("+psycopg", "")
    for n in sizes:
        config = parse(bench_config(url, bench_seed.schema_name(n), seeded[n]))
        full[n], per_kpi, _ = time_refresh(config, seeded[n], args.runs)
        say(f"full refresh at {n:,}: {full[n]:.3f}s; slowest: " + ", ".join(
            f"{k} {v:.3f}s" for k, v in sorted(per_kpi.items(), key=lambda kv: -kv[1])[:4]))
        out[f"refresh_seconds_{n}"] = round(full[n], 4)
        out[f"refresh_per_kpi_seconds_{n}"] = {k: round(v, 4) for k, v in per_kpi.items()}
        alone, _, _ = time_refresh(parse(one_connection(bench_config(
            url, bench_seed.schema_name(n), seeded[n]))), seeded[n], args.runs)
        say(f"the same on one connection: {alone:.3f}s")
        out[f"refresh_one_connection_seconds_{n}"] = round(alone, 4)
        per_minute, per_unit = cadence_load(config, seeded[n], args.runs)
        say(f"database seconds per minute at the default cadences at {n:,}: {per_minute:.3f}; "
            "heaviest units: " + ", ".join(f"{k} {v:.3f}s" for k, v in sorted(
                per_unit.items(), key=lambda kv: -kv[1])[:3]))
        out[f"db_seconds_per_minute_{n}"] = round(per_minute, 4)
        out[f"unit_query_seconds_{n}"] = {k: round(v, 4) for k, v in per_unit.items()}
        server = server_load(config, seeded[n], dsn, args.runs)
        say(f"the same from PostgreSQL's active time at {n:,}: {server:.3f}")
        out[f"db_seconds_per_minute_server_{n}"] = round(server, 4)
    large = sizes[-1]
    config = parse(one_connection(bench_config(url, bench_seed.schema_name(large), seeded[large])))
    subset, _, results = time_refresh(config, seeded[large], args.runs, bench_raw.KPIS)
    raw, counts = time_raw(dsn, bench_seed.schema_name(large), config, seeded[large], args.runs)
    mismatches = compare(results, counts)
    out["carekpi_db_seconds_per_minute"] = out[f"db_seconds_per_minute_{large}"]
    out.update(refresh_vs_raw=round(subset / raw, 3), growth=round(full[large] / full[sizes[0]], 3),
               refresh_subset_seconds=round(subset, 4), raw_sql_seconds=round(raw, 4),
               count_mismatches=mismatches)
    bad = {k: v for k, v in mismatches.items() if k in ASSERTED and v != 0}
    if bad:
        say(f"COUNTS DIFFER from the raw SQL: {bad}")
    if args.refresh_only:
        out["machine"] = bench_serve.machine()
        print(json.dumps(out, indent=2, sort_keys=True) if args.json else table(out, sizes))
        return 1 if bad else 0
    serve_data = bench_config(url, bench_seed.schema_name(large), seeded[large], "3600s")
    out.update(bench_serve.scrape(serve_data, dsn, say))
    out.update(bench_serve.scrape_while_refreshing(
        bench_config(url, bench_seed.schema_name(large), seeded[large], "15s"), say))
    out.update(bench_serve.startup(serve_data, say))
    memory_data = bench_config(url, bench_seed.schema_name(large), seeded[large], "1s")
    out.update(bench_serve.memory(memory_data, args.memory_cycles, say))
    out.update(bench_serve.memory(memory_data, max(1, args.memory_cycles // 4), say,
                                  plain_text=True))
    if not args.skip_qe:
        out.update(bench_serve.db_time(bench_config(url, bench_seed.schema_name(large),
                                                    seeded[large]), dsn, args.qe_seconds, say))
        out.update(bench_qe.run(dsn, bench_seed.schema_name(large), args.qe_seconds, say))
    out["machine"] = bench_serve.machine()
    out["sizes"] = sizes
    if bad:
        out["error"] = f"counts differ: {bad}"
    print(json.dumps(out, indent=2, sort_keys=True) if args.json else table(out, sizes))
    return 1 if bad else 0


TARGETS = [("refresh_vs_raw", "<= 1.25"), ("growth", "<= 1.3"), ("scrape_p50_ms", ""),
           ("scrape_p99_ms", "<= 50"), ("scrape_db_queries", "0"), ("scrape_series", ">= 10000"),
           ("scrape_identity_p50_ms", ""), ("scrape_identity_p99_ms", ""),
           ("scrape_refreshing_p50_ms", ""), ("scrape_refreshing_p99_ms", ""),
           ("startup_seconds", "<= 2"), ("startup_first_kpi_seconds", ""),
           ("startup_all_kpis_seconds", ""), ("rss_mb", "<= 80"), ("memory_series", ">= 30000"),
           ("rss_mb_with_text_scraper", ""),
           ("carekpi_db_seconds_per_minute", "<= 0.5"),
           ("carekpi_db_seconds_per_minute_measured", ""), ("carekpi_replica_scrape_p99_ms", ""),
           ("qe_db_seconds_per_minute", ""),
           ("qe_interval_db_seconds_per_minute", ""), ("qe_scrape_p50_ms", ""),
           ("qe_scrape_p99_ms", ""), ("refresh_subset_seconds", ""), ("raw_sql_seconds", "")]


def table(out: dict[str, Any], sizes: list[int]) -> str:
    lines = [f"{'figure':36} {'value':>12}  target"]
    keys = [*TARGETS, *((f"refresh_seconds_{n}", "<= 1.5") for n in sizes),
            *((f"refresh_one_connection_seconds_{n}", "") for n in sizes),
            *((f"db_seconds_per_minute_{n}", "") for n in sizes),
            *((f"db_seconds_per_minute_server_{n}", "") for n in sizes)]
    for key, target in keys:
        if key in out:
            lines.append(f"{key:36} {out[key]!s:>12}  {target}")
    lines.append(f"count mismatches vs raw SQL: {out['count_mismatches']}")
    lines.append(f"machine: {out['machine']}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
