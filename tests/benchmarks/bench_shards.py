"""Sizing shards: for N = 1, 2, 3 exporter processes on the benchmark data (bench_seed.py), the
series each shard exports and the wall time of its full refresh (median of --runs), so the
README's "Running at scale" can say what one shard carries.

    python tests/benchmarks/bench_shards.py [--appointments 1000000] [--shards 1,2,3] [--json]

Uses (and seeds when missing) the same PostgreSQL database as tests/benchmarks/run.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


from tests.benchmarks import bench_seed
from tests.benchmarks.run import SERVER, bench_config, parse, time_refresh


def series(config: Any, results: list[Any]) -> int:
    """Samples the shard exports for these results (as ``collect --format prometheus``)."""
    from collectors.commands import prometheus_text
    from collectors.store import Store

    text = prometheus_text(Store(config), results)
    return sum(1 for line in text.splitlines() if line and not line.startswith("#"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--appointments", type=int, default=1_000_000)
    parser.add_argument("--shards", default="1,2,3")
    parser.add_argument("--server", default=SERVER)
    parser.add_argument("--database", default="carekpi_bench")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    url, as_of = bench_seed.ensure(args.server, args.database, args.appointments)
    data = bench_config(url, bench_seed.schema_name(args.appointments), as_of)
    out: dict[str, Any] = {}
    for count in (int(n) for n in args.shards.split(",")):
        for index in range(1, count + 1):
            config = parse({**data, "shard": f"{index}/{count}"})
            seconds, _, results = time_refresh(config, as_of, args.runs)
            out[f"shard_{index}_of_{count}"] = {"refresh_seconds": round(seconds, 3),
                                                "series": series(config, results)}
            if not args.json:
                print(f"{args.appointments:,} appointments, shard {index}/{count}: "
                      f"{out[f'shard_{index}_of_{count}']['series']:,} series, full refresh "
                      f"{seconds:.2f} s", flush=True)
    if args.json:
        print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
