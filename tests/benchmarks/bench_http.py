"""Scrape latency of the HTTP front: ``carekpi serve`` on the demo database, 50 Prometheus-
style scrapers (kept-alive connections, OpenMetrics, gzip) hitting it at the same instant
every second, as bench_serve.py's bursts; prints p50/p99 and the served series.

    .venv/bin/python -m tests.benchmarks.bench_http [--rounds 20] [--repeat 3]

Run it from another checkout's folder with ``PYTHONPATH=<that checkout>`` to compare two
versions of the front on the same machine, alternately, under the same load.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from tests.benchmarks.bench_serve import (
    PROMETHEUS_HEADERS,
    _all_refreshed,
    _bursts,
    _percentiles,
    _serve,
    _wait,
    machine,
)

CAREKPI = str(Path(sys.executable).with_name("carekpi"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", help="folder for the demo database, kept between runs")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as temporary:
        folder = args.keep or temporary
        Path(folder).mkdir(parents=True, exist_ok=True)
        config_path = Path(folder) / "demo.yaml"
        if not config_path.exists():
            subprocess.run([CAREKPI, "demo", "--seed-only", "--db",
                            f"sqlite:///{folder}/demo.db", "--config-out", str(config_path)],
                           check=True, env={**os.environ, "XDG_CACHE_HOME": folder},
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        data = yaml.safe_load(config_path.read_text())
        from kpis.config import parse

        config = parse(data, str(config_path))
        proc, url, _ = _serve(data, temporary)
        try:
            body = _wait(url, _all_refreshed(config), 10**9)
            series = sum(1 for line in body.splitlines() if line and not line.startswith("#"))
            samples: list[float] = []
            for _ in range(args.repeat):
                samples += _bursts(url, PROMETHEUS_HEADERS, rounds=args.rounds)
        finally:
            proc.terminate()
            proc.wait(10)
    import collectors.web

    print({"front": collectors.web.__file__, "machine": machine(), "series": series,
           "scrapes": len(samples), **_percentiles("scrape", samples)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
