"""The cost of history: `carekpi backfill` of --days at 1 h on the benchmark data (bench_seed.py,
PostgreSQL), against one full refresh. Prints the wall time, the database's active time (from
pg_stat_database, as bench_serve.py reads it), the samples written and the TSDB block size.
Both are measured on a warm cache: a refresh runs once untimed first.

    python tests/benchmarks/bench_backfill.py [--appointments 1000000] [--days 90] [--json]
    python tests/benchmarks/bench_backfill.py --reads-only   # a minute or two, not half an hour

--reads-only runs the backfill's reads alone (every query of the pass, no sample written) and
prints each query's time next to the ratio.

Uses (and seeds when missing) the same PostgreSQL database as tests/benchmarks/run.py.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import yaml

from collectors.backfill import Backfill, Grid
from collectors.load import LoadMeter
from kpis.db import engines as engines_module
from tests.benchmarks import bench_seed, bench_serve
from tests.benchmarks.run import SERVER, bench_config, parse, time_refresh

CAREKPI = str(Path(sys.executable).with_name("carekpi"))


def _active_ms(dsn: str) -> float:
    return bench_serve._db_stats(dsn)[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--appointments", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--server", default=SERVER)
    parser.add_argument("--database", default="carekpi_bench")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--reads-only", action="store_true")
    args = parser.parse_args(argv)
    url, as_of = bench_seed.ensure(args.server, args.database, args.appointments)
    dsn = url.replace("+psycopg", "")
    data = bench_config(url, bench_seed.schema_name(args.appointments), as_of)
    time_refresh(parse(data), as_of, 1)  # the cache warmed, as the backfill will find it
    before = _active_ms(dsn)
    refresh, _, _ = time_refresh(parse(data), as_of, 1)
    time.sleep(11)  # PostgreSQL reports an idle backend's statistics up to 10 s late
    refresh_db = (_active_ms(dsn) - before) / 2 / 1000  # a warm-up and one timed refresh
    if args.reads_only:
        return _reads_only(args, data, as_of, dsn, refresh_db)
    with tempfile.TemporaryDirectory() as folder:
        config_path = Path(folder) / "carekpi.yaml"
        config_path.write_text(yaml.safe_dump(data))
        blocks = Path(folder) / "blocks"
        before = _active_ms(dsn)
        started = time.perf_counter()
        subprocess.run([CAREKPI, "backfill", "--config", str(config_path), "--start",
                        f"{args.days}d", "--end", as_of.isoformat(), "--step", "1h",
                        "--tsdb", str(blocks)], check=True, stderr=subprocess.DEVNULL)
        wall = time.perf_counter() - started
        time.sleep(11)
        backfill_db = (_active_ms(dsn) - before) / 1000
        size = sum(p.stat().st_size for p in blocks.rglob("*") if p.is_file())
        listed = subprocess.run(["promtool", "tsdb", "list", str(blocks)],
                                capture_output=True, text=True, check=True).stdout
        blocks_made = len(listed.splitlines()) - 1
    samples = sum(int(line.split()[4]) for line in listed.splitlines()[1:])
    out: dict[str, Any] = {
        "appointments": args.appointments, "days": args.days, "instants": args.days * 24 + 1,
        "backfill_wall_seconds": round(wall, 1), "backfill_db_seconds": round(backfill_db, 1),
        "full_refresh_wall_seconds": round(refresh, 3),
        "full_refresh_db_seconds": round(refresh_db, 3),
        "db_ratio": round(backfill_db / refresh_db, 2) if refresh_db else None,
        "block_bytes": size, "blocks": blocks_made, "samples": samples,
        "machine": bench_serve.machine()}
    print(json.dumps(out, indent=2) if args.json else
          f"{args.appointments:,} appointments, {args.days} days at 1 h: backfill "
          f"{out['backfill_wall_seconds']} s wall, {out['backfill_db_seconds']} s database time "
          f"({out['db_ratio']} x one full refresh's {out['full_refresh_db_seconds']} s), "
          f"{samples:,} samples in {blocks_made} blocks of {size / 2**20:.1f} MiB in all")
    return 0


def _reads_only(args: argparse.Namespace, data: dict[str, Any], as_of: datetime, dsn: str,
                refresh_db: float) -> int:
    config = parse(data)
    engines = {name: engines_module.create(name, s) for name, s in config.sources.items()}
    end = as_of.replace(minute=0, second=0, microsecond=0)
    grid = Grid(end - timedelta(days=args.days), end, 3600)
    meter = LoadMeter()  # each read's query time, as carekpi_source_query_seconds_total counts
    read, replay = Backfill._read, Backfill._replay

    def slotted(self: Backfill, unit: Any) -> Any:
        with meter.timed(unit.entity, ", ".join(k.key for k in unit.kpis) + " (slotted)"):
            return read(self, unit)

    def replayed(self: Backfill, unit: Any, kpi: Any, instants: Any) -> Any:
        with meter.timed(unit.entity or "freshness", f"{kpi.key} (replayed)"):
            return replay(self, unit, kpi, instants)

    Backfill._read, Backfill._replay = slotted, replayed  # type: ignore[method-assign]
    before, started = _active_ms(dsn), time.perf_counter()
    Backfill(config, engines, grid)
    wall = time.perf_counter() - started
    for engine in engines.values():
        engine.dispose()
    time.sleep(11)
    reads_db = (_active_ms(dsn) - before) / 1000
    print(f"{args.appointments:,} appointments, {args.days} days at 1 h, reads alone: "
          f"{reads_db:.1f} s database time ({reads_db / refresh_db:.2f} x one full refresh's "
          f"{refresh_db:.2f} s), {wall:.0f} s wall\nquery time by read (client-measured):")
    for (entity, what), load in sorted(meter.totals().items(), key=lambda kv: -kv[1].seconds):
        print(f"  {load.seconds:6.2f} s  {entity}: {what}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
